"""Plug-in (maximum-likelihood) Shannon entropy of discrete variables."""
from __future__ import annotations

import torch

from pyfastent.estimators.base import Estimator, _base_suffix
from pyfastent.ops.reduction import Needs
from pyfastent.samples import Observations, require_discrete, row_codes


class Discrete(Estimator):
    """Plug-in Shannon entropy H = −Σ p log p of the empirical distribution.

    Variables must be integer or bool tensors of shape (N,) or (N, k) (a
    k-column variable is one discrete variable over k-tuples); the joint
    entropy counts distinct tuples across all variables. This is the
    estimator of the transfer-entropy paper (Moldovan, Cataron & Andonie),
    following JIDT's conventions.

    Args:
        base: logarithm base of the results (2: bits).
    """

    def __init__(self, base: float = 2):
        super().__init__(base)

    def __repr__(self):
        return f"Discrete(base={self.base})"

    def reuse_options(self):
        return (Discrete, float(self.base))

    @property
    def label(self) -> str:
        suffix = _base_suffix(self.base)
        return f"discrete({suffix[1:]})" if suffix else "discrete"

    def needs(self, var, rows, partners=None):
        """The code of each distinct row; the rows must be discrete."""
        require_discrete(Observations(rows.values(), rows.discrete), rows.name)
        return Needs(codes=True)

    def _prepare(self, var, reduction, name):
        return reduction.codes  # [N]

    def _saturation_advice(self, payloads):
        return ("Nearly every sample is a distinct state, so the plug-in estimate has nothing to count: "
                "use fewer or coarser variables, or more samples.")

    def _permute(self, payload, index):
        return payload.index_select(0, index.to(payload.device))

    def _joint_nats(self, payloads):
        codes = row_codes(torch.stack(payloads, dim=1)) if len(payloads) > 1 else payloads[0]
        p = torch.bincount(codes).to(torch.float64) / codes.shape[0]
        p = p[p > 0]
        return -(p * p.log()).sum()
