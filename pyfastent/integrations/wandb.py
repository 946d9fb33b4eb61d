"""``WandbSink``: a tracker's steps in a Weights & Biases run."""
from __future__ import annotations

import io

from pyfastent.integrations._imports import require
from pyfastent.integrations.logger_sink import PLANE_KEY, LoggerSink


class WandbSink(LoggerSink):
    """Logs every measured step to a W&B run: ``run.log({key: value, ...},
    step=step)`` (keys as ``pyfastent.integrations.keys`` makes them), and
    every ``figure_every`` steps the information plane as a ``wandb.Image``
    under ``infoplane/plane`` with a ``wandb.Table`` of the rows so far under
    ``infoplane/rows``; a similarity map as a table and an image under
    ``similarity/<measure>``; the metadata in ``run.config["pyfastent"]``.

    W&B keeps one step counter per run and drops values logged below it: if
    your own ``run.log`` calls count batches while the tracker counts its
    steps, pass ``step_metric="infoplane/step"`` to log the tracker's step as
    that metric (W&B's ``define_metric``) instead of as ``step=``.

    Args:
        run: a ``wandb`` run; ``None``: the active one (``wandb.run``).
        figure_every: draw the plane on every k-th step written (``None``: never).
        step_metric: see above.

    Needs ``pip install "pyfastent[wandb]"``.
    """

    def __init__(self, run=None, figure_every: int | None = 1, step_metric: str | None = None):
        super().__init__(figure_every)
        self._wandb = require("wandb", "wandb", "WandbSink")
        self.run = run if run is not None else self._wandb.run
        if self.run is None:
            raise ValueError("run: no active W&B run; call wandb.init(...) first or pass run=")
        self.step_metric = step_metric
        if step_metric is not None:
            self.run.define_metric(step_metric)
            for prefix in ("infoplane/*", "similarity/*"):
                self.run.define_metric(prefix, step_metric=step_metric)

    def _image(self, figure):
        """``wandb.Image`` of a figure, drawn here (W&B's own conversion
        reaches for ``matplotlib.pyplot``, which a headless run need not load)."""
        from PIL import Image

        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        buffer.seek(0)
        return self._wandb.Image(Image.open(buffer))

    def _log(self, values: dict, step: int) -> None:
        if self.step_metric is None:
            self.run.log(values, step=step)
        else:
            self.run.log({self.step_metric: step, **values})

    def _log_metadata(self, metadata: dict) -> None:
        self.run.config.update({"pyfastent": metadata}, allow_val_change=True)

    def _log_rows(self, values: dict, figure, step: int) -> None:
        if figure is not None:
            values = {**values, PLANE_KEY: self._image(figure), "infoplane/rows": self._rows_table()}
        self._log(values, step)

    def _rows_table(self):
        """The rows so far, in the table's columns (the step's metrics included)."""
        columns = self.table.columns
        return self._wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in self.table.rows])

    def _log_matrix(self, key: str, result, figure, step: int) -> None:
        data = [[a, *map(float, result.matrix[i].tolist())] for i, a in enumerate(result.layers)]
        table = self._wandb.Table(columns=["layer", *result.other_layers], data=data)
        self._log({key: table, f"{key}/heatmap": self._image(figure)}, step)
