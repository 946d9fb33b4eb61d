"""Spectral sums Σ_i f(λ_i) of normalized Gram matrices: exactly from
eigenvalues, or estimated by deflated stochastic Lanczos quadrature.

Matrix-based Rényi entropy is a function of one such sum (DESIGN.md 3.2),
chosen so that it has no cancellation:

- α = 1: T = Σ −λ log λ and S = T;
- |α − 1| ≤ ½: T = Σ (λ^α − λ) = tr(A^α) − tr A and S = log(1 + T)/(1 − α),
  using tr A = 1 exactly;
- otherwise: T = Σ λ^α and S = log T/(1 − α).

The randomized estimate (Ubaru, Chen & Saad 2017; for matrix-based Rényi
entropy Gong et al. 2022) deflates first: a block Krylov space gives the
largest eigenvalues, whose terms are summed exactly, and the rest of the
spectrum is integrated by Gauss quadrature from Lanczos runs on Rademacher
probes projected off the deflated directions (the Hutch++ idea). Plain SLQ,
which skips the deflation, was measured 0.16-0.28 bits off at α = 1.01 and
1.4-2.9 bits off at α = 2 and 3 (N = 4096): a few large eigenvalues carry
most of tr A^α. All probes are products with A, done for a block of vectors
at once (matrix-matrix products).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from pyfastent import _checks, _ranks
from pyfastent._memory import available_bytes
from pyfastent.estimate import Estimate
from pyfastent.ops._torch_spectrum import (ENTRY_ROUNDOFF, frobenius_renyi2_nats, roundoff_floor,
                                            spectrum_renyi_nats, squared_norm64)
from pyfastent.ops.deferred import Pending
from pyfastent.ops.eigen import eigenvalues
from pyfastent.ops.operators import DenseOperator, RowShardedKernel
from pyfastent.samples import row_codes


@dataclass(frozen=True)
class TraceFunction:
    """f, and S_α as a function of T = Σ f(λ) with its derivative; λ at or
    below ``floor`` (the round-off of the matrix's entries) counts as 0."""

    alpha: float
    floor: float = 0.0

    def f(self, lam: torch.Tensor) -> torch.Tensor:
        lam = torch.where(lam > self.floor, lam, torch.zeros_like(lam)).clamp(min=0.0)
        positive = lam > 0
        log_lam = torch.where(positive, lam, torch.ones_like(lam)).log()
        if self.alpha == 1.0:
            return -lam * log_lam
        if abs(self.alpha - 1.0) <= 0.5:
            return lam * torch.expm1((self.alpha - 1.0) * log_lam)
        return torch.where(positive, torch.exp(self.alpha * log_lam), torch.zeros_like(lam))

    def entropy(self, total: float) -> float:
        if self.alpha == 1.0:
            return total
        if abs(self.alpha - 1.0) <= 0.5:
            return math.log1p(total) / (1.0 - self.alpha)
        return math.log(total) / (1.0 - self.alpha)

    def slope(self, total: float) -> float:
        """dS/dT at ``total``: turns deviations of T into deviations of S."""
        if self.alpha == 1.0:
            return 1.0
        if abs(self.alpha - 1.0) <= 0.5:
            return 1.0 / ((1.0 + total) * (1.0 - self.alpha))
        return 1.0 / (total * (1.0 - self.alpha))


@dataclass(frozen=True)
class LanczosConfig:
    """Settings of the randomized estimate (see ``Renyi``).

    Attributes:
        probes: Rademacher probes for the rest of the spectrum (the standard
            error shrinks as 1/√probes).
        steps: Lanczos steps per probe (quadrature nodes).
        block: width of the block Krylov space that holds the largest
            eigenvalues.
        depth: blocks of that space used for deflation.
        extra: further blocks, used only for its quadrature.
        seed: seed of the probes; the same seed gives the same estimate (up to
            BLAS round-off).
        distributed: split the rows of every kernel across the ranks of
            the default process group (``pyfastent.distributed``); every
            rank must then make the same calls on the same data.
    """

    probes: int = 16
    steps: int = 20
    block: int = 96
    depth: int = 3
    extra: int = 1
    seed: int = 0
    distributed: bool = False

    def __post_init__(self):
        for name in ("probes", "steps", "block", "depth"):
            _checks.positive_int(name, getattr(self, name))
        if self.probes < 2:
            raise ValueError(f"probes must be at least 2 (a standard error needs two), got {self.probes}")
        if not isinstance(self.extra, int) or self.extra < 0:
            raise ValueError(f"extra must be a non-negative integer, got {self.extra!r}")
        if not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if not isinstance(self.distributed, bool):
            raise ValueError(f"distributed must be True or False, got {self.distributed!r}")

    @property
    def exact_below(self) -> int:
        """Blocks this small are decomposed exactly: randomizing them saves nothing."""
        return 4 * self.block * (self.depth + self.extra)


def exact_sum(matrix: torch.Tensor, fn: TraceFunction) -> float:
    """Σ f(λ) over the eigenvalues of a (small) symmetric [n, n] block, in
    float64, with λ ≤ n·ε·λ_max counted as 0 (ε of the block's dtype: the
    round-off of its entries)."""
    lam = eigenvalues(matrix)
    lam = torch.where(lam > roundoff_floor(lam, matrix.dtype), lam, torch.zeros_like(lam))
    return float(fn.f(lam).sum())


def randomized_sum(op, fn: TraceFunction, config: LanczosConfig, generator: torch.Generator):
    """(T, deviations): the estimate of Σ f(λ) = tr f(A) over the spectrum
    of ``op``, and the per-probe deviations of its random part (float64
    [probes], mean 0), whose spread gives the standard error.

    tr f(A) = tr(Qᵀ f(A) Q) + tr(P f(A) P) exactly, for Q the orthonormal
    basis of a block Krylov space of A and P = I − QQᵀ (Chen & Hallman,
    "Krylov-aware stochastic trace estimation", 2023). The first term is a
    block Gauss quadrature from the same Krylov recurrence, continued. The
    second, whose matrix has lost the large eigenvalues, is Hutchinson's
    estimator with Lanczos quadrature on probes projected by P, with a
    control variate: g(λ) = c₁λ + c₂λ², fitted to f on the probes'
    quadrature nodes, has exactly known tr(P g(A) P) from tr A, ‖A‖_F² and
    the Krylov products, so only f − g is left to chance. At N = 4096 this
    cut the standard error at α = 1.01 about thirtyfold.
    """
    head = _krylov_head(op, fn, config, generator)
    nodes, weights = _projected_quadrature(op, head.basis, config, generator)  # [s, m] each
    f = head.fn.f(nodes)
    measure = weights.flatten()  # the probes' estimate of the remaining spectral measure
    design = torch.stack([nodes.flatten(), nodes.flatten() ** 2], dim=1)  # [s·m, 2]
    root = measure.sqrt()
    coef = torch.linalg.lstsq(design * root[:, None], (f.flatten() * root)[:, None]).solution.flatten()
    g = coef[0] * nodes + coef[1] * nodes**2
    samples = (weights * (f - g)).sum(1)  # [s]
    rest_trace = op.trace() - head.trace
    rest_square = op.squared_frobenius() - head.squared
    known = float(coef[0]) * rest_trace + float(coef[1]) * rest_square
    rest = float(samples.mean())
    return head.value + known + rest, samples - rest


@dataclass(frozen=True)
class _Head:
    value: float  # tr(Qᵀ f(A) Q), by block quadrature
    basis: torch.Tensor  # Q [n, k]
    trace: float  # tr(Qᵀ A Q)
    squared: float  # ‖A Q‖_F² = tr(Qᵀ A² Q)
    fn: TraceFunction  # with the round-off floor of the operator's dtype


def _krylov_head(op, fn: TraceFunction, config: LanczosConfig, generator: torch.Generator) -> _Head:
    """The deflated part: Q the first ``depth`` blocks of a block Lanczos
    basis with full reorthogonalization; the quadrature uses all
    ``depth + extra`` blocks."""
    n = op.size
    b = min(config.block, max(1, n // (config.depth + config.extra + 1)))
    start = torch.randn(n, b, generator=generator, dtype=torch.float64).to(op.device, op.dtype)
    blocks = [torch.linalg.qr(start).Q]
    diag, off = [], []
    trace = squared = 0.0
    for j in range(config.depth + config.extra):
        w = op.matmul(blocks[j])
        if j < config.depth:
            squared += float(torch.linalg.vector_norm(w, dtype=torch.float64)) ** 2
        a = blocks[j].T @ w
        diag.append(a)
        if j < config.depth:
            trace += float(a.double().trace())
        basis = torch.cat(blocks, dim=1)
        for _ in range(2):  # full reorthogonalization, twice: the three-term recurrence and round-off
            w = w - basis @ (basis.T @ w)
        q, r = torch.linalg.qr(w)
        off.append(r)
        blocks.append(q)
    steps = len(diag)
    t = torch.zeros(steps * b, steps * b, dtype=torch.float64, device=op.device)
    for j, a in enumerate(diag):
        t[j * b:(j + 1) * b, j * b:(j + 1) * b] = (a.double() + a.double().T) / 2
        if j + 1 < steps:
            t[(j + 1) * b:(j + 2) * b, j * b:(j + 1) * b] = off[j].double()
            t[j * b:(j + 1) * b, (j + 1) * b:(j + 2) * b] = off[j].double().T
    theta, u = torch.linalg.eigh(t)
    fn = replace(fn, floor=ENTRY_ROUNDOFF * torch.finfo(op.dtype).eps * float(theta.max().clamp(min=0)))
    kept = config.depth * b
    value = float((u[:kept, :] ** 2).sum(0) @ fn.f(theta))
    return _Head(value, torch.cat(blocks[: config.depth], dim=1), trace, squared, fn)


def _projected_quadrature(op, deflation: torch.Tensor, config: LanczosConfig, generator: torch.Generator):
    """Gauss-quadrature nodes and weights of zᵀ P h(A) P z for Rademacher
    probes z, P = I − QQᵀ: ([s, m] nodes ≥ 0, [s, m] weights summing to
    ‖Pz‖² per probe), so that Σ_j weights·h(nodes) estimates the quadratic
    form for any h. The probes run their Lanczos recurrences in lockstep,
    so every step is one product A @ V."""
    n, s = op.size, config.probes
    z = (torch.randint(0, 2, (n, s), generator=generator, dtype=torch.float64) * 2 - 1).to(op.device, op.dtype)
    for _ in range(2):
        z = z - deflation @ (deflation.T @ z)
    norms = torch.linalg.vector_norm(z, dim=0)  # [s]
    steps = min(config.steps, n)
    basis = torch.empty(s, steps, n, dtype=op.dtype, device=op.device)  # each probe's Lanczos vectors, as rows
    basis[:, 0] = (z / norms).T
    alphas = torch.zeros(s, steps, dtype=torch.float64, device=op.device)
    betas = torch.zeros(s, steps, dtype=torch.float64, device=op.device)
    used = steps
    for j in range(steps):
        w = op.matmul(basis[:, j].T).T.contiguous()  # [s, n]
        alphas[:, j] = (basis[:, j] * w).sum(1).double()
        own = basis[:, : j + 1]  # [s, j+1, n]
        for _ in range(2):  # full reorthogonalization against each probe's own basis
            w = w - torch.bmm(torch.bmm(own, w[:, :, None]).transpose(1, 2), own)[:, 0]
        if j + 1 == steps:
            break
        beta = torch.linalg.vector_norm(w, dim=1)
        if bool((beta.double() <= 1e-7 * alphas[:, : j + 1].abs().amax()).any()):
            used = j + 1  # a probe's Krylov space is invariant: its quadrature is already exact
            break
        betas[:, j] = beta.double()
        basis[:, j + 1] = w / beta[:, None]
    t = torch.diag_embed(alphas[:, :used]) + torch.diag_embed(betas[:, : used - 1], 1) + \
        torch.diag_embed(betas[:, : used - 1], -1)  # [s, m, m]
    theta, u = torch.linalg.eigh(t)
    return theta.clamp(min=0.0), (u[:, 0, :] ** 2) * norms.double()[:, None] ** 2


# ---- Rényi entropies of joints, exact or randomized ----------------------------


def groups_of(codes: list) -> list:
    """Sample indices of each value of the joint discrete code: the class
    blocks of a joint with delta-kernel variables (their kernel is 1 within
    a block, 0 across, so the joint Gram matrix is block diagonal)."""
    joint = codes[0] if len(codes) == 1 else row_codes(torch.stack(codes, dim=1))
    order = torch.argsort(joint, stable=True)
    sizes = torch.bincount(joint).tolist()
    return [part for part in torch.split(order, [s for s in sizes if s]) if part.numel()]


def plugin_renyi_nats(groups: list, n: int, alpha: float) -> float:
    """Joint of delta-kernel variables only: the spectrum is the groups' frequencies."""

    sizes = torch.tensor([len(g) for g in groups], dtype=torch.float64)
    return float(spectrum_renyi_nats(sizes / n, alpha))


def defer_exact_renyi_nats(joint: torch.Tensor, alpha: float, groups: list | None, batch):
    """S_α of a normalized joint Gram matrix [N, N] as a ``Pending`` whose
    spectrum is solved with ``batch`` (a ``SpectralBatch``), restricted to
    the class blocks ``groups`` when delta-kernel variables are in the
    joint: C blocks cost ~N³/C² instead of N³. α = 2 needs no spectrum."""
    if alpha == 2.0:
        if groups is None:
            return Pending.done(float(frobenius_renyi2_nats(joint)))
        trace = float(joint.diagonal().sum(dtype=torch.float64))
        blocks = (joint.index_select(0, g).index_select(1, g) for g in groups)
        return Pending.done(-math.log(sum(float(squared_norm64(b)) for b in blocks) / trace**2))
    blocks = [joint] if groups is None else [joint.index_select(0, g).index_select(1, g) for g in groups]
    built = joint.dtype
    return batch.add(blocks, lambda eig: float(spectrum_renyi_nats(eig, alpha, built)))


def _split(config: LanczosConfig) -> bool:
    """Whether kernels are split by rows across the ranks of a process group."""
    return config.distributed and _ranks.active()


def _operator(block, config: LanczosConfig):
    """How products with a kernel block are taken: split by rows across the
    ranks (``config.distributed``), stored when three copies fit in the
    free memory (products are then matrix multiplications), or tile by tile
    keeping what fits in half of it and recomputing the rest at every product."""
    free = available_bytes(block.device)
    if _split(config):
        return RowShardedKernel(block, free // 2)
    if 3 * block.size**2 * torch.empty((), dtype=block.dtype).element_size() <= free:
        return DenseOperator(block.dense())
    return block.keeping(free // 2)


def randomized_renyi_nats(kernel, alpha: float, groups: list | None, config: LanczosConfig):
    """S_α of the joint kernel (``JointKernel``, never stored whole) by
    deflated stochastic Lanczos quadrature per class block, α = 2 exactly
    from tile sums. Returns an ``Estimate`` (its deviations probe by probe),
    or a float when every block was small enough to be exact."""
    blocks = [kernel] if groups is None else [kernel.restrict(g) for g in groups]
    if alpha == 2.0:  # sums of squares, tile by tile (each rank its rows, when split)
        split = _split(config)
        return -math.log(sum((RowShardedKernel(b) if split else b).squared_frobenius() for b in blocks))
    fn = TraceFunction(alpha)
    generator = torch.Generator().manual_seed(config.seed)
    total, deviations = 0.0, torch.zeros(config.probes, dtype=torch.float64)
    for block in blocks:
        if block.size <= config.exact_below:
            total += exact_sum(block.dense(), fn)
            continue
        value, dev = randomized_sum(_operator(block, config), fn, config, generator)
        total += value
        deviations += dev.cpu()
    entropy = fn.entropy(total)
    if not bool(deviations.any()):
        return entropy
    return Estimate(entropy, fn.slope(total) * deviations)
