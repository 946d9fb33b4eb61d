"""What a tracker's ``sinks=`` are, and how the tracker calls them.

A sink is any object with

- ``write_metadata(metadata: dict)``: the plane's metadata, once, when the
  tracker is made;
- ``write_rows(rows: list, step: int)``: after every measured step, that
  step's rows (dicts with ``step``, ``epoch``, ``layer``, ``estimator``,
  ``quantity``, ``value`` and the step's metrics), every row but the cells
  of a similarity map;
- ``write_matrix(name, matrix, row_labels, column_labels, step)``: a
  layer × layer similarity map (``matrix`` a [L, M] float64 tensor, row i
  the layer ``row_labels[i]``), on the steps that measure one;
- optionally ``close()``, called by ``InformationPlane.close``.

The tracker's JSONL log and table stay the source of truth: a step is on
disk before any sink sees it, and a sink that raises is warned about once
(``SinkWarning``) and never stops the training loop.
"""
from __future__ import annotations

import warnings

METHODS = ("write_metadata", "write_rows", "write_matrix")


class SinkWarning(UserWarning):
    """A sink raised: the step is in the tracker's table and log, not (or
    not all of it) in that sink's logger."""


def check_sinks(sinks) -> tuple:
    """The ``sinks=`` argument as a tuple, each checked for the methods."""
    if sinks is None:
        return ()
    if not isinstance(sinks, (list, tuple)):
        raise ValueError(f"sinks must be a list of sinks, got {type(sinks).__name__}")
    for sink in sinks:
        missing = [m for m in METHODS if not callable(getattr(sink, m, None))]
        if missing:
            raise ValueError(f"sinks: {type(sink).__name__} has no {', '.join(missing)} "
                             "(see pyfastent.nn.sinks)")
    return tuple(sinks)


class Fanout:
    """Calls every sink, warning once per sink that raises."""

    def __init__(self, sinks: tuple):
        self.sinks = sinks
        self._failed: set = set()  # ids of the sinks already warned about

    def call(self, method: str, *args) -> None:
        for sink in self.sinks:
            fn = getattr(sink, method, None)
            if fn is None:
                continue  # close() is optional
            try:
                fn(*args)
            except Exception as exc:  # a logger must never stop training
                if id(sink) not in self._failed:
                    self._failed.add(id(sink))
                    warnings.warn(f"{type(sink).__name__}.{method} failed ({type(exc).__name__}: {exc}); the "
                                  "tracker goes on and keeps every step in its table and log; later failures "
                                  "of this sink are not reported", SinkWarning, stacklevel=3)
