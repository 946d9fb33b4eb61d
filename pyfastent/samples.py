"""Samples of one variable as estimators read them, checked: ``Observations``
(one validated tensor) and ``Rows`` (samples that arrived in batches,
concatenated a block of columns at a time), with the discrete helpers. The
lowest floor of the package's data model: it imports only ``_checks``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pyfastent import _checks


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


def observe(var, name: str) -> Observations:
    """Convert and check ``var.data`` of a ``pyfastent.Variable`` (read as
    ``var.channels`` says); errors name the argument ``name``."""
    return observe_tensor(var.data, name, var.channels)


def observe_tensor(data, name: str, channels: bool = False) -> Observations:
    """Convert and check samples (N, ...); errors name the argument ``name``."""
    tensor = _checks.samples(name, _checks.as_tensor(name, data))
    return Observations(_shaped(tensor, channels, name), _is_discrete(tensor, channels))


def observe_rows(var, parts: list, name: str) -> "Rows":
    """The samples of a variable that arrived in batches (each [b, ...], the
    same trailing shape; ``var.data`` is not read), checked as ``observe``
    checks one tensor."""
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


class Rows:
    """The N samples of one variable, as one tensor or as the mini-batches
    they arrived in (each [b, ...], the same trailing shape), concatenated
    only a block of columns at a time.

    Args:
        parts: the batches, in sample order.
        name: the variable's name, for errors.
        channels: read axis 1 as C channels (per-channel products).
    """

    def __init__(self, parts, name: str = "x", channels: bool = False):
        parts = list(parts)
        if not parts:
            raise ValueError(f"{name} has no samples")
        shape = tuple(parts[0].shape[1:])
        for p in parts:
            if tuple(p.shape[1:]) != shape:
                raise ValueError(f"{name}: a batch has samples of shape {tuple(p.shape[1:])}, another {shape}")
        if channels and len(shape) < 1:
            raise ValueError(f"{name} needs shape (N, C, ...) with channels=True, got (N,)")
        self.parts = parts
        self.name = name
        self.shape = shape
        self.n = sum(p.shape[0] for p in parts)
        self.channels = shape[0] if channels else None
        self.discrete = _checks.is_discrete_dtype(parts[0])
        self.dtype = parts[0].dtype
        self.device = parts[0].device
        self.width = int(np.prod(shape, dtype=np.int64)) if shape else 1

    def one_hot_width(self) -> int:
        """Columns of the indicator (one-hot) form of discrete rows: the
        number of distinct values in each column, summed."""
        values = self.values()
        return sum(int(torch.unique(values[:, j]).numel()) for j in range(values.shape[1]))

    def values(self) -> torch.Tensor:
        """All rows as one [N, width] tensor (a view when there is one part)."""
        flat = [p.reshape(p.shape[0], -1) for p in self.parts]
        return flat[0] if len(flat) == 1 else torch.cat(flat)

    def block(self, start: int, stop: int) -> torch.Tensor:
        """Columns start:stop of all rows, [N, stop − start], concatenated."""
        pieces = [p.reshape(p.shape[0], -1)[:, start:stop] for p in self.parts]
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)
