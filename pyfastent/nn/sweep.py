"""Layer sweeps: H(T), I(X;T) and I(T;Y) of every layer, with the data
processing inequality check of DESIGN.md 3.6."""
from __future__ import annotations

import csv
import functools
import io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from pyfastent import _checks, distributed
from pyfastent._progress import progress_bar
from pyfastent.estimate import Estimate
from pyfastent.estimators import Discrete, Estimator, LogDet, Renyi
from pyfastent.estimators.base import saturation_report
from pyfastent.estimators.logdet import PAPER_BETA_PER_COLUMN
from pyfastent.measures import JointEntropies
from pyfastent.nn.capture import capture
from pyfastent.nn.hooks import model_mode, named_layers, select_layers
from pyfastent.nn.graph import dpi_pairs
from pyfastent.nn.inputs import Probe
from pyfastent.nn.sequence import block_layers, point_descriptions, resolve_pooling
from pyfastent.nn.stream import Costs, PassState, learn_layers, plan_passes, resolve_budget, run_pass
from pyfastent._warnings import SaturationWarning, warn_once_per_call_site
from pyfastent.nn.table import atomic_write, meta_path
from pyfastent.ops import eigen, threads
from pyfastent.ops.deferred import SpectralBatch
from pyfastent.ops import reduction as reductions
from pyfastent.ops.reduction import Needs
from pyfastent.samples import observe_rows
from pyfastent.variable import Variable

COLUMNS = ("layer", "estimator", "units", "h_t", "i_xt", "i_ty")
STDERR_COLUMNS = ("h_t_se", "i_xt_se", "i_ty_se")  # rows of randomized estimates only


@dataclass
class SweepResult:
    """Per-layer information quantities of one sweep.

    Attributes:
        rows: dicts with ``layer``, ``estimator`` (its ``label``),
            ``units``, ``h_t``, ``i_xt``, ``i_ty`` and ``saturated`` (an
            entropy of the row reached log N), in forward order per estimator.
        dpi_violations: dicts with ``estimator``, ``quantity`` (``"i_xt"`` or
            ``"i_ty"``), ``earlier``, ``later`` (layer names), ``size`` (how
            much the later layer exceeds the earlier one) and ``tolerance``.
        dpi_pairs: the (earlier, later) layer pairs checked: those where the
            later layer is computed from the earlier one alone.
        dpi_method: how the pairs were found (``"torch.fx graph"``,
            ``"consecutive blocks (the residual stream)"`` for a
            transformer's blocks, or ``"assumed chain (...)"`` with the reason).
        units: estimator label -> ``"bits"``, ``"nats"``, ...
        skipped: default-selected layers whose output does not have the
            batch as its first dimension, left out.
        metadata: per estimator its repr, units, H(X), H(Y) and a note on
            its conventions (LogDet's β applies to the labels' one-hot
            columns too); the plug-in H(Y) in bits; ``"x"``, what the
            variable X is (the probe inputs, ``x_variable``, or a
            transformer's embedding output); ``"pooling"``.
    """

    rows: list = field(default_factory=list)
    dpi_violations: list = field(default_factory=list)
    dpi_pairs: list = field(default_factory=list)
    dpi_method: str = ""
    units: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    def to_csv(self, path) -> Path:
        """Write ``rows`` as CSV, and ``metadata`` as ``<name>.meta.json``
        beside it (each atomically: a failed write keeps the old file);
        returns the path. Under ``torch.distributed`` rank 0 writes them."""
        path = Path(path)
        if not distributed.is_root():
            return path
        buf = io.StringIO()
        columns = list(COLUMNS) + [c for c in STDERR_COLUMNS if any(c in r for r in self.rows)] + ["saturated"]
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: float.__repr__(v) if isinstance(v, float) else v for k, v in r.items()}
                         for r in self.rows)
        atomic_write(meta_path(path), json.dumps(self.metadata, indent=1) + "\n")
        atomic_write(path, buf.getvalue())
        return path


