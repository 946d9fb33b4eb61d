"""Eigenvalues-only symmetric eigensolvers on this machine, float64: every
strategy the eigensolver plan (``pyfastent.ops.eigen``) could use, per size,
for one matrix and for a batch, and what the plan chose for each (its
entries are per size class and batch kind).

Strategies, per matrix of a batch (seconds, median of repeats):
- ``torch``: ``torch.linalg.eigvalsh`` one matrix at a time (MKL, torch's threads);
- ``torch batched``: one call on the stacked batch;
- ``numpy``, ``scipy-evd``, ``scipy-evr``: the plan's side-by-side drivers
  (one BLAS thread per call, ``pyfastent.ops.threads.workers()`` threads);
- ``numpy``/``scipy-evd``/``scipy-evr threaded``: one call at a time with
  every core in OpenBLAS's own pool, plus the cost it leaves behind: the
  extra time a fixed loop of small torch operations takes right after it
  (OpenBLAS's workers spin after a call) is reported in ``spin_penalty_s``;
- ``processes``: NumPy in a pool of worker processes (spawned, one BLAS
  thread each), the matrices sent by pickling.

Correctness first: every strategy agrees with ``numpy.linalg.eigvalsh`` to
1e-12 relative to λ_max. Usage: ``python benchmarks/bench_eigensolvers.py``;
writes ``benchmarks/results/bench_eigensolvers_cpu.{json,md}``.
"""
from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from _record import environment, median_seconds, write
from pyfastent.ops import eigen, eigensolvers, threads


def gram(n: int, seed: int) -> np.ndarray:
    """A normalized RBF Gram matrix of realistic activations (tanh layer, median width)."""
    g = np.random.default_rng(seed)
    x = np.tanh(g.standard_normal((n, 32)) @ g.standard_normal((32, 64)) / 4)
    sq = (x * x).sum(1)
    d = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)
    return np.exp(-d / (2 * np.median(d))) / n


def _numpy_eigvalsh(a):
    return np.linalg.eigvalsh(a)


def strategies(pool: ProcessPoolExecutor) -> dict:
    out = {
        "torch": lambda ms: [torch.linalg.eigvalsh(torch.from_numpy(a)) for a in ms],
        "torch batched": lambda ms: torch.linalg.eigvalsh(torch.from_numpy(np.stack(ms))),
    }
    drivers = eigen.available_drivers()[1:]
    for name in drivers:
        out[name] = (lambda d: lambda ms: eigensolvers.SOLVERS[d]([torch.from_numpy(a) for a in ms]))(name)
    for name in drivers:
        out[f"{name} threaded"] = _threaded(name)
    out["processes"] = lambda ms: list(pool.map(_numpy_eigvalsh, ms))
    return out


def _threaded(name: str):
    """The driver called one matrix at a time with OpenBLAS using every core."""
    def solve(a):
        if name == "numpy":
            return np.linalg.eigvalsh(a)
        import scipy.linalg

        return scipy.linalg.eigh(a, eigvals_only=True, driver=name.split("-")[1], check_finite=False)

    def run(ms):
        with threadpool_limits(threads.workers(), user_api="blas"):
            return [solve(a) for a in ms]

    return run


def torch_loop() -> float:
    """A fixed loop of small torch operations, timed: slowed while other threads spin."""
    t = torch.rand(450, 450, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for _ in range(100):
        (t * 1.5).exp_().sum()
    return time.perf_counter() - start


def spin_penalty(run, ms, repeats: int) -> float:
    """Median extra seconds ``torch_loop`` takes right after ``run(ms)`` over alone."""
    extra = []
    for _ in range(repeats):
        time.sleep(0.3)
        alone = torch_loop()
        run(ms)
        extra.append(torch_loop() - alone)
    return float(np.median(extra))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512,1024,2048,4096")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import multiprocessing

    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # inherited by the workers, which load OpenBLAS after this
    pool = ProcessPoolExecutor(threads.workers(), mp_context=multiprocessing.get_context("spawn"))
    for _ in pool.map(_numpy_eigvalsh, [np.eye(2)] * threads.workers()):
        pass  # every worker started before any timing
    del os.environ["OPENBLAS_NUM_THREADS"]
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        count = 8 if n <= 2048 else 2
        mats = [gram(n, seed) for seed in range(count)]
        reference = [np.linalg.eigvalsh(a) for a in mats]
        repeats = args.repeats if n <= 1024 else 2
        row = {"n": n, "batch": count, "per_matrix_s": {}, "one_matrix_s": {}, "spin_penalty_s": {}}
        for name, run in strategies(pool).items():
            got = run(mats)
            err = max(float(np.abs(np.asarray(g) - r).max() / r.max()) for g, r in zip(got, reference))
            if err > 1e-12:
                raise SystemExit(f"{name} disagrees at N={n}: {err:.2e}")
            row["per_matrix_s"][name] = median_seconds(lambda: run(mats), repeats) / count
            row["one_matrix_s"][name] = median_seconds(lambda: run(mats[:1]), repeats)
            if "threaded" in name or name in ("torch", "numpy"):
                row["spin_penalty_s"][name] = spin_penalty(run, mats[:1], 3)
        eigen.PLAN.reset()
        size = eigen.size_class(n)
        for _ in range(6):  # the plan's own measurement, on these matrices: the batch, then one at a time
            eigen.symmetric_eigenvalues([torch.from_numpy(a) for a in mats])
        row["plan"] = eigen.PLAN.driver_for(size, count)
        ones = 0
        while n <= 2048 and eigen.PLAN.driver_for(size, 1) is None and ones < 6 * len(eigen.available_drivers()):
            eigen.symmetric_eigenvalues([torch.from_numpy(mats[ones % count])])
            ones += 1
        row["plan_one"] = eigen.PLAN.driver_for(size, 1) if n <= 2048 else "not measured"
        rows.append(row)
        best = min(row["per_matrix_s"], key=row["per_matrix_s"].get)
        print(f"N={n}: per matrix of {count}: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in
                                                             row["per_matrix_s"].items()) +
              f"; fastest {best}; plan for the batch {row['plan']}, for one {row['plan_one']}", flush=True)
    pool.shutdown()
    names = list(rows[0]["per_matrix_s"])
    table = ("Milliseconds per matrix (median), float64, eigenvalues only; a batch of 8 (2 at N = 4096) and one "
             "matrix alone. 'spin' is the extra time a loop of small torch ops took right after one matrix "
             "(OpenBLAS's pool spinning). The plan column is what pyfastent's plan chose from its own "
             "measurement, for the batch and for one matrix at a time (its entries per batch kind).\n\n"
             "| N | timing | " + " | ".join(names) + " | plan |\n|---|---|" + "---|" * len(names) + "---|\n")
    for r in rows:
        table += f"| {r['n']} | per matrix of a batch | " + " | ".join(
            f"{r['per_matrix_s'][k] * 1e3:.1f}" for k in names) + f" | {r['plan']} |\n"
        table += f"| {r['n']} | one matrix | " + " | ".join(
            f"{r['one_matrix_s'][k] * 1e3:.1f}" for k in names) + f" | {r['plan_one']} |\n"
        table += f"| {r['n']} | spin after one | " + " | ".join(
            f"{r['spin_penalty_s'][k] * 1e3:.0f}" if k in r["spin_penalty_s"] else "" for k in names) + " | |\n"
    print(write("bench_eigensolvers_cpu", {"benchmark": "bench_eigensolvers", "environment": environment(),
                                          "results": rows}, table))


if __name__ == "__main__":
    main()
