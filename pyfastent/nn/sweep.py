"""Layer sweeps: H(T), I(X;T) and I(T;Y) of every layer, with the data
processing inequality check of DESIGN.md 3.6."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from pyfastent import _checks, distributed
from pyfastent._progress import progress_bar
from pyfastent.estimators import Estimator, LogDet, Renyi
from pyfastent.estimate import Estimate
from pyfastent.estimators.logdet import PAPER_BETA_PER_COLUMN
from pyfastent.measures import mutual_information
from pyfastent.nn.capture import _named, run_hooked, select_layers
from pyfastent.nn.graph import dpi_pairs
from pyfastent.nn.table import atomic_write
from pyfastent.variable import Variable

COLUMNS = ("layer", "estimator", "units", "h_t", "i_xt", "i_ty")
STDERR_COLUMNS = ("h_t_se", "i_xt_se", "i_ty_se")  # rows of randomized estimates only


@dataclass
class SweepResult:
    """Per-layer information quantities of one sweep.

    Attributes:
        rows: dicts with ``layer``, ``estimator`` (its ``label``),
            ``units``, ``h_t``, ``i_xt``, ``i_ty``, in forward order per
            estimator.
        dpi_violations: dicts with ``estimator``, ``quantity`` (``"i_xt"`` or
            ``"i_ty"``), ``earlier``, ``later`` (layer names), ``size`` (how
            much the later layer exceeds the earlier one) and ``tolerance``.
        dpi_pairs: the (earlier, later) layer pairs checked: those where the
            later layer is computed from the earlier one alone.
        dpi_method: how the pairs were found (``"torch.fx graph"``, or
            ``"assumed chain (...)"`` with the reason).
        units: estimator label -> ``"bits"``, ``"nats"``, ...
    """

    rows: list = field(default_factory=list)
    dpi_violations: list = field(default_factory=list)
    dpi_pairs: list = field(default_factory=list)
    dpi_method: str = ""
    units: dict = field(default_factory=dict)

    def to_csv(self, path) -> Path:
        """Write ``rows`` as CSV (atomically: a failed write keeps the old file); returns the path.
        Under ``torch.distributed`` rank 0 writes it."""
        path = Path(path)
        if not distributed.is_root():
            return path
        buf = io.StringIO()
        columns = list(COLUMNS) + [c for c in STDERR_COLUMNS if any(c in r for r in self.rows)]
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: float.__repr__(v) if isinstance(v, float) else v for k, v in r.items()}
                         for r in self.rows)
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
    LogDet estimator's default rule (``beta="paper"``) resolved for X."""
    d_input = int(_checks.as_tensor("x", x)[0].numel())
    return Renyi(method=method or "auto"), LogDet(beta=PAPER_BETA_PER_COLUMN * d_input)


def layer_variable(activation: torch.Tensor, channels: bool) -> Variable:
    """A layer's activation as a variable: per-channel (Hadamard) for conv
    maps when ``channels``, else the tensor kernel on the flattened map."""
    return Variable(activation, channels=channels and activation.dim() >= 3)


def measure_layers(model: nn.Module, x, y, estimators, layers, variable, progress: bool | None = None,
                   description: str = "layer sweep") -> tuple[list, list, dict]:
    """Run the model once and measure every selected layer with every estimator.

    ``variable(i, name, activation)`` makes estimator i's variable for a
    layer. Each layer is prepared as soon as its hook fires and its raw
    activation is then dropped; X and Y are prepared once per estimator.
    A progress bar counts each layer's preparation and measurement per
    estimator (``progress=None``: only on a terminal).

    Under ``torch.distributed`` (``pyfastent.distributed``) every rank runs
    the forward pass and measures its share of the (layer, estimator)
    pairs, assigned by estimated cost as the layers fire; the rows are
    gathered, so every rank returns all of them. Estimators that split
    their own work across the ranks (``Renyi(distributed=True)``) measure
    every layer on all ranks together.

    Returns:
        (rows, order, sigmas): wide rows (see ``SweepResult``), estimator
        by estimator in forward order; the layer names in the order they
        fired; ``sigmas[name][i]``, the RBF widths estimator i used for
        layer ``name`` (empty for other kernels and estimators).
    """
    estimators = tuple(estimators)
    if not estimators or not all(isinstance(e, Estimator) for e in estimators):
        raise ValueError(f"estimators must be a non-empty sequence of pyfastent estimators, got {estimators!r}")
    model = distributed.unwrap(model)
    names = select_layers(model, layers)
    rank, ranks = distributed.world()
    x_width = int(_checks.as_tensor("x", x)[0].numel())
    scheduler = distributed.Scheduler(ranks)
    shared = [e.distributed if isinstance(e, Renyi) else False for e in estimators]  # measured by all ranks
    bar = progress_bar(2 * len(names) * len(estimators), description, progress, unit="layer")
    prepared: dict = {}
    shapes: dict = {}
    mine: list = []  # (i, name): the pairs this rank measures

    def prepare_layer(name, activation):
        if name not in names:  # a reused module's later call: one more layer to measure
            bar.total += 2 * len(estimators)
        shapes[name] = tuple(activation.shape)
        bar.set_postfix_str(f"preparing {name}")
        prepared[name] = {}
        for i, est in enumerate(estimators):
            cost = distributed.layer_cost(est, activation.shape[0], activation[0].numel(), x_width)
            if shared[i] or scheduler.assign(cost) == rank:
                prepared[name][i] = est.prepare(variable(i, name, activation), name)
                mine.append((i, name))
            else:
                bar.total -= 1  # another rank measures this pair
        bar.update(len(estimators))

    def measure(pairs):
        measured = {}
        for i, name in sorted(pairs, key=lambda p: (p[0], order.index(p[1]))):
            est, (px, py), pt = estimators[i], prepared_xy[i], prepared[name][i]
            bar.set_postfix_str(f"{est.label} {name}")
            measured[(i, name)] = ({
                "layer": name,
                "estimator": est.label,
                "h_t": est.joint_entropy([pt]),
                "i_xt": mutual_information(px, pt, estimator=est),
                "i_ty": mutual_information(pt, py, estimator=est),
            }, tuple(getattr(pt.payload, "sigma", ())))
            bar.update(1)
        return measured

    failure = None
    try:
        try:  # the forward pass: a failure here is raised at the next collective, on every rank
            prepared_xy = [(est.prepare(x, "x"), est.prepare(y, "y")) for est in estimators]
            order = run_hooked(model, x, names, prepare_layer, required=_named(layers))
        except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
            failure = exc

        def seen():
            if failure is not None:
                raise failure
            return order, shapes

        results = {}
        if any(shared):  # ranks must agree before they enter the split estimates' collectives
            _same_everywhere(distributed.gather(seen, "running the probe forward pass"), rank)
            results.update(measure([p for p in mine if shared[p[0]]]))
        everyone = distributed.gather(
            lambda: (*seen(), measure([p for p in mine if not shared[p[0]]])), "measuring layers")
    finally:
        bar.close()
    _same_everywhere([e[:2] for e in everyone], rank)
    for _, _, theirs in everyone:
        results.update(theirs)
    rows = [results[(i, name)][0] for i in range(len(estimators)) for name in order]
    sigmas = {name: [results[(i, name)][1] for i in range(len(estimators))] for name in order}
    return rows, order, sigmas


