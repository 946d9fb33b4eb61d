"""The one place that turns the tracker's names into logger keys.

A row of layer ``conv1#2``, estimator ``renyi(a=1.01,knn10)`` and quantity
``i_xt`` is logged as ``infoplane/renyi_a_1.01_knn10/conv1_2/i_xt``; a layer
similarity map ``cka(linear)`` as ``similarity/cka_linear``. The rule, the
same for every logger (so one run reads alike in TensorBoard, W&B and
MLflow): each part keeps letters, digits, ``_``, ``-`` and ``.``; every run
of other characters becomes one ``_``, and ``_`` at either end is dropped
(an empty part, or one of only dots, becomes ``_``). This is MLflow's rule
for metric names (``[/\\w.\\- :]``, no empty path segment, no ``.``/``..``),
the strictest of the three, less the space and colon. Two names that meet
in one key (``conv1#2`` and ``conv1_2``) are told apart: the one seen
later gets the suffix ``_2`` (then ``_3``, …), so no logged value
overwrites another's.
"""
from __future__ import annotations

import re

_OUTSIDE = re.compile(r"[^\w.\-]+", re.ASCII)


def key_part(name) -> str:
    """One path segment of a logger key (see the module's rule)."""
    part = _OUTSIDE.sub("_", str(name)).strip("_")
    return part if part.strip(".") else "_"


class Keys:
    """Logger keys of one sink: ``Keys().row(row)`` →
    ``infoplane/<estimator>/<layer>/<quantity>``; the same name always maps
    to the same key, and different names never do."""

    def __init__(self):
        self._of: dict = {}  # the name parts -> their key
        self._taken: set = set()

    def _unique(self, parts: tuple) -> str:
        key = self._of.get(parts)
        if key is None:
            base = "/".join(key_part(p) for p in parts)
            key, n = base, 1
            while key in self._taken:
                n += 1
                key = f"{base}_{n}"
            self._of[parts] = key
            self._taken.add(key)
        return key

    def row(self, row: dict) -> str:
        """The key of a tracker row (its ``estimator``, ``layer`` and ``quantity``)."""
        return self._unique(("infoplane", row["estimator"], row["layer"], row["quantity"]))

    def matrix(self, name: str) -> str:
        """The key of a matrix (a layer similarity map) named ``name``."""
        return self._unique(("similarity", name))

    def values(self, rows: list) -> dict:
        """{key: value} of a step's rows."""
        return {self.row(r): float(r["value"]) for r in rows}
