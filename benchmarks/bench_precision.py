"""Float32 against float64 products for LogDet on float32 layers, side by side.

LogDet reads the N×N inner products of a wide layer (the Sylvester side);
``pyfastent.estimators.logdet.FLOAT32_PRODUCTS`` builds them in float32 for
float32 rows (columns centred first, their means accumulated in float64)
instead of float64. Both ways, in one process, alternating, the default
estimators (Rényi and LogDet with the paper's β) sweep:

- the 32×32 ResNet-18 (``pyfastent.models.resnet18``, 59 layers) on 500
  class-structured random images (the tracker benchmark's probe);
- VGG-16-BN at width 1/4 (47 layers) on 512.

Reported per workload: the largest difference over every layer and
quantity, LogDet relative (to at least 1 bit) and Rényi in bits, and the
sweep's time both ways (the faster of two runs each). The issue's rule: use
float32 where LogDet stays within 1e-5 relative and Rényi within 1e-5 bits
on every layer.

Usage: ``python benchmarks/bench_precision.py [--out DIR]``.
"""
from __future__ import annotations

import argparse
import time


from pyfastent.estimators import logdet
from pyfastent.nn import layer_sweep
from _record import RESULTS, environment, write
from _sweep_child import build, images

WORKLOADS = [("resnet18-cifar", 500), ("vgg16-quarter", 512)]
LIMITS = {"logdet_relative": 1e-5, "renyi_bits": 1e-5}


def sweep(net, x, y, float32: bool):
    logdet.FLOAT32_PRODUCTS = float32
    start = time.perf_counter()
    result = layer_sweep(net, x, y, progress=False)
    return time.perf_counter() - start, result.rows


def differences(new: list, old: list) -> dict:
    """Largest differences over layers and quantities, and where."""
    worst = {"logdet_relative": (0.0, None), "renyi_bits": (0.0, None)}
    for a, b in zip(new, old):
        assert (a["layer"], a["estimator"]) == (b["layer"], b["estimator"])
        for q in ("h_t", "i_xt", "i_ty"):
            if a["estimator"].startswith("renyi"):
                key, value = "renyi_bits", abs(a[q] - b[q])
            else:
                key, value = "logdet_relative", abs(a[q] - b[q]) / max(abs(b[q]), 1.0)
            if value > worst[key][0]:
                worst[key] = (value, f"{a['layer']} {q}")
    return {k: {"max": v, "at": where} for k, (v, where) in worst.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    args = parser.parse_args()
    chosen = logdet.FLOAT32_PRODUCTS
    runs = []
    try:
        for model, n in WORKLOADS:
            net, size = build(model)
            net.eval()
            x, y = images(n, size, seed=0)
            sweep(net, x, y, True)  # the eigensolver plan and the allocator warmed up
            times = {"float64": [], "float32": []}
            rows = {}
            for _ in range(2):
                for kind in ("float64", "float32"):
                    seconds, rows[kind] = sweep(net, x, y, kind == "float32")
                    times[kind].append(seconds)
            diff = differences(rows["float32"], rows["float64"])
            within = all(diff[k]["max"] <= LIMITS[k] for k in LIMITS)
            runs.append({"model": model, "n": n, "layers": len(rows["float64"]) // 2, "differences": diff,
                         "within_limits": within, "seconds": {k: min(v) for k, v in times.items()}})
            print(runs[-1], flush=True)
    finally:
        logdet.FLOAT32_PRODUCTS = chosen
    lines = ["| workload | N | layers | LogDet, largest relative difference | Rényi, largest difference (bits) | "
             "within 1e-5 | sweep s, float64 products | sweep s, float32 products | ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        d, s = r["differences"], r["seconds"]
        lines.append(f"| {r['model']} | {r['n']} | {r['layers']} | {d['logdet_relative']['max']:.1e} "
                     f"({d['logdet_relative']['at']}) | {d['renyi_bits']['max']:.1e} ({d['renyi_bits']['at']}) | "
                     f"{'yes' if r['within_limits'] else 'no'} | {s['float64']:.1f} | {s['float32']:.1f} | "
                     f"{s['float64'] / s['float32']:.2f}x |")
    table = "\n".join(lines)
    record = {"benchmark": "bench_precision", "environment": environment(), "limits": LIMITS, "runs": runs}
    print(table)
    print("wrote", write("bench_precision_cpu", record, table, args.out))


if __name__ == "__main__":
    main()
