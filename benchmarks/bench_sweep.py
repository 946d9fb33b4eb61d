"""Layer-sweep and tracker cost on the CPU.

1. One full layer sweep (every leaf layer, Rényi and LogDet) of VGG-16 with
   batch norm at width 1/4 on 512 CIFAR-sized probe samples.
2. The overhead ``InformationPlane.step`` (both estimators and layer transfer
   entropy, as in ``pyfastent demo``) adds to one training epoch of the demo.

Correctness first: the sweep's values for a few layers must equal direct
estimator calls on captured activations. Writes JSON and Markdown to
``benchmarks/results/``. Usage: ``python benchmarks/bench_sweep.py``.
"""
from __future__ import annotations

import argparse
import time

import torch

import pyfastent as pf
from pyfastent import data, models
from pyfastent.nn import InformationPlane, LayerTE, capture, layer_sweep
from _record import environment, median_seconds, write


def vgg_probe(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = models.vgg16_bn(width=0.25).eval()
    x = torch.rand(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return net, x, y


def check_sweep(net, x, y, estimators):
    result = layer_sweep(net, x, y, estimators=estimators)
    acts = capture(net, x)
    checked = 0
    for row in result.rows:
        if row["layer"] not in ("conv1_1", "relu3_2", "fc1", "out"):
            continue
        est = next(e for e in estimators if repr(e) == row["estimator"])
        t = acts[row["layer"]]
        direct = (est.entropy(t), pf.mutual_information(x, t, estimator=est), pf.mutual_information(t, y, estimator=est))
        for got, want in zip((row["h_t"], row["i_xt"], row["i_ty"]), direct):
            if abs(got - want) > 1e-6:
                raise SystemExit(f"sweep disagrees with direct calls at {row['layer']}: {got} vs {want}")
        checked += 1
    return result, checked


def demo_epoch(net, opt, split, order):
    net.train()
    perm = torch.randperm(len(split.y_train), generator=order)
    for b in range(0, len(perm), 32):
        idx = perm[b : b + 32]
        loss = torch.nn.functional.cross_entropy(net(split.x_train[idx]), split.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def tracker_overhead(repeats: int):
    split = data.digits(seed=0)
    torch.manual_seed(0)
    net = models.mnist_cnn(in_size=8)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    order = torch.Generator().manual_seed(0)
    epoch = median_seconds(lambda: demo_epoch(net, opt, split, order), repeats)
    tracker = InformationPlane(net, split.x_test, split.y_test, estimators=(pf.Renyi(), pf.LogDet(beta=6400.0)),
                               sigma_smoothing=0.9, transfer_entropy=LayerTE(window=1000))
    hooked_epoch = median_seconds(lambda: demo_epoch(net, opt, split, order), repeats)

    def measure():
        demo_epoch(net, opt, split, order)  # fills the TE window as in real use
        start = time.perf_counter()
        tracker.step()
        return time.perf_counter() - start

    steps = sorted(measure() for _ in range(repeats))
    tracker.close()
    return {"epoch_s": epoch, "epoch_with_te_hooks_s": hooked_epoch, "tracker_step_s": steps[len(steps) // 2],
            "probe_size": len(split.y_test), "overhead_ratio": (hooked_epoch + steps[len(steps) // 2]) / epoch}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    estimators = (pf.Renyi(), pf.LogDet(beta=100.0 * 3 * 32 * 32))
    net, x, y = vgg_probe(args.probe)
    result, checked = check_sweep(net, x, y, estimators)
    layers = len(result.rows) // len(estimators)
    sweep_s = median_seconds(lambda: layer_sweep(net, x, y, estimators=estimators), args.repeats, warmup=0)
    print(f"VGG-16-BN width 1/4, N={args.probe}: {layers} layers x 2 estimators in {sweep_s:.2f} s "
          f"(checked {checked} rows against direct calls)")
    overhead = tracker_overhead(args.repeats)
    print(f"demo epoch {overhead['epoch_s']:.3f} s; with TE hooks {overhead['epoch_with_te_hooks_s']:.3f} s; "
          f"tracker step {overhead['tracker_step_s']:.3f} s")
    record = {
        "benchmark": "bench_sweep",
        "environment": environment(),
        "sweep": {"model": "vgg16_bn(width=0.25)", "probe": args.probe, "layers": layers,
                  "estimators": [repr(e) for e in estimators], "seconds": sweep_s, "rows_checked": checked},
        "tracker": overhead,
    }
    table = (
        "| workload | seconds |\n|---|---|\n"
        f"| layer sweep, VGG-16-BN width 1/4, {layers} layers, Rényi + LogDet, N = {args.probe} | {sweep_s:.2f} |\n"
        f"| demo training epoch (mnist_cnn on digits) | {overhead['epoch_s']:.3f} |\n"
        f"| same epoch with the TE recording hooks | {overhead['epoch_with_te_hooks_s']:.3f} |\n"
        f"| one tracker step (both estimators + layer TE, N = {overhead['probe_size']}) | "
        f"{overhead['tracker_step_s']:.3f} |"
    )
    print(table)
    print("wrote", write("bench_sweep_cpu", record, table))


if __name__ == "__main__":
    main()