def _same_everywhere(seen: list, rank: int) -> None:
    """Every rank fired the same layers with the same shapes, or a ValueError."""
    for other, theirs in enumerate(seen):
        if tuple(theirs) != tuple(seen[rank]):
            raise ValueError(f"rank {other} saw other layers or activation shapes than rank {rank}: every rank "
                             "must pass the same model and probe")


def layer_sweep(model: nn.Module, x, y, estimators=None, layers=None, channels: bool = False,
                dpi_tolerance: float | None = None, progress: bool | None = None,
                method: str | None = None) -> SweepResult:
    """H(T), I(X;T) and I(T;Y) for every captured layer T and every estimator.

    Every Gram matrix or covariance is built once per call; the model runs
    once, under ``no_grad``, in its current train/eval mode.

    Under ``torch.distributed`` every rank must call it with the same model
    (DDP-wrapped or not) and probe: the (layer, estimator) pairs are split
    across the ranks by estimated cost and every rank returns all rows,
    the same numbers as one process gives (``pyfastent.distributed``).

    Args:
        model: the network.
        x: the probe inputs (N, ...), passed to ``model(x)``; also the variable X.
        y: the probe labels (N,) (integer), the variable Y.
        estimators: estimators to use; default ``default_estimators(x)``:
            ``Renyi()`` and ``LogDet`` with β = 100·d_input.
        layers: which layers (see ``pyfastent.nn.capture``).
        channels: treat conv maps per channel (Yu et al. 2020) instead of
            with the tensor kernel (Wickstrøm et al. 2019); Rényi only.
        dpi_tolerance: slack before a DPI violation is reported, in the
            estimators' units; ``None`` uses each estimator's round-off
            slack (``Estimator.dpi_slack``).
        progress: a progress bar over the layers (``None``: only when
            stderr is a terminal; ``False``: never).
        method: the default Rényi estimator's ``method`` (``"auto"``,
            ``"exact"``, ``"lanczos"``); give your own estimators their own.

    Returns:
        ``SweepResult``. The DPI is checked on the layer pairs where one
        layer is computed from the other alone (``pyfastent.nn.graph``).
        Randomized estimates add their standard errors as ``h_t_se``,
        ``i_xt_se`` and ``i_ty_se``.
    """
    y = _checks.labels("y", y)
    if method is not None and estimators is not None:
        raise ValueError("method sets the default Rényi estimator's method; with estimators given, "
                         "pass Renyi(method=...) among them")
    estimators = tuple(estimators) if estimators is not None else default_estimators(x, method)
    rows, order, _ = measure_layers(model, x, y, estimators, layers,
                                    lambda i, name, act: layer_variable(act, channels), progress)
    units = {e.label: e.units for e in estimators}
    rows = [{"layer": r["layer"], "estimator": r["estimator"], "units": units[r["estimator"]],
             **{q: r[q] for q in ("h_t", "i_xt", "i_ty")},
             **{f"{q}_se": r[q].stderr for q in ("h_t", "i_xt", "i_ty") if isinstance(r[q], Estimate)}}
            for r in rows]
    pairs, how = dpi_pairs(distributed.unwrap(model), order)
    tolerance = dpi_tolerance if dpi_tolerance is not None else {e.label: e.dpi_slack for e in estimators}
    return SweepResult(rows, dpi_violations(rows, tolerance, pairs), pairs, how, units)
