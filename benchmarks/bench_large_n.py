"""Rényi entropies at large N: the randomized method against exact spectra.

Workload: X (D = 64, 10 class clusters), labels Y and 4 tanh layers T_l in a
chain, kNN widths. Per layer I(X;T_l) and I(T_l;Y), prepared once each, as
``layer_sweep`` does.

1. N = 4096: every α in {1.01, 1.5, 3}: exact (``method="exact"``) and
   randomized (``method="lanczos"``) on the same data; the largest error of
   any entropy or MI in bits, and the time ratio (goal: ≤ 0.01 bits at ≥ 5×).
2. N = 16 384: I(X;T) and I(T;Y) of one layer, randomized (goal: ≤ 60 s).
3. N = 65 536: the same; the time and the peak resident memory.

Usage: ``python benchmarks/bench_large_n.py [--skip-65536]``; writes
``benchmarks/results/bench_large_n_cpu.{json,md}``.
"""
from __future__ import annotations

import argparse
import resource
import time
import warnings

import torch

import pyfastent as pf
from _record import environment, write

ALPHAS = (1.01, 1.5, 3.0)


def workload(n: int, layers: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.randn(n, 64, generator=g) + 2.0 * torch.randn(10, 64, generator=g)[y]
    ts, h = [], x
    for _ in range(layers):
        h = torch.tanh(h @ (torch.randn(64, 64, generator=g) / 8))
        ts.append(h)
    return x, y, ts


def plane(est, x, y, ts) -> dict:
    """Every entropy and MI of the workload, in bits: name -> value."""
    px, py = est.prepare(x, "x"), est.prepare(y, "y")
    out = {"H(X)": est.joint_entropy([px])}
    for i, t in enumerate(ts):
        pt = est.prepare(t, f"t{i}")
        out[f"H(T{i})"] = est.joint_entropy([pt])
        out[f"I(X;T{i})"] = pf.mutual_information(px, pt, estimator=est)
        out[f"I(T{i};Y)"] = pf.mutual_information(pt, py, estimator=est)
    return out


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-65536", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore", pf.SaturationWarning)
    record = {"benchmark": "bench_large_n", "environment": environment(), "accuracy": [], "large": []}

    x, y, ts = workload(4096)
    for alpha in ALPHAS:
        exact, t_exact = timed(lambda: plane(pf.Renyi(alpha=alpha, method="exact"), x, y, ts))
        approx, t_approx = timed(lambda: plane(pf.Renyi(alpha=alpha, method="lanczos"), x, y, ts))
        errors = {k: approx[k] - exact[k] for k in exact}
        worst = max(errors, key=lambda k: abs(errors[k]))
        stderr = max(getattr(v, "stderr", 0.0) for v in approx.values())
        row = {"n": 4096, "alpha": alpha, "exact_s": t_exact, "lanczos_s": t_approx, "speedup": t_exact / t_approx,
               "max_abs_error_bits": abs(errors[worst]), "worst": worst, "max_stderr_bits": stderr,
               "values": {k: [exact[k], float(approx[k])] for k in exact}}
        record["accuracy"].append(row)
        print(f"N=4096 α={alpha}: exact {t_exact:.1f} s, lanczos {t_approx:.1f} s ({t_exact / t_approx:.1f}x), "
              f"largest error {abs(errors[worst]):.4f} bits ({worst}), largest stderr {stderr:.4f}")

    for n in (16384,) if args.skip_65536 else (16384, 65536):
        x, y, ts = workload(n, layers=1)
        est = pf.Renyi()  # "auto": randomized above N = 4096
        values, seconds = timed(lambda: plane(est, x, y, ts))
        row = {"n": n, "seconds": seconds, "peak_rss_gib": peak_rss_gib(),
               "values": {k: [float(v), getattr(v, "stderr", 0.0)] for k, v in values.items()}}
        record["large"].append(row)
        print(f"N={n}: H(X), H(T), I(X;T), I(T;Y) in {seconds:.1f} s, peak RSS {row['peak_rss_gib']:.1f} GiB: "
              + ", ".join(f"{k} = {float(v):.3f} ± {getattr(v, 'stderr', 0.0):.3f}" for k, v in values.items()))

    lines = ["| N | α | exact (s) | randomized (s) | speedup | largest error (bits) | largest stderr (bits) |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['n']} | {r['alpha']} | {r['exact_s']:.1f} | {r['lanczos_s']:.1f} | {r['speedup']:.1f}x | "
              f"{r['max_abs_error_bits']:.4f} ({r['worst']}) | {r['max_stderr_bits']:.4f} |" for r in record["accuracy"]]
    lines += ["", "| N | quantities | seconds | peak RSS (GiB) |", "|---|---|---|---|"]
    lines += [f"| {r['n']} | H(X), H(T), I(X;T), I(T;Y) | {r['seconds']:.1f} | {r['peak_rss_gib']:.1f} |"
              for r in record["large"]]
    table = ("N = 4096: X, 10-class labels Y and 4 layers, every entropy and MI of the plane, exact against "
             "randomized (defaults).\nLarger N: one layer, `Renyi()` (\"auto\" is randomized above 4096).\n\n"
             + "\n".join(lines))
    print(write("bench_large_n_cpu", record, table))


if __name__ == "__main__":
    main()
