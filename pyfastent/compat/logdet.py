"""``utils/LogDet.py`` of the LogDet paper's code (Zhouyin & Liu,
"Understanding Neural Networks with Logarithm Determinant Entropy
Estimator"; github.com/floatingCatty/LogDet-entropy), on pyfastent.

Replace ``from utils.LogDet import LogDet, join, mi`` with
``from pyfastent.compat.logdet import LogDet, join, mi``. Results are
float64 0-d tensors in nats: ½ log det(I + β·C) of column-centred data.

Conventions: ``mode="cov"`` is C = XcᵀXc/N, ``"pearson"`` the correlation
matrix, ``"pos"`` exp(R − 1) with R the cosine similarity of the centred
columns; ``mi``'s β defaults to 100·(d_A + d_B), as there. Differences: the
matrices are always factored in float64 by Cholesky (a matrix that is not
positive definite is a ValueError naming it); ``"pearson"`` divides by the
columns' norms exactly, without the original's +1e-8 (a constant column is
zero either way); ``device`` is accepted but the computation runs where the
data is.
"""
from __future__ import annotations

import math

import torch

from pyfastent import _checks
from pyfastent.estimators.logdet import LogDet as _LogDet
from pyfastent.ops.logdet import spd_logdet

_MODES = {"cov": "cov", "pearson": "correlation"}


def LogDet(A, device="cuda", mode="pearson", beta=1.0):  # noqa: N802, N803 - the original's names
    """½ log det(I + β·C) of A (N, ...) flattened to (N, d), nats."""
    _checks.choice("mode", mode, ("cov", "pearson", "pos"))
    a = _checks.samples("A", _checks.as_tensor("A", A))
    a = a.reshape(a.shape[0], -1).double()
    beta = _checks.positive_number("beta", beta)
    if mode == "pos":
        ac = a - a.mean(dim=0)
        norms = torch.linalg.vector_norm(ac, dim=0)
        cosine = (ac.T @ ac) / torch.where(norms > 0, norms, torch.ones_like(norms)).outer(
            torch.where(norms > 0, norms, torch.ones_like(norms)))
        m = beta * torch.exp(cosine - 1) + torch.eye(a.shape[1], dtype=torch.float64, device=a.device)
        return 0.5 * spd_logdet(m[None], what="I + beta*exp(R - 1)")[0]
    est = _LogDet(beta=beta, mode=_MODES[mode], base=math.e)
    return torch.tensor(est.entropy(a), dtype=torch.float64)


def join(device, mode, beta=1.0, *kwargs):
    """LogDet of the column concatenation of the arrays in ``kwargs`` (the original's name for them)."""
    if not kwargs:
        raise ValueError("join needs at least one array after device, mode and beta")
    first = _checks.as_tensor("kwargs[0]", kwargs[0])
    parts = [_checks.as_tensor(f"kwargs[{i}]", k) for i, k in enumerate(kwargs)]
    for i, p in enumerate(parts):
        if p.shape[0] != first.shape[0]:
            raise ValueError(f"kwargs[{i}] has {p.shape[0]} samples but kwargs[0] has {first.shape[0]}")
    z = torch.cat([p.reshape(p.shape[0], -1).double() for p in parts], dim=1)
    return LogDet(z, device, mode, beta)


def mi(A, B, device="cuda", mode="pearson", beta=None):  # noqa: N803
    """H(A) + H(B) − H(A, B) with one β, nats; β defaults to 100·(d_A + d_B)."""
    a, b = _checks.as_tensor("A", A), _checks.as_tensor("B", B)
    if beta is None:
        beta = 100 * (a[0].numel() + b[0].numel())
    return LogDet(a, device, mode, beta) + LogDet(b, device, mode, beta) - join(device, mode, beta, a, b)
