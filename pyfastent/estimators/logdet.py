"""LogDet entropy: H(X) = ½ log det(I + β·C).

Zhouyin & Liu, "Understanding Neural Networks with Logarithm Determinant
Entropy Estimator" (2021).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from pyfastent import _checks
from pyfastent._memory import ensure_square_fits
from pyfastent.estimators.base import Estimator, _base_suffix
from pyfastent.ops.logdet import MODES, centred_gram, spd_logdet
from pyfastent.variable import row_codes


@dataclass(eq=False)
class Features:
    """A prepared LogDet variable: its features [N, d] in float64 (discrete
    ones one-hot). Centring (and standardization) happens inside each joint's
    construction, on load in the CUDA kernel; the N×N Gram XcXcᵀ that wide
    joints need is computed on first use and kept."""

    x: torch.Tensor
    mode: str
    _gram: torch.Tensor | None = field(default=None, repr=False)

    def gram(self) -> torch.Tensor:
        if self._gram is None:
            n, d = self.x.shape
            # The N×N Gram and the centred copy of X it is built from.
            ensure_square_fits(n, torch.float64, self.x.device, 1 + d / n, "the LogDet Gram matrix (Sylvester side)")
            self._gram = centred_gram(self.x[None], self.mode, 1.0, columns=False)[0]  # [N, N]
        return self._gram


PAPER_BETA_PER_COLUMN = 100.0


class LogDet(Estimator):
    """LogDet entropy of continuous variables.

    H(X) = ½ log det(I_d + β·C) for X in R^{N×d}, with C = XcᵀXc/N of the
    column-centred data (``mode="cov"``) or the Pearson correlation matrix
    (``mode="correlation"``). The joint entropy of several variables uses
    their concatenated columns; I(X;Y) = H(X) + H(Y) − H(X,Y) with the same β.
    By Sylvester's identity the smaller of the d×d and N×N matrices is
    factored, by Cholesky, always in float64 (the reference code's choice:
    at β = 100·d a float32 factorization is off by up to 0.38 bits).

    Args:
        beta: β > 0, or ``"paper"`` (the default): β = 100·d, d the number
            of columns of the first variable this estimator prepares (the
            input X in ``layer_sweep``, ``InformationPlane``, the command
            line, or ``mutual_information(x, ...)``), the setting of the
            paper's information planes. It is then fixed for the estimator's
            lifetime, so every quantity it computes shares one β; the repr
            and ``label`` show it. Pass a number (the paper uses 1 for
            synthetic checks) to fix it yourself.
        mode: ``"cov"`` or ``"correlation"``.
        base: logarithm base of the results (2: bits; the paper uses nats).

    Discrete variables (integer/bool, shape (N,) or (N, k)) enter as one-hot
    indicator columns. In correlation mode a constant column (all values
    equal) has no correlation with anything: it becomes a zero column and
    adds nothing.
    """

    def __init__(self, beta="paper", mode: str = "cov", base: float = 2):
        super().__init__(base)
        self.beta = None if isinstance(beta, str) and beta == "paper" else _checks.positive_number("beta", beta)
        self.mode = _checks.choice("mode", mode, MODES)

    def __repr__(self):
        beta = "'paper'" if self.beta is None else self.beta
        return f"LogDet(beta={beta}, mode={self.mode!r}, base={self.base})"

    @property
    def label(self) -> str:
        beta = "paper" if self.beta is None else f"{self.beta:g}"
        return f"logdet(b={beta},{self.mode}{_base_suffix(self.base)})"

    def resolve_beta(self, x) -> "LogDet":
        """Fix ``beta="paper"`` now, as 100 × the columns of ``x`` (e.g. the
        probe inputs), without preparing anything; a no-op when β is set.
        Returns the estimator."""
        if self.beta is None:
            t = _checks.as_tensor("x", x)
            if t.dim() < 1 or t.shape[0] < 1:
                raise ValueError(f"x must have shape (N, ...), got {tuple(t.shape)}")
            self.beta = PAPER_BETA_PER_COLUMN * (t[0].numel() if t.dim() > 1 else 1)
        return self

    def dpi_slack(self, value):
        """1e-9 relative: float64 Cholesky of I + β·C, whose eigenvalues are ≥ 1."""
        return 1e-9 * max(1.0, abs(value))

    def _prepare(self, var, obs, name):
        x = _one_hot(obs.values) if obs.discrete else obs.values.reshape(obs.n, -1)
        x = x.double()
        if self.beta is None:
            self.beta = PAPER_BETA_PER_COLUMN * x.shape[1]
        return Features(x, self.mode)

    def _permute(self, payload, index):
        index = index.to(payload.x.device)
        gram = payload._gram
        if gram is not None:
            gram = gram.index_select(0, index).index_select(1, index)
        return Features(payload.x.index_select(0, index), payload.mode, gram)

    def _joint_nats(self, payloads):
        n = payloads[0].x.shape[0]
        d = sum(p.x.shape[1] for p in payloads)
        device = payloads[0].x.device
        if d <= n:  # I + βC, its Cholesky factor, the concatenated and the centred columns
            ensure_square_fits(d, torch.float64, device, 2 + 2 * n / d, "I + beta*C")
            x = torch.cat([p.x for p in payloads], dim=1)  # [N, d]
            m = centred_gram(x[None], self.mode, self.beta / n, columns=True)[0]  # [d, d]
        else:  # [N, N], Sylvester side, from the variables' kept Gram matrices, summed in place
            grams = [p.gram() for p in payloads]
            ensure_square_fits(n, torch.float64, device, 2, "I + beta*C")  # the sum and its Cholesky factor
            m = grams[0] * (self.beta / n)
            for g in grams[1:]:
                m.add_(g, alpha=self.beta / n)
        m.diagonal().add_(1.0)
        if not _checks.all_finite(m):
            raise ValueError(f"I + beta*C overflows float64 (beta = {self.beta:g}): rescale the data or lower beta")
        return 0.5 * float(spd_logdet(m[None], what="I + beta*C")[0])


def _one_hot(values: torch.Tensor) -> torch.Tensor:
    columns = [torch.nn.functional.one_hot(row_codes(values[:, j : j + 1])) for j in range(values.shape[1])]
    return torch.cat(columns, dim=1).to(torch.float64)
