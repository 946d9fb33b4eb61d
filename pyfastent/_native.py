"""The one place that decides whether the native CUDA extension is usable.

``HAS_CUDA`` is computed once at import. Everything else asks this module,
never ``pyfastent._C`` directly, so a missing extension or a machine without a
GPU is a state, not an error (the "no_gpu stub" pattern).
"""
from __future__ import annotations

import importlib
import os
import warnings

import torch

_BACKEND_ENV = "PYFASTENT_BACKEND"
_BACKEND_CHOICES = ("auto", "torch", "cuda")

try:
    _C = importlib.import_module("pyfastent._C")

    _IMPORT_ERROR = None
except ImportError as exc:  # built with PYFASTENT_CUDA=OFF, or no nvcc at build time
    _C = None
    _IMPORT_ERROR = str(exc) or type(exc).__name__


def _requested_backend() -> str:
    value = os.environ.get(_BACKEND_ENV, "auto").strip().lower() or "auto"
    if value not in _BACKEND_CHOICES:
        warnings.warn(
            f"{_BACKEND_ENV}={value!r} is not one of {_BACKEND_CHOICES}; using 'auto'",
            RuntimeWarning,
            stacklevel=2,
        )
        return "auto"
    return value


REQUESTED_BACKEND = _requested_backend()
DEVICE_COUNT = _C.device_count() if _C is not None else 0
HAS_CUDA = _C is not None and DEVICE_COUNT > 0 and REQUESTED_BACKEND != "torch"

# Ops that have a hand-written CUDA kernel in this build; the others always
# run the PyTorch implementation, on whatever device the tensors live on.
CUDA_OPS: tuple[str, ...] = ()


def _reason() -> str:
    if REQUESTED_BACKEND == "torch":
        return f"forced by {_BACKEND_ENV}=torch"
    if _C is None:
        return f"native extension not built or not importable ({_IMPORT_ERROR})"
    if DEVICE_COUNT == 0:
        return "native extension present, but no CUDA device or driver is visible"
    if not CUDA_OPS:
        return "native extension and GPU present; no op has a CUDA kernel in this version"
    return "native extension and GPU present"


def backend_info() -> dict:
    """Report which implementation pyfastent uses, and why.

    Returns:
        dict with keys ``backend`` (``"cuda"`` or ``"torch"``), ``reason``,
        ``requested`` (the ``PYFASTENT_BACKEND`` value), ``extension`` (bool),
        ``extension_version``, ``cuda_runtime`` and ``cuda_driver`` (CUDA
        version strings or ``None``), ``devices`` (names of visible GPUs),
        ``cuda_ops`` (ops with a CUDA kernel), ``torch`` and ``torch_cuda``.
    """
    uses_cuda = HAS_CUDA and bool(CUDA_OPS)
    info = {
        "backend": "cuda" if uses_cuda else "torch",
        "reason": _reason(),
        "requested": REQUESTED_BACKEND,
        "extension": _C is not None,
        "extension_version": getattr(_C, "__version__", None),
        "cuda_runtime": None,
        "cuda_driver": None,
        "devices": [],
        "cuda_ops": list(CUDA_OPS),
        "torch": torch.__version__,
        "torch_cuda": torch.cuda.is_available(),
    }
    if _C is not None:
        info["cuda_runtime"] = _format_cuda_version(_C.runtime_version())
        driver = _C.driver_version()
        info["cuda_driver"] = _format_cuda_version(driver) if driver else None
        info["devices"] = [_C.device_name(i) for i in range(DEVICE_COUNT)]
    return info


def _format_cuda_version(encoded: int) -> str:
    return f"{encoded // 1000}.{(encoded % 1000) // 10}"
