"""``TensorBoardSink``: a tracker's steps as TensorBoard scalars and figures."""
from __future__ import annotations

import json
import os

from pyfastent.integrations._imports import require
from pyfastent.integrations.logger_sink import PLANE_KEY, LoggerSink


class TensorBoardSink(LoggerSink):
    """Logs every measured step to TensorBoard: one ``add_scalar(key, value,
    step)`` per row (one tag per measure, keys as
    ``pyfastent.integrations.keys`` makes them; not ``add_scalars``, which
    makes a run per tag), the information plane with ``add_figure`` under
    ``infoplane/plane`` every ``figure_every`` steps, a similarity map as a
    figure under ``similarity/<measure>``, and the metadata as text.

    Args:
        writer_or_log_dir: a ``torch.utils.tensorboard.SummaryWriter`` (or
            any writer with its methods; yours to close) or a directory for
            a new one (closed by ``close``).
        figure_every: draw the plane on every k-th step written (``None``: never).

    Needs ``pip install "pyfastent[tensorboard]"``.
    """

    def __init__(self, writer_or_log_dir, figure_every: int | None = 1):
        super().__init__(figure_every)
        if isinstance(writer_or_log_dir, (str, os.PathLike)):
            tb = require("torch.utils.tensorboard", "tensorboard", "TensorBoardSink")
            self.writer, self._owned = tb.SummaryWriter(log_dir=os.fspath(writer_or_log_dir)), True
        elif callable(getattr(writer_or_log_dir, "add_scalar", None)):
            self.writer, self._owned = writer_or_log_dir, False
        else:
            raise ValueError("writer_or_log_dir must be a SummaryWriter or a directory, got "
                             f"{type(writer_or_log_dir).__name__}")

    def _log_metadata(self, metadata: dict) -> None:
        # four spaces: TensorBoard renders text as Markdown, and this keeps the JSON verbatim
        text = json.dumps(metadata, indent=1, sort_keys=True)
        self.writer.add_text("infoplane/metadata", "\n".join("    " + line for line in text.splitlines()))

    def _log_rows(self, values: dict, figure, step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        if figure is not None:
            self.writer.add_figure(PLANE_KEY, figure, step)
        self.writer.flush()

    def _log_matrix(self, key: str, result, figure, step: int) -> None:
        self.writer.add_figure(key, figure, step)
        self.writer.flush()

    def close(self) -> None:
        if self._owned:
            self.writer.close()
        else:
            self.writer.flush()
