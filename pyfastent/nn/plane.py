"""Information-plane tracking during training (DESIGN.md 3.6)."""
from __future__ import annotations

import json
import numbers
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from pyfastent import _checks, distributed
from pyfastent._version import __version__
from pyfastent.estimate import Estimate
from pyfastent.estimators import Discrete, LogDet, Renyi
from pyfastent.nn.sinks import Fanout, check_sinks
from pyfastent.nn.hooks import select_layers
from pyfastent.nn.inputs import Probe
from pyfastent.nn.sequence import block_layers, point_descriptions, resolve_pooling
from pyfastent.nn.similarity import LayerSimilarity, map_of_step
from pyfastent.nn.measure import measure_layers
from pyfastent.nn.variables import choose_x, default_estimators, layer_variable, x_for_defaults
from pyfastent.nn.table import PlaneTable, StepLog, metric_values, run_differences
from pyfastent.nn.training_hooks import TrainingRecorder
from pyfastent.nn.transfer import TE_ESTIMATOR, LayerTE, TrainingSeries, layer_te_values
from pyfastent.variable import Variable
from pyfastent.widths import Smoothed

class InformationPlane:
    """Tracks H(T), I(X;T) and I(T;Y) of every layer over training.

    Call ``step()`` from any training loop (once per epoch, or per batch);
    every ``every``-th call measures the probe batch with each estimator, in
    eval mode under ``no_grad`` (the model's mode is restored), and appends
    to ``table``, a ``PlaneTable`` with the quantities ``h_t``, ``i_xt``,
    ``i_ty`` and, for Rényi estimators on non-channel layers, ``sigma``.

    With ``transfer_entropy`` set, forward hooks record the binarized
    outputs of the input and every layer for the training samples as they
    are fed (``model.training`` true), and each measured step adds, per
    layer T: ``te_in_mean``/``te_in_sum``/``te_in_pairs`` (TE from the
    previous layer, or the input, into T over sampled neuron pairs) and the
    TE information plane ``te_x`` = mean TE(X → T) and ``te_y`` = mean
    TE(T → Ŷ), Ŷ the network output (the last layer). This is the TE plane
    variant of this library: the same axes as I(X;T), I(T;Y), with the
    network output standing for Y.

    Under ``torch.distributed`` (a DDP-wrapped model is fine), every rank
    must call ``step``: the (layer, estimator) pairs are split across the
    ranks and every rank's table gets all rows (``pyfastent.distributed``).
    Transfer entropy is measured on rank 0's training samples; the log and
    ``save`` are written by rank 0 only.

    Args:
        model: the network.
        x_probe: fixed probe inputs: a tensor or array (N, ...), a dict of
            them (keyword inputs), or a re-iterable, unshuffled loader of
            batches (tensors, dicts or ``(inputs, labels)`` pairs); see
            ``pyfastent.nn.inputs``.
        y_probe: (N,) integer probe labels; ``None`` when the batches are
            ``(inputs, labels)`` pairs.
        estimators: default ``default_estimators(x_probe)``: ``Renyi()`` and
            ``LogDet`` with β = 100·d_input, the LogDet paper's
            information-plane β. An empty sequence tracks transfer entropy
            only (``transfer_entropy`` must then be set).
        layers: which layers (see ``pyfastent.nn.hooks.select_layers``).
        every: measure on every ``every``-th call of ``step``.
        channels: conv maps per channel (Hadamard) instead of tensor kernel.
        sigma_smoothing: momentum m of σ_t = m·σ_{t−1} + (1−m)·σ*_t per
            layer for Rényi widths, per measured step; ``None`` for no
            smoothing. Wickstrøm et al.'s 0.9 is per training iteration:
            measuring every n iterations, pass 0.9**n (a per-epoch 0.9
            trails layers whose distances grow, and H(T) saturates).
        transfer_entropy: a ``LayerTE`` (or ``True`` for the defaults).
        similarity: a ``LayerSimilarity``: a layer × layer similarity map of
            the tracked layers every ``similarity.every``-th measured step,
            logged as rows (``similarity_map`` reads one back).
        log: a ``.jsonl`` path: every measured step is appended to it (one
            line, flushed and fsync'd) as soon as it is measured, so a crash
            loses at most the step in flight. ``InformationPlane.load`` reads it.
        resume: continue an existing ``log`` (written by the same settings)
            instead of refusing to touch it: its rows are loaded, step
            numbers and smoothed widths continue from its last step.
        sinks: loggers that receive the metadata once and every measured
            step's rows after it is in the table and log (and similarity maps
            through ``write_matrix``): ``TensorBoardSink``, ``WandbSink``,
            ``MLflowSink`` of ``pyfastent.integrations``, or any object with
            their methods (``pyfastent.nn.sinks``). A sink that
            raises warns once and never stops the step. Rank 0 only writes.
        progress: a progress bar per measured step (``None``: only when
            stderr is a terminal).
        method: the default Rényi estimator's ``method`` (``"auto"``,
            ``"exact"``, ``"lanczos"``); give your own estimators their own.
            Randomized estimates add ``<quantity>_se`` rows (standard errors).
        batch_size, memory_budget: how the probe streams through the model
            at each step (see ``layer_sweep``).
        train_mode: measure in the model's own mode instead of eval mode
            (batch norm then uses each batch's statistics).
        pooling, x_variable: a transformer's token pooling and the
            variable X when it is not the inputs (see ``layer_sweep``).

    Each step runs the model in eval mode (unless ``train_mode``) and gives
    every submodule its own mode back afterwards, so a frozen batch norm in
    a training model stays frozen. ``passes`` holds, per measured step, how
    the probe streamed: ``probe_passes``, ``passes_reason`` and
    ``sliced_layers`` as in ``layer_sweep``'s metadata.
    """

    def __init__(self, model: nn.Module, x_probe, y_probe=None, estimators=None, layers=None, every: int = 1,
                 channels: bool = False, sigma_smoothing: float | None = None, transfer_entropy=None,
                 log=None, resume: bool = False, progress: bool | None = None, method: str | None = None,
                 batch_size: int | None = None, memory_budget=None, train_mode: bool = False,
                 pooling: str = "auto", x_variable=None, similarity=None, sinks=None):
        self.model = model
        self._probe = Probe(x_probe, y_probe, batch_size, name="x_probe", label_name="y_probe")
        self.x_probe, self.y_probe = x_probe, _probe_labels(self._probe)
        self.batch_size, self.memory_budget, self.train_mode = batch_size, memory_budget, train_mode
        if method is not None and estimators is not None:
            raise ValueError("method sets the default Rényi estimator's method; with estimators given, "
                             "pass Renyi(method=...) among them")
        self.pooling, self.x_variable = pooling, x_variable
        self._net = net = distributed.unwrap(model)  # hooks and layer names are the wrapped module's
        first = self._probe.first_batch()
        self._x = choose_x(net, first.inputs, x_variable)  # X for every step
        self._x_said = self._x.describe(resolve_pooling(net, pooling))
        x_samples = x_for_defaults(net, first, self._x, pooling)
        self.estimators = tuple(estimators) if estimators is not None else default_estimators(x_samples, method)
        for est in self.estimators:
            if isinstance(est, LogDet) and x_samples is not None:
                est.resolve_beta(x_samples)  # labels are fixed from the first row on
        self.progress = progress
        self.layers = layers
        self.names = select_layers(net, layers)
        self.every = _checks.positive_int("every", every)
        self.channels = channels
        if sigma_smoothing is not None and not 0 <= sigma_smoothing < 1:
            raise ValueError(f"sigma_smoothing must be in [0, 1) or None, got {sigma_smoothing!r}")
        self.sigma_smoothing = sigma_smoothing
        if similarity is not None and not isinstance(similarity, LayerSimilarity):
            raise ValueError(f"similarity must be a LayerSimilarity or None, got {similarity!r}")
        self.similarity = similarity
        self.te = LayerTE() if transfer_entropy is True else transfer_entropy
        if self.te is not None and not isinstance(self.te, LayerTE):
            raise ValueError(f"transfer_entropy must be a LayerTE, True or None, got {transfer_entropy!r}")
        if not self.estimators and not self.te:
            raise ValueError("estimators is empty and transfer_entropy is not set: nothing would be measured")
        self._calls = 0
        self.passes: dict = {}  # step -> how its probe streamed
        self._measuring = False
        self._sigma: dict = {}
        self._series = TrainingSeries(self.te.window) if self.te else None
        self._recorder = None
        self.table = PlaneTable(self._metadata())
        self._sinks = Fanout(check_sinks(sinks) if distributed.is_root() else ())
        self._log = None
        if log is not None:
            logged = distributed.from_root(lambda: self._open_log(log, resume), "opening the log")
            if logged:
                self._continue_from(logged)
        self._sinks.call("write_metadata", self.table.metadata)
        if self.te and distributed.is_root():  # the series of rank 0's training samples (see step)
            self._attach_te_hooks()

    def _open_log(self, log, resume) -> list:
        """Open the step log (rank 0 only writes it); returns its rows."""
        self._log = StepLog(log, self.table.metadata, resume)
        return self._log.rows

    def _continue_from(self, rows: list, calls: int | None = None) -> None:
        """Take up a resumed log or a saved state: its rows, the calls counted
        (from a log: as if the last measured step were the last call), the last widths."""
        self.table.rows[:] = rows
        self._sigma.clear()
        last = max((r["step"] for r in rows), default=None)
        if calls is None:  # a log's next call measures step last + every
            calls = 0 if last is None else last + self.every
        self._calls = calls
        index = {e.label: i for i, e in enumerate(self.estimators)}
        for r in rows:
            if r["step"] == last and r["quantity"] == "sigma" and r["estimator"] in index:
                self._sigma[(index[r["estimator"]], r["layer"])] = r["value"]

    def state_dict(self) -> dict:
        """What a checkpoint needs to continue this tracker: the calls
        counted, the rows (the smoothed widths follow from them), ``passes``
        and the metadata, checked on loading. Transfer entropy's window of
        training samples is not kept: it fills again after loading. Plain
        JSON types only, so a checkpoint holding it loads with
        ``torch.load(weights_only=True)``."""
        state = {"metadata": self.table.metadata, "calls": self._calls, "rows": self.rows, "passes": self.passes}
        return json.loads(json.dumps(state, default=str))

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict()`` of a tracker of the same settings:
        its rows replace this tracker's, and step numbers go on from its calls."""
        if not isinstance(state, dict) or not {"metadata", "calls", "rows"} <= set(state):
            raise ValueError("state must be a dict from InformationPlane.state_dict()")
        differ = run_differences(state["metadata"], self.table.metadata)
        if differ:
            raise ValueError(f"state belongs to another tracker ({differ})")
        self._continue_from([dict(r) for r in state["rows"]], int(state["calls"]))
        self.passes = {int(k): v for k, v in state.get("passes", {}).items()}

    def _metadata(self) -> dict:
        n_probe = int(torch.as_tensor(self.y_probe).shape[0])
        return {
            "model": type(self.model).__name__,
            "probe_size": n_probe,
            "layers": self.names,
            "points": point_descriptions(self._net, self.names),
            "estimators": [e.label for e in self.estimators],
            "estimator_reprs": {e.label: repr(e) for e in self.estimators},
            "units": {e.label: e.units for e in self.estimators},
            "every": self.every,
            "channels": self.channels,
            "x": self._x_said,
            "pooling": resolve_pooling(self._net, self.pooling),
            "sigma_smoothing": self.sigma_smoothing,
            "transfer_entropy": asdict(self.te) if self.te else None,
            "similarity": {**asdict(self.similarity), "sigma": repr(self.similarity.sigma),
                           "label": self.similarity.label} if self.similarity else None,
            "label_entropy_bits": Discrete().entropy(self.y_probe),
            "pyfastent": __version__,
            "torch": str(torch.__version__),  # a plain str: checkpoints load with weights_only
        }

    def _attach_te_hooks(self):
        """TE's X is the tracker's X; for ``x_variable`` (whose training
        samples are unknown) the embedding output when there is one, else
        the inputs."""
        net = self._net
        blocks = block_layers(net)
        x_layer = self._x.layer if self._x.kind == "layer" else (blocks[0] if self._x.kind == "given" and blocks
                                                                 else None)
        self._recorder = TrainingRecorder(net, self.names, self._series, self.pooling,
                                          lambda: self.model.training and not self._measuring, x_layer)

    def close(self):
        """Remove the training hooks (transfer entropy) and close the sinks."""
        if self._recorder is not None:
            self._recorder.remove()
        self._sinks.call("close")

    @property
    def rows(self) -> list:
        return self.table.rows

    def step(self, epoch=None, **metrics) -> bool:
        """Count one call; measure on every ``every``-th. ``metrics`` (loss,
        accuracy, …: numbers, one-element tensors or strings) are stored on
        every row of the step, numbers as floats. Returns whether it
        measured. With a ``log``, the step is on disk when this returns."""
        metrics = metric_values(metrics)
        epoch = int(epoch) if isinstance(epoch, (torch.Tensor, numbers.Integral)) else epoch
        self._calls += 1
        if (self._calls - 1) % self.every:
            return False
        step = self._calls - 1
        rows, _, sigmas = self._measure(step) if self.estimators else ([], [], {})
        base = {"step": step, "epoch": epoch}
        new: list = []
        for r in rows:
            for quantity in ("h_t", "i_xt", "i_ty"):
                new.append(self._row(base, r["layer"], r["estimator"], quantity, r[quantity], metrics))
                if isinstance(r[quantity], Estimate):
                    new.append(self._row(base, r["layer"], r["estimator"], f"{quantity}_se", r[quantity].stderr,
                                         metrics))
        new += self._sigma_rows(base, sigmas, metrics)
        if self.te:
            te_rows = distributed.from_root(lambda: self._te_rows(base, metrics), "measuring transfer entropy")
            new += [{**r, **metrics} for r in te_rows]  # each rank's own metrics, as on its other rows
        similarity = None
        if self.similarity and (step // self.every) % self.similarity.every == 0:
            similarity = self._measure_similarity()
        cells = [] if similarity is None else self._similarity_rows(base, similarity, metrics)
        if self._log is not None:
            self._log.append(step, new + cells)
        self.table.rows.extend(new + cells)
        self._sinks.call("write_rows", new, step)
        if similarity is not None:
            self._sinks.call("write_matrix", self.similarity.label, similarity.matrix, similarity.layers,
                             similarity.other_layers, step)
        return True

    def _measure(self, step):
        self._measuring = True  # the probe passes are not training samples, even with train_mode
        try:
            measured = measure_layers(self.model, self._probe, self._x, self.estimators, self.layers,
                                      self._variable, progress=self.progress, description=f"step {step}",
                                      memory_budget=self.memory_budget, train_mode=self.train_mode,
                                      pooling=self.pooling)
        finally:
            self._measuring = False
        self.passes[step] = {"probe_passes": measured.passes, "passes_reason": measured.passes_reason,
                             "sliced_layers": measured.sliced}
        return measured.rows, measured.order, measured.sigmas

    def _measure_similarity(self):
        self._measuring = True  # its passes are not training samples
        try:
            return self.similarity.measure_map(self.model, self.x_probe, self.layers, pooling=self.pooling,
                                               batch_size=self.batch_size, memory_budget=self.memory_budget,
                                               train_mode=self.train_mode, progress=self.progress)
        finally:
            self._measuring = False

    def _similarity_rows(self, base, result, metrics) -> list:
        return [{**self._row(base, r["layer"], self.similarity.label, "similarity", r["value"], metrics),
                 "other_layer": r["other_layer"]} for r in result.rows]

    def similarity_map(self, step: int | None = None):
        """The logged layer similarity map of ``step`` (default: the last),
        as a ``SimilarityMap`` for ``plot.similarity_heatmap``."""
        if self.similarity is None:
            raise ValueError("this tracker has no similarity=LayerSimilarity(...)")
        return map_of_step(self.rows, self.similarity.label, step)

    @staticmethod
    def _row(base, layer, estimator, quantity, value, metrics) -> dict:
        return {**base, "layer": layer, "estimator": estimator, "quantity": quantity, "value": float(value),
                **metrics}

    def _variable(self, i, name, shape):
        var = layer_variable(shape, self.channels)
        est = self.estimators[i]
        if self.sigma_smoothing is None or not isinstance(est, Renyi) or var.channels:
            return var
        rule = Smoothed(est.sigma, self._sigma.get((i, name)), self.sigma_smoothing)
        return Variable(None, sigma=rule)

    def _sigma_rows(self, base, sigmas, metrics) -> list:
        rows = []
        for name, per_est in sigmas.items():
            for i, sigma in enumerate(per_est):
                if len(sigma) == 1:
                    self._sigma[(i, name)] = sigma[0]
                    rows.append(self._row(base, name, self.estimators[i].label, "sigma", sigma[0], metrics))
        return rows

    def _te_rows(self, base, metrics) -> list:
        return [self._row(base, layer, TE_ESTIMATOR, quantity, value, metrics)
                for layer, quantity, value in layer_te_values(self.te, self._series)]

    def save(self, path):
        """Write the table (``.csv`` or ``.jsonl``) with its metadata header
        (under ``torch.distributed``: rank 0 writes, every rank gets the path)."""
        return self.table.save(path) if distributed.is_root() else Path(path)

    @staticmethod
    def load(path) -> PlaneTable:
        """Read a saved table back (a ``PlaneTable``; the model is not saved)."""
        return PlaneTable.load(path)


def _probe_labels(probe: Probe) -> torch.Tensor:
    """The probe's labels: ``y_probe``, or those its (inputs, labels)
    batches carry (read once, without running the model)."""
    if probe.labels is not None:
        return probe.labels
    labels = [b.labels for b in probe.batches()]
    if not labels or any(lab is None for lab in labels):
        raise ValueError("y_probe: labels are needed, from y_probe= or from (inputs, labels) batches")
    return _checks.labels("y_probe", torch.cat(labels))
