"""Which threads compute on which cores: torch's OpenMP pool, and the BLAS
pools of the libraries NumPy and SciPy load (OpenBLAS, usually).

An OpenBLAS call with several threads leaves its workers spinning for a
while after it returns; torch work started then runs several times slower
(``benchmarks/results/bench_eigensolvers_cpu.md``). So pyfastent never calls a
multi-threaded BLAS from NumPy or SciPy: inside ``side_by_side`` those libraries run one thread per call, and the work is
spread over a few Python threads instead (NumPy and SciPy release the GIL),
which spin for nothing once they are done. Thread limits are process-wide,
so only the ops layer sets them, for the duration of a block, and restores
them on exit, exceptions included.
"""
from __future__ import annotations

import contextlib
import ctypes
import sys
from concurrent.futures import ThreadPoolExecutor

import torch
from threadpoolctl import ThreadpoolController

from pyfastent import settings

_controller = None  # threadpoolctl's view of the loaded libraries, rebuilt when modules are imported
_modules_seen = 0


def _blas_controller():
    global _controller, _modules_seen
    if _controller is None or len(sys.modules) != _modules_seen:
        _controller, _modules_seen = ThreadpoolController(), len(sys.modules)
    return _controller


def workers() -> int:
    """How many calls run side by side: ``pyfastent.settings.threads``, else
    torch's intra-op thread count, so pyfastent uses the cores torch was
    told to use."""
    return settings.threads.get() or max(1, torch.get_num_threads())


@contextlib.contextmanager
def side_by_side(count: int | None = None):
    """Within the block, the BLAS libraries loaded by NumPy and SciPy use one
    thread per call; yields a ``ThreadPoolExecutor`` of ``count`` threads
    (default ``workers()``) to run such calls side by side. The limits in
    force before are restored on exit."""
    count = workers() if count is None else count
    try:
        with _blas_controller().limit(limits=1, user_api="blas"), ThreadPoolExecutor(count) as pool:
            yield pool
    finally:
        release_freed_memory()


def release_freed_memory() -> None:
    """Give the heap memory freed so far back to the system. glibc raises
    its mmap threshold once large blocks are freed, so later blocks of up
    to 32 MB come from the heaps and stay resident after they are freed:
    without this, thousands of side-by-side solves grow the process by
    gigabytes (``benchmarks/results/bench_similarity_cpu.md``), and a
    sweep's next pass finds the last pass's freed rows still resident."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc():
    """glibc, for ``malloc_trim``; ``None`` elsewhere (macOS, musl, Windows)."""
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _glibc()
