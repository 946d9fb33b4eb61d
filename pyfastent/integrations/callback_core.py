"""What both training-framework callbacks share: a tracker made at the first
measurement (when the framework has put the model on its device), a saved
state applied to it, and a step's rows as logger keys."""
from __future__ import annotations

import warnings

from pyfastent import _checks
from pyfastent.integrations.keys import Keys


class CallbackWarning(UserWarning):
    """A measurement failed (the tracker could not be made, or its step
    raised): training goes on without that step."""


class TrackedSteps:
    """An ``InformationPlane`` over the model a framework hands in, made on
    first use with the callback's arguments; ``state`` loaded into it then."""

    def __init__(self, x_probe, y_probe, every: int, options: dict):
        from pyfastent.nn.plane import InformationPlane

        _checks.positive_int("every", every)  # checked now: the tracker is made later, inside training
        self._make = lambda model: InformationPlane(model, x_probe, y_probe, every=every, **options)
        self.tracker = None
        self.pending_state: dict | None = None
        self.keys = Keys()

    def step(self, model, epoch) -> dict:
        """One call of the tracker's ``step``; {key: value} of the step's
        scalar rows ({} when it did not measure). Whatever goes wrong, the
        set-up included (the tracker is made here, inside the training loop),
        is a ``CallbackWarning``, never an exception in the user's loop."""
        try:
            tracker = self._tracker(model)
            before = len(tracker.rows)
            measured = tracker.step(epoch=epoch)
        except Exception as exc:
            warnings.warn(f"the information plane was not measured at epoch {epoch} ({type(exc).__name__}: "
                          f"{exc}); training goes on", CallbackWarning, stacklevel=3)
            return {}
        if not measured:
            return {}
        return self.keys.values([r for r in tracker.rows[before:] if r["quantity"] != "similarity"])

    def _tracker(self, model):
        """The tracker, made (and given the saved state) on the first call."""
        if self.tracker is None:
            if model is None:
                raise ValueError("the framework passed no model to the callback")
            self.tracker = self._make(model)
            if self.pending_state is not None:
                self.tracker.load_state_dict(self.pending_state)
                self.pending_state = None
        return self.tracker

    def state_dict(self) -> dict:
        if self.tracker is None:
            return dict(self.pending_state or {})
        return self.tracker.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        if self.tracker is None:
            self.pending_state = dict(state)
        else:
            self.tracker.load_state_dict(state)
