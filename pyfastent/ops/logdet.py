"""LogDet ops: log det(I + β·C) by Cholesky, batched, with a CUDA kernel and
a PyTorch reference each (Zhouyin & Liu 2021; DESIGN.md 3.3)."""
from __future__ import annotations

import torch

from pyfastent import _checks
from pyfastent._native import _C, resolve_backend
from pyfastent.ops import _cuda_gram, _cuda_logdet
from pyfastent.ops.kernels import _float_batch

MODES = ("cov", "correlation")


def _raise_not_pd(info: torch.Tensor, what: str) -> None:
    bad = torch.nonzero(info != 0).flatten()
    if bad.numel():
        i = int(bad[0])
        raise ValueError(f"{what}[{i}] is not positive definite (Cholesky failed at column {int(info[i]) - 1}); "
                         "with I + beta*C this means the input overflowed or beta is too large")


def spd_logdet(m, backend: str = "auto", what: str = "matrices") -> torch.Tensor:
    """log det of symmetric positive definite matrices: [B, n, n] -> float64 [B].

    Cholesky: log det M = 2 Σ log L_jj; only the lower triangle is read. A
    matrix that is not positive definite is a ValueError naming its batch
    index. On the GPU, n ≤ 64 uses one thread block per matrix in shared
    memory and larger n a blocked right-looking factorization.
    """
    m = _float_batch(what, m, 3)
    if m.shape[1] != m.shape[2]:
        raise ValueError(f"{what} must be square, got shape {tuple(m.shape)}")
    if resolve_backend(backend, [m], "spd_logdet") == "cuda":
        logdet, info = _cuda_logdet.cholesky_logdet(m)
        _raise_not_pd(info, what)
        return logdet
    chol, info = torch.linalg.cholesky_ex(m)
    _raise_not_pd(info, what)
    return 2.0 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1).double()


def standardization(x: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Column means [B, d] and, for ``"correlation"``, 1/std per column of
    x [B, N, d]. A constant column (all values equal) gets scale 0 and then
    adds nothing; its round-off variance (a mean of 0.1s is not exactly 0.1)
    must not be blown up to unit variance."""
    mean = x.mean(dim=-2)
    if mode == "cov":
        return mean, None
    varies = x.amax(dim=-2) > x.amin(dim=-2)
    std = x.var(dim=-2, unbiased=False).sqrt()
    return mean, torch.where(varies & (std > 0), 1.0 / torch.where(std > 0, std, torch.ones_like(std)),
                             torch.zeros_like(std))


def centred_gram(x: torch.Tensor, mode: str, coef: float, columns: bool, backend: str = "auto") -> torch.Tensor:
    """coef · XcᵀXc ([B, d, d], ``columns``) or coef · XcXcᵀ ([B, N, N]) of
    x [B, N, d], Xc column-centred (and standardized in correlation mode).
    On the GPU the centring happens on load: no centred copy of X is stored."""
    b = x.shape[0]
    mean, scale = standardization(x, mode)
    if resolve_backend(backend, [x], "covariance_logdet") == "cuda":
        param = torch.full((b,), coef, dtype=x.dtype, device=x.device)
        scale = None if scale is None else scale.contiguous()
        if columns:  # the columns of x are the rows of its transposed view
            return _cuda_gram.gram(x.transpose(1, 2), _C.GRAM_SCALED, param, row_offset=mean.contiguous(),
                                   row_scale=scale)
        return _cuda_gram.gram(x, _C.GRAM_SCALED, param, k_offset=mean.contiguous(), k_scale=scale)
    xc = x - mean[:, None, :]
    if scale is not None:
        xc.mul_(scale[:, None, :])
    return (xc.transpose(1, 2) @ xc if columns else xc @ xc.transpose(1, 2)).mul_(coef)


def identity_plus_covariance(x: torch.Tensor, beta: float, mode: str, backend: str = "auto") -> torch.Tensor:
    """M = I + (β/N)·XcᵀXc or, by Sylvester, I + (β/N)·XcXcᵀ, whichever is
    smaller: [B, N, d] -> [B, m, m], m = min(d, N)."""
    _, n, d = x.shape
    m = centred_gram(x, mode, beta / n, columns=d <= n, backend=backend)
    m.diagonal(dim1=-2, dim2=-1).add_(1.0)
    return m


def covariance_logdet(x, beta: float, mode: str = "cov", backend: str = "auto") -> torch.Tensor:
    """log det(I + β·C) of B data sets at once: [B, N, d] -> float64 [B], in nats.

    C = XcᵀXc/N (``"cov"``) or the Pearson correlation matrix
    (``"correlation"``); the LogDet entropy is half of it. Fused construction
    of the smaller side, then batched Cholesky.
    """
    x = _float_batch("x", x, 3)
    beta = _checks.positive_number("beta", beta)
    _checks.choice("mode", mode, MODES)
    if x.shape[1] < 2:
        raise ValueError(f"x needs at least N = 2 samples, got N = {x.shape[1]}")
    return spd_logdet(identity_plus_covariance(x, beta, mode, backend), backend)


def logdet_joints(x, joints, beta: float, mode: str = "cov", backend: str = "auto") -> torch.Tensor:
    """log det(I + β·C_J) for many small joints J of columns at once, in nats.

    XcᵀXc of all columns of x [N, D] is formed once; each joint is a list of
    column indices (at most 64, e.g. the neurons of a pair or triple for
    conditional MI and transfer entropy), and its matrix is gathered from it
    inside the kernel: no concatenation is ever formed.

    Returns:
        float64 [len(joints)].
    """
    x = _float_batch("x", x, 2)
    beta = _checks.positive_number("beta", beta)
    _checks.choice("mode", mode, MODES)
    n, d = x.shape
    if n < 2:
        raise ValueError(f"x needs at least N = 2 samples, got N = {n}")
    if not isinstance(joints, (list, tuple)) or not joints:
        raise ValueError("joints must be a non-empty list of lists of column indices")
    for j, cols in enumerate(joints):
        if not cols or len(cols) > 64 or not all(isinstance(c, int) and 0 <= c < d for c in cols):
            raise ValueError(f"joints[{j}] must list 1 to 64 column indices below {d}, got {cols!r}")
    gram = centred_gram(x[None], mode, 1.0, columns=True, backend=backend)[0]  # XcᵀXc [D, D]
    if resolve_backend(backend, [x], "logdet_joints") == "cuda":
        index = torch.zeros(len(joints), max(len(c) for c in joints), dtype=torch.int32)
        for j, cols in enumerate(joints):
            index[j, : len(cols)] = torch.tensor(cols, dtype=torch.int32)
        size = torch.tensor([len(c) for c in joints], dtype=torch.int32)
        logdet, info = _cuda_logdet.joint_logdets(gram, index.to(x.device), size.to(x.device), beta / n)
        _raise_not_pd(info, "joints")
        return logdet
    out = []
    for cols in joints:
        idx = torch.tensor(cols, device=x.device)
        m = gram[idx][:, idx] * (beta / n)
        m.diagonal().add_(1.0)
        out.append(spd_logdet(m[None], "torch", what=f"joints[{len(out)}]")[0])
    return torch.stack(out)
