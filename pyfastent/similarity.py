"""Similarity of two representations of the same N samples: HSIC, CKA (exact
and minibatch), mutual nearest neighbours and normalized mutual information.

HSIC and CKA are arithmetic on the two N×N kernel matrices, built from each
variable's centred Gram matrix (``pyfastent.ops.reduction``: one product,
float64). Conventions, with the packages that differ (the fixture README
lists them with file and line):

- Biased HSIC = tr(KHLH)/(n − 1)² (Gretton et al. 2005), H = I − 11ᵀ/n.
- Unbiased HSIC: Song et al. (2012), eq. 5, diagonals of K and L zeroed;
  needs n ≥ 4. Debiased CKA uses it in all three places (as ckatorch's
  ``unbiased=True`` and Kornblith's debiased centring; repsim's "song" CKA
  divides by biased self-HSICs instead and is not this).
- CKA = HSIC(K, L)/√(HSIC(K, K)·HSIC(L, L)); no ε under the root
  (cka-pytorch adds 1e-4, which is not scale-free) and no clamp to [0, 1]
  (pytorch-cka clamps, so a debiased −0.0046 comes back 0.0).
- RBF kernel exp(−‖xᵢ − xⱼ‖²/(2σ²)) with σ per variable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from pyfastent import _checks
from pyfastent._distances import distances_from_gram, squared_distances
from pyfastent.measures import JointEntropies
from pyfastent.ops.reduction import Needs, reduce_rows
from pyfastent.samples import Rows

KERNELS = ("linear", "rbf")
WIDTH_RULES = ("median", "kornblith")
NORMALIZATIONS = ("sqrt", "max", "min", "joint")


def _features(name: str, data, min_n: int = 2) -> torch.Tensor:
    """(N, d) samples of a representation, checked: real, finite, N ≥ ``min_n``."""
    t = _checks.samples(name, _checks.as_tensor(name, data), min_n)
    t = t.reshape(t.shape[0], -1)
    return t if t.is_floating_point() else t.to(torch.float64)


def centred_gram(name: str, x: torch.Tensor) -> torch.Tensor:
    """Xc·Xcᵀ [N, N] float64 of (N, d) samples, columns centred."""
    return reduce_rows(Rows([x], name), Needs(gram=torch.float64)).gram


def width(name: str, sq_dist: torch.Tensor, rule) -> float:
    """σ of the RBF kernel from squared distances [N, N] (float64).

    Rules by name: ``"median"``: the median of the n(n − 1)/2 pairwise
    distances (i < j), the two middle values averaged (repsim's rule, and the
    default); ``"kornblith"``: √ of the lower median of all n² squared
    distances, zero diagonal included (ckatorch's, threshold 1). A number is
    taken as σ itself.
    """
    if not isinstance(rule, str):
        return _checks.positive_number(f"the width of {name}", rule)
    _checks.choice("sigma", rule, WIDTH_RULES)
    if rule == "median":
        n = sq_dist.shape[0]
        upper = sq_dist[torch.triu_indices(n, n, 1, device=sq_dist.device).unbind()]
        sigma = float(np.median(upper.clamp_min(0).sqrt().cpu().numpy()))  # NumPy averages the middle two
    else:
        sigma = math.sqrt(max(float(sq_dist.flatten().median()), 0.0))
    if not sigma > 0:
        raise ValueError(f"{name}: the {rule!r} width rule gives σ = 0 (most samples are identical); pass a "
                         "number as sigma")
    return sigma


def width_rules(sigma) -> tuple:
    """(σ_x rule, σ_y rule) from one value or a pair."""
    if sigma is None:
        return "median", "median"
    if isinstance(sigma, (tuple, list)):
        if len(sigma) != 2:
            raise ValueError(f"sigma must be one width (a number or a rule name) or a pair (sigma_x, sigma_y), "
                             f"got {sigma!r}")
        return tuple("median" if s is None else s for s in sigma)
    return sigma, sigma


def kernel_matrix(name: str, gram: torch.Tensor, kernel: str, rule) -> torch.Tensor:
    """The N×N kernel matrix of a variable from its centred Gram matrix."""
    if kernel == "linear":
        return gram
    sq = distances_from_gram(gram, torch.float64)
    sigma = width(name, sq, rule)
    return torch.exp(sq.mul_(-0.5 / (sigma * sigma)))


@dataclass(frozen=True)
class HSICTerms:
    """What HSIC reads of one N×N kernel matrix, made once per variable so
    that every pair it enters is one inner product: H·K·H (biased; then
    tr(KHLH) = ⟨HKH, HLH⟩), or K with its diagonal zeroed, its row sums and
    their total (Song's unbiased)."""

    matrix: torch.Tensor
    rows: torch.Tensor | None
    total: float
    debiased: bool


def hsic_terms(k: torch.Tensor, debiased: bool) -> HSICTerms:
    """The HSIC terms of a kernel matrix [N, N] float64 (``k`` is not changed)."""
    if not debiased:
        return HSICTerms(k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean(), None, 0.0, False)
    k = k.clone()
    k.diagonal().zero_()
    rows = k.sum(1)
    return HSICTerms(k, rows, float(rows.sum()), True)


def hsic_of(a: HSICTerms, b: HSICTerms) -> float:
    """HSIC of two variables from their terms (both biased or both unbiased)."""
    n = a.matrix.shape[0]
    inner = float(a.matrix.reshape(-1) @ b.matrix.reshape(-1))
    if not a.debiased:
        return inner / (n - 1) ** 2
    return (inner + a.total * b.total / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(a.rows @ b.rows)) / (n * (n - 3))


def self_hsic(name: str, t: HSICTerms) -> float:
    """HSIC of a variable with itself; not positive (a constant
    representation) is a ValueError naming it, since CKA divides by it."""
    value = hsic_of(t, t)
    if not value > 0:
        raise ValueError(f"{name} has HSIC {value:.3g} with itself: it is constant (or nearly) over the samples, "
                         "and CKA with it is undefined")
    return value


def _terms(x, y, kernel: str, sigma, debiased: bool) -> tuple:
    _checks.choice("kernel", kernel, KERNELS)
    min_n = 4 if debiased else 2
    x, y = _features("x", x, min_n), _features("y", y, min_n)
    _checks.same_sample_count([("x", x.shape[0]), ("y", y.shape[0])])
    rule_x, rule_y = width_rules(sigma)
    return (hsic_terms(kernel_matrix("x", centred_gram("x", x), kernel, rule_x), debiased),
            hsic_terms(kernel_matrix("y", centred_gram("y", y), kernel, rule_y), debiased))


def hsic(x, y, kernel: str = "linear", sigma=None, debiased: bool = False) -> float:
    """Hilbert-Schmidt independence criterion of two representations.

    Args:
        x, y: (N, ...) samples (flattened per sample), the same N.
        kernel: ``"linear"`` (on column-centred features) or ``"rbf"``.
        sigma: RBF width: a number, a rule (``"median"``, the default, or
            ``"kornblith"``; see ``width``), or a pair ``(sigma_x, sigma_y)``.
        debiased: Song et al. (2012)'s unbiased estimator (needs N ≥ 4)
            instead of the biased tr(KHLH)/(n − 1)² (Gretton et al. 2005).

    Returns:
        float: in squared kernel units (features⁴ for the linear kernel;
        dimensionless for RBF). The unbiased estimate can be negative.
    """
    k, m = _terms(x, y, kernel, sigma, debiased)
    return hsic_of(k, m)


def cka(x, y, kernel: str = "linear", sigma=None, debiased: bool = False) -> float:
    """Centred kernel alignment (Kornblith et al., ICML 2019):
    HSIC(K, L)/√(HSIC(K, K)·HSIC(L, L)).

    Args: as ``hsic``; ``debiased=True`` uses the unbiased HSIC in all three
    places (Kornblith's debiased CKA; N ≥ 4).

    Returns:
        float, dimensionless: 1 for identical representations (and, with the
        linear kernel, for ones that differ by an orthogonal transform and
        an isotropic scaling); debiased CKA of independent ones is ≈ 0 and
        can be negative (not clipped).
    """
    k, m = _terms(x, y, kernel, sigma, debiased)
    return hsic_of(k, m) / math.sqrt(self_hsic("x", k) * self_hsic("y", m))


def minibatch_cka(x, y, batch_size: int, kernel: str = "linear", sigma=None) -> float:
    """Minibatch CKA (Nguyen, Raghu & Kornblith, ICLR 2021), what torch-cka,
    cka-pytorch and pytorch-cka compute: Σ_b HSIC₁(K_b, L_b) /
    √(Σ_b HSIC₁(K_b, K_b)·Σ_b HSIC₁(L_b, L_b)) over consecutive batches of
    rows, HSIC₁ Song's unbiased estimator, every batch weighted equally (a
    smaller last batch too). RBF widths are chosen per batch.

    Args:
        x, y: (N, ...) samples, the same N.
        batch_size: rows per batch; every batch, the last included, needs
            at least 4.

    Returns:
        float, dimensionless. It converges to the exact debiased value only
        on average: use ``cka(..., debiased=True)`` for the exact one.
    """
    batch_size = _checks.positive_int("batch_size", batch_size)
    _checks.choice("kernel", kernel, KERNELS)
    x, y = _features("x", x, 4), _features("y", y, 4)
    _checks.same_sample_count([("x", x.shape[0]), ("y", y.shape[0])])
    n = x.shape[0]
    if batch_size < 4 or (n % batch_size and n % batch_size < 4):
        raise ValueError(f"batch_size {batch_size} over N = {n} leaves a batch of {min(batch_size, n % batch_size or n)} "
                         "rows; unbiased HSIC needs at least 4 in every batch")
    rule_x, rule_y = width_rules(sigma)
    sums = [0.0, 0.0, 0.0]
    for start in range(0, n, batch_size):
        k = hsic_terms(kernel_matrix("x", centred_gram("x", x[start:start + batch_size]), kernel, rule_x), True)
        m = hsic_terms(kernel_matrix("y", centred_gram("y", y[start:start + batch_size]), kernel, rule_y), True)
        for i, (a, b) in enumerate(((k, m), (k, k), (m, m))):
            sums[i] += hsic_of(a, b)
    for name, value in (("x", sums[1]), ("y", sums[2])):
        if not value > 0:
            raise ValueError(f"{name} has summed HSIC {value:.3g} with itself: constant over the samples")
    return sums[0] / math.sqrt(sums[1] * sums[2])


def neighbours(name: str, x: torch.Tensor, k: int, metric: str) -> torch.Tensor:
    """[N, k] indices of each sample's k nearest others (itself excluded)."""
    x = x.to(torch.float64)
    if metric == "cosine":
        norms = x.norm(dim=1, keepdim=True)
        if bool((norms == 0).any()):
            raise ValueError(f"{name} has a sample of norm 0, whose cosine similarity is undefined; use "
                             "metric='euclidean'")
        closeness = (x / norms) @ (x / norms).T
    else:
        closeness = -squared_distances(x)
    closeness.diagonal().fill_(-math.inf)
    return closeness.topk(k, dim=1).indices


def mutual_knn(x, y, k: int = 10, metric: str = "cosine") -> float:
    """Mutual nearest-neighbour alignment (Huh, Cheung, Wang & Isola, ICML 2024):
    the mean over samples of ``|N_k^X(i) ∩ N_k^Y(i)|/k``, N_k(i) the k nearest
    other samples of i in each representation.

    Args:
        x, y: (N, ...) samples, the same N.
        k: neighbours per sample, 1 ≤ k < N.
        metric: ``"cosine"`` (on the samples as given, as that paper's code
            after its L2 normalization) or ``"euclidean"``. Ties are broken by
            ``torch.topk``.

    Returns:
        float in [0, 1]: 1 when every sample has the same neighbours in
        both; about k/(N − 1) for independent representations.
    """
    _checks.choice("metric", metric, ("cosine", "euclidean"))
    x, y = _features("x", x), _features("y", y)
    _checks.same_sample_count([("x", x.shape[0]), ("y", y.shape[0])])
    n = x.shape[0]
    k = _checks.positive_int("k", k)
    if k >= n:
        raise ValueError(f"k must be below N = {n} (each sample has N − 1 others), got {k}")
    return shared_neighbours(neighbours("x", x, k, metric), neighbours("y", y, k, metric))


def shared_neighbours(a: torch.Tensor, b: torch.Tensor) -> float:
    """The mean fraction of each sample's k neighbours ([N, k] indices) that both sets share."""
    n, k = a.shape
    marked = torch.zeros(n, n, dtype=torch.bool, device=a.device)
    marked.scatter_(1, a, True)
    return float(marked.gather(1, b).sum()) / (n * k)


def normalized_mutual_information(x, y, estimator=None, normalization: str = "sqrt") -> float:
    """I(X;Y) over √(H(X)·H(Y)) (``"sqrt"``), max(H(X), H(Y)), min(…), or
    H(X,Y) (``"joint"``), with any estimator (``None``: ``Renyi()``); the
    three entropies are solved in one batch.

    Returns:
        float, dimensionless: ≈ 0 for independent variables at large N; 1 for
        identical ones where the estimator's I(X;X) is H(X) (``Discrete``,
        delta kernels). For RBF kernels the joint of X with itself has width
        σ/√2, so I(X;X) < H(X) and the identical-variable value is below 1
        (``pyfastent.mutual_information`` says why).
    """
    _checks.choice("normalization", normalization, NORMALIZATIONS)
    h = JointEntropies(estimator, {"x": x, "y": y})
    for names in (("x",), ("y",), ("x", "y")):
        h.request(*names)
    h.batch.solve()
    return normalized(h.mi("x", "y"), h("x"), h("y"), h("x", "y"), normalization, "a variable")


def normalized(mi: float, hx: float, hy: float, hxy: float, normalization: str, what: str) -> float:
    """``mi`` over the ``normalization`` of the entropies; a zero scale is a
    ValueError naming ``what``."""
    scale = {"sqrt": math.sqrt(max(hx, 0.0) * max(hy, 0.0)), "max": max(hx, hy), "min": min(hx, hy),
             "joint": hxy}[normalization]
    if not scale > 0:
        raise ValueError(f"the {normalization!r} normalization is {scale:.3g}: {what} has zero entropy "
                         "(constant), and normalized mutual information with it is undefined")
    return mi / scale
