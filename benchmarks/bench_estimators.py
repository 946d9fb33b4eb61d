"""Information-plane workloads on the CPU: pyfastent against the fastest plain
scripts a careful user would write, and against repitl's algorithm; and a
permutation test against the same loop written with SciPy.

Workloads, I(X;T_l) and I(T_l;Y) for every layer with the Rényi estimator
(α = 1.01), float64:
- ``readme``: the README example with 4 layers: X (N × 20), binary labels
  Y, 4 tanh layers of width 64, kNN widths (k = 10);
- ``plane64`` (the eigensolver issue's goal workload): X (N × 64), 10-class
  labels, 4 tanh layers of width 256, σ = 8 for every variable (a width at
  which no entropy is near log N).
The permutation test: 200 permutations of Rényi MI between two continuous
variables (X of 20 dimensions and a noisy tanh layer of width 64, kNN
widths), N = 512.

pyfastent, called the two ways the README shows:
- ``per call``: ``pf.mutual_information(x, t, estimator=est)`` and
  ``pf.mutual_information(t, y, estimator=est)`` for each layer;
- ``prepared``: X and Y prepared once, each layer prepared once.

Baselines, written out here, with SciPy's ``eigh(eigvals_only=True,
driver="evd")`` (eigenvalues only; OpenBLAS with the machine's default
threads, the fastest single-call driver here):
- ``evd, every term``: each MI builds its three Gram matrices and
  decomposes each: 6 decompositions per layer, 24 in all;
- ``evd, each entropy once``: H(X) and H(Y) once, H(T), H(X,T), H(T,Y)
  per layer: 14 in all, the fewest a careful script needs without
  pyfastent's class blocks (pyfastent needs 9 full ones: H(Y) is plug-in,
  H(T,Y) is its class blocks);
- ``repitl``: repitl's algorithm (representation-itl 1.0.7: RBF Gram K with
  unit diagonal, ``torch.linalg.eigh`` with eigenvectors in the input's
  precision, eigenvalues > 0 renormalized, Hadamard joints), computing each
  entropy once, on float64 and on float32 inputs.

Correctness first: every path agrees with the others (float64: 1e-9 bits;
repitl float32: 1e-3). Medians of repeated runs, all paths interleaved in one
process, after one untimed run (pyfastent's eigensolver plan measures its
drivers on that work). Usage: ``python benchmarks/bench_estimators.py
[--sizes 256 1024 2048]``.
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import scipy.linalg
import torch

import pyfastent as pf
from _record import environment, median_seconds, write

ALPHA, K, LAYERS = 1.01, 10, 4
# name: (input dims, layer width, classes, fixed σ or None for kNN widths)
WORKLOADS = {"readme": (20, 64, 2, None), "plane64": (64, 256, 10, 8.0)}
SIGMA = None  # the σ of the workload being run (None: kNN)


def workload(n: int, name: str, seed: int = 0):
    dims, width, classes, _ = WORKLOADS[name]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dims, generator=g, dtype=torch.float64)
    if classes == 2:
        y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    else:  # classes from the first coordinates' quantiles
        score = x[:, 0] + 0.5 * x[:, 1]
        y = torch.bucketize(score, torch.quantile(score, torch.linspace(0, 1, classes + 1, dtype=torch.float64)[1:-1]))
    layers, t = [], x
    for _ in range(LAYERS):
        t = torch.tanh(t @ torch.randn(t.shape[1], width, generator=g, dtype=torch.float64) / math.sqrt(t.shape[1]))
        layers.append(t)
    return x, y, layers


def estimator():
    return pf.Renyi(alpha=ALPHA, sigma=SIGMA if SIGMA is not None else "knn")


# ---- pyfastent -------------------------------------------------------------------

def pyfastent_per_call(x, y, layers):
    est = estimator()
    return [(pf.mutual_information(x, t, estimator=est), pf.mutual_information(t, y, estimator=est)) for t in layers]


def pyfastent_prepared(x, y, layers):
    est = estimator()
    px, py = est.prepare(x), est.prepare(y)
    out = []
    for t in layers:
        pt = est.prepare(t)
        out.append((pf.mutual_information(px, pt, estimator=est), pf.mutual_information(pt, py, estimator=est)))
    return out


# ---- plain NumPy and SciPy, eigenvalues only ----------------------------------------

def np_gram(v, labels=False):
    n = len(v)
    if labels:
        return (v[:, None] == v[None, :]).astype(np.float64) / n
    v = v - v.mean(0)
    sq = (v * v).sum(1)
    d = np.maximum(sq[:, None] + sq[None, :] - 2 * v @ v.T, 0)
    np.fill_diagonal(d, 0)
    if SIGMA is not None:
        sigma = SIGMA
    else:
        dist = np.sqrt(d)
        np.fill_diagonal(dist, np.inf)
        sigma = np.partition(dist, K - 1, axis=1)[:, :K].mean()  # the k nearest others
    return np.exp(-d / (2 * sigma**2)) / n


def np_entropy(a):
    lam = scipy.linalg.eigh(a / np.trace(a), eigvals_only=True, driver="evd", check_finite=False)
    lam = lam[lam > len(lam) * np.finfo(np.float64).eps * lam.max()]
    lam = lam / lam.sum()
    return np.log2((lam**ALPHA).sum()) / (1 - ALPHA)


def np_mi(ga, gb):
    return np_entropy(ga) + np_entropy(gb) - np_entropy(ga * gb)


def evd_every_term(x, y, layers):
    x, y = x.numpy(), y.numpy()
    return [(np_mi(np_gram(x), np_gram(t.numpy())), np_mi(np_gram(t.numpy()), np_gram(y, True))) for t in layers]


def evd_each_once(x, y, layers):
    gx, gy = np_gram(x.numpy()), np_gram(y.numpy(), True)
    hx, hy = np_entropy(gx), np_entropy(gy)
    out = []
    for t in layers:
        gt = np_gram(t.numpy())
        ht = np_entropy(gt)
        out.append((hx + ht - np_entropy(gx * gt), ht + hy - np_entropy(gt * gy)))
    return out


# ---- repitl's algorithm -------------------------------------------------------------

def repitl_gram(v, labels=False):
    """Unit-diagonal K in the input's precision (kernel_utils.gaussianKernel + the width)."""
    if labels:
        return (v[:, None] == v[None, :]).to(torch.get_default_dtype() if v.dtype == torch.int64 else v.dtype)
    d = torch.cdist(v, v) ** 2
    if SIGMA is not None:
        sigma = SIGMA
    else:
        dist = d.sqrt().fill_diagonal_(math.inf)
        sigma = torch.topk(dist, K, dim=1, largest=False).values.mean()
    return torch.exp(-d / (2 * sigma**2))


