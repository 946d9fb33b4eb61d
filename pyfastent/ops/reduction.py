"""The reduction of a variable: every product of its rows that an estimator
reads, computed once, after which the rows can be dropped (DESIGN.md,
"Sweeps at scale").

A layer of 65 536 features seen on N = 1000 samples is reduced to N×N (or,
when it is narrower than N, d×d) numbers that every estimator reading it
shares: the Rényi kernels (RBF, linear, per-channel) and LogDet's matrices
(either Sylvester side) are derived from them, never from the rows again.
Estimators say what they read as ``Needs`` (``Estimator.needs``); the
union of every reader's needs is built in one sweep over the columns.

Precision: products are accumulated in float64 when any reader asks for
it (LogDet: at β = 100·d float32 round-off is multiplied by β/N), otherwise
in the data's precision. Symmetric products are computed on one triangle
(BLAS ``syrk``, on the CPU) from column blocks (``ops/products.py``), so no float64
copy of the rows is ever made.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from pyfastent._distances import distances_from_gram
from pyfastent._memory import ensure_square_fits
from pyfastent.ops import threads
from pyfastent.ops.features import kernel_features
from pyfastent.ops.products import Wanted, blas_products, blocks, guard_products, on_blas, torch_products
from pyfastent.samples import Observations, Rows, row_codes

@dataclass(frozen=True)
class Needs:
    """What the estimators reading a variable take from its rows.

    Attributes:
        gram: the centred inner products Xc·Xcᵀ [N, N] (with the row means'
            terms an uncentred linear kernel adds), in this dtype; ``None``
            for none.
        standardized_gram: the inner products of the standardized columns
            [N, N], float64 (LogDet's correlation mode on the Sylvester side).
        covariance: Xcᵀ·Xc [d, d], float64 (for d ≤ N).
        columns: keep the centred columns [N, d], float64 (d ≤ N): for a
            variable that other variables' cross-products are taken with,
            or whose joints are not known in advance.
        crosses: (key, P) pairs: the products Pᵀ·Xc [d_p, d] with the kept
            columns P [N, d_p] of the variables this one is joined with,
            stored under ``key``.
        channel_rules: width rules; for each, Σ_c D_c/σ_c² [N, N] over the
            channels c of an (N, C, ...) variable, D_c the squared distances
            of channel c and σ_c the rule's width for them (per-channel
            Rényi, Yu et al. 2020).
        features: (kernel, rule) pairs: the features of the randomized
            method (``pyfastent.ops.features.kernel_features``).
        codes: one int64 code per distinct row [N] (delta kernels).
        discrete_as: how the columns of integer or bool rows are read:
            ``"one_hot"`` (indicator columns, as ``LogDet`` reads labels) or
            ``"values"`` (the numbers themselves, for a kernel forced on
            discrete data); ``None`` when no product of the columns is read.
    """

    gram: torch.dtype | None = None
    standardized_gram: bool = False
    covariance: bool = False
    columns: bool = False
    crosses: frozenset = frozenset()
    channel_rules: tuple = ()
    features: tuple = ()
    codes: bool = False
    discrete_as: str | None = None

    def __or__(self, other: "Needs") -> "Needs":
        gram = self.gram if other.gram is None else other.gram if self.gram is None else \
            torch.promote_types(self.gram, other.gram)
        if self.discrete_as and other.discrete_as and self.discrete_as != other.discrete_as:
            raise ValueError(f"one discrete variable cannot be read both as {self.discrete_as!r} and as "
                             f"{other.discrete_as!r} columns in one reduction; prepare it separately")
        return Needs(gram, self.standardized_gram or other.standardized_gram, self.covariance or other.covariance,
                     self.columns or other.columns, self.crosses | other.crosses,
                     _unique(self.channel_rules + other.channel_rules), _unique(self.features + other.features),
                     self.codes or other.codes, self.discrete_as or other.discrete_as)

    @property
    def sliceable(self) -> bool:
        """Whether a reduction of all the columns is the sum of reductions
        of column slices (``add_slice``): products over samples, no d×d or
        column products, features or codes."""
        return not (self.covariance or self.columns or self.crosses or self.features or self.codes
                    or self.discrete_as)

    @property
    def products(self) -> bool:
        """Whether any product of the columns (not the features) is read."""
        return self.gram is not None or self.standardized_gram or self.covariance or self.columns or bool(
            self.crosses) or bool(self.channel_rules)


def _unique(items: tuple) -> tuple:
    return tuple(dict.fromkeys(items))


@dataclass(eq=False)
class Reduction:
    """The products of one variable's rows (see ``Needs``); the rows are not kept.

    Attributes:
        n, width: samples N and flattened width d (one-hot width for
            discrete data read as columns).
        shape: the per-sample shape; ``channels``: C for per-channel data.
        discrete: whether the rows were integer or bool.
        dtype: the float dtype of the kernels built from it: the rows'
            (float32 for discrete or half data), float64 when float32
            distances would overflow.
        gram, gram_offset, gram_square: Xc·Xcᵀ [N, N]; u = Xc·m [N] and
            ‖m‖² (float64), m the column means, so that the uncentred
            X·Xᵀ = Xc·Xcᵀ + u·1ᵀ + 1·uᵀ + ‖m‖².
        standardized_gram: Zs·Zsᵀ [N, N] float64, Zs the standardized columns.
        covariance: Xcᵀ·Xc [d, d] float64.
        scale: 1/std of each column (0 for constant columns) [d], float64.
        columns: Xc [N, d] float64.
        crosses: partner key -> Pᵀ·Xc [d_p, d] float64.
        channels_weighted: rule -> (Σ_c D_c/σ_c² [N, N], (σ_c, …)).
        features: (kernel, rule) -> (features, kind, sigmas).
        codes: [N] int64.
    """

    n: int
    width: int
    shape: tuple
    channels: int | None
    discrete: bool
    dtype: torch.dtype
    device: torch.device
    name: str
    gram: torch.Tensor | None = None
    gram_offset: torch.Tensor | None = None
    gram_square: float = 0.0
    standardized_gram: torch.Tensor | None = None
    covariance: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    columns: torch.Tensor | None = None
    crosses: dict = field(default_factory=dict)
    channels_weighted: dict = field(default_factory=dict)
    features: dict = field(default_factory=dict)
    codes: torch.Tensor | None = None


def reduce_rows(rows: Rows, needs: Needs) -> Reduction:
    """Build every product ``needs`` asks for from ``rows``.

    Args:
        rows: the variable's samples.
        needs: the union of its readers' needs.

    The rows are read a block of columns at a time (converted to the
    products' dtype and centred there); per-channel products take one
    channel at a time. On CUDA, or when the rows require grad, the products
    are torch operations (differentiable); on the CPU, float64 and float32
    products use the BLAS ``syrk`` behind NumPy's ``a @ a.T``.
    """
    out = Reduction(rows.n, rows.width, rows.shape, rows.channels, rows.discrete,
                    _float_dtype(rows.dtype), rows.device, rows.name)
    if needs.codes:
        out.codes = row_codes(rows.values())
    if not (needs.products or needs.features):
        return out
    source = _one_hot_rows(rows) if rows.discrete and needs.discrete_as == "one_hot" else rows
    out.width = source.width
    for kernel, rule in needs.features:
        values = _float_dtype_tensor(source.values())  # [N, width]: the features are N×D anyway
        if rows.channels is not None:
            values = values.reshape(rows.n, rows.channels, -1)
        out.features[(kernel, rule)] = kernel_features(Observations(values, False), kernel, rule, rows.name)
    if needs.products:
        _products(source, needs, out)
    return out


def add_slice(total: Reduction | None, part: Reduction) -> Reduction:
    """The reduction of a variable's columns so far plus that of the next
    slice of them (whole channels for per-channel rows), for ``Needs``
    that are ``sliceable``: inner products, row-mean terms and weighted
    channel distances are sums over columns, and each column's mean and
    scale are its own. ``total=None`` starts the sum with ``part``. The
    products are summed in the wider of the two dtypes; the width, the
    channels and the shape's first axis add up."""
    if total is None:
        return part
    out = Reduction(total.n, total.width + part.width, (total.shape[0] + part.shape[0],) + tuple(total.shape[1:]),
                    None if total.channels is None else total.channels + part.channels, total.discrete,
                    torch.promote_types(total.dtype, part.dtype), total.device, total.name)
    if total.gram is not None:
        dtype = torch.promote_types(total.gram.dtype, part.gram.dtype)
        out.gram = total.gram.to(dtype).add_(part.gram.to(dtype))
        out.gram_offset = total.gram_offset.add_(part.gram_offset)
        out.gram_square = total.gram_square + part.gram_square
    if total.standardized_gram is not None:
        out.standardized_gram = total.standardized_gram.add_(part.standardized_gram)
    if total.scale is not None:
        out.scale = torch.cat([total.scale, part.scale])
    for rule, (weighted, sigmas) in total.channels_weighted.items():
        theirs, their_sigmas = part.channels_weighted[rule]
        dtype = torch.promote_types(weighted.dtype, theirs.dtype)
        out.channels_weighted[rule] = (weighted.to(dtype).add_(theirs.to(dtype)), sigmas + their_sigmas)
    return out


def _float_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _float_dtype_tensor(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype in (torch.float32, torch.float64) else t.to(torch.float32)


def _one_hot_rows(rows: Rows) -> Rows:
    """Discrete rows as indicator columns, one block per column of values
    (``LogDet`` reads discrete variables this way)."""
    values = rows.values().reshape(rows.n, -1)
    columns = [torch.nn.functional.one_hot(row_codes(values[:, j: j + 1])) for j in range(values.shape[1])]
    return Rows([torch.cat(columns, dim=1).to(torch.float64)], rows.name)


def _products(rows: Rows, needs: Needs, out: Reduction) -> None:
    n, d = rows.n, rows.width
    narrow = needs.covariance or needs.columns or bool(needs.crosses)
    if narrow and d > n:
        raise ValueError(f"{rows.name}: covariance products are for variables of at most N = {n} columns, "
                         f"got {d}")
    want = Wanted(needs.gram is not None, needs.standardized_gram, narrow)
    blas = want.any and on_blas(rows, n * n * d)
    workers = threads.workers() if blas else 1
    if blas and not (needs.standardized_gram or narrow):
        # The column statistics are taken by the BLAS workers block by block, as they centre it:
        # the rows are read once. The dtype is checked after (float32 products of data so large
        # that they could overflow are then made again in float64).
        guess = _product_dtype(rows, needs, torch.zeros(1, dtype=torch.float64))[0]
        column_blocks = blocks(rows, guess, workers)
        guard_products(rows, want, column_blocks, guess, blas)
        made = blas_products(rows, column_blocks, None, None, guess, want)
        mean = made.statistics.mean
        dtype, out.dtype = _product_dtype(rows, needs, made.statistics.ranges)
        if dtype != guess:
            made = blas_products(rows, blocks(rows, dtype, workers), mean, None, dtype, want)
    else:
        mean, ranges = _column_statistics(rows)
        dtype, out.dtype = _product_dtype(rows, needs, ranges)
        if needs.standardized_gram or narrow:
            out.scale = _inverse_std(rows, mean, ranges > 0)
        made = None
        if want.any:
            column_blocks = blocks(rows, dtype, workers)
            guard_products(rows, want, column_blocks, dtype, blas)
            made = (blas_products if blas else torch_products)(rows, column_blocks, mean, out.scale, dtype, want)
    if made is not None:
        if made.gram is not None:
            out.gram, out.gram_offset, out.gram_square = made.gram, made.offset, float(mean @ mean)
        out.standardized_gram = made.standardized
        if made.columns is not None:
            if needs.covariance:
                out.covariance = made.columns.T @ made.columns
            for key, partner in needs.crosses:
                out.crosses[key] = partner.to(made.columns.device).T @ made.columns
            if needs.columns:
                out.columns = made.columns
    if needs.channel_rules:
        out.channels_weighted = _channel_distances(rows, mean, dtype, out.dtype, needs.channel_rules)


def _column_statistics(rows: Rows) -> tuple[torch.Tensor, torch.Tensor]:
    """Column means [d] (accumulated in float64: centring with a float32
    mean leaves an error along the centring direction that LogDet's β/N
    multiplies) and ranges max − min [d], float64. On the CPU by NumPy,
    whose reductions over rows are several times faster than torch's
    float64 ones; block by block, so no float64 copy of the rows is made."""
    means, ranges = [], []
    for start, stop in blocks(rows, torch.float64):
        block = rows.block(start, stop).detach()
        if block.device.type == "cpu":
            a = block.numpy()
            means.append(torch.from_numpy(a.sum(axis=0, dtype=np.float64) / rows.n))
            ranges.append(torch.from_numpy(a.max(axis=0).astype(np.float64) - a.min(axis=0)))
        else:
            means.append(block.sum(0, dtype=torch.float64) / rows.n)
            ranges.append(block.amax(0).double() - block.amin(0).double())
    mean = torch.cat(means).to(rows.device)
    if any(p.requires_grad for p in rows.parts):  # the centring is part of a differentiable Gram matrix
        mean = torch.cat([p.reshape(p.shape[0], -1) for p in rows.parts]).sum(0, dtype=torch.float64) / rows.n
    return mean, torch.cat(ranges).to(rows.device)


def _product_dtype(rows: Rows, needs: Needs, ranges: torch.Tensor) -> tuple[torch.dtype, torch.dtype]:
    """(products, kernels): the products in float64 when any is read in
    float64 (LogDet's), else in the rows' float dtype; kernels in the rows'
    float dtype. Either in float64 when float32 could overflow, and a
    ValueError when even float64 could: squared distances and centred inner
    products are at most Σ_j (max_j − min_j)²."""
    bound = float((ranges * ranges).sum())
    if not bound < torch.finfo(torch.float64).max / 16:
        raise ValueError(f"{rows.name} has values so large (ranges up to {float(ranges.max()):.3g} over {rows.width} "
                         "features) that its squared distances and inner products overflow even float64; "
                         "rescale the data")
    kernels = _float_dtype(rows.dtype) if bound < torch.finfo(torch.float32).max / 16 else torch.float64
    f64 = needs.gram == torch.float64 or needs.standardized_gram or needs.covariance or needs.columns or needs.crosses
    return (torch.float64 if f64 else kernels), kernels


def _inverse_std(rows: Rows, mean: torch.Tensor, varies: torch.Tensor) -> torch.Tensor:
    """1/std of each column (population std, float64) [d], and 0 for a
    constant column: its round-off variance (a mean of 0.1s is not exactly
    0.1) must not be blown up to unit variance (LogDet's correlation mode)."""
    squares = torch.cat([((rows.block(a, b).to(torch.float64) - mean[a:b]) ** 2).sum(0)
                         for a, b in blocks(rows, torch.float64)])
    std = (squares / rows.n).sqrt()
    usable = varies & (std > 0)
    return torch.where(usable, 1.0 / torch.where(usable, std, torch.ones_like(std)), torch.zeros_like(std))


def _channel_distances(rows: Rows, mean: torch.Tensor, dtype: torch.dtype, kernel_dtype: torch.dtype,
                       rules: tuple) -> dict:
    """rule -> (Σ_c D_c/σ_c² [N, N], (σ_c, …)): one channel at a time, its
    centred inner products in ``dtype``, its distances and width in
    ``kernel_dtype`` (as the kernel that reads them)."""
    n, per_channel = rows.n, rows.width // rows.channels
    # The sums, one channel's inner products, its distances (unless made in their place), the rule's work.
    itemsize = torch.empty((), dtype=kernel_dtype).element_size()
    ratio = torch.empty((), dtype=dtype).element_size() / itemsize
    copies = len(rules) + ratio + (kernel_dtype != dtype) + max(rule.peak_squares for rule in rules)
    ensure_square_fits(n, kernel_dtype, rows.device, copies, f"the per-channel distances of {rows.name}")
    totals = {rule: torch.zeros(n, n, dtype=kernel_dtype, device=rows.device) for rule in rules}
    sigmas: dict = {rule: [] for rule in rules}
    for c in range(rows.channels):
        start = c * per_channel
        channel = rows.block(start, start + per_channel).to(dtype) - mean[start:start + per_channel].to(dtype)
        sq = distances_from_gram(channel @ channel.T, kernel_dtype)  # in place when the dtypes agree
        for rule in rules:
            sigma = rule(sq.detach(), n, per_channel)
            sigmas[rule].append(sigma)
            totals[rule].add_(sq, alpha=1.0 / (sigma * sigma))
        del sq
    return {rule: (totals[rule], tuple(sigmas[rule])) for rule in rules}
