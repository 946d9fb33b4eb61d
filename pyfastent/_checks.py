"""Argument checks shared by every public function.

Each raises ``ValueError`` whose message starts with the argument's name, so
a user sees which input was wrong and what it held (DESIGN.md section 4).
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch


def positive_number(name: str, value) -> float:
    """``value`` as a float, rejecting bools, non-numbers, NaN, inf and ``<= 0``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def log_base(base) -> float:
    """Natural log of ``base``, the divisor that turns nats into ``base`` units."""
    base = positive_number("base", base)
    if base == 1.0:
        raise ValueError("base must be positive and not 1 (2 for bits, math.e for nats), got 1")
    return math.log(base)


def choice(name: str, value, options) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return value


def as_tensor(name: str, data) -> torch.Tensor:
    """Convert array-likes to a tensor without copying where possible
    (tensors, NumPy arrays, and CuPy or other DLPack arrays are shared)."""
    if isinstance(data, torch.Tensor):
        tensor = data
    elif isinstance(data, np.ndarray):
        if data.dtype == object or data.dtype.kind in "USV":
            raise ValueError(f"{name} must hold numbers, got a NumPy array of dtype {data.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(data))
    elif hasattr(data, "__dlpack__"):  # CuPy and other array libraries: zero-copy
        tensor = torch.from_dlpack(data)
    else:
        try:
            tensor = torch.as_tensor(data)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{name} could not be converted to a tensor: {exc}") from None
    if tensor.is_complex():
        raise ValueError(f"{name} must be real, got dtype {tensor.dtype}")
    return tensor


def samples(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Check the sample axis (dimension 0) and finiteness of a variable."""
    if tensor.dim() == 0:
        raise ValueError(f"{name} must have a sample dimension (shape (N, ...)), got a scalar")
    if tensor.shape[0] < 2:
        raise ValueError(f"{name} needs at least N = 2 samples, got N = {tensor.shape[0]}")
    if tensor.numel() == 0:
        raise ValueError(f"{name} has no features (shape {tuple(tensor.shape)})")
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name} contains {bad} non-finite values (NaN or inf)")
    return tensor


def is_discrete_dtype(tensor: torch.Tensor) -> bool:
    return tensor.dtype == torch.bool or not (tensor.is_floating_point() or tensor.is_complex())


def alpha_order(alpha) -> float:
    """The Rényi order α: a positive finite number (α = 1 is the Shannon limit)."""
    return positive_number("alpha", alpha)


def same_sample_count(named_counts) -> None:
    """``named_counts``: (name, N) pairs; all N must be equal."""
    named_counts = list(named_counts)
    first_name, first_n = named_counts[0]
    for name, n in named_counts[1:]:
        if n != first_n:
            raise ValueError(f"{name} has {n} samples but {first_name} has {first_n}; all variables need the same N")
