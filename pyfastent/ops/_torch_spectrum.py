"""Matrix-based Rényi α-entropy from a trace-normalized Gram matrix, in nats.

S_α(A) = 1/(1−α) · log Σ_i λ_i^α (Sánchez Giraldo, Rao & Príncipe 2015;
Wickstrøm et al. 2019), with the von Neumann limit −Σ λ log λ at α = 1.
"""
from __future__ import annotations

import torch

from pyfastent._memory import ensure_square_fits


def renyi_nats(a: torch.Tensor, alpha: float) -> torch.Tensor:
    """S_α of symmetric PSD matrices: [..., N, N] -> [...], in nats.

    The matrices are divided by their trace first. α = 2 uses
    Σλ² = ‖A‖_F² and needs no eigendecomposition; other α use the symmetric
    eigensolver (``eigvalsh``, which reads the lower triangle).

    The spectrum is always computed in float64, whatever the dtype of ``a``:
    a float32 eigensolver was measured to lose 3e-4 bits at α = 0.5 and
    2e-5 bits at α = 1.01 (N = 2048), above the 1e-4-bit target, while a
    float32 Gram matrix with a float64 spectrum stays within 4e-6 bits.
    """
    if alpha == 2.0:
        return frobenius_renyi2_nats(a)
    # A float64 copy (unless A is float64), the eigensolver's own copy and
    # its work space (measured in tests/test_memory.py).
    copies = 1.25 if a.dtype == torch.float64 else 2.25
    ensure_square_fits(a.shape[-1], torch.float64, a.device, copies * (a.numel() // a.shape[-1] ** 2),
                       "the eigenvalues of the Gram matrix")
    return spectrum_renyi_nats(eigenvalues(a), alpha)


def eigenvalues(a: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of symmetric [..., N, N], in float64 (eigenvalues only:
    no eigenvectors are computed), by ``torch.linalg.eigvalsh``.

    Measured side by side (benchmarks/results/bench_eigensolvers_cpu.md):
    alone, NumPy's and SciPy's LAPACK drivers were up to 20% faster at
    N = 512-2048; right after torch work, as in the estimator, their OpenBLAS
    threads compete with torch's OpenMP threads (3× slower at N = 256 there;
    7.7× slower for the whole information-plane workload of
    bench_estimators.py at N = 256), while torch's stays within 15% of the
    best and is the fastest at N = 4096.
    """
    a = a.to(torch.float64)
    return torch.linalg.eigvalsh(a)


def frobenius_renyi2_nats(a: torch.Tensor) -> torch.Tensor:
    """S_2 = −log(‖A‖_F² / tr(A)²) of [..., N, N], in nats, with float64
    accumulation and no float64 copy of A."""
    trace = a.diagonal(dim1=-2, dim2=-1).sum(-1, dtype=torch.float64)  # [...]
    return -torch.log(squared_norm64(a) / (trace * trace))


def squared_norm64(a: torch.Tensor) -> torch.Tensor:
    """Σ_ij a_ij² over the last two dims, [..., N, N] -> float64 [...],
    accumulated in float64 over blocks of rows (about 2 MB each, at least 64
    rows): never a float64 copy of A."""
    rows = max(64, 2**18 // a.shape[-1])
    total = torch.zeros(a.shape[:-2], dtype=torch.float64, device=a.device)
    for start in range(0, a.shape[-2], rows):
        block = a[..., start : start + rows, :].double()
        total += (block * block).sum(dim=(-2, -1))
    return total


def spectrum_renyi_nats(eig: torch.Tensor, alpha: float) -> torch.Tensor:
    """S_α from eigenvalues: [..., N] -> [...], in nats.

    Eigenvalues within the eigensolver's round-off of zero, λ ≤ N·ε·λ_max
    with ε the float64 machine epsilon (negative ones included), are set to 0
    and the rest renormalized to sum 1; 0·log 0 = 0, and zero eigenvalues
    contribute nothing for any α. Without the threshold, positive round-off
    eigenvalues would bias S_α upwards for α < 1 (λ^α ≫ λ for tiny λ).

    Near α = 1 (|α − 1| ≤ ½) the sum is taken as Σλ^α = Σλ + Σλ·expm1((α−1) log λ),
    which has no cancellation, so S_α tends smoothly to the von Neumann
    entropy: the plain 1/(1−α)·log Σλ^α divides round-off by α − 1 (8.66
    bits instead of 2.94 at α = 1 − 1e-16). Elsewhere log Σλ^α is a
    log-sum-exp, so large α does not underflow.
    """
    n = eig.shape[-1]
    floor = n * torch.finfo(torch.float64).eps * eig.amax(dim=-1, keepdim=True)
    lam = torch.where(eig > floor, eig, torch.zeros_like(eig))
    lam = lam / lam.sum(dim=-1, keepdim=True)
    total = lam.sum(dim=-1)  # 1 up to round-off; kept exact in what follows
    positive = lam > 0
    log_lam = torch.where(positive, lam, torch.ones_like(lam)).log()  # log 1 = 0 where λ = 0
    if alpha == 1.0:
        return total.log() - (lam * log_lam).sum(dim=-1) / total
    if abs(alpha - 1.0) <= 0.5:
        excess = (lam * torch.expm1((alpha - 1.0) * log_lam)).sum(dim=-1)  # Σλ^α − Σλ
        return total.log() + torch.log1p(excess / total) / (1.0 - alpha)
    scaled = torch.where(positive, alpha * log_lam, torch.full_like(lam, -torch.inf))
    return (torch.logsumexp(scaled, dim=-1) - alpha * total.log()) / (1.0 - alpha)
