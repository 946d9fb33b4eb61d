"""``MLflowSink``: a tracker's steps in an MLflow run."""
from __future__ import annotations

from pyfastent.integrations._imports import require
from pyfastent.integrations.logger_sink import PLANE_KEY, LoggerSink


class MLflowSink(LoggerSink):
    """Logs every measured step to an MLflow run: ``mlflow.log_metrics(
    {key: value, ...}, step=step)``, keys as ``pyfastent.integrations.keys``
    makes them (MLflow refuses names outside ``[/\\w.\\- :]``, so a layer
    ``conv1#2`` or an estimator ``renyi(a=1.01,knn10)`` is renamed there);
    every ``figure_every`` steps the information plane as the artifact
    ``infoplane/plane_step<step>.png``; a similarity map as
    ``similarity/<measure>/step<step>.json`` and ``.png``; the metadata as
    ``infoplane/metadata.json``.

    Args:
        run: an MLflow run (``mlflow.start_run()``'s) or a run id; ``None``:
            the active run.
        figure_every: draw the plane on every k-th step written (``None``: never).

    Needs ``pip install "pyfastent[mlflow]"``.
    """

    def __init__(self, run=None, figure_every: int | None = 1):
        super().__init__(figure_every)
        self._mlflow = require("mlflow", "mlflow", "MLflowSink")
        run = run if run is not None else self._mlflow.active_run()
        if run is None:
            raise ValueError("run: no active MLflow run; call mlflow.start_run() first or pass run=")
        self.run_id = run if isinstance(run, str) else run.info.run_id
        self._client = self._mlflow.MlflowClient()

    def _log_metadata(self, metadata: dict) -> None:
        self._client.log_dict(self.run_id, metadata, "infoplane/metadata.json")

    def _log_rows(self, values: dict, figure, step: int) -> None:
        self._mlflow.log_metrics(values, step=step, run_id=self.run_id)
        if figure is not None:
            self._client.log_figure(self.run_id, figure, f"{PLANE_KEY}_step{step:06d}.png")

    def _log_matrix(self, key: str, result, figure, step: int) -> None:
        cells = {"rows": result.layers, "columns": result.other_layers, "matrix": result.matrix.tolist()}
        self._client.log_dict(self.run_id, cells, f"{key}/step{step:06d}.json")
        self._client.log_figure(self.run_id, figure, f"{key}/step{step:06d}.png")