def repitl_entropy(k):
    """matrixAlphaEntropy: eigh of K / trace, eigenvalues > 0 renormalized, nats -> bits."""
    lam = torch.linalg.eigh(k / torch.trace(k))[0]
    lam = lam[lam > 0]
    lam = lam / lam.sum()
    return float(torch.log((lam**ALPHA).sum()) / (1 - ALPHA)) / math.log(2)


def repitl_plane(x, y, layers):
    gx = repitl_gram(x)
    gy = repitl_gram(y, True).to(x.dtype)
    hx, hy = repitl_entropy(gx), repitl_entropy(gy)
    out = []
    for t in layers:
        gt = repitl_gram(t)
        ht = repitl_entropy(gt)
        out.append((hx + ht - repitl_entropy(gx * gt), ht + hy - repitl_entropy(gt * gy)))
    return out


def max_diff(a, b):
    return max(abs(float(u) - float(v)) for pa, pb in zip(a, b) for u, v in zip(pa, pb))


def run_workload(name: str, sizes: list, repeats: int) -> list:
    global SIGMA
    SIGMA = WORKLOADS[name][3]
    rows = []
    for n in sizes:
        x, y, layers = workload(n, name)
        x32, layers32 = x.float(), [t.float() for t in layers]
        paths = {
            "pyfastent per call": lambda: pyfastent_per_call(x, y, layers),
            "pyfastent prepared": lambda: pyfastent_prepared(x, y, layers),
            "evd, every term": lambda: evd_every_term(x, y, layers),
            "evd, each entropy once": lambda: evd_each_once(x, y, layers),
            "repitl float64": lambda: repitl_plane(x, y, layers),
            "repitl float32": lambda: repitl_plane(x32, y, layers32),
        }
        values = {p: fn() for p, fn in paths.items()}
        reference = values["evd, every term"]
        for p, value in values.items():
            tolerance = 1e-3 if p == "repitl float32" else 1e-9
            if max_diff(value, reference) > tolerance:
                raise SystemExit(f"{name} N={n}: {p} differs from the evd script by {max_diff(value, reference):.2e}")
        reps = repeats if n <= 1024 else 2
        seconds = {p: median_seconds(fn, reps) for p, fn in paths.items()}
        baselines = [k for k in seconds if not k.startswith("pyfastent")]
        ratios = {f"{p} vs {b}": seconds[b] / seconds[p] for p in ("pyfastent per call", "pyfastent prepared")
                  for b in baselines}
        rows.append({"workload": name, "n": n, "seconds": seconds, "speedups": ratios, "repeats": reps})
        print(f"{name} N={n}: " + ", ".join(f"{k} {v:.3f} s" for k, v in seconds.items()), flush=True)
        for k, v in ratios.items():
            print(f"   {k}: {v:.2f}x")
    return rows


