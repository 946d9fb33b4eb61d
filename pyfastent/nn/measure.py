"""Measuring every layer of a model on a probe set: the streamed passes,
one reduction per layer shared by every estimator, X and Y reduced once
(``pyfastent.nn.variables``), the spectra solved in batches, the work
shared across ranks. ``layer_sweep`` and ``InformationPlane`` are thin
features on this room."""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import torch
from torch import nn

from pyfastent import _checks, distributed
from pyfastent._progress import progress_bar
from pyfastent.estimators import Discrete, Estimator, Renyi
from pyfastent.estimators.base import saturation_report
from pyfastent.measures import JointEntropies
from pyfastent.nn.hooks import model_mode, named_layers, select_layers
from pyfastent.nn.inputs import Probe
from pyfastent.nn.sequence import resolve_pooling
from pyfastent.nn.stream import (Costs, PassState, learn_layers, plan_passes, refuse_repeated_passes, resolve_budget,
                                  run_pass)
from pyfastent.nn.variables import XSource
from pyfastent.ops import eigen, threads
from pyfastent.ops import reduction as reductions
from pyfastent.ops.deferred import SpectralBatch
from pyfastent.ops.reduction import Needs
from pyfastent.samples import observe_rows
from pyfastent.variable import Variable


def measure_layers(model: nn.Module, probe: Probe, source: XSource, estimators, layers, variable,
                   progress: bool | None = None, description: str = "layer sweep", memory_budget=None,
                   train_mode: bool = False, pooling: str = "auto") -> "Measured":
    """Stream the ``probe`` through the model and measure every selected
    layer with every estimator, X taken from ``source`` (``choose_x``: the
    caller resolves it once, a tracker for all of its steps).

    ``variable(i, name, shape)`` gives estimator i's ``Variable`` options for
    a layer of per-sample output ``shape`` (after ``pooling``, see
    ``pyfastent.nn.sequence``). Each layer's rows are reduced
    once, for all estimators (``pyfastent.ops.reduction``), as soon as all N
    have been seen, and dropped; X and Y are reduced once. The spectra of
    all layers are solved in batches (``pyfastent.ops.deferred``). The
    passes follow ``pyfastent.nn.stream``: one when the probe is one batch
    that fits, else one per group of layers whose rows fit the budget.
    A progress bar counts the (layer, estimator) pairs and shows the pass
    and batch (``progress=None``: only on a terminal).

    Under ``torch.distributed`` (``pyfastent.distributed``) every rank runs
    the passes and measures its share of the layers, whole layers assigned
    by estimated cost (all estimators of a layer on one rank, so each
    reduction is built once); the rows are gathered, so every rank returns
    all of them. Estimators that split their own work across the ranks
    (``Renyi(distributed=True)``) measure every layer on all ranks together.

    Returns:
        ``Measured``: wide rows (see ``SweepResult``), estimator by estimator
        in firing order; the layer names in firing order; the RBF widths per
        layer and estimator; the skipped (broadcast) layers; saturated joints.
    """
    estimators = tuple(estimators)
    if not estimators or not all(isinstance(e, Estimator) for e in estimators):
        raise ValueError(f"estimators must be a non-empty sequence of pyfastent estimators, got {estimators!r}")
    model = distributed.unwrap(model)
    names = select_layers(model, layers)
    pooling = resolve_pooling(model, pooling)
    x_measured = source.layer in names
    if source.kind == "layer" and not x_measured:
        names = [source.layer] + names  # hooked for X, not measured as a layer
    rank, ranks = distributed.world()
    shared = [e.distributed if isinstance(e, Renyi) else False for e in estimators]  # measured by all ranks
    failure = None
    bar = None
    with model_mode(model, train_mode), saturation_report() as saturated:
        if ranks > 1:
            eigen.share_plan()  # rank 0's drivers on every rank: one process's numbers
        try:  # the passes: a failure here is raised at the next collective, on every rank
            found = learn_layers(model, probe, names, named_layers(layers), pooling)
            measurer = _Measurer(estimators, variable, shared, found, probe, source, x_measured)
            owners = measurer.assign(ranks)
            mine = [layer for layer in found.layers
                    if owners.get(layer.name) == rank or any(shared) or layer.name == source.layer]
            budget = resolve_budget(memory_budget, found.device)
            costs = Costs(measurer.reduction_bytes, measurer.fixed_bytes)
            batch_size = probe.batch_size  # the user's, or None: the plan chooses
            plan = plan_passes(replace(found, layers=mine), probe, budget, costs, batch_size)
            probe = probe.with_batch_size(plan.batch_size)  # the batches the plan fits in the budget
            bar = progress_bar(measurer.pairs(mine, owners, rank), description, progress, unit="layer")
            measurer.start(plan, rank, owners, bar)
            passes = _run_passes(model, probe, replace(found, layers=mine), plan, measurer, bar,
                                 lambda n: plan_passes(replace(found, layers=mine), probe, budget, costs, None, n))
            local = measurer.finish()
        except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
            failure = exc

        def seen():
            if failure is not None:
                raise failure
            return measurer.signature()

        try:
            results = {}
            if any(shared):  # ranks must agree before they enter the split estimates' collectives
                _same_everywhere(distributed.gather(seen, "running the probe passes"), rank)
                results.update(measurer.finish_shared())
            everyone = distributed.gather(lambda: (seen(), local, list(saturated)), "measuring layers")
        finally:
            if bar is not None:
                bar.close()
    _same_everywhere([e[0] for e in everyone], rank)
    records = [] if ranks == 1 else [r for _, _, theirs in everyone for r in theirs]  # every rank's
    for _, theirs, _ in everyone:
        results.update(theirs)
    order = measurer.measured_names()
    rows = [results[(i, name)][0] for i in range(len(estimators)) for name in order]
    sigmas = {name: [results[(i, name)][1] for i in range(len(estimators))] for name in order}
    return Measured(rows, order, sigmas, found.skipped, saturated if ranks == 1 else records, measurer.marginals(),
                    float(Discrete().entropy(measurer.labels)), passes, plan.batch_size, pooling,
                    source.describe(pooling))


