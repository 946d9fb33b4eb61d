"""LogDet entropy: H(X) = ½ log det(I + β·C).

Zhouyin & Liu, "Understanding Neural Networks with Logarithm Determinant
Entropy Estimator" (2021).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch

from pyfastent import _checks
from pyfastent.estimators.base import Estimator
from pyfastent.ops._torch_logdet import logdet_spd
from pyfastent.variable import row_codes

MODES = ("cov", "correlation")


@dataclass(eq=False)
class Features:
    """A prepared LogDet variable: column-centred (and, in correlation mode,
    standardized) features [N, d]; its N×N Gram X Xᵀ is computed on first
    use by a wide joint and kept."""

    x: torch.Tensor
    _gram: torch.Tensor | None = field(default=None, repr=False)

    def gram(self) -> torch.Tensor:
        if self._gram is None:
            self._gram = self.x @ self.x.T  # [N, N]
        return self._gram


class LogDet(Estimator):
    """LogDet entropy of continuous variables.

    H(X) = ½ log det(I_d + β·C) for X in R^{N×d}, with C = XcᵀXc/N of the
    column-centred data (``mode="cov"``) or the Pearson correlation matrix
    (``mode="correlation"``). The joint entropy of several variables uses
    their concatenated columns; I(X;Y) = H(X) + H(Y) − H(X,Y) with the same β.
    By Sylvester's identity the smaller of the d×d and N×N matrices is
    factored, by Cholesky.

    Args:
        beta: β > 0. The paper uses β = 1 for synthetic checks and
            β = 100·d_input for information planes.
        mode: ``"cov"`` or ``"correlation"``.
        base: logarithm base of the results (2: bits; the paper uses nats).

    Discrete variables (integer/bool, shape (N,) or (N, k)) enter as one-hot
    indicator columns. In correlation mode a constant column has no
    correlation with anything: it is kept as a zero column and adds nothing.
    """

    def __init__(self, beta: float = 1.0, mode: str = "cov", base: float = 2):
        super().__init__(base)
        self.beta = _checks.positive_number("beta", beta)
        self.mode = _checks.choice("mode", mode, MODES)

    def __repr__(self):
        return f"LogDet(beta={self.beta}, mode={self.mode!r}, base={self.base})"

    def _prepare(self, var, obs, name):
        x = _one_hot(obs.values) if obs.discrete else obs.values.reshape(obs.n, -1)
        x = x - x.mean(dim=0, keepdim=True)
        if self.mode == "correlation":
            std = x.pow(2).mean(dim=0).sqrt()
            x = torch.where(std > 0, x / torch.where(std > 0, std, torch.ones_like(std)), torch.zeros_like(x))
        return Features(x)

    def _joint_nats(self, payloads):
        n = payloads[0].x.shape[0]
        dtype = functools.reduce(torch.promote_types, [p.x.dtype for p in payloads])
        d = sum(p.x.shape[1] for p in payloads)
        if d <= n:
            x = torch.cat([p.x.to(dtype) for p in payloads], dim=1)  # [N, d]
            m = x.T @ x  # [d, d]
        else:
            m = sum(p.gram().to(dtype) for p in payloads)  # [N, N], Sylvester side
        m = m * (self.beta / n)
        m.diagonal().add_(1.0)
        return 0.5 * logdet_spd(m, "I + beta*C")


def _one_hot(values: torch.Tensor) -> torch.Tensor:
    columns = [torch.nn.functional.one_hot(row_codes(values[:, j : j + 1])) for j in range(values.shape[1])]
    return torch.cat(columns, dim=1).to(torch.float64)
