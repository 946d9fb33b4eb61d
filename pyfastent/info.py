"""What pyfastent computes with on this machine: the CUDA backend's state
(``pyfastent._native``) and the eigensolver plan (``pyfastent.ops.eigen``)."""
from __future__ import annotations

from pyfastent import _native
from pyfastent.ops import eigen


def backend_info() -> dict:
    """Report which implementations pyfastent uses, and why.

    Returns:
        dict with keys ``backend`` (``"cuda"`` when "auto" runs some kernel,
        else ``"torch"``), ``reason``, ``requested`` (the
        ``PYFASTENT_BACKEND`` value), ``extension`` (bool),
        ``extension_version``, ``cuda_runtime`` and ``cuda_driver`` (CUDA
        version strings or ``None``), ``devices`` (names of visible GPUs),
        ``cuda_ops`` (ops with a CUDA kernel), ``auto_kernels`` (the "auto"
        policy: op, shape class and the results file behind each row),
        ``torch``, ``torch_cuda``, and ``eigensolver``: the plan of
        eigenvalue drivers (its ``source``: forced, loaded from the cache
        file or measured here; the driver per size class with the median
        seconds per matrix behind it; the classes still being measured).
    """
    return {**_native.backend_info(), "eigensolver": eigen.PLAN.describe()}