@dataclass
class Measured:
    """What ``measure_layers`` returns (see there)."""

    rows: list
    order: list
    sigmas: dict
    skipped: list
    saturated: list
    h_xy: list  # (H(X), H(Y)) per estimator, in its units
    label_entropy_bits: float
    passes: int  # probe passes this rank ran
    batch_size: int | None  # of a tensor or dict probe; None: one batch, or the loader's own
    pooling: str  # how [B, T, D] outputs became one vector per sequence
    x_source: str  # what the variable X is, in words


def _run_passes(model, probe: Probe, found, plan, measurer: "_Measurer", bar, replan) -> int:
    """The passes of ``plan``: X and Y are reduced as soon as they are
    complete (before the first pass, or at the end of the first for a
    streamed probe), each layer as soon as its N rows are. A first pass over
    a loader of unknown length that could not hold every layer is followed
    by ``replan(n)``'s passes for the rest. Returns the number of passes."""
    state = PassState()
    source = measurer.source
    streamed_x = probe.kind == "batches" and source.kind == "inputs"
    measurer.know_labels(probe.labels)
    if probe.labels is not None and source.kind != "layer" and not streamed_x:
        measurer.prepare_xy([probe.data] if source.kind == "inputs" else [source.given], probe.labels)
    groups = list(plan.groups)
    if len(groups) > 1:
        refuse_repeated_passes(probe, len(groups))
    done = 0
    while groups:
        group = groups.pop(0)
        done += 1
        measurer.at(f"pass {done}/{done + len(groups)}")

        def shown(batches):
            bar.set_postfix_str(f"{measurer.where}, batch {batches}")

        keep: dict = {}
        on_layer = measurer.layer if plan.single else None
        ended = run_pass(model, probe, found, group, state, keep, on_layer=on_layer,
                         rows_budget=plan.rows_budget if probe.n is None and state.passes == 0 else None,
                         gather_inputs=streamed_x and state.passes == 0, progress=shown)
        if state.passes == 1 and not measurer.has_xy:
            labels = probe.labels if probe.labels is not None else (
                torch.cat(state.labels) if state.labels else None)
            measurer.know_labels(labels)
            if source.kind != "layer":  # else X is reduced with its layer, below
                measurer.prepare_xy(state.inputs if source.kind == "inputs" else [source.given], labels)
            state.inputs = []
        if len(ended) < len(group):  # trimmed on a first pass of unknown length: the rest in later passes
            refuse_repeated_passes(probe, 2)
            rest = set(group[len(ended):])
            groups = [g for g in replan(state.n).groups for g in [[name for name in g if name in rest]] if g]
            measurer.at(f"pass {done}/{done + len(groups)}")
        for name in ended:
            if name in keep:
                measurer.layer(name, keep.pop(name))
    return state.passes


