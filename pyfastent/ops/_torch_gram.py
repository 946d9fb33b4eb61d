"""Pure-PyTorch Gram matrices: the reference path, and the oracle for CUDA tests."""
from __future__ import annotations

import torch


def rbf_(sq_dist: torch.Tensor, sigma: float) -> torch.Tensor:
    """exp(−d² / (2σ²)) in place: [N, N] -> the same tensor."""
    return sq_dist.mul_(-0.5 / (sigma * sigma)).exp_()


def delta(codes: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """1 where two samples have the same code, else 0: [N] -> [N, N]."""
    return (codes[:, None] == codes[None, :]).to(dtype)


def linear(x: torch.Tensor) -> torch.Tensor:
    """X Xᵀ: [N, D] -> [N, N]."""
    return x @ x.T


def normalize_(k: torch.Tensor) -> torch.Tensor:
    """A_ij = K_ij / (N · sqrt(K_ii K_jj)) in place, so that tr A = 1: [N, N] -> [N, N].

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
    scale = diag.rsqrt()  # a new [N] tensor: the diagonal view changes below
    return k.mul_(scale[:, None]).mul_(scale[None, :]).div_(n)


def positive_trace(trace: float) -> float:
    """``trace`` if it is positive and finite, else the ValueError of a
    Hadamard product whose normalization is undefined."""
    if not 0 < trace < float("inf"):
        raise ValueError(f"mats: the Hadamard product has trace {trace!r}; its normalization needs a positive trace")
    return trace


def hadamard(mats: list[torch.Tensor]) -> torch.Tensor:
    """A_1 ∘ … ∘ A_k / tr(A_1 ∘ … ∘ A_k): k × [N, N] -> [N, N], trace 1.

    From the fourth factor on, each is first scaled to a mean diagonal
    entry of 1 (a normalized Gram matrix, diagonal 1/N, then has unit
    diagonal and entries in [−1, 1]), so the running product never
    underflows, whatever k: 17 factors of 1/N underflow float32 at N = 449,
    while three are at least N⁻³ (1e-18 at N = 10⁶). One division at the end.
    """
    if len(mats) <= 3:  # their product, unscaled
        out = torch.mul(mats[0], mats[1])
        for m in mats[2:]:
            out.mul_(m)
    else:
        out = None
        for m in mats:  # one N×N matrix: the factors are applied in place
            factor = m.shape[0] / positive_trace(float(m.diagonal().sum()))
            out = m * factor if out is None else out.mul_(m).mul_(factor)
    return out.div_(positive_trace(float(out.diagonal().sum(dtype=torch.float64))))


def permuted(m: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """m[index][:, index] of a square [N, N] matrix: one gather of rows and
    one of columns (on the CPU by NumPy's ``take``, four times faster than
    torch's column gather of float64 at N = 512)."""
    if m.device.type == "cpu" and not m.requires_grad:
        a, i = m.numpy(), index.cpu().numpy()
        return torch.from_numpy(a.take(i, axis=0).take(i, axis=1))
    index = index.to(m.device)
    return m.index_select(0, index).index_select(1, index)
