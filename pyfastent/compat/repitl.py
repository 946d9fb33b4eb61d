"""``repitl.matrix_itl`` (representation-itl 1.0.7, uk-cliplab/representation-itl)
and ``repitl.kernel_utils.gaussianKernel``, on pyfastent.

Replace ``from repitl import matrix_itl`` with
``from pyfastent.compat import repitl as matrix_itl``. Gram matrices K are
passed as repitl takes them: unnormalized, unit diagonal for its kernels;
every function divides by the trace itself. Results are float64 0-d tensors
in nats (``vonNeumannEntropy``: bits), as repitl returns them.

Conventions that differ from repitl's code, deliberately:

- eigenvalues within round-off of zero (λ ≤ N·ε·λ_max) count as 0, where
  repitl keeps every positive one; the two agree except for α < 1 on
  matrices with eigenvalues at round-off level;
- a K that is not positive semidefinite is a ValueError, where repitl
  silently drops its negative eigenvalues;
- spectra are always float64.

Not offered: ``schattenDivergence`` (a stub that returns None in repitl) and
``repMutualInformation`` (it reads the built-in ``type`` as a variable and
fails on every call in repitl 1.0.7).
"""
from __future__ import annotations

import math

import torch

from pyfastent import _checks, ops
from pyfastent.ops.eigen import eigenvalues


def _as_gram(name: str, K) -> torch.Tensor:
    k = _checks.as_tensor(name, K)
    if k.dim() != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"{name} must be a square Gram matrix (N, N), got shape {tuple(k.shape)}")
    return k


def _nats(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


def gaussianKernel(X, Y, sigma=None, calcOption="tiled"):  # noqa: N802 - repitl's name
    """K_ij = exp(−‖x_i − y_j‖² / (2σ²)); σ defaults to √(D/2) as in repitl.
    ``calcOption`` is accepted for compatibility (both of repitl's options
    compute the same matrix)."""
    x, y = _checks.as_tensor("X", X), _checks.as_tensor("Y", Y)
    x, y = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)
    if sigma is None:
        sigma = math.sqrt(x.shape[1] / 2)
    sigma = _checks.positive_number("sigma", float(sigma))
    d = torch.cdist(x.double(), y.double()).square_()
    return torch.exp(-d / (2.0 * sigma**2)).to(torch.promote_types(x.dtype, y.dtype))


def matrixAlphaEntropy(K, alpha):  # noqa: N802
    """H_α = log tr((K/tr K)^α) / (1 − α), in nats (Sánchez Giraldo et al. 2015)."""
    return _nats(ops.renyi_entropy_from_gram(_as_gram("K", K), alpha, base=math.e))


def generalizedInformationPotential(K, alpha, allow_frobenius_speedup=False):  # noqa: N802
    """tr((K/tr K)^α). With ``allow_frobenius_speedup`` and α = 2, ΣK²/N²
    (equal for unit-diagonal K, as in repitl)."""
    if allow_frobenius_speedup and alpha == 2:
        return frobeniusGIP(K)
    alpha = _checks.alpha_order(alpha)
    if alpha == 1.0:
        return _nats(1.0)
    return _nats(math.exp((1.0 - alpha) * float(matrixAlphaEntropy(K, alpha))))


def frobeniusGIP(K):  # noqa: N802
    """ΣK²/N²: tr((K/tr K)²) for a Gram matrix with unit diagonal."""
    k = _as_gram("K", K)
    return _nats(float((k.double() ** 2).sum()) / k.shape[0] ** 2)


def matrixAlphaJointEntropy(K_list, alpha):  # noqa: N802, N803
    """H_α of the Hadamard product of the Gram matrices in ``K_list``, nats."""
    if not isinstance(K_list, (list, tuple)) or not K_list:
        raise ValueError("K_list must be a non-empty list of Gram matrices")
    mats = [_as_gram(f"K_list[{i}]", k) for i, k in enumerate(K_list)]
    joint = mats[0] if len(mats) == 1 else ops.hadamard_normalized(mats, backend="torch")
    return _nats(ops.renyi_entropy_from_gram(joint, alpha, base=math.e))


def matrixAlphaConditionalEntropy(Kx, Ky, alpha):  # noqa: N802, N803
    """H_α(X|Y) = H_α(X, Y) − H_α(Y), nats."""
    return matrixAlphaJointEntropy([Kx, Ky], alpha) - matrixAlphaEntropy(Ky, alpha)


def matrixAlphaMutualInformation(Kx, Ky, alpha):  # noqa: N802, N803
    """I_α(X;Y) = H_α(X) + H_α(Y) − H_α(X, Y), nats."""
    return matrixAlphaEntropy(Kx, alpha) + matrixAlphaEntropy(Ky, alpha) - matrixAlphaJointEntropy([Kx, Ky], alpha)


