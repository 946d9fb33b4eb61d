"""Process-wide choices as context managers, read by the rooms below the
features (as linear_operator's ``settings`` does): the memory a sweep may
hold, progress bars, the eigensolver driver, the threads run side by side
and what measures keep for the next call. ``with pf.settings.memory_budget("4GB"): ...`` applies to every call
inside the block, in this thread (and task) only; an argument a user passes
to a function (``memory_budget=``, ``progress=``) wins over the setting,
and a setting wins over the environment (``PYFASTENT_EIGENSOLVER``).
Outside every block each setting is ``None``: the library's default.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Callable

from pyfastent import _checks
from pyfastent._memory import parse_size

EIGENSOLVERS = ("torch", "numpy", "scipy-evd", "scipy-evr")  # the eigenvalues-only drivers (pyfastent.ops.eigen)


class Setting:
    """One process-wide choice: ``setting(value)`` is a context manager that
    sets it for its block, ``setting.get()`` its value now (``None``: the
    default). ``check`` validates a value and returns its normal form."""

    def __init__(self, name: str, check: Callable, doc: str):
        self.name = name
        self._check = check
        self._value = contextvars.ContextVar(f"pyfastent.settings.{name}", default=None)
        self.__doc__ = doc

    @contextlib.contextmanager
    def __call__(self, value):
        token = self._value.set(None if value is None else self._check(value))
        try:
            yield
        finally:
            self._value.reset(token)

    def get(self):
        return self._value.get()

    def __repr__(self):
        return f"pyfastent.settings.{self.name} (now {self.get()!r})"


def _progress(value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"progress must be True, False or None, got {value!r}")
    return value


def _eigensolver(value) -> str:
    if value not in EIGENSOLVERS:
        raise ValueError(f"eigensolver must be one of {EIGENSOLVERS} or None, got {value!r}")
    return value


memory_budget = Setting("memory_budget", lambda v: parse_size("memory_budget", v),
                        "The bytes (or a size such as '4GB') sweeps, trackers and captures may hold, where "
                        "memory_budget= is not passed; None: 40% of what the device has free.")
progress = Setting("progress", _progress,
                   "Progress bars on (True) or off (False) where progress= is not passed; None: only when stderr "
                   "is a terminal.")
eigensolver = Setting("eigensolver", _eigensolver,
                      "The eigenvalues-only driver every CPU spectrum uses, instead of the measured plan; None: "
                      "PYFASTENT_EIGENSOLVER, else the plan.")
def _reuse(value):
    if isinstance(value, bool):
        return value
    return parse_size("reuse", value)


reuse = Setting("reuse", _reuse,
                "Whether measures keep what they prepared for a tensor (its Gram matrix or products, its entropy) for "
                "the next call with the same, unchanged data (pyfastent.reuse): True, False, or the bytes (or a size "
                "such as '2GB') they may keep; None: on, up to pyfastent.reuse.DEFAULT_BYTES.")
threads = Setting("threads", lambda v: _checks.positive_int("threads", v),
                  "How many BLAS calls run side by side (token Gram matrices, side-by-side eigensolves, products); "
                  "None: torch's intra-op thread count.")

__all__ = ["Setting", "eigensolver", "memory_budget", "progress", "reuse", "threads"]