class _Measurer:
    """Reduces and measures the layers of one sweep, estimator by estimator."""

    def __init__(self, estimators: tuple, variable, shared: list, found, probe: Probe, source: XSource,
                 x_measured: bool):
        self.estimators = estimators
        self.variable = variable
        self.shared = shared
        self.found = found
        self.probe = probe
        self.source = source
        self.x_measured = x_measured  # X's layer is also a row (the default layers of a transformer)
        self.known_labels = None  # the labels, once known (X's layer is reduced when it fires)
        self.waiting: list = []  # (name, rows) of layers that fired before X's layer
        self.prepared_xy: list = []
        self.finishes: dict = {}  # (i, name) -> function giving the row
        self.held: dict = {}  # (i, name) -> Prepared, for the estimators measured by all ranks
        self.batch = None
        self.marginals_planned: dict = {}  # estimator index -> H(X), H(Y) pending in the sweep's batch
        self.bar = None
        self.where = ""  # the pass, for the progress bar
        self.rank, self.owners = 0, {}  # which rank measures which layer (``start``)
        self.labels = None  # Y on the layers' device, once X and Y are prepared

    @property
    def has_xy(self) -> bool:
        return bool(self.prepared_xy)

    def measured_names(self) -> list:
        """The layers measured as rows, in firing order."""
        return [layer.name for layer in self.found.layers if self.x_measured or layer.name != self.source.layer]

    def assign(self, ranks: int) -> dict:
        """Layer -> rank, whole layers by estimated cost (identical on every rank)."""
        scheduler = distributed.Scheduler(ranks)
        x_width = self.found.input_width
        n = self.probe.n or 1  # a loader of unknown length: the widths alone order the costs
        measured = set(self.measured_names())
        return {layer.name: scheduler.assign(sum(
            distributed.layer_cost(e, n, int(torch.Size(layer.shape).numel()), x_width) for e in self.estimators))
            for layer in self.found.layers if layer.name in measured}

    def pairs(self, mine: list, owners: dict, rank: int) -> int:
        return sum(1 for layer in mine for i in range(len(self.estimators))
                   if layer.name in owners and (self.shared[i] or owners[layer.name] == rank))

    def reduction_bytes(self, layer, n: int) -> int:
        """The peak of reducing and measuring one layer, estimated: the
        products (one per BLAS worker), kernels, joints and spectra, each
        N×N float64, and the features of a randomized estimate."""
        randomized = any(isinstance(e, Renyi) and not e.exact_for(n) for e in self.estimators)
        features = n * int(torch.Size(layer.shape).numel()) * 4 if randomized else 0
        return (4 + 2 * threads.workers()) * n * n * 8 + features

    def fixed_bytes(self, n: int) -> int:
        """Held for the whole sweep: X's and Y's reductions, and a streamed
        probe's inputs until X is reduced."""
        streamed = self.probe.kind == "batches" and self.source.kind == "inputs"
        inputs = n * self.found.input_sample_bytes if streamed else 0
        return 3 * n * n * 8 + inputs

    def start(self, plan, rank: int, owners: dict, bar) -> None:
        """Begin measuring: the spectra's batch, this rank's layers, the progress bar."""
        self.batch = SpectralBatch(max_bytes=plan.spectral_bytes)
        self.marginals_planned = {}
        self.rank, self.owners, self.bar = rank, owners, bar

    def know_labels(self, labels) -> None:
        """The labels, once known (X's layer is reduced with them when it fires)."""
        self.known_labels = labels

    def at(self, where: str) -> None:
        """Which pass is running, for the progress bar."""
        self.where = where

    def prepare_xy(self, x_parts: list, labels) -> None:
        """Reduce X (the probe inputs) and Y (the labels) once for all estimators."""
        if labels is None:
            raise ValueError("y: labels are needed, from y= or from (inputs, labels) batches")
        device = self.found.device  # where the layers' products are: X and Y join them there
        labels = _checks.labels("y", labels).to(device)
        x_var, y_var = Variable(None), Variable(None)
        x_rows = observe_rows(x_var, [_checks.as_tensor("x", p).to(device) for p in x_parts], "x")
        if labels.shape[0] != x_rows.n:
            raise ValueError(f"y has {labels.shape[0]} labels but x has {x_rows.n} samples")
        y_rows = observe_rows(y_var, [labels], "y")
        x_red = reductions.reduce_rows(x_rows, _union(e.needs(x_var, x_rows) for e in self.estimators))
        y_red = reductions.reduce_rows(y_rows, _union(e.needs(y_var, y_rows) for e in self.estimators))
        self.prepared_xy = [(e.prepare_reduced(x_var, x_red, "x"), e.prepare_reduced(y_var, y_red, "y"))
                            for e in self.estimators]
        self.labels = labels

    def marginals(self) -> list:
        """(H(X), H(Y)) per estimator, as floats in its units: the values
        planned for its layers, or computed now (an estimator measured on
        other ranks, or by all ranks together)."""
        out = []
        for i, (e, (px, py)) in enumerate(zip(self.estimators, self.prepared_xy)):
            planned = self.marginals_planned.get(i)
            out.append((float(planned[("x",)].value), float(planned[("y",)].value)) if planned else
                       (float(e.joint_entropy([px])), float(e.joint_entropy([py]))))
        return out

    def layer(self, name: str, parts) -> None:
        """Reduce one layer's complete rows for the estimators this rank
        measures it with, plan its entropies, and let the rows go."""
        if isinstance(parts, torch.Tensor):
            parts = [parts]
        if name == self.source.layer:
            self.prepare_xy(parts, self.known_labels)
            waiting, self.waiting = self.waiting, []
            for earlier in waiting:
                self.layer(*earlier)
            if not self.x_measured:
                return
        elif self.source.kind == "layer" and not self.has_xy:
            self.waiting.append((name, [p.clone() for p in parts]))  # a hook's tensor may change after it
            return
        mine = [i for i in range(len(self.estimators))
                if self.shared[i] or self.owners.get(name) == self.rank]
        if not mine:
            return
        shape = tuple(parts[0].shape[1:])
        variables = {i: self.variable(i, name, shape) for i in mine}
        rows = observe_rows(variables[mine[0]], parts, name)
        del parts
        needs = _union(self.estimators[i].needs(variables[i], rows, list(self.prepared_xy[i])) for i in mine)
        reduction = reductions.reduce_rows(rows, needs)
        del rows
        for i in mine:
            est = self.estimators[i]
            prepared = est.prepare_reduced(variables[i], reduction, name)
            if self.shared[i]:
                self.held[(i, name)] = prepared
            else:
                self.finishes[(i, name)] = _plan_layer(est, prepared, self.prepared_xy[i], self.batch,
                                                       self._marginals(i))
                self._done(est, name)

    def _marginals(self, i: int) -> dict:
        """H(X) and H(Y) of estimator i, planned into the sweep's batch once for all its layers."""
        if i not in self.marginals_planned:
            px, py = self.prepared_xy[i]
            h = JointEntropies(self.estimators[i], {"x": px, "y": py}, self.batch)
            self.marginals_planned[i] = {("x",): h.pending("x"), ("y",): h.pending("y")}
        return self.marginals_planned[i]

    def _done(self, est, name) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.where}, {est.label} {name}".lstrip(", "))
            self.bar.update(1)

    def finish(self) -> dict:
        """Solve the planned spectra: (i, name) -> (row, widths)."""
        self.batch.solve()
        return {key: finish() for key, finish in self.finishes.items()}

    def finish_shared(self) -> dict:
        """The estimators measured by all ranks together, layer by layer."""
        out = {}
        for (i, name), prepared in sorted(self.held.items(), key=lambda kv: (kv[0][0], self._position(kv[0][1]))):
            batch = SpectralBatch()
            finish = _plan_layer(self.estimators[i], prepared, self.prepared_xy[i], batch)
            batch.solve()
            out[(i, name)] = finish()
            self._done(self.estimators[i], name)
        return out

    def _position(self, name: str) -> int:
        return [layer.name for layer in self.found.layers].index(name)

    def signature(self) -> tuple:
        """What every rank must agree on: the layers, their shapes, N."""
        return tuple((layer.name, layer.shape) for layer in self.found.layers), self.probe.n


