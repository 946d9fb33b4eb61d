"""The one place that decides whether the native CUDA extension is usable.

``HAS_CUDA`` is computed once at import. Everything else asks this module,
never ``pyfastent._C`` directly, so a missing extension or a machine without a
GPU is a state, not an error (the "no_gpu stub" pattern).
"""
from __future__ import annotations

import contextlib
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

# The CUDA kernels have been compiled but not yet run on a GPU (issues 4 and
# 5). Until a GPU run of tests/test_cuda_kernels.py passes and its results
# are committed, "auto" keeps the torch path, so no user gets numbers from an
# unvalidated kernel by default; backend="cuda" or use_backend("cuda") opt in.
AUTO_USES_KERNELS = False
DEVICE_COUNT = _C.device_count() if _C is not None else 0
HAS_CUDA = _C is not None and DEVICE_COUNT > 0 and REQUESTED_BACKEND != "torch"

# Ops that have a hand-written CUDA kernel in this build; the others always
# run the PyTorch implementation, on whatever device the tensors live on.
CUDA_OPS: tuple[str, ...] = (
    ("gram", "batched_gram", "hadamard_normalized", "alpha2_entropies", "covariance_logdet", "spd_logdet",
     "logdet_joints")
    if _C is not None
    else ()
)


def _reason() -> str:
    if REQUESTED_BACKEND == "torch":
        return f"forced by {_BACKEND_ENV}=torch"
    if _C is None:
        return f"native extension not built or not importable ({_IMPORT_ERROR})"
    if DEVICE_COUNT == 0:
        return "native extension present, but no CUDA device or driver is visible"
    if not AUTO_USES_KERNELS:
        return ("native extension and GPU present; the CUDA kernels are not yet validated on a GPU, so 'auto' "
                "uses the torch path (opt in with backend='cuda' or pyfastent.use_backend('cuda'))")
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
    uses_cuda = HAS_CUDA and bool(CUDA_OPS) and AUTO_USES_KERNELS
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


_override: list = []  # innermost use_backend() choice last


@contextlib.contextmanager
def use_backend(backend: str):
    """Within the block, ``backend="auto"`` means ``backend`` (``"torch"`` or
    ``"cuda"``), e.g. to compare both paths in one process::

        with pyfastent.use_backend("torch"):
            reference = pyfastent.mutual_information(x, t, estimator=est)
    """
    if backend not in _BACKEND_CHOICES:
        raise ValueError(f"backend must be one of {_BACKEND_CHOICES}, got {backend!r}")
    _override.append(backend)
    try:
        yield
    finally:
        _override.pop()


def resolve_backend(backend: str, tensors, op: str) -> str:
    """``"cuda"`` or ``"torch"`` for one call of ``op`` on ``tensors``.

    ``"auto"`` picks the CUDA kernel when the kernels are validated
    (``AUTO_USES_KERNELS``), the extension and a GPU are present,
    ``PYFASTENT_BACKEND`` does not force torch, ``op`` has a kernel, every
    tensor is on a CUDA device and none requires grad (the torch path is
    differentiable). ``"cuda"`` demands the kernel and explains why it
    cannot run; ``"torch"`` always runs the PyTorch implementation.
    """
    if backend not in _BACKEND_CHOICES:
        raise ValueError(f"backend must be one of {_BACKEND_CHOICES}, got {backend!r}")
    if backend == "auto" and _override:
        backend = _override[-1]
    if backend == "torch":
        return "torch"
    on_gpu = all(t.is_cuda for t in tensors)
    grad = any(t.requires_grad for t in tensors)
    if backend == "cuda":
        if _C is None or DEVICE_COUNT == 0:
            raise ValueError(f"backend='cuda' for {op}: {_reason()}")
        if op not in CUDA_OPS:
            raise ValueError(f"backend='cuda': {op} has no CUDA kernel")
        if not on_gpu:
            raise ValueError(f"backend='cuda' for {op} needs CUDA tensors; move the inputs with .cuda()")
        if grad:
            raise ValueError(f"backend='cuda' for {op}: the inputs require grad, which only the torch path supports")
        return "cuda"
    use_cuda = AUTO_USES_KERNELS and HAS_CUDA and op in CUDA_OPS and on_gpu and not grad
    return "cuda" if use_cuda else "torch"
