"""Pure-PyTorch Gram matrices: the reference path, and the oracle for CUDA tests."""
from __future__ import annotations

import torch


def squared_distances(x: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances of the rows of x: [N, D] -> [N, N].

    Rows are centred first: distances do not change, and the expansion
    ‖a‖² + ‖b‖² − 2a·b then loses far fewer digits to cancellation.
    """
    x = x - x.mean(dim=0, keepdim=True)
    sq = (x * x).sum(dim=1)  # [N]
    d = torch.addmm(sq[:, None] + sq[None, :], x, x.T, alpha=-2.0)  # [N, N]
    d.clamp_(min=0.0)  # round-off can make tiny distances negative
    d.fill_diagonal_(0.0)
    return d


def rbf(sq_dist: torch.Tensor, sigma: float) -> torch.Tensor:
    """exp(−d² / (2σ²)) elementwise: [N, N] -> [N, N]."""
    return torch.exp(sq_dist * (-0.5 / (sigma * sigma)))


def delta(codes: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """1 where two samples have the same code, else 0: [N] -> [N, N]."""
    return (codes[:, None] == codes[None, :]).to(dtype)


def linear(x: torch.Tensor) -> torch.Tensor:
    """X Xᵀ: [N, D] -> [N, N]."""
    return x @ x.T


def normalize(k: torch.Tensor) -> torch.Tensor:
    """A_ij = K_ij / (N · sqrt(K_ii K_jj)), so that tr A = 1: [N, N] -> [N, N].

    Raises ValueError when some K_ii ≤ 0 (a zero sample under the linear
    kernel), where the normalization is undefined.
    """
    n = k.shape[0]
    diag = k.diagonal()
    if not bool((diag > 0).all()):
        bad = int((diag <= 0).sum())
        raise ValueError(
            f"x has {bad} samples with K_ii <= 0 (all-zero rows under the linear kernel); "
            "the normalized Gram matrix is undefined for them"
        )
    scale = diag.rsqrt()
    return k * scale[:, None] * scale[None, :] / n


def positive_trace(trace: float) -> float:
    """``trace`` if it is positive and finite, else the ValueError of a
    Hadamard product whose normalization is undefined."""
    if not 0 < trace < float("inf"):
        raise ValueError(f"mats: the Hadamard product has trace {trace!r}; its normalization needs a positive trace")
    return trace


def hadamard(mats: list[torch.Tensor]) -> torch.Tensor:
    """A_1 ∘ … ∘ A_k / tr(A_1 ∘ … ∘ A_k): k × [N, N] -> [N, N], trace 1.

    Each factor is first scaled to a mean diagonal entry of 1 (a normalized
    Gram matrix, diagonal 1/N, then has unit diagonal and entries in
    [−1, 1]), so the running product never underflows, whatever k: 17
    factors of 1/N underflow float32 at N = 449. One division at the end.
    """
    out = None
    for m in mats:
        factor = m * (m.shape[0] / positive_trace(float(m.diagonal().sum())))
        out = factor if out is None else out.mul_(factor)
    return out.div_(positive_trace(float(out.diagonal().sum())))