def _union(needs) -> Needs:
    return functools.reduce(lambda a, b: a | b, needs, Needs())


def _plan_layer(est: Estimator, prepared, xy: tuple, batch: SpectralBatch, marginals: dict | None = None):
    """Request H(T), H(X,T) and H(T,Y) (and H(X), H(Y) unless ``marginals``
    has them, planned into the same batch) into ``batch``; returns the
    function that reads the row once the batch is solved."""
    px, py = xy
    h = JointEntropies(est, {"x": px, "y": py, "t": prepared}, batch, known=marginals)
    for names in (("x",), ("y",), ("t",), ("x", "t"), ("t", "y")):
        h.request(*names)
    h.seal()
    name = prepared.name
    sigma = tuple(getattr(prepared.payload, "sigma", ()))

    def row():
        return {"layer": name, "estimator": est.label, "h_t": h("t"), "i_xt": h.mi("x", "t"),
                "i_ty": h.mi("t", "y")}, sigma

    return row


def _same_everywhere(seen: list, rank: int) -> None:
    """Every rank fired the same layers with the same shapes, or a ValueError."""
    for other, theirs in enumerate(seen):
        if tuple(theirs) != tuple(seen[rank]):
            raise ValueError(f"rank {other} saw other layers or activation shapes than rank {rank}: every rank "
                             "must pass the same model and probe")
