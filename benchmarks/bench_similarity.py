"""Layer similarity maps against a layer sweep and against torch-cka.

On the 32×32 ResNet-18 of ``pyfastent.models`` (59 default layers) and N = 1000
class-structured random images (``_sweep_child.images``), each job in a process
of its own so that its peak resident memory (``ru_maxrss``) is its own, one
eigensolver plan for all, measured by an uncounted sweep first:

1. ``layer_sweep`` (default Rényi and LogDet estimators): the reference cost.
2. ``layer_similarity`` linear CKA, biased and debiased (exact, 59 × 59).
3. ``layer_similarity(measure="mi")``: Rényi normalized MI of every pair.
4. ``layer_similarity`` of the ResNet-18 against VGG-16-BN (width 1/4, 47
   layers) on the same probe: both models run on the same batches, and the
   forward calls of each are counted (one look at the layers, then one per
   batch of each pass).
5. torch-cka 0.21's ``CKA(model, model).compare(loader)`` on the same layers and
   batches of 100 (its minibatch debiased CKA, float32 as it runs by default),
   when torch-cka is installed: its time, and how far each of its cells is from
   the exact debiased value (torch-cka keys layers by module name and keeps
   the last call of a module called twice; pyfastent measures every call).

Correctness first: a few cells of the CKA map must equal ``pf.cka`` on captured
activations. Writes ``benchmarks/results/bench_similarity_cpu.{json,md}``.
Usage: ``python benchmarks/bench_similarity.py [--n 1000] [--out DIR]``.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BATCH = 100


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def setup(n: int):
    import torch

    from _sweep_child import images
    from pyfastent import models

    torch.manual_seed(0)
    net = models.resnet18(stem="cifar").eval()
    x, y = images(n, 32, seed=0)
    return net, x, y


def job(name: str, n: int) -> dict:
    """One measured job in this process."""
    import torch

    import pyfastent as pf
    from pyfastent.nn import capture, layer_similarity, layer_sweep, select_layers

    net, x, y = setup(n)
    start = time.perf_counter()
    out: dict = {}
    if name == "sweep":
        layer_sweep(net, x, y, progress=False)
    elif name in ("cka", "cka-debiased"):
        result = layer_similarity(net, x, debiased=name == "cka-debiased", progress=False)
        out["matrix"] = result.matrix.tolist()
        out["layers"] = result.layers
    elif name == "mi":
        result = layer_similarity(net, x, measure="mi", progress=False)
        out["layers"] = result.layers
        layers = len(result.layers)
        out["spectra"] = layers + layers * (layers - 1) // 2  # every entropy and every pair's joint, once
        plan = pf.backend_info()["eigensolver"]["classes"]
        size = str(1 << (n - 1).bit_length())
        if size in plan:  # the plan's seconds per N×N matrix, for the driver it chose
            out["eigen_s_per_matrix"] = plan[size]["median_s"][plan[size]["driver"]]
    elif name == "two-models":
        from pyfastent import models

        torch.manual_seed(1)
        other = models.vgg16_bn(width=0.25).eval()
        calls = {"resnet18": 0, "vgg16_bn": 0}
        net.register_forward_pre_hook(lambda *a: calls.__setitem__("resnet18", calls["resnet18"] + 1))
        other.register_forward_pre_hook(lambda *a: calls.__setitem__("vgg16_bn", calls["vgg16_bn"] + 1))
        start = time.perf_counter()  # the clock starts again: building VGG is not the map's work
        result = layer_similarity(net, x, other=other, progress=False)
        out.update(forward_calls=calls, shape=list(result.matrix.shape), passes_note="1 look + 1 per batch")
    elif name == "torch-cka":
        from torch_cka import CKA

        layers = select_layers(net, None)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH, shuffle=False)
        cka = CKA(net, net, model1_name="a", model2_name="b", model1_layers=layers, model2_layers=layers)
        cka.compare(loader)
        out["matrix"] = cka.export()["CKA"].tolist()
        out["layers"] = layers
    elif name == "check":
        result = layer_similarity(net, x[:200], progress=False)
        acts = capture(net, x[:200], layers=[result.layers[i] for i in (0, 20, 40)])
        names = list(acts)
        worst = max(abs(float(result.matrix[result.layers.index(a), result.layers.index(b)]) - pf.cka(acts[a], acts[b]))
                    for a in names for b in names)
        out["worst"] = worst
    out.update(seconds=time.perf_counter() - start, peak_gib=peak_gib())
    return out


def child(name: str, n: int, cache: str) -> dict:
    import os

    done = subprocess.run([sys.executable, __file__, "--child", name, "--n", str(n)], capture_output=True, text=True,
                          env={**os.environ, "PYFASTENT_CACHE_DIR": cache})
    if done.returncode != 0:
        return {"failed": (done.stderr.strip().splitlines() or ["killed"])[-1][:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        import warnings

        warnings.simplefilter("ignore")
        print(json.dumps(job(args.child, args.n)))
        return
    from _record import RESULTS, environment, write

    cache = tempfile.mkdtemp(prefix="pyfastent-plan-")
    check = child("check", args.n, cache)
    if "failed" in check or check["worst"] > 1e-9:
        raise SystemExit(f"the CKA map disagrees with pf.cka: {check}")
    child("sweep", args.n, cache)  # uncounted: the eigensolver plan measures its drivers
    runs = {}
    for name in ("sweep", "cka", "cka-debiased", "mi", "two-models", "torch-cka"):
        runs[name] = child(name, args.n, cache)
        print(name, {k: v for k, v in runs[name].items() if k not in ("matrix", "layers")}, flush=True)
    sweep_s = runs["sweep"]["seconds"]
    exact = runs["cka-debiased"].get("matrix")
    theirs = runs["torch-cka"]
    if "matrix" in theirs:
        # torch-cka keys its hooks by module name, so a module called twice (a block's ReLU) keeps its
        # last call: compare each of its rows with our row of that module's last call.
        ours = runs["cka-debiased"]["layers"]
        last = {name.split("#")[0]: i for i, name in enumerate(ours)}
        index = [last[name] for name in theirs["layers"]]
        diffs = [abs(theirs["matrix"][a][b] - exact[index[a]][index[b]]) for a in range(len(index))
                 for b in range(len(index))]
        theirs["max_abs_from_exact"] = max(diffs)
        theirs["median_abs_from_exact"] = sorted(diffs)[len(diffs) // 2]
    lines = ["| job | seconds | peak GiB | time / layer_sweep's |", "|---|---|---|---|"]
    labels = {"sweep": "layer_sweep (Rényi + LogDet)", "cka": "layer_similarity, linear CKA (exact)",
              "cka-debiased": "layer_similarity, debiased linear CKA (exact)",
              "mi": "layer_similarity, normalized MI (Rényi)",
              "two-models": "layer_similarity, linear CKA, ResNet-18 x VGG-16-BN (1/4)",
              "torch-cka": f"torch-cka CKA.compare, batches of {BATCH} (minibatch, float32)"}
    for name, run in runs.items():
        if "failed" in run:
            lines.append(f"| {labels[name]} | failed: {run['failed']} | | |")
            continue
        lines.append(f"| {labels[name]} | {run['seconds']:.2f} | {run['peak_gib']:.2f} | "
                     f"{run['seconds'] / sweep_s:.2f}x |")
    layers = len(runs["cka"].get("layers", []))
    table = "\n".join(lines) + (
        f"\n\nResNet-18 (32×32), {layers} layers, N = {args.n}; each job in its own process after one uncounted "
        "sweep that measured the eigensolver plan.")
    mi = runs["mi"]
    if "eigen_s_per_matrix" in mi:
        floor = mi["spectra"] * mi["eigen_s_per_matrix"]
        table += (f" The MI map solves {mi['spectra']} spectra of {args.n}×{args.n}; at the eigensolver plan's "
                  f"{mi['eigen_s_per_matrix'] * 1e3:.1f} ms per matrix those alone take {floor:.1f} s, "
                  f"{floor / sweep_s:.2f}x the sweep's whole time.")
    two = runs["two-models"]
    if "forward_calls" in two:
        table += (f" The {two['shape'][0]} × {two['shape'][1]} map of the two models called each "
                  f"{two['forward_calls']['resnet18']} and {two['forward_calls']['vgg16_bn']} times (one look at its "
                  "layers, then the probe's batches once for both).")
    if "max_abs_from_exact" in theirs:
        table += (f" torch-cka's minibatch values differ from the exact debiased CKA by up to "
                  f"{theirs['max_abs_from_exact']:.3g} (median {theirs['median_abs_from_exact']:.3g}) per cell.")
    record = {"benchmark": "bench_similarity", "environment": environment(), "n": args.n, "batch": BATCH,
              "check_worst_abs": check["worst"],
              "runs": {k: {kk: vv for kk, vv in v.items() if kk != "matrix"} for k, v in runs.items()}}
    print(table)
    print("wrote", write("bench_similarity_cpu", record, table, args.out or RESULTS))


if __name__ == "__main__":
    main()
