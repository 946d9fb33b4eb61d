"""Warnings pyfastent raises about estimates that mean less than they seem."""
from __future__ import annotations

import os
import sys
import warnings


class SaturationWarning(UserWarning):
    """An entropy reached log(0.9·N), an effective 90% of the N samples as
    distinct states (``pyfastent.estimators.base.SATURATION``): the estimate,
    and every mutual information built from it, reflects the sample count,
    not the data (a kernel width far below the data's spread, or all samples
    distinct)."""


_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_warned_sites: set = set()


def warn_once_per_call_site(message: str, category: type) -> None:
    """``warnings.warn`` attributed to the first caller outside pyfastent, at
    most once per such call site and category for the life of the process."""
    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame = frame.f_back
    if frame is None:  # called from inside pyfastent only (e.g. the command line)
        filename, lineno, module = "pyfastent", 0, "pyfastent"
    else:
        filename, lineno, module = frame.f_code.co_filename, frame.f_lineno, frame.f_globals.get("__name__")
    if (filename, lineno, category) in _warned_sites:
        return
    _warned_sites.add((filename, lineno, category))
    warnings.warn_explicit(message, category, filename, lineno, module=module)


class HookWarning(UserWarning):
    """A hook of pyfastent on the user's model could not interpret a call
    (keyword-only inputs it cannot read, outputs of a changing shape): it
    recorded nothing for that call, and the model ran as if unhooked."""
