"""Batched Gram-family ops with a CUDA kernel and a PyTorch reference each.

``backend`` is ``"auto"`` (see ``pyfastent.backend_info()``), ``"torch"``
or ``"cuda"``.
"""
from __future__ import annotations

import functools
import math

import torch

from pyfastent import _checks, _distances
from pyfastent._memory import ensure_square_fits
from pyfastent._native import _C, resolve_backend
from pyfastent.ops import _cuda_gram, _torch_gram
from pyfastent.ops._torch_spectrum import squared_norm64

_MODES = ("rbf", "linear", "sqdist")


def _float_batch(name: str, x, dims: int) -> torch.Tensor:
    t = _checks.as_tensor(name, x)
    if t.dim() != dims:
        raise ValueError(f"{name} must have {dims} dimensions, got shape {tuple(t.shape)}")
    if t.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{name} must be float32 or float64, got {t.dtype}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if not _checks.all_finite(t):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return t


def _sigmas(sigma, batch: int, like: torch.Tensor) -> torch.Tensor:
    if isinstance(sigma, torch.Tensor):
        s = sigma.to(device=like.device, dtype=like.dtype).reshape(-1)
        if s.numel() == 1:
            s = s.expand(batch)
        if s.numel() != batch:
            raise ValueError(f"sigma must be a number or hold one width per batch entry ({batch}), got {s.numel()}")
        if not bool(torch.isfinite(s).all()) or not bool((s > 0).all()):
            raise ValueError("sigma must be positive and finite")
        return s.contiguous()
    return torch.full((batch,), _checks.positive_number("sigma", sigma), dtype=like.dtype, device=like.device)


def batched_gram(x, kernel: str = "rbf", sigma=1.0, backend: str = "auto") -> torch.Tensor:
    """Normalized Gram matrices of B variables at once: [B, N, D] -> [B, N, N].

    ``"rbf"``: exp(−‖x_i − x_j‖²/(2σ_b²))/N with one σ per batch entry
    (a number or a [B] tensor); ``"linear"``: x_i·x_j/(N‖x_i‖‖x_j‖), the
    plain inner product of the samples as given (DESIGN.md 3.1: no centring;
    centre the data first for a centred linear kernel); ``"sqdist"``:
    ‖x_i − x_j‖² (not normalized). Distances are taken after centring each
    variable (they do not change; fewer digits cancel). The CUDA kernel
    computes the tiles on or above the diagonal and mirrors them.
    """
    x = _float_batch("x", x, 3)
    _checks.choice("kernel", kernel, _MODES)
    s = _sigmas(sigma, x.shape[0], x) if kernel == "rbf" else None
    return _batched_gram(x, kernel, s, backend)


def _batched_gram(x: torch.Tensor, kernel: str, s: torch.Tensor | None, backend: str) -> torch.Tensor:
    b, n, _ = x.shape
    if resolve_backend(backend, [x], "batched_gram") == "cuda":
        if kernel == "linear":
            return _cuda_gram.gram(x, _C.GRAM_LINEAR, None, 1.0 / n)
        # Distances: centring on load (no centred copy) keeps digits, as on the torch path.
        mode = _C.GRAM_RBF if kernel == "rbf" else _C.GRAM_SQDIST
        param = -0.5 / (s * s) if s is not None else None
        return _cuda_gram.gram(x, mode, param, 1.0 / n, k_offset=x.mean(dim=1).contiguous())
    if kernel == "linear":
        return torch.stack([_torch_gram.normalize_(_torch_gram.linear(xi)) for xi in x])
    sq = torch.stack([_distances.squared_distances(xi) for xi in x])
    if kernel == "sqdist":
        return sq
    return torch.exp(sq * (-0.5 / (s * s))[:, None, None]) / n


def hadamard_gram(x, sigmas, backend: str = "auto") -> torch.Tensor:
    """Normalized Hadamard product of the C per-channel RBF Gram matrices of
    a conv layer, without forming them: [N, C, ...] -> [N, N].

    ∏_c exp(−d_c²/(2σ_c²)) = exp(−½ Σ_c d_c²/σ_c²) is one RBF (σ = 1) on the
    channels scaled by 1/σ_c (Yu et al., TNNLS 2020; DESIGN.md 3.1).

    Args:
        x: (N, C, ...) activations.
        sigmas: C positive widths (a sequence or a [C] tensor).
    """
    x = _checks.as_tensor("x", x)
    if x.dim() < 2:
        raise ValueError(f"x must have shape (N, C, ...), got {tuple(x.shape)}")
    x = _float_batch("x", x.reshape(x.shape[0], x.shape[1], -1), 3)
    s = torch.as_tensor(sigmas, dtype=x.dtype, device=x.device).reshape(-1)
    if s.numel() != x.shape[1] or not bool(torch.isfinite(s).all()) or not bool((s > 0).all()):
        raise ValueError(f"sigmas must hold {x.shape[1]} positive finite widths, got {s.numel()}")
    return _hadamard_gram(x, s, backend)


def _hadamard_gram(x: torch.Tensor, s: torch.Tensor, backend: str) -> torch.Tensor:
    n, c, d = x.shape
    flat = x.reshape(n, c * d)  # a view for contiguous input
    scale = (1.0 / s).repeat_interleave(d)  # [C·D] per-feature 1/σ_c
    if resolve_backend(backend, [x], "batched_gram") == "cuda":
        one = torch.full((1,), -0.5, dtype=x.dtype, device=x.device)
        return _cuda_gram.gram(flat[None], _C.GRAM_RBF, one, 1.0 / n, k_offset=flat.mean(0)[None].contiguous(),
                               k_scale=scale[None].contiguous())[0]
    return _torch_gram.rbf_(_distances.squared_distances(flat * scale), 1.0).div_(n)