def vonNeumannEntropy(K, lowRank=False, rank=None):  # noqa: N802, N803
    """−Σλ log₂ λ of K/tr K, in BITS (as repitl's). With ``lowRank``, the
    smallest N − rank eigenvalues are replaced by their mean."""
    lam = eigenvalues(_as_gram("K", K))  # ascending
    if lowRank:
        rank = _checks.positive_int("rank", rank)
        n = lam.shape[0]
        if rank >= n:
            raise ValueError(f"rank must be below N = {n}, got {rank}")
        lam = torch.cat([torch.full((n - rank,), float(lam[: n - rank].sum()) / (n - rank), dtype=lam.dtype),
                         lam[n - rank:]])
    return _nats(float(vonNeumannEigenValues(lam.flip(0))) / math.log(2))


def vonNeumannEigenValues(Ev, lowRank=False, rank_proportion=0.9):  # noqa: N802, N803
    """−Σλ ln λ of eigenvalues ``Ev`` (sorted descending), renormalized to
    sum 1, nats. With ``lowRank``, all but the largest ``rank_proportion``
    of them are replaced by their mean."""
    ev = _checks.as_tensor("Ev", Ev).double().flatten()
    if lowRank:
        keep = int(rank_proportion * ev.shape[0])
        ev = torch.cat([ev[:keep], ev[keep:].mean().expand(ev.shape[0] - keep)])
    ev = ev[ev > 0]
    ev = ev / ev.sum()
    return _nats(float(-(ev * ev.log()).sum()))


def schattenNorm(T, p):  # noqa: N802, N803
    """‖T‖_p^p = Σ σ_i(T)^p, the singular values to the power p."""
    return torch.linalg.svdvals(_checks.as_tensor("T", T).double()).pow(p).sum()


def normalizeTriplet(Kx, Ky, Kxy):  # noqa: N802, N803
    """Kx/tr Kx, Ky/tr Ky and Kxy/√(tr Kx · tr Ky)."""
    kx, ky, kxy = (_checks.as_tensor(n, k) for n, k in (("Kx", Kx), ("Ky", Ky), ("Kxy", Kxy)))
    return kx / torch.trace(kx), ky / torch.trace(ky), kxy / torch.sqrt(torch.trace(kx) * torch.trace(ky))


def schatten1Divergence(Kx, Ky, Kxy, normalize=False):  # noqa: N802, N803
    """1 − ‖Kxy‖₁ (nuclear norm), optionally after ``normalizeTriplet``."""
    if normalize:
        Kx, Ky, Kxy = normalizeTriplet(Kx, Ky, Kxy)
    return 1 - schattenNorm(Kxy, p=1.0)


def matrixAlphaDivergence(Kx, Ky, Kxy, alpha, normalize=False):  # noqa: N802, N803
    """D_α = log(Σ_ij λ_i(x)^(α−1) (u_iᵀ Kxy v_j)² λ_j(y)^(−α)) / (α − 1), nats,
    from the eigenpairs of Kx and Ky (positive eigenvalues, renormalized)."""
    alpha = _checks.alpha_order(alpha)
    if alpha == 1.0:
        raise ValueError("alpha must not be 1 for matrixAlphaDivergence (the formula divides by α − 1)")
    if normalize:
        Kx, Ky, Kxy = normalizeTriplet(Kx, Ky, Kxy)
    ex, vx = torch.linalg.eigh(_checks.as_tensor("Kx", Kx).double())
    ey, vy = torch.linalg.eigh(_checks.as_tensor("Ky", Ky).double())
    px, py = ex > 0, ey > 0
    ex, ey = ex[px] / ex[px].sum(), ey[py] / ey[py].sum()
    overlap = (vx[:, px].T @ _checks.as_tensor("Kxy", Kxy).double() @ vy[:, py]) ** 2
    return torch.log(ex.pow(alpha - 1) @ overlap @ ey.pow(-alpha)) / (alpha - 1)


def rowWiseKroneckerProduct(X, Y):  # noqa: N802, N803
    """Row i is kron(x_i, y_i): (N, a), (N, b) -> (N, a·b)."""
    x, y = _checks.as_tensor("X", X), _checks.as_tensor("Y", Y)
    if x.dim() != 2 or y.dim() != 2:
        raise ValueError("X and Y must be 2-dimensional")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"Y has {y.shape[0]} rows but X has {x.shape[0]}")
    return (x[:, :, None] * y[:, None, :]).reshape(x.shape[0], -1)