def dpi_violations(rows: list, tolerance=None, pairs=None) -> list:
    """Data processing inequality check of I(X;T) and I(T;Y) over layer pairs.

    Args:
        rows: wide rows (``layer``, ``estimator``, ``i_xt``, ``i_ty``).
        tolerance: slack before a rise counts, in the rows' units: a number,
            a mapping estimator label -> callable(value) -> slack, or
            ``None`` for each estimator's ``dpi_slack`` (see ``Estimator``);
            ``None`` with no mapping means 0.
        pairs: (earlier, later) layer pairs that must not increase (see
            ``pyfastent.nn.graph.dpi_pairs``); ``None``: consecutive layers,
            i.e. the layers are assumed to form a chain.

    Returns:
        dicts with ``estimator``, ``quantity``, ``earlier``, ``later``,
        ``size`` and ``tolerance``, for every pair whose later value exceeds
        the earlier one by more than the tolerance.
    """
    violations = []
    for est in dict.fromkeys(r["estimator"] for r in rows):
        chain = {r["layer"]: r for r in rows if r["estimator"] == est}
        order = list(chain)
        checked = pairs if pairs is not None else list(zip(order[:-1], order[1:]))
        slack = tolerance.get(est, lambda v: 0.0) if isinstance(tolerance, dict) else (
            lambda v, t=float(tolerance or 0.0): t)
        for quantity in ("i_xt", "i_ty"):
            for earlier, later in checked:
                if earlier not in chain or later not in chain:
                    continue
                before, after = chain[earlier][quantity], chain[later][quantity]
                allowed = slack(before)
                if after - before > allowed:
                    violations.append({"estimator": est, "quantity": quantity, "earlier": earlier, "later": later,
                                       "size": after - before, "tolerance": allowed})
    return violations


def default_estimators(x, method: str | None = None) -> tuple:
    """``(Renyi(method=...), LogDet(β = 100·d_input))``: the estimators of a
    sweep, a tracker and the command line when none are given; β is the
    LogDet estimator's default rule (``beta="paper"``) resolved for X when
    ``x`` (a batch of the inputs) is X; for keyword inputs (a dict) it is
    resolved by the variable X when it is prepared (so also for ``x=None``)."""
    if x is None or isinstance(x, dict):
        return Renyi(method=method or "auto"), LogDet()
    d_input = int(_checks.as_tensor("x", x)[0].numel())
    return Renyi(method=method or "auto"), LogDet(beta=PAPER_BETA_PER_COLUMN * d_input)


@dataclass(frozen=True)
class XSource:
    """Where a sweep's variable X comes from.

    Attributes:
        kind: ``"inputs"`` (the probe inputs themselves), ``"given"``
            (``x_variable=``) or ``"layer"`` (a layer's output: the
            embedding output of a transformer fed token ids).
        layer: that layer's name, for ``"layer"``.
        given: the ``x_variable`` tensor, for ``"given"``.
    """

    kind: str
    layer: str | None = None
    given: torch.Tensor | None = None

    def describe(self, pooling: str) -> str:
        if self.kind == "inputs":
            return "the probe inputs"
        if self.kind == "given":
            return "x_variable"
        pooled = "" if pooling == "none" else f", pooled over tokens ({pooling})"
        return f"the embedding output, layer {self.layer!r}{pooled}"


def choose_x(model: nn.Module, inputs, x_variable=None) -> XSource:
    """The variable X of a sweep over ``model`` fed ``inputs`` (a first batch).

    ``x_variable`` when given; else the inputs when they are a tensor,
    except token ids (an integer tensor) of a model with repeated blocks (a
    transformer), where I(X;T) is taken against the embedding output (the
    first block's input), not the ids: as discrete samples every distinct
    prompt is its own value, and I(X;T) would be H(T) in every layer. A dict
    of keyword inputs likewise has the embedding output as X; a dict fed to
    a model without repeated blocks needs ``x_variable``.
    """
    if x_variable is not None:
        return XSource("given", given=_checks.as_tensor("x_variable", x_variable))
    blocks = block_layers(model)
    token_ids = isinstance(inputs, torch.Tensor) and not inputs.is_floating_point()
    if blocks and (isinstance(inputs, dict) or token_ids):
        return XSource("layer", layer=blocks[0])
    if isinstance(inputs, dict):
        raise ValueError("x is a dict of keyword inputs and the model has no repeated blocks whose input is the "
                         "embedding output; pass x_variable=, the (N, ...) samples of the variable X")
    return XSource("inputs")


