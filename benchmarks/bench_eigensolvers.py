"""Eigenvalues-only symmetric eigensolvers on this machine, float64, per size.

The exact Rényi path needs all eigenvalues of N×N normalized Gram matrices
and no eigenvectors. Candidates: ``torch.linalg.eigvalsh`` (LAPACK syevd
from the MKL torch ships), ``numpy.linalg.eigvalsh`` (syevd from NumPy's
OpenBLAS) and, where SciPy is installed, its LAPACK drivers (ev, evd, evr,
evx; input overwritten, no copy). Correctness first: every solver must
agree with the others to 1e-12 relative to λ_max. Then the median of
several runs, all solvers interleaved in one process, two ways: alone, and
as in the estimator, right after the torch operations that build the Gram
matrix (torch's OpenMP threads then still spin and compete with another
library's threads).

Usage: ``python benchmarks/bench_eigensolvers.py``; writes
``benchmarks/results/bench_eigensolvers_cpu.{json,md}``.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from _record import environment, median_seconds, write


def gram(n: int) -> np.ndarray:
    """A normalized RBF Gram matrix of realistic activations (tanh layer, kNN-like width)."""
    g = np.random.default_rng(n)
    x = np.tanh(g.standard_normal((n, 32)) @ g.standard_normal((32, 64)) / 4)
    sq = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.exp(-sq / (2 * np.median(sq))) / n


def solvers() -> dict:
    out = {
        "torch.linalg.eigvalsh": lambda a: torch.linalg.eigvalsh(torch.from_numpy(a)).numpy(),
        "numpy.linalg.eigvalsh": np.linalg.eigvalsh,
    }
    try:
        import scipy.linalg
    except ImportError:
        return out
    for driver in ("ev", "evd", "evr", "evx"):
        out[f"scipy {driver}"] = (lambda d: lambda a: scipy.linalg.eigh(
            a.copy(), eigvals_only=True, driver=d, overwrite_a=True, check_finite=False))(driver)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512,1024,2048,4096")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        a = gram(n)
        candidates = solvers()
        reference = np.sort(candidates["torch.linalg.eigvalsh"](a))
        at = torch.from_numpy(a)
        build = lambda: (at * 1.0).exp_().log_().numpy()  # noqa: E731 - torch work just before, as in the estimator
        repeats = args.repeats if n < 4096 else 3
        build_s = median_seconds(build, repeats)
        alone, piped = {}, {}
        for name, solve in candidates.items():
            err = float(np.abs(np.sort(solve(a)) - reference).max() / reference.max())
            if err > 1e-12:
                raise SystemExit(f"{name} disagrees at N={n}: {err:.2e}")
            alone[name] = median_seconds(lambda: solve(a), repeats)
            piped[name] = max(median_seconds(lambda: solve(build()), repeats) - build_s, 0.0)
        best = min(piped, key=piped.get)
        rows.append({"n": n, "alone_s": alone, "after_torch_s": piped, "fastest_after_torch": best})
        print(n, "alone", {k: round(v, 4) for k, v in alone.items()})
        print(n, "after torch", {k: round(v, 4) for k, v in piped.items()}, "fastest:", best)
    names = list(rows[0]["alone_s"])
    table = "| N | timing | " + " | ".join(names) + " |\n|---|---|" + "---|" * len(names) + "\n"
    table += "\n".join(f"| {r['n']} | {how} | " + " | ".join(f"{r[key][k]:.4f}" for k in names) + " |"
                       for r in rows for how, key in (("alone", "alone_s"), ("after torch ops", "after_torch_s")))
    print(write("bench_eigensolvers_cpu", {"benchmark": "bench_eigensolvers", "environment": environment(),
                                          "results": rows}, "Seconds, median, float64, eigenvalues only; "
                                          "'after torch ops' subtracts the time of the torch ops themselves.\n\n"
                                          + table))


if __name__ == "__main__":
    main()
