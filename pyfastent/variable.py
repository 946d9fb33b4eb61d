"""Random variables as the estimators see them: N observations plus options.

A plain tensor or array of shape (N, ...) is a variable; trailing dimensions
are flattened, so a conv feature map of shape (C, H, W) is one vector of
length C·H·W (the tensor kernel of Wickstrøm et al.). Integer or bool data of
shape (N,) or (N, k) is discrete. ``Variable`` overrides these choices; how
its samples are checked is ``pyfastent.samples``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from pyfastent import _checks
from pyfastent.widths import as_width_rule

KERNELS = ("rbf", "linear", "delta")


@dataclass(frozen=True)
class Variable:
    """A variable with per-variable estimator options.

    Args:
        data: tensor, NumPy array or anything ``torch.as_tensor`` takes, of
            shape (N, ...): N samples on axis 0.
        kernel: ``"rbf"``, ``"linear"`` or ``"delta"`` (1 where two samples
            are equal, else 0). ``None`` keeps the automatic choice: delta for
            discrete data, the estimator's kernel otherwise. Used by ``Renyi``.
        sigma: RBF width for this variable: a number or a rule (see
            ``pyfastent.widths``); ``None`` keeps the estimator's rule.
        channels: treat axis 1 as C separate variables (the feature maps of a
            conv layer) whose joint entropy is this variable's entropy, by the
            Hadamard product of their Gram matrices (Yu et al., TNNLS 2020).
            Each channel gets its own width from the rule.
    """

    data: object
    kernel: str | None = None
    sigma: object = None
    channels: bool = False

    def __post_init__(self):
        if self.kernel is not None:
            _checks.choice("kernel", self.kernel, KERNELS)
        if self.sigma is not None:
            object.__setattr__(self, "sigma", as_width_rule(self.sigma))
        if not isinstance(self.channels, bool):
            raise ValueError(f"channels must be True or False, got {self.channels!r}")
        if self.channels and self.kernel not in (None, "rbf"):
            raise ValueError(f"kernel must be 'rbf' when channels=True, got {self.kernel!r}")

    def with_data(self, data) -> "Variable":
        """The same options applied to other observations."""
        return replace(self, data=data)


def as_variable(x) -> Variable:
    return x if isinstance(x, Variable) else Variable(x)
