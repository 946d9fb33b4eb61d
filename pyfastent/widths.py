"""Kernel width (σ) rules for the RBF kernel, DESIGN.md section 3.1.

Our RBF is K_ij = exp(−‖x_i − x_j‖² / (2σ²)). Papers that write
exp(−d²/σ²) use a width that is our σ·√2: to reproduce them, pass their
σ divided by √2.

A rule maps the (N, N) squared-distance matrix of a variable, which the
estimator computes anyway, to one σ; no rule computes distances again. Rules
with ``needs_distances = False`` are called with ``sq_dist=None``, so the
fused GPU kernel never materializes distances for them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from pyfastent import _checks
from pyfastent._distances import distance_rows, squared_distances
from pyfastent._memory import ensure_square_fits
from pyfastent.samples import observe_tensor, require_discrete, row_codes

CONSTANT_SIGMA = 1.0  # the width given to a constant variable, whose RBF kernel is all ones for any width


class WidthRule:
    """Base class: ``rule(sq_dist, n, dim) -> σ`` (a positive float) for a
    variable of n samples and dimension dim."""

    needs_distances = True
    label = "custom"  # a short name for estimator labels
    # N×N matrices the rule allocates on top of the distances it is given
    # (measured in tests/test_memory.py); 1 for a rule that does not say.
    peak_squares = 1.0

    def __call__(self, sq_dist: torch.Tensor | None, n: int, dim: int) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def of_samples(self, x: torch.Tensor, what: str) -> float:
        """σ for the samples x [N, D] themselves, for estimators that never
        store their N×N distances: rules that read distances get them here
        (KNN overrides this with a tiled pass that stores none)."""
        if not self.needs_distances:
            return self(None, x.shape[0], x.shape[1])
        ensure_square_fits(x.shape[0], x.dtype, x.device, 1 + self.peak_squares, f"the distances behind σ of {what}")
        return self(squared_distances(x), x.shape[0], x.shape[1])


@dataclass(frozen=True)
class Fixed(WidthRule):
    """A fixed width σ > 0."""

    sigma: float
    needs_distances = False
    peak_squares = 0.0

    def __post_init__(self):
        object.__setattr__(self, "sigma", _checks.positive_number("sigma", self.sigma))

    @property
    def label(self):
        return f"s={self.sigma:g}"

    def __call__(self, sq_dist, n, dim):
        return self.sigma


@dataclass(frozen=True)
class KNN(WidthRule):
    """σ = mean over samples of the mean distance to the k nearest *other* samples.

    The k nearest by distance, not the first k columns (a bug in a widely
    copied script). When N − 1 < k, all N − 1 other samples are used. A
    constant variable (a dead feature map) gets σ = 1: its kernel is all
    ones whatever σ is.
    """

    k: int = 10
    peak_squares = 0.5  # topk's work space

    def __post_init__(self):
        object.__setattr__(self, "k", _checks.positive_int("k", self.k))

    @property
    def label(self):
        return f"knn{self.k}"

    def __call__(self, sq_dist, n, dim):
        if not bool((sq_dist > 0).any()):
            return CONSTANT_SIGMA
        k = min(self.k, n - 1)
        # The k + 1 smallest entries of a row hold its own zero distance; the
        # smallest of them is a zero (itself, or a duplicate at the same
        # distance), so dropping it leaves the k nearest others without
        # copying the N×N matrix.
        nearest = torch.topk(sq_dist, k + 1, dim=1, largest=False, sorted=True).values[:, 1:]  # [N, k]
        return self._mean_root(nearest)

    def of_samples(self, x, what):
        """The same σ from row tiles of the distances: none of N×N is stored."""
        if bool((x.amax(dim=0) == x.amin(dim=0)).all()):
            return CONSTANT_SIGMA
        n, k = x.shape[0], min(self.k, x.shape[0] - 1)
        xc = x - x.mean(dim=0, keepdim=True)
        norms = (xc * xc).sum(1)  # [N]
        step = max(16, (1 << 24) // n)
        nearest = [torch.topk(distance_rows(xc, norms, start, min(start + step, n)), k + 1, dim=1, largest=False,
                              sorted=True).values[:, 1:] for start in range(0, n, step)]
        return self._mean_root(torch.cat(nearest))

    def _mean_root(self, nearest: torch.Tensor) -> float:
        sigma = float(nearest.clamp(min=0).sqrt().mean())
        if sigma <= 0:
            raise ValueError(
                f"sigma rule 'knn' (k={self.k}) gives 0: every sample has {nearest.shape[1]} exact duplicates; "
                "use kernel='delta' or a fixed sigma"
            )
        return sigma


@dataclass(frozen=True)
class Silverman(WidthRule):
    """σ = γ · N^(−1/(4+d)), times √d when ``scale_by_dim`` (the default).

    The √d factor keeps σ on the scale of distances between d-dimensional
    samples with unit-variance features; the unscaled rule suits data whose
    distances are O(1).
    """

    gamma: float = 1.0
    scale_by_dim: bool = True
    needs_distances = False
    peak_squares = 0.0

    def __post_init__(self):
        object.__setattr__(self, "gamma", _checks.positive_number("gamma", self.gamma))

    @property
    def label(self):
        return "silverman" + (f"{self.gamma:g}" if self.gamma != 1.0 else "") + ("" if self.scale_by_dim else "-raw")

    def __call__(self, sq_dist, n, dim):
        sigma = self.gamma * n ** (-1.0 / (4 + dim))
        return sigma * math.sqrt(dim) if self.scale_by_dim else sigma


@dataclass(frozen=True)
class Median(WidthRule):
    """σ = the median distance between distinct samples (the "median
    heuristic" of kernel two-sample and independence tests; Gretton et al.,
    "A Kernel Two-Sample Test", JMLR 2012). Unlike kNN widths it is not
    pulled to 0 by samples that coincide, such as the all-zero maps of a
    sparse ReLU channel. A constant variable gets σ = 1 (its kernel is all
    ones whatever σ is)."""

    label = "median"
    peak_squares = 1.0  # a copy to select the median from

    def __call__(self, sq_dist, n, dim):
        if not bool((sq_dist > 0).any()):
            return CONSTANT_SIGMA
        return _median_positive_distance(sq_dist)


@dataclass(frozen=True, eq=False)
class Alignment(WidthRule):
    """σ maximizing the kernel alignment with the labels' delta kernel.

    Alignment ⟨K_σ, K_Y⟩_F / (‖K_σ‖_F ‖K_Y‖_F) over a grid of σ: ``grid``
    multiplies the median distance between distinct samples (default 60
    log-spaced factors from 0.05 to 5). Wickstrøm et al. (2019), section 3.

    Args:
        labels: integer class labels, shape (N,).
        grid: the factors, or ``None`` for the default.

    A constant variable gets σ = 1 (its kernel is all ones whatever σ is).
    """

    labels: object
    grid: tuple = field(default=None)
    label = "alignment"
    peak_squares = 1.5  # the kernel at each σ and, first, a copy to select the median from

    def __post_init__(self):
        values = require_discrete(observe_tensor(self.labels, "labels"), "labels")
        object.__setattr__(self, "_codes", row_codes(values))
        grid = self.grid if self.grid is not None else tuple(
            torch.logspace(math.log10(0.05), math.log10(5.0), 60, dtype=torch.float64).tolist())
        grid = tuple(_checks.positive_number("grid", g) for g in grid)
        if not grid:
            raise ValueError("grid must hold at least one factor")
        object.__setattr__(self, "grid", grid)

    def __call__(self, sq_dist, n, dim):
        codes = self._codes.to(sq_dist.device)
        if codes.shape[0] != sq_dist.shape[0]:
            raise ValueError(
                f"labels has {codes.shape[0]} samples but the variable has {sq_dist.shape[0]}"
            )
        if not bool((sq_dist > 0).any()):
            return CONSTANT_SIGMA
        median = _median_positive_distance(sq_dist)
        one_hot = torch.nn.functional.one_hot(codes).to(sq_dist.dtype)  # [N, C]; codes are 0..C−1
        k = torch.empty_like(sq_dist)
        best, best_score = None, -math.inf
        for factor in self.grid:
            sigma = factor * median
            torch.mul(sq_dist, -0.5 / (sigma * sigma), out=k).exp_()
            # ⟨K, K_Y⟩_F = Σ_c 1_cᵀ K 1_c, the within-class sums (K_Y = Y Yᵀ
            # for one-hot Y); ‖K_Y‖_F does not depend on σ and is left out.
            inner = float((k @ one_hot).mul_(one_hot).sum())
            score = inner / float(torch.linalg.vector_norm(k))
            if score > best_score:
                best, best_score = sigma, score
        return best


class _Transformed(WidthRule):
    """A rule that maps another rule's width (``self.rule``) through ``_map``."""

    @property
    def needs_distances(self):
        return self.rule.needs_distances

    @property
    def peak_squares(self):
        return self.rule.peak_squares

    def __call__(self, sq_dist, n, dim):
        return self._map(self.rule(sq_dist, n, dim))

    def of_samples(self, x, what):
        return self._map(self.rule.of_samples(x, what))

    def _map(self, sigma: float) -> float:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class Smoothed(_Transformed):
    """Exponential smoothing of a rule across training steps:
    σ_t = m·σ_{t−1} + (1 − m)·σ*_t, with σ* from ``rule`` (DESIGN.md 3.1).

    Args:
        rule: the rule giving σ*.
        previous: σ_{t−1}, or ``None`` at the first step (σ_t = σ*).
        momentum: m in [0, 1).
    """

    rule: WidthRule
    previous: float | None = None
    momentum: float = 0.9

    def __post_init__(self):
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")

    @property
    def label(self):
        return f"{self.rule.label}~{self.momentum:g}"

    def _map(self, current: float) -> float:
        if self.previous is None:
            return current
        return self.momentum * self.previous + (1 - self.momentum) * current