# ---- permutation test ------------------------------------------------------------

def permutation_data(n: int = 512, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=g, dtype=torch.float64)
    t = torch.tanh(x @ torch.randn(20, 64, generator=g, dtype=torch.float64) / math.sqrt(20))
    return x, t + 0.5 * torch.randn(n, 64, generator=g, dtype=torch.float64)


def scipy_permutation_loop(x, t, permutations: int):
    """The careful script: both Gram matrices and entropies once, then one joint decomposition per permutation."""
    global SIGMA
    SIGMA = None
    gx, gt = np_gram(x.numpy()), np_gram(t.numpy())
    hx, ht = np_entropy(gx), np_entropy(gt)
    value = hx + ht - np_entropy(gx * gt)
    generator = torch.Generator().manual_seed(0)  # the permutations pf.permutation_test draws
    null = []
    for _ in range(permutations):
        p = torch.randperm(len(x), generator=generator).numpy()
        null.append(hx + ht - np_entropy(gx * gt[p][:, p]))
    return value, np.array(null)


def permutation_benchmark(permutations: int, repeats: int) -> dict:
    x, t = permutation_data()
    ours = lambda: pf.permutation_test(pf.mutual_information, x, t, estimator=pf.Renyi(alpha=ALPHA),  # noqa: E731
                                       n_permutations=permutations)
    theirs = lambda: scipy_permutation_loop(x, t, permutations)  # noqa: E731
    result, (value, null) = ours(), theirs()
    worst = max(abs(result.value - value), float(np.abs(result.null.numpy() - null).max()))
    if worst > 1e-9:
        raise SystemExit(f"permutation test: pyfastent and the SciPy loop differ by {worst:.2e} bits")
    seconds = {"pyfastent": median_seconds(ours, repeats), "scipy loop": median_seconds(theirs, repeats)}
    out = {"n": len(x), "permutations": permutations, "seconds": seconds,
           "speedup": seconds["scipy loop"] / seconds["pyfastent"], "max_diff_bits": worst}
    print(f"permutation test N={len(x)}, {permutations} permutations: pyfastent {seconds['pyfastent']:.3f} s, "
          f"SciPy loop {seconds['scipy loop']:.3f} s: {out['speedup']:.2f}x", flush=True)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--permutations", type=int, default=200)
    args = parser.parse_args()

    rows = [r for name in args.workloads for r in run_workload(name, args.sizes, args.repeats)]
    permutation = permutation_benchmark(args.permutations, 3)
    names = list(rows[0]["seconds"])
    table = ("Seconds (median) for I(X;T_l), I(T_l;Y) of 4 layers; speedup = baseline time / pyfastent time. "
             "Workloads: readme (X of 20 dims, binary labels, width 64, kNN widths), plane64 (X of 64 dims, 10 "
             "classes, width 256, σ = 8).\n\n"
             "| workload | N | " + " | ".join(names) + " |\n|---|---|" + "---|" * len(names) + "\n"
             + "\n".join(f"| {r['workload']} | {r['n']} | " + " | ".join(f"{r['seconds'][k]:.3f}" for k in names)
                         + " |" for r in rows)
             + "\n\n| workload | N | pyfastent | evd, every term | evd, each entropy once | repitl float64 | "
               "repitl float32 |\n|---|---|---|---|---|---|---|\n"
             + "\n".join(f"| {r['workload']} | {r['n']} | {p.split()[-1]} | " + " | ".join(
                 f"{r['speedups'][f'{p} vs {b}']:.2f}x" for b in ("evd, every term", "evd, each entropy once",
                                                                 "repitl float64", "repitl float32")) + " |"
                 for r in rows for p in ("pyfastent per call", "pyfastent prepared"))
             + f"\n\nPermutation test, Rényi MI of two continuous variables, N = {permutation['n']}, "
               f"{permutation['permutations']} permutations: pyfastent {permutation['seconds']['pyfastent']:.3f} s, "
               f"the SciPy loop {permutation['seconds']['scipy loop']:.3f} s: {permutation['speedup']:.2f}x "
               f"(the nulls agree to {permutation['max_diff_bits']:.1e} bits).")
    record = {"benchmark": "bench_estimators", "environment": environment(),
              "workloads": {k: {"input_dim": v[0], "width": v[1], "classes": v[2], "layers": LAYERS,
                                "estimator": f"Renyi(alpha={ALPHA}, sigma={v[3] if v[3] else f'KNN({K})'})",
                                "dtype": "float64"} for k, v in WORKLOADS.items() if k in args.workloads},
              "results": rows, "permutation_test": permutation}
    print(table)
    print("wrote", write("bench_estimators_cpu", record, table))


if __name__ == "__main__":
    main()
