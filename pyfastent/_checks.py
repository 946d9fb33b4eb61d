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
    (tensors, NumPy arrays, and CuPy or other DLPack arrays are shared).

    Rejected with a ValueError naming ``name``: non-numeric arrays (strings,
    objects, datetimes), masked arrays with masked entries (the mask would
    be lost), sparse and 'meta' tensors, complex data.
    """
    if isinstance(data, torch.Tensor):
        tensor = data
    elif isinstance(data, np.ndarray):
        if data.dtype == object or data.dtype.kind in "USVMm":
            raise ValueError(f"{name} must hold numbers, got a NumPy array of dtype {data.dtype}")
        if np.ma.isMaskedArray(data):
            masked = int(np.ma.getmaskarray(data).sum())
            if masked:
                raise ValueError(f"{name} is a masked array with {masked} masked entries, whose mask would be "
                                 "ignored: drop those samples, or fill them with x.filled(value)")
            data = np.ma.getdata(data)
        tensor = torch.from_numpy(np.ascontiguousarray(data))
    elif hasattr(data, "__dlpack__"):  # CuPy and other array libraries: zero-copy
        tensor = torch.from_dlpack(data)
    else:
        try:
            tensor = torch.as_tensor(data)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{name} could not be converted to a tensor: {exc}") from None
    if tensor.layout != torch.strided:
        raise ValueError(f"{name} is a sparse tensor (layout {tensor.layout}); pass {name}.to_dense()")
    if tensor.device.type == "meta":
        raise ValueError(f"{name} is a 'meta' tensor, which has a shape but no values")
    if tensor.is_complex():
        raise ValueError(f"{name} must be real, got dtype {tensor.dtype}")
    return tensor


def samples(name: str, tensor: torch.Tensor, min_n: int = 2) -> torch.Tensor:
    """Check the sample axis (dimension 0, at least ``min_n`` samples) and
    finiteness of a variable."""
    if tensor.dim() == 0:
        raise ValueError(f"{name} must have a sample dimension (shape (N, ...)), got a scalar")
    if tensor.shape[0] < min_n:
        raise ValueError(f"{name} needs at least N = {min_n} samples, got N = {tensor.shape[0]}")
    if tensor.numel() == 0:
        raise ValueError(f"{name} has no features (shape {tuple(tensor.shape)})")
    if tensor.is_floating_point() and not all_finite(tensor):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name} contains {bad} non-finite values (NaN or inf)")
    return tensor


def all_finite(tensor: torch.Tensor) -> bool:
    """No NaN or inf, in one pass without a boolean copy (NaN propagates
    through min and max)."""
    lo, hi = torch.aminmax(tensor.detach())  # a tensor that requires grad gives plain numbers too
    return math.isfinite(float(lo)) and math.isfinite(float(hi))


def is_discrete_dtype(tensor: torch.Tensor) -> bool:
    return tensor.dtype == torch.bool or not (tensor.is_floating_point() or tensor.is_complex())


def labels(name: str, data) -> torch.Tensor:
    """Class labels: an integer or bool tensor of shape (N,) (or (N, 1)) with N ≥ 2."""
    tensor = samples(name, as_tensor(name, data))
    if not is_discrete_dtype(tensor) or tensor.dim() > 2 or (tensor.dim() == 2 and tensor.shape[1] != 1):
        raise ValueError(
            f"{name} must be integer class labels of shape (N,), got {str(tensor.dtype).replace('torch.', '')} "
            f"of shape {tuple(tensor.shape)}" + ("; cast with .long() if the values are class indices"
                                                 if tensor.is_floating_point() and tensor.dim() == 1 else "")
        )
    return tensor.reshape(-1)


def binary_series(name: str, data) -> torch.Tensor:
    """A (T, n) series of 0/1 states: bool, or integers that are all 0 or 1."""
    tensor = as_tensor(name, data)
    if tensor.dim() != 2:
        raise ValueError(f"{name} must be a (T, n) binary series, got shape {tuple(tensor.shape)}")
    if tensor.dtype != torch.bool:
        if not is_discrete_dtype(tensor) or bool(((tensor != 0) & (tensor != 1)).any()):
            raise ValueError(f"{name} must hold binary states (bool, or integers 0 and 1), got "
                             f"{str(tensor.dtype).replace('torch.', '')}; binarize it first (e.g. a.abs() >= theta)")
        tensor = tensor.bool()
    return tensor


def overflow_safe_dtype(name: str, x: torch.Tensor, centred: bool) -> torch.dtype:
    """The float dtype in which the squared distances (``centred``: they do
    not change when the data is centred) or inner products of the rows of
    ``x`` [N, D] cannot overflow: x's own (float32 for other types), float64
    when float32 would overflow; a ValueError when float64 would too."""
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    x = x.detach()  # only its magnitude is read

    def worst(data):  # ‖x_i − x_j‖² ≤ D·(2m)² and |x_i·x_j| ≤ D·m², m the largest magnitude
        lo, hi = torch.aminmax(data)
        largest = max(abs(float(lo)), abs(float(hi)))
        return x.shape[-1] * 4.0 * largest * largest

    bound = worst(x)  # one pass, no copy: enough for any data not near the limits
    if bound < torch.finfo(dtype).max / 16:
        return dtype
    if centred:  # distances do not change with the mean; centred data may be small enough
        data = x.double()
        bound = worst(data - data.mean(dim=0))
    for candidate in (dtype, torch.float64):
        if bound < torch.finfo(candidate).max / 16:
            return candidate
    lo, hi = torch.aminmax(x)
    raise ValueError(f"{name} has values so large (up to {max(abs(float(lo)), abs(float(hi))):.3g} over "
                     f"{x.shape[-1]} features) that squared distances overflow even float64; rescale the data")


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