def layer_variable(shape: tuple, channels: bool) -> Variable:
    """The options of a layer's variable, from its per-sample output shape:
    per-channel (Hadamard) for conv maps when ``channels``, else the tensor
    kernel on the flattened map. Its rows come from the probe passes."""
    return Variable(None, channels=channels and len(shape) >= 2)


def measure_layers(model: nn.Module, x, y, estimators, layers, variable, progress: bool | None = None,
                   description: str = "layer sweep", batch_size: int | None = None, memory_budget=None,
                   train_mode: bool = False, pooling: str = "auto", x_variable=None) -> "Measured":
    """Stream the probe through the model and measure every selected layer
    with every estimator.

    ``variable(i, name, shape)`` gives estimator i's ``Variable`` options for
    a layer of per-sample output ``shape`` (after ``pooling``, see
    ``pyfastent.nn.sequence``); X is chosen by ``choose_x``. Each layer's rows are reduced
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
    probe = Probe(x, y, batch_size)
    pooling = resolve_pooling(model, pooling)
    source = choose_x(model, probe.first_batch().inputs, x_variable)
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
            plan = plan_passes(replace(found, layers=mine), probe, budget, costs, batch_size)
            if probe.kind != "batches":
                probe.batch_size = plan.batch_size  # the batches the plan fits in the budget
            measurer.start(plan, rank, owners)
            bar = progress_bar(measurer.pairs(mine, owners, rank), description, progress, unit="layer")
            measurer.bar = bar
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
    measurer.known_labels = probe.labels
    if probe.labels is not None and source.kind != "layer" and not streamed_x:
        measurer.prepare_xy([probe.data] if source.kind == "inputs" else [source.given], probe.labels)
    groups = list(plan.groups)
    if len(groups) > 1 and (probe.one_shot or probe.shuffles):
        raise ValueError(_refusal(probe, len(groups)))
    done = 0
    while groups:
        group = groups.pop(0)
        done += 1
        measurer.where = f"pass {done}/{done + len(groups)}"

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
            measurer.known_labels = labels
            if source.kind != "layer":  # else X is reduced with its layer, below
                measurer.prepare_xy(state.inputs if source.kind == "inputs" else [source.given], labels)
            state.inputs = []
        if len(ended) < len(group):  # trimmed on a first pass of unknown length: the rest in later passes
            if probe.one_shot or probe.shuffles:
                raise ValueError(_refusal(probe, 2))
            rest = set(group[len(ended):])
            groups = [g for g in replan(state.n).groups for g in [[name for name in g if name in rest]] if g]
            measurer.where = f"pass {done}/{done + len(groups)}"
        for name in ended:
            if name in keep:
                measurer.layer(name, keep.pop(name))
    return state.passes


def _refusal(probe: Probe, passes: int) -> str:
    what = "a one-shot iterator" if probe.one_shot else "a shuffling DataLoader"
    return (f"{probe.name} is {what}, but the layers' rows do not fit the memory budget together and {passes} passes "
            "over the same batches are needed; pass a re-iterable, unshuffled loader (shuffle=False), a tensor, or "
            "a larger memory_budget")


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

    def start(self, plan, rank: int, owners: dict) -> None:
        self.batch = SpectralBatch(max_bytes=plan.spectral_bytes)
        self.marginals_planned = {}
        self.rank, self.owners = rank, owners

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


def layer_sweep(model: nn.Module, x, y=None, estimators=None, layers=None, channels: bool = False,
                dpi_tolerance: float | None = None, progress: bool | None = None, method: str | None = None,
                batch_size: int | None = None, memory_budget=None, train_mode: bool = False,
                pooling: str = "auto", x_variable=None) -> SweepResult:
    """H(T), I(X;T) and I(T;Y) for every captured layer T and every estimator.

    Each layer is reduced once for all estimators and its rows dropped
    (``pyfastent.ops.reduction``); the probe streams through the model in
    mini-batches under a memory budget (``pyfastent.nn.stream``), in eval
    mode under ``no_grad``; afterwards every submodule has its own mode back.
    The numbers do not depend on the batches beyond round-off, except with
    ``train_mode=True``, where batch norm normalizes each batch by its own
    statistics.

    Under ``torch.distributed`` every rank must call it with the same model
    (DDP-wrapped or not) and probe: whole layers are split across the ranks
    by estimated cost and every rank returns all rows, the same numbers as
    one process gives (``pyfastent.distributed``).

    Args:
        model: the network.
        x: the probe inputs, passed to the model: a tensor or array
            (N, ...), a dict of them (keyword inputs), or a re-iterable of
            batches such as an unshuffled ``DataLoader`` (tensors, dicts or
            ``(inputs, labels)`` pairs); see ``pyfastent.nn.inputs``. Floating
            inputs are converted to the model's dtype and device. A tensor
            of inputs is also the variable X, except token ids fed to a
            transformer (see ``x_variable``).
        y: the probe labels (N,) (integer), the variable Y; ``None`` when
            the batches are ``(inputs, labels)`` pairs.
        estimators: estimators to use; default ``default_estimators(x)``:
            ``Renyi()`` and ``LogDet`` with β = 100·d_input.
        layers: which layers (see ``pyfastent.nn.hooks.select_layers``). A transformer's
            defaults are its embedding output and every block's output.
        channels: treat conv maps per channel (Yu et al. 2020) instead of
            with the tensor kernel (Wickstrøm et al. 2019); Rényi only.
        dpi_tolerance: slack before a DPI violation is reported, in the
            estimators' units; ``None`` uses each estimator's round-off
            slack (``Estimator.dpi_slack``).
        progress: a progress bar over the layers (``None``: only when
            stderr is a terminal; ``False``: never).
        method: the default Rényi estimator's ``method`` (``"auto"``,
            ``"exact"``, ``"lanczos"``); give your own estimators their own.
        batch_size: run a tensor or dict probe this many samples at a time;
            ``None``: all at once when that fits the budget, else batches
            chosen to fit.
        memory_budget: bytes (or a size such as ``"4GB"``) the sweep may
            hold: held rows, reductions, spectra and the model's batch;
            ``None``: ``pyfastent.nn.stream.DEFAULT_BUDGET`` (40%) of what
            the device has free. Layers whose rows do not fit together are
            measured in several passes; a layer that cannot fit alone is a
            ``MemoryError`` before any work.
        train_mode: run the model in its own mode instead of eval mode.
        pooling: how a ``[B, T, D]`` output (a transformer block's) becomes
            one vector per sequence: ``"auto"`` (the mean over the real
            tokens of each sequence, as the batch's ``attention_mask``
            says, for a model with repeated blocks; nothing for other
            models), ``"mean"``, ``"first"``, ``"last"`` or ``"none"``
            (``pyfastent.nn.sequence``).
        x_variable: (N, ...) samples of the variable X when it is not the
            inputs. Without it, X is the inputs when they are a tensor,
            but for token ids (integers, or keyword inputs) of a
            transformer X is the embedding output, the first block's input
            (pooled like the layers): the ids as discrete samples would
            make every prompt its own value and I(X;T) = H(T) in every
            layer. The result's ``metadata["x"]`` says which.

    Returns:
        ``SweepResult``. The DPI is checked on the layer pairs where one
        layer is computed from the other alone (``pyfastent.nn.graph``;
        for a transformer's blocks, consecutive blocks: the residual stream).
        Randomized estimates add their standard errors as ``h_t_se``,
        ``i_xt_se`` and ``i_ty_se``. Rows whose entropies reached log N
        are marked ``saturated`` (one ``SaturationWarning`` says how many).
    """
    if method is not None and estimators is not None:
        raise ValueError("method sets the default Rényi estimator's method; with estimators given, "
                         "pass Renyi(method=...) among them")
    if estimators is None:
        estimators = default_estimators(x_for_defaults(model, Probe(x, batch_size=batch_size), x_variable, pooling),
                                        method)
    estimators = tuple(estimators)
    measured = measure_layers(model, x, y, estimators, layers, lambda i, name, shape: layer_variable(shape, channels),
                              progress, batch_size=batch_size, memory_budget=memory_budget, train_mode=train_mode,
                              pooling=pooling, x_variable=x_variable)
    units = {e.label: e.units for e in estimators}
    saturated = _saturated_layers(measured.saturated)
    rows = [{"layer": r["layer"], "estimator": r["estimator"], "units": units[r["estimator"]],
             **{q: r[q] for q in ("h_t", "i_xt", "i_ty")},
             **{f"{q}_se": r[q].stderr for q in ("h_t", "i_xt", "i_ty") if isinstance(r[q], Estimate)},
             "saturated": (r["estimator"], r["layer"]) in saturated}
            for r in measured.rows]
    warn_saturated(rows, measured.saturated)
    pairs, how = dpi_pairs(distributed.unwrap(model), measured.order)
    tolerance = dpi_tolerance if dpi_tolerance is not None else {e.label: e.dpi_slack for e in estimators}
    return SweepResult(rows, dpi_violations(rows, tolerance, pairs), pairs, how, units, measured.skipped,
                       sweep_metadata(estimators, measured, distributed.unwrap(model)))


def x_for_defaults(model: nn.Module, probe: Probe, x_variable, pooling: str = "auto"):
    """The samples of X that fix the default LogDet β before any
    measurement, so that an estimator's label is the same in the metadata
    and in every row: the inputs, ``x_variable``, or, when X is a layer
    (the embedding output), that layer's output for the first two samples
    (one small forward pass)."""
    net = distributed.unwrap(model)
    first = probe.first_batch()
    source = choose_x(net, first.inputs, x_variable)
    if source.kind == "layer":
        sample = first.take(min(2, first.size)).inputs
        return capture(net, sample, layers=[source.layer], pooling=pooling)[source.layer]
    return {"inputs": first.inputs, "given": source.given}[source.kind]


def _saturated_layers(records: list) -> set:
    """(estimator label, layer) pairs one of whose joint entropies reached log N."""
    return {(r["estimator"], name) for r in records for name in r["variables"] if name not in ("x", "y")}


def warn_saturated(rows: list, records: list) -> None:
    """One ``SaturationWarning`` for all saturated rows of a sweep or step:
    per estimator how many layers, the first few, and what to do."""
    if not records:
        return
    ceilings = {r["estimator"]: f"{r['ceiling']:.4g} {r['units']}" for r in records}
    lines = []
    for est in dict.fromkeys(r["estimator"] for r in rows):
        hit = [r["layer"] for r in rows if r["estimator"] == est and r.get("saturated")]
        if hit:
            total = sum(1 for r in rows if r["estimator"] == est)
            shown = ", ".join(hit[:5]) + (", …" if len(hit) > 5 else "")
            lines.append(f"{est}, {len(hit)} of {total} layers ({shown}) at log N = {ceilings[est]}")
    if not lines:  # only X or Y themselves
        lines = [f"{r['estimator']}, the entropy of ({', '.join(r['variables'])}) at log N = {ceilings[r['estimator']]}"
                 for r in records[:3]]
    warn_once_per_call_site(
        f"entropies at their ceiling (an effective 90% or more of the samples distinct) for {'; '.join(lines)}: "
        f"there they measure the sample count, not the layer (such rows are marked 'saturated'). "
        f"{records[0]['advice']}", SaturationWarning)


def sweep_metadata(estimators: tuple, measured: "Measured", model: nn.Module) -> dict:
    """What a reader of the numbers needs: each estimator's full repr,
    units, H(X), H(Y) and conventions, the plug-in H(Y) in bits, the
    skipped layers, how the probe streamed (passes, batch size), what X
    is, how token states were pooled and what each layer name is."""
    return {
        "points": point_descriptions(model, measured.order),
        "estimators": {e.label: {"repr": repr(e), "units": e.units, "h_x": measured.h_xy[i][0],
                                 "h_y": measured.h_xy[i][1], "note": e.note}
                       for i, e in enumerate(estimators)},
        "label_entropy_bits": measured.label_entropy_bits,
        "skipped_layers": measured.skipped,
        "probe_passes": measured.passes,
        "batch_size": measured.batch_size,
        "x": measured.x_source,
        "pooling": measured.pooling,
    }
