"""Random variables as the estimators see them: N observations plus options.

A plain tensor or array of shape (N, ...) is a variable; trailing dimensions
are flattened, so a conv feature map of shape (C, H, W) is one vector of
length C·H·W (the tensor kernel of Wickstrøm et al.). Integer or bool data of
shape (N,) or (N, k) is discrete. ``Variable`` overrides these choices.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

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


@dataclass(frozen=True)
class Observations:
    """Validated samples of one variable.

    ``values`` is (N, k) int64 for discrete data, (N, D) float for continuous
    data, and (N, C, D) float when ``channels`` is set.
    """

    values: torch.Tensor
    discrete: bool

    @property
    def n(self) -> int:
        return self.values.shape[0]


def observe(var: Variable, name: str) -> Observations:
    """Convert and check ``var.data``; errors name the argument ``name``."""
    tensor = _checks.samples(name, _checks.as_tensor(name, var.data))
    return Observations(_shaped(tensor, var.channels, name), _is_discrete(tensor, var.channels))


def observe_rows(var: Variable, parts: list, name: str):
    """The samples of a variable that arrived in batches (each [b, ...], the
    same trailing shape; ``var.data`` is not read), checked as ``observe``
    checks one tensor, as ``pyfastent.ops.reduction.Rows``."""
    from pyfastent.ops.reduction import Rows

    checked = []
    for i, part in enumerate(parts):
        what = name if len(parts) == 1 else f"{name} (batch {i})"
        tensor = _checks.samples(what, _checks.as_tensor(what, part), min_n=2 if len(parts) == 1 else 1)
        checked.append(_shaped(tensor, var.channels, what))
    n = sum(t.shape[0] for t in checked)
    if n < 2:
        raise ValueError(f"{name} needs at least N = 2 samples, got N = {n}")
    return Rows(checked, name, channels=var.channels)


def _is_discrete(tensor: torch.Tensor, channels: bool) -> bool:
    return not channels and _checks.is_discrete_dtype(tensor) and tensor.dim() <= 2


def _shaped(tensor: torch.Tensor, channels: bool, name: str) -> torch.Tensor:
    """(N, C, D) float for channels, (N, k) int64 for discrete data, else (N, D) float."""
    if channels:
        if tensor.dim() < 2:
            raise ValueError(f"{name} needs shape (N, C, ...) with channels=True, got {tuple(tensor.shape)}")
        return _float(tensor).reshape(tensor.shape[0], tensor.shape[1], -1)
    if _is_discrete(tensor, channels):
        return tensor.reshape(tensor.shape[0], -1).to(torch.int64)
    return _float(tensor).reshape(tensor.shape[0], -1)


def _float(tensor: torch.Tensor) -> torch.Tensor:
    # Half precision has too few bits for distances and spectra; compute in float32.
    if tensor.dtype in (torch.float32, torch.float64):
        return tensor
    return tensor.to(torch.float32)


def require_discrete(obs: Observations, name: str) -> torch.Tensor:
    """The (N, k) int64 values of a discrete variable, else a ValueError."""
    if not obs.discrete:
        raise ValueError(
            f"{name} must be discrete labels (an integer or bool tensor of shape (N,) or (N, k)), "
            f"got floating-point data of shape {tuple(obs.values.shape)}; cast it with .long() "
            "if its values are class labels"
        )
    return obs.values


def row_codes(values: torch.Tensor) -> torch.Tensor:
    """One int64 code per distinct row of an (N, k) tensor: (N,)."""
    if values.shape[1] == 1:
        return torch.unique(values[:, 0], return_inverse=True)[1]
    return torch.unique(values, dim=0, return_inverse=True)[1]
