"""Layer-sweep and tracker cost.

On the CPU (default):
1. One full layer sweep (every leaf layer, Rényi and LogDet) of VGG-16 with
   batch norm at width 1/4 on 512 CIFAR-sized probe samples, and what
   copying each layer's output in the hooks (so later in-place ops cannot
   change it) costs of that.
2. The overhead ``InformationPlane.step`` (both estimators and layer transfer
   entropy, as in ``pyfastent demo``) adds to one training epoch of the demo.

With ``--device cuda`` (issue 8 part B): the same sweep of VGG-16-BN at
width 1 on 1000 probe samples on the GPU, once with the CUDA kernels
(``use_backend("cuda")``) and once with the torch path, same numbers within
1e-4 bits, and the time ratio.

Correctness first: the sweep's values for a few layers must equal direct
estimator calls on captured activations. Writes JSON and Markdown to
``benchmarks/results/`` (or ``--out``). Usage:
``python benchmarks/bench_sweep.py [--device cuda] [--out DIR]``.
"""
from __future__ import annotations

import argparse
import time

import torch

import pyfastent as pf
from pyfastent import data, models
from pyfastent.nn import InformationPlane, LayerTE, capture, default_estimators, layer_sweep
from _record import RESULTS, environment, median_seconds, write


def vgg_probe(n: int, width: float = 0.25, seed: int = 0, device: str = "cpu"):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = models.vgg16_bn(width=width).eval().to(device)
    x = torch.rand(n, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (n,), generator=g).to(device)
    return net, x, y


def copy_cost(net, x, repeats: int) -> dict:
    """Seconds to copy every captured layer output once: what recording the
    layers as they were produced adds to a sweep."""
    acts = capture(net, x)
    return {"copy_s": median_seconds(lambda: [a.clone() for a in acts.values()], repeats),
            "bytes": sum(a.numel() * a.element_size() for a in acts.values())}


def check_sweep(net, x, y, estimators):
    result = layer_sweep(net, x, y, estimators=estimators)
    acts = capture(net, x)
    checked = 0
    for row in result.rows:
        if row["layer"] not in ("conv1_1", "relu3_2", "fc1", "out"):
            continue
        est = next(e for e in estimators if e.label == row["estimator"])
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
    tracker = InformationPlane(net, split.x_test, split.y_test, sigma_smoothing=0.9, transfer_entropy=LayerTE(window=1000))
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


def gpu_sweep(args):
    """VGG-16-BN width 1 on the GPU: kernels (use_backend("cuda")) against the torch path."""
    import statistics

    from _record import gpu_environment_name

    net, x, y = vgg_probe(args.probe, width=1.0, device="cuda")
    runs = {}
    for backend in ("cuda", "torch"):
        times, result = [], None
        for _ in range(args.repeats + 1):  # the first is a warm-up
            torch.cuda.synchronize()
            start = time.perf_counter()
            with pf.use_backend(backend):
                result = layer_sweep(net, x, y)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        runs[backend] = (statistics.median(times[1:]), result)
    worst = max(abs(a[q] - b[q]) for a, b in zip(runs["cuda"][1].rows, runs["torch"][1].rows)
                for q in ("h_t", "i_xt", "i_ty"))
    if worst > 1e-4:
        raise SystemExit(f"kernels and torch disagree by {worst:.3g} bits")
    layers = len(runs["torch"][1].rows) // 2
    record = {"benchmark": "bench_sweep_gpu", "environment": environment(),
              "sweep": {"model": "vgg16_bn(width=1)", "probe": args.probe, "layers": layers,
                        "estimators": sorted({r["estimator"] for r in runs["torch"][1].rows}),
                        "kernels_s": runs["cuda"][0], "torch_s": runs["torch"][0],
                        "ratio": runs["torch"][0] / runs["cuda"][0], "max_abs_diff_bits": worst}}
    table = ("| workload | kernels (s) | torch (s) | torch / kernels | max difference (bits) |\n|---|---|---|---|---|\n"
             f"| layer sweep, VGG-16-BN width 1, {layers} layers, Rényi + LogDet, N = {args.probe} | "
             f"{runs['cuda'][0]:.2f} | {runs['torch'][0]:.2f} | {runs['torch'][0] / runs['cuda'][0]:.2f}x | {worst:.2g} |")
    print(table)
    print("wrote", write(f"bench_sweep_gpu_{gpu_environment_name()}", record, table, args.out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--probe", type=int, default=None, help="probe samples (default 512 on CPU, 1000 on GPU)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    args = parser.parse_args()
    if args.device == "cuda":
        args.probe = args.probe or 1000
        return gpu_sweep(args)
    args.probe = args.probe or 512

    net, x, y = vgg_probe(args.probe)
    estimators = default_estimators(x)
    result, checked = check_sweep(net, x, y, estimators)
    layers = len(result.rows) // len(estimators)
    sweep_s = median_seconds(lambda: layer_sweep(net, x, y, estimators=estimators), args.repeats, warmup=0)
    copies = copy_cost(net, x, args.repeats)
    print(f"VGG-16-BN width 1/4, N={args.probe}: {layers} layers x 2 estimators in {sweep_s:.2f} s "
          f"(checked {checked} rows against direct calls); copying the outputs: {copies['copy_s']:.3f} s")
    overhead = tracker_overhead(args.repeats)
    print(f"demo epoch {overhead['epoch_s']:.3f} s; with TE hooks {overhead['epoch_with_te_hooks_s']:.3f} s; "
          f"tracker step {overhead['tracker_step_s']:.3f} s")
    record = {
        "benchmark": "bench_sweep",
        "environment": environment(),
        "sweep": {"model": "vgg16_bn(width=0.25)", "probe": args.probe, "layers": layers,
                  "estimators": [e.label for e in estimators], "seconds": sweep_s, "rows_checked": checked,
                  "output_copies_s": copies["copy_s"], "output_bytes": copies["bytes"]},
        "tracker": overhead,
    }
    table = (
        "| workload | seconds |\n|---|---|\n"
        f"| layer sweep, VGG-16-BN width 1/4, {layers} layers, Rényi + LogDet, N = {args.probe} | {sweep_s:.2f} |\n"
        f"| of which: copying every layer's output ({copies['bytes'] / 2**20:.0f} MiB) | {copies['copy_s']:.3f} |\n"
        f"| demo training epoch (mnist_cnn on digits) | {overhead['epoch_s']:.3f} |\n"
        f"| same epoch with the TE recording hooks | {overhead['epoch_with_te_hooks_s']:.3f} |\n"
        f"| one tracker step (both estimators + layer TE, N = {overhead['probe_size']}) | "
        f"{overhead['tracker_step_s']:.3f} |"
    )
    print(table)
    print("wrote", write("bench_sweep_cpu", record, table, args.out))


if __name__ == "__main__":
    main()
