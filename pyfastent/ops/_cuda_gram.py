"""Wrappers of the Gram-family CUDA kernels: check, allocate with torch, launch.

Every function takes CUDA tensors of dtype float32 or float64 on one device;
the kernels read them in place through pointers and strides (no copies).
"""
from __future__ import annotations

import torch

from pyfastent._native import _C


def _stream(device: torch.device) -> int:
    return torch.cuda.current_stream(device).cuda_stream


def _check(name: str, t: torch.Tensor, device: torch.device, dtype: torch.dtype) -> None:
    if not t.is_cuda or t.device != device:
        raise ValueError(f"{name} must be on {device}, got {t.device}")
    if t.dtype != dtype:
        raise ValueError(f"{name} must have dtype {dtype}, got {t.dtype}")


def view(x: torch.Tensor, row_offset=None, k_offset=None, k_scale=None, row_scale=None) -> "_C.GramInput":
    """A GramInput over x [B, R, K] (any strides) with an on-load transform
    (x − row_offset[B, R] − k_offset[B, K]) · k_scale[B, K] · row_scale[B, R]."""
    if x.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"x must be float32 or float64, got {x.dtype}")
    b, r, k = x.shape
    v = _C.GramInput()
    v.x, v.batch, v.rows, v.depth = x.data_ptr(), b, r, k
    v.stride_b, v.stride_r, v.stride_k = x.stride()
    v.is_double = x.dtype == torch.float64
    for name, t, shape in (("row_offset", row_offset, (b, r)), ("k_offset", k_offset, (b, k)),
                           ("k_scale", k_scale, (b, k)), ("row_scale", row_scale, (b, r))):
        if t is None:
            continue
        _check(name, t, x.device, x.dtype)
        if tuple(t.shape) != shape or not t.is_contiguous():
            raise ValueError(f"{name} must be a contiguous {shape} tensor, got {tuple(t.shape)}")
        setattr(v, name, t.data_ptr())
    return v


def row_norms(v: "_C.GramInput", x: torch.Tensor) -> torch.Tensor:
    """Squared norms of the transformed rows: [B, R]."""
    norms = torch.empty(v.batch, v.rows, dtype=x.dtype, device=x.device)
    _C.gram_row_norms(v, norms.data_ptr(), _stream(x.device))
    return norms


def batch_slices(batch: int, limit: int) -> list:
    """Consecutive slices of at most ``limit`` batch entries covering ``batch``:
    one launch each, since a launch's grid holds at most 65 535 entries."""
    return [slice(lo, min(lo + limit, batch)) for lo in range(0, batch, limit)]


def gram(x: torch.Tensor, mode: int, param: torch.Tensor | None = None, scale: float = 1.0, **transform) -> torch.Tensor:
    """[B, R, K] -> [B, R, R] Gram matrices (see csrc/gram.h for the modes),
    one launch per ``_C.MAX_BATCH`` batch entries."""
    if param is not None:
        _check("param", param, x.device, x.dtype)
        if tuple(param.shape) != (x.shape[0],) or not param.is_contiguous():
            raise ValueError(f"param must be a contiguous ({x.shape[0]},) tensor")
    needs_norms = mode != _C.GRAM_SCALED
    out = torch.empty(x.shape[0], x.shape[1], x.shape[1], dtype=x.dtype, device=x.device)
    with torch.cuda.device(x.device):
        for part in batch_slices(x.shape[0], _C.MAX_BATCH):
            v = view(x[part], **{k: t[part] for k, t in transform.items() if t is not None})
            norms = row_norms(v, x) if needs_norms else None
            if mode == _C.GRAM_LINEAR and not bool((norms > 0).all()):
                bad = int((norms <= 0).sum())
                raise ValueError(f"x has {bad} samples with K_ii <= 0 (all-zero rows under the linear kernel); "
                                 "the normalized Gram matrix is undefined for them")
            _C.gram(v, norms.data_ptr() if norms is not None else 0, mode,
                    param[part].data_ptr() if param is not None else 0, float(scale), out[part].data_ptr(),
                    _stream(x.device))
    return out


def hadamard_normalized(mats: list, trace: float) -> torch.Tensor:
    """A ∘ B (∘ C) / trace for 2 or 3 contiguous [N, N] matrices, ``trace``
    being tr(A ∘ B (∘ C)) > 0, computed by the caller from the diagonals."""
    a = mats[0]
    for i, m in enumerate(mats):
        _check(f"mats[{i}]", m, a.device, a.dtype)
        if m.shape != a.shape or m.dim() != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"mats[{i}] must be square and shaped like mats[0], got {tuple(m.shape)}")
    mats = [m.contiguous() for m in mats]
    out = torch.empty_like(mats[0])
    with torch.cuda.device(a.device):
        _C.hadamard_normalized(mats[0].data_ptr(), mats[1].data_ptr(), mats[2].data_ptr() if len(mats) == 3 else 0,
                               a.shape[0], 1.0 / trace, a.dtype == torch.float64, out.data_ptr(),
                               _stream(a.device))
    return out


def rbf_alpha2_sums(xa: torch.Tensor, sigma_a: float, mean_a: torch.Tensor, xb: torch.Tensor | None,
                    sigma_b: float, mean_b: torch.Tensor | None, codes: torch.Tensor | None) -> torch.Tensor:
    """float64 [3]: Σ K_a², Σ K_b², Σ (K_a K_b)² over all pairs, never storing an N×N matrix.

    xa, xb: [N, D] features (centred on load by mean_a, mean_b); with
    ``codes`` ([N] int64) K_b is their delta kernel and xb is unused.
    """
    with torch.cuda.device(xa.device):
        va = view(xa[None], k_offset=mean_a[None])
        norms_a = row_norms(va, xa)
        if codes is not None:
            if codes.device != xa.device or codes.dtype != torch.int64 or codes.shape != (xa.shape[0],):
                raise ValueError("codes must be an int64 (N,) tensor on the device of x")
            codes = codes.contiguous()
            vb, norms_b = va, norms_a
        else:
            _check("y", xb, xa.device, xa.dtype)
            vb = view(xb[None], k_offset=mean_b[None])
            norms_b = row_norms(vb, xb)
        sums = torch.zeros(3, dtype=torch.float64, device=xa.device)
        _C.rbf_alpha2_sums(va, norms_a.data_ptr(), -0.5 / sigma_a**2, vb, norms_b.data_ptr(),
                           -0.5 / sigma_b**2 if codes is None else 0.0,
                           codes.data_ptr() if codes is not None else 0, sums.data_ptr(), _stream(xa.device))
    return sums