@dataclass(frozen=True)
class ChannelShare(_Transformed):
    """The width of one of C channels whose kernels are joined by a Hadamard
    product (``Variable(..., channels=True)``): ``rule``'s width for the
    channel, times √C.

    The joint kernel exp(−½ Σ_c d_c²/σ_c²) with σ_c = √C·s_c is
    exp(−½ · mean_c d_c²/s_c²): its exponent is the channels' mean, on the
    scale of one channel's kernel whatever C. With σ_c = s_c it grows with
    C and the joint tends to the identity, whose entropy is log N at
    ResNet widths (64 to 512 maps); sparse ReLU maps also have kNN widths
    near 0, hence ``Median`` as the per-channel default. For C = 1 it is
    ``rule`` itself.
    """

    rule: WidthRule
    channels: int

    @property
    def label(self):
        return self.rule.label

    def _map(self, sigma: float) -> float:
        return math.sqrt(self.channels) * sigma


def channel_share(rule: WidthRule, channels: int) -> WidthRule:
    """``rule`` for each of ``channels`` channels joined by a Hadamard
    product: ``ChannelShare`` (its width times √C), unless it is one already."""
    return rule if isinstance(rule, ChannelShare) else ChannelShare(rule, channels)


_RULES = {"knn": KNN, "silverman": Silverman, "median": Median}