def hadamard_normalized(mats, backend: str = "auto") -> torch.Tensor:
    """A_1 ∘ … ∘ A_k / tr(A_1 ∘ … ∘ A_k) for k ≥ 2 symmetric [N, N] matrices:
    the Gram matrix of a joint (DESIGN.md 3.2). One fused pass for k ≤ 3 on the GPU."""
    if not isinstance(mats, (list, tuple)) or len(mats) < 2:
        raise ValueError("mats must be a list of at least 2 matrices")
    mats = [_float_batch(f"mats[{i}]", m, 2) for i, m in enumerate(mats)]
    for i, m in enumerate(mats):
        if m.shape != mats[0].shape or m.shape[0] != m.shape[1]:
            raise ValueError(f"mats[{i}] must be square and shaped like mats[0], got {tuple(m.shape)}")
    return _hadamard_normalized(mats, backend)


def _hadamard_normalized(mats: list, backend: str) -> torch.Tensor:
    # The widest dtype: a float32 factor (a label kernel) must not cut float64 data.
    dtype = functools.reduce(torch.promote_types, [m.dtype for m in mats])
    mats = [m.to(dtype) for m in mats]
    ensure_square_fits(mats[0].shape[0], dtype, mats[0].device, 1, "the joint Gram matrix")
    if len(mats) <= 3 and resolve_backend(backend, mats, "hadamard_normalized") == "cuda":
        # float64 products of at most 3 diagonal entries: no underflow for any N.
        trace = float(torch.stack([m.diagonal().double() for m in mats]).prod(0).sum())
        return _cuda_gram.hadamard_normalized(mats, _torch_gram.positive_trace(trace))
    return _torch_gram.hadamard(mats)


def alpha2_entropies(x, y, sigma_x: float, sigma_y: float | None = None, base: float = 2,
                     backend: str = "auto") -> tuple[float, float, float]:
    """S_2(X), S_2(Y) and S_2(X, Y) of matrix-based Rényi entropy at α = 2.

    With RBF Gram matrices K (K_ii = 1), S_2(A) = −log(Σ K_ij² / N²) and
    the joint S_2 = −log(Σ (K_x K_y)_ij² / N²), so on the GPU the three sums
    are accumulated tile by tile and no N×N matrix is ever stored: N = 100 000
    fits. I(X;Y) = S(X) + S(Y) − S(X,Y).

    Args:
        x: (N, ...) float samples (flattened), RBF width ``sigma_x``.
        y: (N, ...) float samples with width ``sigma_y``, or (N,) integer
            labels (delta kernel; ``sigma_y`` unused).
        base: logarithm base of the results.

    Returns:
        (S(X), S(Y), S(X,Y)) as floats in units of ``base``.
    """
    ln_base = _checks.log_base(base)
    xt = _checks.samples("x", _checks.as_tensor("x", x))
    yt = _checks.samples("y", _checks.as_tensor("y", y))
    if yt.shape[0] != xt.shape[0]:
        raise ValueError(f"y has {yt.shape[0]} samples but x has {xt.shape[0]}")
    xt = xt.reshape(xt.shape[0], -1)
    labels = _checks.is_discrete_dtype(yt)
    if labels and yt.dim() != 1:
        raise ValueError(f"y must be (N,) labels or float samples, got integer data of shape {tuple(yt.shape)}")
    sx = _checks.positive_number("sigma_x", sigma_x)
    sy = None if labels else _checks.positive_number("sigma_y", sigma_y)
    yt = yt if labels else yt.reshape(yt.shape[0], -1)
    dtype = _checks.overflow_safe_dtype("x", xt, centred=True)
    if not labels:
        dtype = torch.promote_types(dtype, _checks.overflow_safe_dtype("y", yt, centred=True))
        yt = yt.to(dtype)
    xt = xt.to(dtype)
    n = xt.shape[0]
    if resolve_backend(backend, [xt, yt], "alpha2_entropies") == "cuda":
        codes = torch.unique(yt, return_inverse=True)[1].contiguous() if labels else None
        sums = _cuda_gram.rbf_alpha2_sums(
            xt, sx, xt.mean(0).contiguous(), None if labels else yt, sy or 1.0,
            None if labels else yt.mean(0).contiguous(), codes)
        values = -torch.log(sums / (n * n))
        return tuple(float(v) / ln_base for v in values)
    ensure_square_fits(n, dtype, xt.device, 2.5, "alpha2_entropies")  # K_x, K_y and a boolean label comparison
    kx = _torch_gram.rbf_(_distances.squared_distances(xt), sx)
    if labels:
        ky = _torch_gram.delta(torch.unique(yt, return_inverse=True)[1], xt.dtype)
    else:
        ky = _torch_gram.rbf_(_distances.squared_distances(yt), sy)
    sums = [float(squared_norm64(kx)), float(squared_norm64(ky))]
    sums.append(float(squared_norm64(kx.mul_(ky))))  # the joint, in kx's memory
    return tuple(-math.log(s / (n * n)) / ln_base for s in sums)
