"""Normalized Gram matrices of variables: the op every Rényi quantity starts from."""
from __future__ import annotations

import torch

from pyfastent import _checks
from pyfastent._memory import ensure_square_fits
from pyfastent._native import resolve_backend
from pyfastent import _distances
from pyfastent.ops import _torch_gram
from pyfastent.ops.kernels import _batched_gram, _hadamard_gram
from pyfastent.ops import reduction as reductions
from pyfastent.ops.reduction import Needs, Reduction
from pyfastent.samples import Observations, Rows
from pyfastent.widths import WidthRule, channel_share


def normalized_gram(obs: Observations, kernel: str, rule: WidthRule, name: str,
                    backend: str = "auto") -> tuple[torch.Tensor, tuple]:
    """A_ij = K_ij / (N sqrt(K_ii K_jj)) of one variable, and the widths used.

    Args:
        obs: the checked samples; (N, C, D) values mean C channels whose
            Hadamard product is returned (one RBF on the channels scaled by
            1/σ_c, DESIGN.md 3.1), without forming C separate N×N matrices.
        kernel: ``"rbf"``, ``"linear"`` or ``"delta"``.
        rule: gives σ (or, per channel, σ_c = √C × the rule's width: see
            ``pyfastent.widths.ChannelShare``) from the squared distances.
        name: the argument name used in errors.
        backend: ``"auto"``, ``"torch"`` or ``"cuda"`` (see ``backend_info``).

    Returns:
        (A, sigmas): A is [N, N] with trace 1, float32 or float64 like the
        data (float64 for float32 data so large that its squared distances
        would overflow float32; discrete data: float32); sigmas is a tuple of
        the σ used (empty for the linear and delta kernels). Differentiable
        on the torch path.
    """
    values = obs.values
    if values.dim() == 3:
        rule = channel_share(rule, values.shape[1])
    if kernel != "delta" and resolve_backend(backend, [values], "gram") == "cuda":
        dtype = _checks.overflow_safe_dtype(name, values.reshape(obs.n, -1), centred=kernel != "linear")
        squares = 1.0 if kernel == "linear" else 1.0 + (values.dim() == 3) + rule.peak_squares
        ensure_square_fits(obs.n, dtype, values.device, copies=squares, what=f"the Gram matrix of {name}")
        return _cuda_normalized_gram(values.to(dtype), kernel, rule, obs.n)
    channels = values.dim() == 3
    rows = Rows([values], name, channels=channels)
    needs = kernel_needs(kernel, rule, rows, exact=True, channels=channels)
    return kernel_matrix(reductions.reduce_rows(rows, needs), kernel, rule, channels)


def kernel_needs(kernel: str, rule: WidthRule, rows: Rows, exact: bool, channels: bool) -> Needs:
    """What a Rényi kernel of ``rows`` reads (see ``kernel_matrix``):
    codes for the delta kernel; the features when the spectrum is not
    ``exact``; per-channel distances for a ``channels`` variable; else the
    inner products, in the rows' precision."""
    if kernel == "delta":
        return Needs(codes=True)
    discrete_as = "values" if rows.discrete else None
    if not exact:
        return Needs(features=((kernel, rule),), discrete_as=discrete_as)
    if channels:
        return Needs(channel_rules=(rule,))
    dtype = rows.dtype if rows.dtype in (torch.float32, torch.float64) else torch.float32
    return Needs(gram=dtype, discrete_as=discrete_as)


def kernel_matrix(reduction: Reduction, kernel: str, rule: WidthRule, channels: bool) -> tuple[torch.Tensor, tuple]:
    """The normalized Gram matrix A [N, N] (trace 1) of a reduced variable
    and the widths used, in the precision of its rows (float32 activations
    give float32 kernels, as before the reduction: only the distances are
    taken from float64 inner products when another reader asked for them).

    RBF: squared distances g_ii + g_jj − 2·g_ij from the centred inner
    products, σ from ``rule``, exp(−d²/(2σ²))/N; per channel: exp(−½ Σ_c
    D_c/σ_c²)/N; linear: the uncentred inner products, normalized; delta:
    1/N where two samples are equal.
    """
    n, dtype = reduction.n, reduction.dtype
    what = f"the Gram matrix of {reduction.name}"
    if kernel == "delta":  # a boolean comparison, then the float matrix
        ensure_square_fits(n, torch.float32, reduction.device, copies=1.25, what=what)
        return _torch_gram.delta(reduction.codes, torch.float32).div_(n), ()
    if channels:
        weighted, sigmas = reduction.channels_weighted[rule]
        ensure_square_fits(n, weighted.dtype, reduction.device, copies=1, what=what)
        return _torch_gram.rbf_(weighted.clone(), 1.0).div_(n), sigmas
    g = reduction.gram
    if kernel == "linear":
        ensure_square_fits(n, dtype, reduction.device, copies=1, what=what)
        offset = reduction.gram_offset.to(g.dtype)
        k = g.clone().add_(offset[:, None]).add_(offset[None, :]).add_(reduction.gram_square)  # X·Xᵀ, uncentred
        return _torch_gram.normalize_(k.to(dtype)), ()
    ensure_square_fits(n, dtype, reduction.device, copies=1 + rule.peak_squares, what=what)
    sq = _distances.distances_from_gram(g.clone() if g.dtype == dtype else g, dtype)
    sigma = rule(sq.detach(), n, reduction.width)  # σ is a number: gradients flow through the kernel, not σ
    # RBF: K_ii = 1, so the normalization is a division by N.
    return _torch_gram.rbf_(sq, sigma).div_(n), (sigma,)


def _cuda_normalized_gram(x: torch.Tensor, kernel: str, rule: WidthRule, n: int):
    """The CUDA route: fused kernels, distances materialized only for rules
    that read them (kNN, alignment), and then computed once."""
    if kernel == "linear":
        return _batched_gram(x.reshape(n, -1)[None], "linear", None, "cuda")[0], ()
    if x.dim() == 3:  # channels: [N, C, D]
        c, d = x.shape[1], x.shape[2]
        if not rule.needs_distances:
            sigmas = torch.full((c,), rule(None, n, d), dtype=x.dtype, device=x.device)
            return _hadamard_gram(x, sigmas, "cuda"), tuple(sigmas.tolist())
        sq = _batched_gram(x.transpose(0, 1), "sqdist", None, "cuda")  # [C, N, N], strided view of x
        sigmas = [rule(sq[ch], n, d) for ch in range(c)]
        weights = torch.tensor([1.0 / (s * s) for s in sigmas], dtype=x.dtype, device=x.device)
        weighted = torch.einsum("c,cij->ij", weights, sq)
        return _torch_gram.rbf_(weighted, 1.0).div_(n), tuple(sigmas)
    d = x.shape[1]
    if not rule.needs_distances:
        sigma = rule(None, n, d)
        s = torch.full((1,), sigma, dtype=x.dtype, device=x.device)
        return _batched_gram(x[None], "rbf", s, "cuda")[0], (sigma,)
    sq = _batched_gram(x[None], "sqdist", None, "cuda")[0]
    sigma = rule(sq, n, d)
    return sq.mul_(-0.5 / (sigma * sigma)).exp_().div_(n), (sigma,)
