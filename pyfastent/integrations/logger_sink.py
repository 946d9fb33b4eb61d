"""What the shipped sinks share: keys, the plane figure every k steps."""
from __future__ import annotations

import json

import torch

from pyfastent import _checks
from pyfastent.integrations.keys import Keys
from pyfastent.nn.similarity import SimilarityMap, measure_of_label
from pyfastent.nn.table import PlaneTable

PLANE_KEY = "infoplane/plane"  # the information-plane figure's key


class LoggerSink:
    """Base of ``TensorBoardSink``, ``WandbSink`` and ``MLflowSink``: keeps
    the rows it was given (for the figure), names them through ``Keys``,
    and draws the information plane on the 1st, (k+1)-th, … step written
    (``figure_every=k``; ``None``: never). Subclasses log."""

    def __init__(self, figure_every: int | None):
        if figure_every is not None:
            _checks.positive_int("figure_every", figure_every)
        self.figure_every = figure_every
        self.keys = Keys()
        self.table = PlaneTable()
        self._steps = 0

    def write_metadata(self, metadata: dict) -> None:
        self.table.metadata = dict(metadata)
        self._log_metadata(json.loads(json.dumps(metadata, default=str)))  # JSON-safe: numbers, strings, lists

    def write_rows(self, rows: list, step: int) -> None:
        self.table.rows.extend(rows)
        due = self.figure_every is not None and self._steps % self.figure_every == 0
        self._steps += 1
        figure = self._plane_figure() if due else None
        self._log_rows(self.keys.values(rows), figure, int(step))

    def write_matrix(self, name: str, matrix, row_labels, column_labels, step: int) -> None:
        matrix = torch.as_tensor(matrix, dtype=torch.float64)  # [L, M]
        result = SimilarityMap(matrix, list(row_labels), list(column_labels), measure_of_label(name),
                               {"label": name, "step": int(step)})
        from pyfastent.plot import similarity_figure

        self._log_matrix(self.keys.matrix(name), result, similarity_figure(result), int(step))

    def _plane_figure(self):
        """The plane so far, or ``None`` while it has no I(X;T) row (a
        transfer-entropy-only tracker) or no metadata."""
        if not self.table.metadata.get("estimators") or not self.table.values("i_xt"):
            return None
        from pyfastent.plot import information_plane_figure

        return information_plane_figure(self.table)

    def _log_metadata(self, metadata: dict) -> None:
        raise NotImplementedError

    def _log_rows(self, values: dict, figure, step: int) -> None:
        raise NotImplementedError

    def _log_matrix(self, key: str, result: SimilarityMap, figure, step: int) -> None:
        raise NotImplementedError