def as_width_rule(sigma, labels=None) -> WidthRule:
    """Turn a user's ``sigma`` (number, rule name or rule) into a ``WidthRule``.

    Names: ``"knn"`` (k = 10), ``"silverman"``, ``"median"``,
    ``"alignment"`` (needs ``labels``).
    """
    if isinstance(sigma, WidthRule):
        return sigma
    if isinstance(sigma, str):
        if sigma == "alignment":
            if labels is None:
                raise ValueError(
                    "sigma='alignment' needs class labels: pass labels=y to the estimator, "
                    "or sigma=pyfastent.widths.Alignment(y)"
                )
            return Alignment(labels)
        if sigma not in _RULES:
            raise ValueError(
                f"sigma must be a positive number or one of ('knn', 'silverman', 'median', 'alignment'), got {sigma!r}"
            )
        return _RULES[sigma]()
    return Fixed(sigma)


def _median_positive_distance(sq_dist: torch.Tensor) -> float:
    """Median distance over the pairs of distinct samples (distance > 0).

    Distances are ≥ 0, so after z zeros the positives follow in sorted
    order: the lower median (as ``torch.median``) is the (z + (P − 1)//2)-th
    smallest of all N² entries, P the number of positives. Selected from
    one copy, without the index tensors a boolean mask would create.
    """
    zeros = int((sq_dist == 0).sum())
    positives = sq_dist.numel() - zeros
    if positives == 0:
        raise ValueError("sigma rule 'alignment' needs at least two distinct samples")
    k = zeros + (positives - 1) // 2
    if sq_dist.device.type == "cpu":
        values = sq_dist.detach().contiguous().numpy().ravel().copy()
        values.partition(k)
        median_sq = float(values[k])
    else:
        median_sq = float(torch.kthvalue(sq_dist.flatten(), k + 1).values)
    return math.sqrt(median_sq)  # sqrt is monotonic: the root of the median is the median root
