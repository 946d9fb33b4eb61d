"""``InformationPlaneCallback`` for the Hugging Face ``Trainer``."""
from __future__ import annotations

from pyfastent.integrations._imports import require
from pyfastent.integrations.callback_core import TrackedSteps

_hf = require("transformers", "transformers", "pyfastent.integrations.transformers")


class InformationPlaneCallback(_hf.TrainerCallback):
    """Tracks the information plane of the model a ``Trainer`` trains.

    After each evaluation (``on="evaluate"``) or epoch (``on="epoch"``) it
    calls ``InformationPlane.step(epoch=state.epoch)``. The Trainer's
    reporting callbacks (TensorBoard, W&B, MLflow, ...) have already run
    for that event when a later callback is called, so this one writes
    through the tracker's ``sinks=`` and appends the step to
    ``state.log_history`` (one dict of ``infoplane/<estimator>/<layer>/
    <quantity>`` keys with ``epoch`` and ``step`` = ``state.global_step``),
    which ``trainer_state.json`` keeps with each checkpoint. Probes may be
    dicts of model inputs with attention masks, as for ``InformationPlane``;
    the probe passes leave the model's mode and gradients alone.
    A measurement that fails (the probe or options wrong, too little
    memory) is a ``pyfastent.integrations.callback_core.CallbackWarning``:
    training goes on without that step.

    Args:
        x_probe, y_probe: the fixed probe set (see ``InformationPlane``).
        every: measure on every ``every``-th event.
        on: ``"evaluate"`` or ``"epoch"``.
        **options: any other ``InformationPlane`` argument (``estimators``,
            ``layers``, ``sinks``, ``log``, ``pooling``, ...).

    Attributes:
        tracker: the ``InformationPlane`` (``None`` until the first event).

    Needs ``pip install "pyfastent[transformers]"``.
    """

    def __init__(self, x_probe, y_probe=None, every: int = 1, on: str = "evaluate", **options):
        if on not in ("evaluate", "epoch"):
            raise ValueError(f"on must be 'evaluate' or 'epoch', got {on!r}")
        self.on = on
        self._steps = TrackedSteps(x_probe, y_probe, every, options)

    @property
    def tracker(self):
        return self._steps.tracker

    def _measure(self, state, model) -> None:
        values = self._steps.step(model, state.epoch)
        if values and state.is_world_process_zero:
            state.log_history.append({**values, "epoch": state.epoch, "step": state.global_step})

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        if self.on == "evaluate":
            self._measure(state, model)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if self.on == "epoch":
            self._measure(state, model)

    def on_train_end(self, args, state, control, **kwargs):
        if self.tracker is not None:
            self.tracker.close()
