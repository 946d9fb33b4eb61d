"""Measuring every layer of a model on a probe set: the streamed passes,
one reduction per layer shared by every estimator, X and Y reduced once
(``pyfastent.nn.variables``), the spectra solved in batches, the work
shared across ranks. ``layer_sweep`` and ``InformationPlane`` are thin
features on this room."""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from pyfastent import distributed
from pyfastent._progress import progress_bar
from pyfastent.estimators import Discrete, Estimator, Renyi
from pyfastent.estimators.base import saturation_report
from pyfastent.nn.hooks import model_mode, named_layers, select_layers
from pyfastent.nn.inputs import Probe
from pyfastent.nn.measurer import Measurer
from pyfastent.nn.planner import Costs, plan_passes, resolve_budget
from pyfastent.nn.sequence import resolve_pooling
from pyfastent.nn.stream import PassState, layer_of, learn_layers, refuse_repeated_passes, run_pass
from pyfastent.nn.variables import XSource
from pyfastent.ops import eigen, threads

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
            measurer = Measurer(estimators, variable, shared, found, probe, source, x_measured)
            owners = measurer.assign(ranks, rank)
            mine = [layer for layer in found.layers
                    if owners.get(layer.name) == rank or any(shared) or layer.name == source.layer]
            budget = resolve_budget(memory_budget, found.device)
            costs = Costs(measurer.reduction_bytes, measurer.fixed_bytes, measurer.slice_sum_bytes)
            batch_size = probe.batch_size  # the user's, or None: the plan chooses
            plan = plan_passes(replace(found, layers=mine), probe, budget, costs, batch_size)
            probe = probe.with_batch_size(plan.batch_size)  # the batches the plan fits in the budget
            bar = progress_bar(measurer.pairs(mine, owners, rank), description, progress, unit="layer")
            measurer.start(plan, bar)
            passes, plan = _run_passes(model, probe, replace(found, layers=mine), plan, measurer, bar,
                                       lambda n: plan_passes(replace(found, layers=mine), probe, budget, costs, None,
                                                             n))
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
                    source.describe(pooling), plan.sliced, plan.reason)


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
    sliced: dict  # layer -> the slices of its first axis it was held in, for layers held in slices
    passes_reason: str  # why the passes were as many, in words


def _run_passes(model, probe: Probe, found, plan, measurer: "Measurer", bar, replan) -> int:
    """The passes of ``plan``: X and Y are reduced as soon as they are
    complete (before the first pass, or at the end of the first for a
    streamed probe), each layer as soon as its N rows are. A first pass over
    a loader of unknown length that could not hold every layer is followed
    by ``replan(n)``'s passes for the rest. Returns the number of passes and
    the plan that ran (the replanned one, if any)."""
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
            replanned = replan(state.n)
            groups = [g for g in replanned.groups for g in [[u for u in g if layer_of(u) in rest]] if g]
            plan = replace(plan, groups=[list(ended)] + groups, reason=replanned.reason)
            measurer.at(f"pass {done}/{done + len(groups)}")
        for unit in sorted(ended, key=lambda u: u != source.layer):  # X first: the layers are measured against it
            if unit in keep:
                measurer.take(unit, keep.pop(unit))
        threads.release_freed_memory()  # the pass's rows, freed: not resident while the next pass holds its own
    return state.passes, plan


def _same_everywhere(seen: list, rank: int) -> None:
    """Every rank fired the same layers with the same shapes, or a ValueError."""
    for other, theirs in enumerate(seen):
        if tuple(theirs) != tuple(seen[rank]):
            raise ValueError(f"rank {other} saw other layers or activation shapes than rank {rank}: every rank "
                             "must pass the same model and probe")
