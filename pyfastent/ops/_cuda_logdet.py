"""Wrappers of the Cholesky log-determinant CUDA kernels."""
from __future__ import annotations

import torch

from pyfastent._native import _C
from pyfastent.ops._cuda_gram import _stream, batch_slices


def cholesky_logdet(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log det of SPD [B, n, n] matrices (lower triangles read): float64 [B]
    and int32 info [B] (0, or j + 1 where the order-(j+1) minor failed).
    Matrices above the small size are factored in a contiguous copy."""
    if m.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"matrices must be float32 or float64, got {m.dtype}")
    b, n, _ = m.shape
    if n > _C.SMALL_CHOLESKY:
        m = m.contiguous().clone()  # factored in place
    logdet = torch.empty(b, dtype=torch.float64, device=m.device)
    info = torch.empty(b, dtype=torch.int32, device=m.device)
    with torch.cuda.device(m.device):
        for part in batch_slices(b, _C.MAX_BATCH):
            chunk = m[part]
            _C.cholesky_logdet(chunk.data_ptr(), chunk.shape[0], n, *chunk.stride(), m.dtype == torch.float64,
                               logdet[part].data_ptr(), info[part].data_ptr(), _stream(m.device))
    return logdet, info


def joint_logdets(c: torch.Tensor, index: torch.Tensor, size: torch.Tensor, coef: float):
    """log det(I + coef · C[idx_j][:, idx_j]) for every joint j, gathered from
    one contiguous [d, d] matrix C; index int32 [J, width ≤ 64], size int32 [J]."""
    c = c.contiguous()
    logdet = torch.empty(index.shape[0], dtype=torch.float64, device=c.device)
    info = torch.empty(index.shape[0], dtype=torch.int32, device=c.device)
    with torch.cuda.device(c.device):
        _C.joint_logdets(c.data_ptr(), c.shape[0], c.dtype == torch.float64, float(coef), index.data_ptr(),
                         size.data_ptr(), index.shape[0], index.shape[1], logdet.data_ptr(), info.data_ptr(),
                         _stream(c.device))
    return logdet, info
