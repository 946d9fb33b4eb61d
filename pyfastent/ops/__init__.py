"""Low-level ops: Gram matrices, their entropies, and log-determinants.

Each op has a pure-PyTorch implementation (the reference and the test
oracle) and, where it pays, a CUDA kernel from ``csrc/``; ``backend=``
chooses (``"auto"``, ``"torch"``, ``"cuda"``; see ``pyfastent.backend_info()``).
"""
from __future__ import annotations

import torch

from pyfastent import _checks
from pyfastent.ops import _torch_spectrum
from pyfastent.ops._torch_spectrum import spectrum_renyi_nats
from pyfastent.ops.eigen import eigenvalues
from pyfastent.ops.gram import normalized_gram
from pyfastent.ops.kernels import alpha2_entropies, batched_gram, hadamard_gram, hadamard_normalized
from pyfastent.ops.logdet import covariance_logdet, logdet_joints, spd_logdet
from pyfastent.samples import observe
from pyfastent.variable import KERNELS, Variable, as_variable
from pyfastent.widths import as_width_rule

__all__ = [
    "alpha2_entropies",
    "batched_gram",
    "covariance_logdet",
    "gram",
    "hadamard_gram",
    "hadamard_normalized",
    "logdet_joints",
    "normalized_gram",
    "renyi_entropy_from_gram",
    "resolve_kernel",
    "spd_logdet",
    "spectrum_renyi_nats",
]


def resolve_kernel(var: Variable, discrete: bool, default: str) -> str:
    """The per-variable kernel, else delta for discrete data, else ``default``."""
    if var.kernel is not None:
        return var.kernel
    return "delta" if discrete else default


def gram(x, kernel: str = "rbf", sigma="knn", labels=None, backend: str = "auto") -> torch.Tensor:
    """Normalized Gram matrix A_ij = K_ij / (N·sqrt(K_ii·K_jj)) of one variable.

    Args:
        x: (N, ...) samples (trailing dims flattened) or a ``Variable``.
            Integer/bool data of shape (N,) or (N, k) uses the delta kernel.
        kernel: ``"rbf"`` (exp(−‖x_i − x_j‖²/(2σ²))), ``"linear"`` (x_i·x_j
            of the samples as given, not centred) or ``"delta"``, for
            continuous data.
        sigma: RBF width: a number, ``"knn"``, ``"silverman"``,
            ``"alignment"`` (with ``labels``) or a ``pyfastent.widths`` rule.
        labels: (N,) integer class labels for ``sigma="alignment"``.
        backend: ``"auto"`` (the CUDA kernel for CUDA tensors when built and
            nothing requires grad), ``"torch"`` or ``"cuda"``.

    Returns:
        [N, N] tensor with trace 1 on x's device, float64 for float64 data,
        float32 otherwise.
    """
    _checks.choice("kernel", kernel, KERNELS)
    rule = as_width_rule(sigma, labels)
    var = as_variable(x)
    obs = observe(var, "x")
    matrix, _ = normalized_gram(obs, resolve_kernel(var, obs.discrete, kernel), var.sigma or rule, "x", backend)
    return matrix


def renyi_entropy_from_gram(A, alpha: float, base: float = 2):
    """Matrix-based Rényi α-entropy S_α(A) = 1/(1−α) log Σ λ_i(A)^α.

    Sánchez Giraldo, Rao & Príncipe (2015); α = 1 gives the von Neumann
    entropy −Σ λ log λ exactly, α = 2 uses ‖A‖_F² without an
    eigendecomposition.

    Args:
        A: symmetric positive semidefinite [N, N] (or batched [B, N, N])
            matrix; it is divided by its trace, a no-op for ``gram``'s output.
        alpha: order α > 0.
        base: logarithm base (2: bits, ``math.e``: nats).

    Returns:
        float in units of ``base``; a float64 tensor of shape [B] for batches.
    """
    alpha = _checks.alpha_order(alpha)
    ln_base = _checks.log_base(base)
    a = _checks.as_tensor("A", A)
    if a.dim() not in (2, 3) or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"A must be a square matrix [N, N] or a batch [B, N, N], got shape {tuple(a.shape)}")
    if a.shape[-1] < 1 or a.numel() == 0:
        raise ValueError(f"A is empty (shape {tuple(a.shape)})")
    a = a if a.is_floating_point() else a.to(torch.float64)
    if not _checks.all_finite(a):
        raise ValueError("A contains non-finite values (NaN or inf)")
    scale = a.abs().amax()
    if not torch.allclose(a, a.mT, rtol=1e-5, atol=1e-6 * float(scale)):
        raise ValueError("A must be symmetric")
    trace = a.diagonal(dim1=-2, dim2=-1).sum(-1)
    if not bool((trace > 0).all()):
        raise ValueError("A must have a positive trace (it is divided by it)")
    nats = _psd_renyi_nats(a, alpha)
    bits = nats / ln_base
    return float(bits) if a.dim() == 2 else bits


def _psd_renyi_nats(a: torch.Tensor, alpha: float) -> torch.Tensor:
    """S_α of [..., N, N], after checking that every matrix is positive
    semidefinite: an eigenvalue below −N·ε·tr(A) (ε of the input's dtype,
    the round-off of its entries) is a ValueError, not a clipped spectrum."""
    n = a.shape[-1]
    slack = n * torch.finfo(a.dtype).eps * a.diagonal(dim1=-2, dim2=-1).sum(-1).double()  # [...]
    a64 = a.to(torch.float64)
    if alpha == 2.0:  # no spectrum needed for the value: Cholesky of A + slack·I tests PSD
        shifted = a64 + slack[..., None, None] * torch.eye(n, dtype=torch.float64, device=a.device)
        if bool((torch.linalg.cholesky_ex(shifted).info != 0).any()):
            raise ValueError("A is not positive semidefinite (a Gram matrix must be); S_2 would be meaningless")
        return _torch_spectrum.frobenius_renyi2_nats(a64)
    eig = eigenvalues(a64)  # [..., N]
    smallest = eig.amin(dim=-1)
    if bool((smallest < -slack).any()):
        raise ValueError(f"A is not positive semidefinite: smallest eigenvalue {float(smallest.min()):.3g} "
                         "(a Gram matrix has none below round-off)")
    return spectrum_renyi_nats(eig, alpha, a.dtype)
