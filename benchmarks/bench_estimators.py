"""Information-plane workload on the CPU: pyfastent against the fastest plain
scripts a careful user would write, and against repitl's algorithm.

Workload (the README example, with 4 layers): X (N × 20), binary labels Y,
4 tanh layers of width 64; I(X;T_l) and I(T_l;Y) for every layer with the
Rényi estimator (α = 1.01, kNN widths, k = 10), float64.

pyfastent, called the two ways the README shows:
- ``per call``: ``pf.mutual_information(x, t, estimator=est)`` and
  ``pf.mutual_information(t, y, estimator=est)`` for each layer;
- ``prepared``: X and Y prepared once, each layer prepared once.

Baselines, written out here:
- ``eigvalsh, every term``: a plain NumPy script; each MI builds its three
  Gram matrices and calls ``numpy.linalg.eigvalsh`` (eigenvalues only) on
  each: 6 decompositions per layer;
- ``eigvalsh, each entropy once``: the same script computing H(X) and H(Y)
  once and H(T), H(X,T), H(T,Y) per layer: 3 per layer, the fewest a careful
  script needs;
- ``repitl``: repitl's algorithm (representation-itl 1.0.7: RBF Gram K with
  unit diagonal, ``torch.linalg.eigh`` with eigenvectors in the input's
  precision, eigenvalues > 0 renormalized, Hadamard joints), computing each
  entropy once, on float64 and on float32 inputs.

Correctness first: every path agrees with the others (float64: 1e-9 bits;
repitl float32: 1e-3). Medians of repeated runs, all paths interleaved in one
process. Usage: ``python benchmarks/bench_estimators.py [--sizes 256 1024 2048]``.
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import torch

import pyfastent as pf
from _record import environment, median_seconds, write

ALPHA, K, LAYERS, WIDTH, INPUT_DIM = 1.01, 10, 4, 64, 20


def workload(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, INPUT_DIM, generator=g, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    layers, t = [], x
    for _ in range(LAYERS):
        t = torch.tanh(t @ torch.randn(t.shape[1], WIDTH, generator=g, dtype=torch.float64))
        layers.append(t)
    return x, y, layers


# ---- pyfastent -------------------------------------------------------------------

def pyfastent_per_call(x, y, layers):
    est = pf.Renyi(alpha=ALPHA)
    return [(pf.mutual_information(x, t, estimator=est), pf.mutual_information(t, y, estimator=est)) for t in layers]


def pyfastent_prepared(x, y, layers):
    est = pf.Renyi(alpha=ALPHA)
    px, py = est.prepare(x), est.prepare(y)
    out = []
    for t in layers:
        pt = est.prepare(t)
        out.append((pf.mutual_information(px, pt, estimator=est), pf.mutual_information(pt, py, estimator=est)))
    return out


# ---- plain NumPy, eigenvalues only -------------------------------------------------

def np_gram(v, labels=False):
    n = len(v)
    if labels:
        return (v[:, None] == v[None, :]).astype(np.float64) / n
    v = v - v.mean(0)
    sq = (v * v).sum(1)
    d = np.maximum(sq[:, None] + sq[None, :] - 2 * v @ v.T, 0)
    np.fill_diagonal(d, 0)
    dist = np.sqrt(d)
    np.fill_diagonal(dist, np.inf)
    sigma = np.partition(dist, K - 1, axis=1)[:, :K].mean()  # the k nearest others
    return np.exp(-d / (2 * sigma**2)) / n


def np_entropy(a):
    lam = np.linalg.eigvalsh(a / np.trace(a))
    lam = lam[lam > len(lam) * np.finfo(np.float64).eps * lam.max()]
    lam = lam / lam.sum()
    return np.log2((lam**ALPHA).sum()) / (1 - ALPHA)


def np_mi(ga, gb):
    return np_entropy(ga) + np_entropy(gb) - np_entropy(ga * gb)


def eigvalsh_every_term(x, y, layers):
    x, y = x.numpy(), y.numpy()
    return [(np_mi(np_gram(x), np_gram(t.numpy())), np_mi(np_gram(t.numpy()), np_gram(y, True))) for t in layers]


def eigvalsh_each_once(x, y, layers):
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
    """Unit-diagonal K in the input's precision (kernel_utils.gaussianKernel + the kNN width)."""
    if labels:
        return (v[:, None] == v[None, :]).to(torch.get_default_dtype() if v.dtype == torch.int64 else v.dtype)
    d = torch.cdist(v, v) ** 2
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rows = []
    for n in args.sizes:
        x, y, layers = workload(n)
        x32, layers32 = x.float(), [t.float() for t in layers]
        paths = {
            "pyfastent per call": lambda: pyfastent_per_call(x, y, layers),
            "pyfastent prepared": lambda: pyfastent_prepared(x, y, layers),
            "eigvalsh, every term": lambda: eigvalsh_every_term(x, y, layers),
            "eigvalsh, each entropy once": lambda: eigvalsh_each_once(x, y, layers),
            "repitl float64": lambda: repitl_plane(x, y, layers),
            "repitl float32": lambda: repitl_plane(x32, y, layers32),
        }
        values = {name: fn() for name, fn in paths.items()}
        reference = values["eigvalsh, every term"]
        for name, value in values.items():
            tolerance = 1e-3 if name == "repitl float32" else 1e-9
            if max_diff(value, reference) > tolerance:
                raise SystemExit(f"N={n}: {name} differs from the eigvalsh script by {max_diff(value, reference):.2e}")
        repeats = args.repeats if n <= 1024 else 2
        seconds = {name: median_seconds(fn, repeats) for name, fn in paths.items()}
        baselines = [k for k in seconds if not k.startswith("pyfastent")]
        ratios = {f"{p} vs {b}": seconds[b] / seconds[p] for p in ("pyfastent per call", "pyfastent prepared")
                  for b in baselines}
        rows.append({"n": n, "seconds": seconds, "speedups": ratios, "repeats": repeats})
        print(f"N={n}: " + ", ".join(f"{k} {v:.3f} s" for k, v in seconds.items()), flush=True)
        for k, v in ratios.items():
            print(f"   {k}: {v:.2f}x")

    names = list(rows[0]["seconds"])
    table = ("Seconds (median) for I(X;T_l), I(T_l;Y) of 4 layers; speedup = baseline time / pyfastent time.\n\n"
             "| N | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n"
             + "\n".join(f"| {r['n']} | " + " | ".join(f"{r['seconds'][k]:.3f}" for k in names) + " |" for r in rows)
             + "\n\n| N | pyfastent | eigvalsh, every term | eigvalsh, each entropy once | repitl float64 | "
               "repitl float32 |\n|---|---|---|---|---|---|\n"
             + "\n".join(f"| {r['n']} | {p.split()[-1]} | " + " | ".join(
                 f"{r['speedups'][f'{p} vs {b}']:.2f}x" for b in ("eigvalsh, every term", "eigvalsh, each entropy once",
                                                                 "repitl float64", "repitl float32")) + " |"
                 for r in rows for p in ("pyfastent per call", "pyfastent prepared")))
    record = {"benchmark": "bench_estimators", "environment": environment(),
              "workload": {"layers": LAYERS, "width": WIDTH, "input_dim": INPUT_DIM, "labels": "binary",
                           "estimator": f"Renyi(alpha={ALPHA}, sigma=KNN({K}))", "dtype": "float64"},
              "results": rows}
    print(table)
    print("wrote", write("bench_estimators_cpu", record, table))


if __name__ == "__main__":
    main()
