"""``InformationPlaneCallback`` for PyTorch Lightning (``lightning.pytorch``,
or the older ``pytorch_lightning`` when only it is installed: the callback
subclasses the ``Callback`` of the package your ``Trainer`` comes from)."""
from __future__ import annotations

import importlib

from pyfastent.integrations._imports import require
from pyfastent.integrations.callback_core import TrackedSteps


def _lightning():
    try:
        return importlib.import_module("lightning.pytorch")
    except ImportError:
        return require("pytorch_lightning", "lightning", "pyfastent.integrations.lightning")


pl = _lightning()


class InformationPlaneCallback(pl.Callback):
    """Tracks the information plane of the ``LightningModule`` during ``fit``.

    At the end of each validation epoch (``on="validation"``; sanity-check
    passes are skipped) or training epoch (``on="train"``) it calls
    ``InformationPlane.step(epoch=trainer.current_epoch)`` and, on rank 0,
    logs that step's measures through ``pl_module.log_dict`` under the keys
    of ``pyfastent.integrations.keys`` (``infoplane/<estimator>/<layer>/
    <quantity>``), so the logger you configured receives them. The probe
    passes run under ``no_grad`` and give every submodule its mode back, so
    neither the model's mode nor its gradients change. Its state (rows, step
    count, smoothed widths) is saved in checkpoints and restored when
    ``fit`` resumes from one.
    A measurement that fails (the probe or options wrong, too little
    memory) is a ``pyfastent.integrations.callback_core.CallbackWarning``:
    training goes on without that step.

    Args:
        x_probe, y_probe: the fixed probe set (see ``InformationPlane``).
        every: measure on every ``every``-th epoch.
        on: ``"validation"`` or ``"train"``.
        **options: any other ``InformationPlane`` argument (``estimators``,
            ``layers``, ``sinks``, ``log``, ``similarity``, ...).

    Attributes:
        tracker: the ``InformationPlane`` (``None`` until the first epoch ends).

    Needs ``pip install "pyfastent[lightning]"``.
    """

    def __init__(self, x_probe, y_probe=None, every: int = 1, on: str = "validation", **options):
        if on not in ("validation", "train"):
            raise ValueError(f"on must be 'validation' or 'train', got {on!r}")
        self.on = on
        self._steps = TrackedSteps(x_probe, y_probe, every, options)

    @property
    def tracker(self):
        return self._steps.tracker

    def _measure(self, trainer, pl_module) -> None:
        values = self._steps.step(pl_module, trainer.current_epoch)
        if values and trainer.is_global_zero:
            pl_module.log_dict(values, rank_zero_only=True)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.on == "validation" and not trainer.sanity_checking:
            self._measure(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.on == "train":
            self._measure(trainer, pl_module)

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.tracker is not None:
            self.tracker.close()

    def state_dict(self) -> dict:
        return self._steps.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self._steps.load_state_dict(state_dict)
