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
from pyfastent.ops._torch_gram import permuted
from pyfastent.ops.logdet import MODES, spd_logdet
from pyfastent.ops.reduction import Needs


# True: the N×N products of float32 rows (the Sylvester side, covariance mode) are built in float32
# from columns centred first (means accumulated in float64, subtracted before the product), then read
# in float64. Off: on the 32×32 ResNet-18 (N = 500) they differed from float64 products by up to
# 4.6e-5 relative (layer1.0.relu#2), above the 1e-5 the precision rule allows, for a sweep only 1.14x
# faster (benchmarks/results/bench_precision_cpu.md, which measures both).
FLOAT32_PRODUCTS = False


@dataclass(eq=False)
class LogDetPayload:
    """A prepared LogDet variable: what the joints it enters read of its
    (column-centred, and in correlation mode standardized) columns Z [N, d],
    float64 (discrete variables as one-hot columns):

    - ``gram``: Z·Zᵀ [N, N], for joints wider than N (Sylvester side);
    - ``covariance``: Zᵀ·Z [d, d], for joints of at most N columns;
    - ``crosses``: partner key -> Pᵀ·Z [d_p, d], the off-diagonal blocks of
      those joints with the variables it was prepared beside (``partners``);
    - ``columns``: Z itself, kept when the joints are not known in advance
      (it is at most N×N: only for d ≤ N); ``gram`` is then built from it
      when a wide joint first needs it.

    ``key`` identifies it in other variables' ``crosses``.
    """

    n: int
    width: int
    gram: torch.Tensor | None = None
    covariance: torch.Tensor | None = None
    crosses: dict = field(default_factory=dict)
    columns: torch.Tensor | None = None
    key: object = field(default_factory=object)

    def gram_matrix(self) -> torch.Tensor:
        if self.gram is None:
            if self.columns is None:
                raise RuntimeError("a LogDet variable prepared without its N×N products entered a joint wider than "
                                   "N; prepare it with partners=None or with the partners it is joined with")
            ensure_square_fits(self.n, torch.float64, self.columns.device, 1, "the LogDet Gram matrix (Sylvester side)")
            self.gram = self.columns @ self.columns.T
        return self.gram

    def block_with(self, other: "LogDetPayload") -> torch.Tensor:
        """Zᵀ·Z_other [d, d_other]: an off-diagonal block of a joint's covariance."""
        if other is self:
            return self.covariance
        if self.key in other.crosses:
            return other.crosses[self.key]
        if other.key in self.crosses:
            return self.crosses[other.key].T
        if self.columns is not None and other.columns is not None:
            return self.columns.T @ other.columns
        raise RuntimeError("two LogDet variables prepared without each other's cross-products entered one joint; "
                           "prepare them with partners=None or as each other's partners")


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

    def reuse_options(self):
        # β = None is set from the first variable prepared: until then this object's products are its own.
        return None if self.beta is None else (LogDet, float(self.beta), self.mode, float(self.base))

    @property
    def label(self) -> str:
        beta = "paper" if self.beta is None else f"{self.beta:g}"
        return f"logdet(b={beta},{self.mode}{_base_suffix(self.base)})"

    @property
    def note(self) -> str:
        beta = "β is fixed by the first variable prepared (100·d)" if self.beta is None else f"β = {self.beta:g}"
        return (f"{beta} in every term, the one-hot columns of discrete variables (labels) included, as in the "
                "paper's code (DESIGN.md 3.3): H(Y) of K classes is not log K and I(T;Y) can exceed the plug-in "
                "H(Y); compare values across layers and steps, not with other estimators")

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

    def needs(self, var, rows, partners=None):
        """Products of the centred (standardized, in correlation mode)
        columns, float64 (Z·Zᵀ of float32 rows in covariance mode: float32,
        see ``FLOAT32_PRODUCTS``): Z·Zᵀ for d > N; else Zᵀ·Z, plus the cross-products
        with the partners for the joints that stay within N columns, and
        Z·Zᵀ when one does not; with no partners given, Z itself."""
        d, n = (rows.one_hot_width() if rows.discrete else rows.width), rows.n
        base = Needs(discrete_as="one_hot" if rows.discrete else None)
        gram = torch.float32 if FLOAT32_PRODUCTS and rows.dtype == torch.float32 else torch.float64
        wide = Needs(standardized_gram=True) if self.mode == "correlation" else Needs(gram=gram)
        if d > n:
            return base | wide
        needs = base | Needs(covariance=True)
        if partners is None:
            return needs | Needs(columns=True)
        for partner in partners:
            p = partner.payload
            if d + p.width > n:
                needs |= wide
            elif p.columns is not None:
                needs |= Needs(crosses=frozenset({(p.key, p.columns)}))
            else:
                raise ValueError(f"{partner.name} was prepared without its columns; a LogDet partner needs them")
        return needs

    def _prepare(self, var, reduction, name):
        if self.beta is None:
            self.beta = PAPER_BETA_PER_COLUMN * reduction.width
        payload = LogDetPayload(reduction.n, reduction.width)
        if self.mode == "correlation":
            payload.gram = reduction.standardized_gram
            s = reduction.scale  # 1/std per column (0: constant) [d], or None for a wide variable
            if reduction.covariance is not None:
                payload.covariance = reduction.covariance * s[:, None] * s[None, :]
                payload.crosses = {k: c * s[None, :] for k, c in reduction.crosses.items()}  # partners' sides are scaled
            if reduction.columns is not None:
                payload.columns = reduction.columns * s
        else:
            gram = None if reduction.gram is None else reduction.gram.to(torch.float64)  # I + β·C in float64
            payload.gram, payload.covariance, payload.columns = gram, reduction.covariance, reduction.columns
            payload.crosses = dict(reduction.crosses)
        return payload

    def _permute(self, payload, index):
        # Zᵀ·Z does not change when the samples are reordered; products with other variables do.
        index = index.to((payload.gram if payload.gram is not None else payload.covariance).device)
        gram = permuted(payload.gram, index) if payload.gram is not None else None
        columns = payload.columns.index_select(0, index) if payload.columns is not None else None
        return LogDetPayload(payload.n, payload.width, gram, payload.covariance, {}, columns)

    def _joint_nats(self, payloads):
        n = payloads[0].n
        d = sum(p.width for p in payloads)
        device = (payloads[0].gram if payloads[0].gram is not None else payloads[0].covariance).device
        if d <= n:  # I + βC [d, d] and its Cholesky factor, from the variables' blocks
            ensure_square_fits(d, torch.float64, device, 2, "I + beta*C")
            rows = [torch.cat([a.block_with(b) for b in payloads], dim=1) for a in payloads]
            m = torch.cat(rows, dim=0).mul_(self.beta / n)  # [d, d]
        else:  # [N, N], Sylvester side, from the variables' inner products, summed in place
            grams = [p.gram_matrix() for p in payloads]
            ensure_square_fits(n, torch.float64, device, 2, "I + beta*C")  # the sum and its Cholesky factor
            m = grams[0] * (self.beta / n)
            for g in grams[1:]:
                m.add_(g, alpha=self.beta / n)
        m.diagonal().add_(1.0)
        if not _checks.all_finite(m):
            raise ValueError(f"I + beta*C overflows float64 (beta = {self.beta:g}): rescale the data or lower beta")
        return 0.5 * float(spd_logdet(m[None], what="I + beta*C")[0])
