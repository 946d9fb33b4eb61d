"""Independent float64 NumPy references, written for the tests only.

Nothing here imports pyfastent: the estimators are checked against these
direct transcriptions of DESIGN.md section 3, not against themselves.
"""
import math
from collections import Counter

import numpy as np

LN2 = math.log(2.0)


def rbf_gram(x, sigma):
    """Normalized RBF Gram matrix from explicit pairwise differences."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    diff = x[:, None, :] - x[None, :, :]
    k = np.exp(-(diff**2).sum(-1) / (2.0 * sigma**2))
    return k / len(x)


def knn_sigma(x, k=10):
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return float(np.sort(d, axis=1)[:, :k].mean())


def median_sigma(x):
    """The lower median of the distances between distinct samples, each pair counted both ways."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)).ravel()
    d = np.sort(d[d > 0])
    return float(d[(len(d) - 1) // 2])


def renyi_bits(a, alpha):
    """S_α of a PSD matrix after trace normalization, in bits."""
    a = np.asarray(a, dtype=np.float64)
    lam = np.linalg.eigvalsh(a / np.trace(a))
    # Documented rule: eigenvalues within round-off of zero are zero.
    lam = np.where(lam > len(lam) * np.finfo(np.float64).eps * lam.max(), lam, 0.0)
    lam = lam / lam.sum()
    lam = lam[lam > 0]
    if alpha == 1:
        return float(-(lam * np.log(lam)).sum() / LN2)
    return float(np.log((lam**alpha).sum()) / (1.0 - alpha) / LN2)


def joint_bits(mats, alpha):
    prod = np.ones_like(mats[0])
    for m in mats:
        prod = prod * m
    return renyi_bits(prod / np.trace(prod), alpha)


def plugin_renyi_bits(labels, alpha):
    """Plug-in Rényi entropy of the empirical distribution of rows."""
    rows = [tuple(np.atleast_1d(r)) for r in np.asarray(labels)]
    p = np.array(list(Counter(rows).values()), dtype=np.float64) / len(rows)
    if alpha == 1:
        return float(-(p * np.log2(p)).sum())
    return float(np.log2((p**alpha).sum()) / (1.0 - alpha))


def plugin_mi_bits(x, y):
    hx = plugin_renyi_bits(x, 1)
    hy = plugin_renyi_bits(y, 1)
    hxy = plugin_renyi_bits(np.column_stack([x, y]), 1)
    return hx + hy - hxy


def logdet_bits(x, beta):
    """½ log det(I + β XcᵀXc/N), direct on the d×d side, in bits."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    xc = x - x.mean(0)
    c = xc.T @ xc / len(x)
    sign, logdet = np.linalg.slogdet(np.eye(c.shape[0]) + beta * c)
    assert sign > 0
    return 0.5 * logdet / LN2


def plugin_te_bits(source, target, k, l, lag):
    """Plug-in transfer entropy from counts of (future, target past, source past)."""
    start = max(k - 1, lag + l - 2)
    rows = []
    for t in range(start, len(target) - 1):
        future = target[t + 1]
        tpast = tuple(target[t - i] for i in range(k))
        spast = tuple(source[t + 1 - lag - j] for j in range(l))
        rows.append((future, tpast, spast))
    n = len(rows)
    c_all = Counter(rows)
    c_tp_sp = Counter((tp, sp) for _, tp, sp in rows)
    c_f_tp = Counter((f, tp) for f, tp, _ in rows)
    c_tp = Counter(tp for _, tp, _ in rows)
    te = 0.0
    for (f, tp, sp), c in c_all.items():
        te += c / n * math.log2(c * c_tp[tp] / (c_tp_sp[(tp, sp)] * c_f_tp[(f, tp)]))
    return te
