"""The one place that decides whether the native CUDA extension is used.

Everything else asks this module, never ``pyfastent._C`` directly, so a
missing extension or a machine without a GPU is a state, not an error (the
"no_gpu stub" pattern). Nothing here touches the CUDA driver at import: the
device count is queried on first use (a call with CUDA tensors, or
``backend_info()``), so importing pyfastent in a process that later forks
(DataLoader workers) never initializes CUDA.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import os
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

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
    # The variable only forces the fallback (DESIGN.md §2); kernels are chosen per call.
    value = os.environ.get(_BACKEND_ENV, "auto").strip().lower() or "auto"
    if value not in ("auto", "torch"):
        warnings.warn(
            f"{_BACKEND_ENV}={value!r} is not 'auto' or 'torch'; using 'auto'",
            RuntimeWarning,
            stacklevel=2,
        )
        return "auto"
    return value


REQUESTED_BACKEND = _requested_backend()

# Ops that have a hand-written CUDA kernel in this build; the others always
# run the PyTorch implementation, on whatever device the tensors live on.
CUDA_OPS: tuple[str, ...] = (
    ("gram", "batched_gram", "hadamard_normalized", "alpha2_entropies", "covariance_logdet", "spd_logdet",
     "logdet_joints")
    if _C is not None
    else ()
)


@dataclass(frozen=True)
class KernelChoice:
    """One row of the "auto" policy: ``op`` runs its CUDA kernel for the
    inputs ``applies`` accepts (a shape class, described in ``shapes``),
    because ``evidence`` (a committed GPU results file) shows the kernel
    correct and faster than the torch path there."""

    op: str
    shapes: str
    applies: Callable[[Sequence[torch.Tensor]], bool]
    evidence: str


# The kernels are compiled but no GPU run has passed yet (issue 8 part B),
# so no row exists and "auto" keeps the torch path everywhere: no number
# comes from an unvalidated kernel by default. backend="cuda" or
# use_backend("cuda") opt in. A row is added only with its results file.
AUTO_KERNELS: tuple[KernelChoice, ...] = ()


@functools.lru_cache(maxsize=None)
def device_count() -> int:
    """Visible CUDA devices (0 without the extension, a driver or a GPU).
    Queried once, on first use: this initializes the CUDA driver."""
    return _C.device_count() if _C is not None else 0


def has_cuda() -> bool:
    """Whether the CUDA kernels can run at all in this process."""
    return _C is not None and REQUESTED_BACKEND != "torch" and device_count() > 0


def _reason() -> str:
    if REQUESTED_BACKEND == "torch":
        return f"forced by {_BACKEND_ENV}=torch"
    if _C is None:
        return f"native extension not built or not importable ({_IMPORT_ERROR})"
    if device_count() == 0:
        return "native extension present, but no CUDA device or driver is visible"
    if not AUTO_KERNELS:
        return ("native extension and GPU present; no CUDA kernel has passed a GPU validation run yet, so 'auto' "
                "uses the torch path (opt in with backend='cuda' or pyfastent.use_backend('cuda'))")
    return "native extension and GPU present; 'auto' uses the kernels listed in auto_kernels"


def backend_info() -> dict:
    """The CUDA side of ``pyfastent.backend_info()``: every key it documents
    but ``eigensolver``."""
    info = {
        "backend": "cuda" if has_cuda() and AUTO_KERNELS else "torch",
        "reason": _reason(),
        "requested": REQUESTED_BACKEND,
        "extension": _C is not None,
        "extension_version": getattr(_C, "__version__", None),
        "cuda_runtime": None,
        "cuda_driver": None,
        "devices": [],
        "cuda_ops": list(CUDA_OPS),
        "auto_kernels": [{"op": k.op, "shapes": k.shapes, "evidence": k.evidence} for k in AUTO_KERNELS],
        "torch": torch.__version__,
        "torch_cuda": torch.cuda.is_available(),
    }
    if _C is not None:
        info["cuda_runtime"] = _format_cuda_version(_C.runtime_version())
        driver = _C.driver_version()
        info["cuda_driver"] = _format_cuda_version(driver) if driver else None
        info["devices"] = [_C.device_name(i) for i in range(device_count())]
    return info


def _format_cuda_version(encoded: int) -> str:
    return f"{encoded // 1000}.{(encoded % 1000) // 10}"


# The innermost use_backend() choice of the running thread or task; a
# ContextVar, so one thread's choice never leaks into another's calls.
_override: contextvars.ContextVar = contextvars.ContextVar("pyfastent_backend", default=None)


@contextlib.contextmanager
def use_backend(backend: str):
    """Within the block, ``backend="auto"`` means ``backend`` (``"torch"`` or
    ``"cuda"``), e.g. to compare both paths in one process::

        with pyfastent.use_backend("torch"):
            reference = pyfastent.mutual_information(x, t, estimator=est)

    The choice holds for the current thread (and asyncio task) only.
    """
    if backend not in _BACKEND_CHOICES:
        raise ValueError(f"backend must be one of {_BACKEND_CHOICES}, got {backend!r}")
    token = _override.set(backend)
    try:
        yield
    finally:
        _override.reset(token)


def resolve_backend(backend: str, tensors, op: str) -> str:
    """``"cuda"`` or ``"torch"`` for one call of ``op`` on ``tensors``.

    ``"auto"`` picks the CUDA kernel only when every tensor is on a CUDA
    device, none requires grad (the torch path is differentiable), the
    kernels can run (``has_cuda``) and a row of ``AUTO_KERNELS`` covers
    ``op`` at these shapes. ``"cuda"`` demands the kernel and explains why
    it cannot run; ``"torch"`` always runs the PyTorch implementation.
    """
    if backend not in _BACKEND_CHOICES:
        raise ValueError(f"backend must be one of {_BACKEND_CHOICES}, got {backend!r}")
    if backend == "auto" and _override.get() is not None:
        backend = _override.get()
    if backend == "torch":
        return "torch"
    on_gpu = all(t.is_cuda for t in tensors)
    grad = any(t.requires_grad for t in tensors)
    if backend == "cuda":
        if _C is None or device_count() == 0:
            raise ValueError(f"backend='cuda' for {op}: {_reason()}")
        if op not in CUDA_OPS:
            raise ValueError(f"backend='cuda': {op} has no CUDA kernel")
        if not on_gpu:
            raise ValueError(f"backend='cuda' for {op} needs CUDA tensors; move the inputs with .cuda()")
        if grad:
            raise ValueError(f"backend='cuda' for {op}: the inputs require grad, which only the torch path supports")
        return "cuda"
    if not on_gpu or grad or op not in CUDA_OPS or not has_cuda():
        return "torch"
    return "cuda" if any(k.op == op and k.applies(tensors) for k in AUTO_KERNELS) else "torch"
