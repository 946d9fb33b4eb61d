"""Layer sweeps: H(T), I(X;T) and I(T;Y) of every layer (measured by
``pyfastent.nn.measure``), their table and CSV, the data processing
inequality check of DESIGN.md 3.6, the saturation warning and the metadata."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from pyfastent import distributed
from pyfastent._warnings import SaturationWarning, warn_once_per_call_site
from pyfastent.estimate import Estimate
from pyfastent.nn.graph import dpi_pairs
from pyfastent.nn.inputs import Probe
from pyfastent.nn.measure import Measured, measure_layers
from pyfastent.nn.sequence import point_descriptions
from pyfastent.nn.table import atomic_write, meta_path
from pyfastent.nn.variables import choose_x, default_estimators, layer_variable, x_for_defaults

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
            ``None``: ``pyfastent.nn.planner.DEFAULT_BUDGET`` (40%) of what
            the device has free. Layers whose rows do not fit together are
            measured in several passes; a layer wider than N whose rows
            alone do not fit is held in slices of its channels (or
            features), one pass each, its products summed over them
            (``metadata["sliced_layers"]``). Only a layer that cannot be
            sliced (at most N wide, discrete, a randomized estimate), or
            whose reductions do not fit, is a ``MemoryError``, before any work.
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
    net = distributed.unwrap(model)
    probe = Probe(x, y, batch_size)
    first = probe.first_batch()  # one iterator, so a one-shot one keeps this batch for the passes
    source = choose_x(net, first.inputs, x_variable)
    if estimators is None:
        estimators = default_estimators(x_for_defaults(net, first, source, pooling), method)
    estimators = tuple(estimators)
    measured = measure_layers(net, probe, source, estimators, layers,
                              lambda i, name, shape: layer_variable(shape, channels), progress,
                              memory_budget=memory_budget, train_mode=train_mode, pooling=pooling)
    units = {e.label: e.units for e in estimators}
    saturated = _saturated_layers(measured.saturated)
    rows = [{"layer": r["layer"], "estimator": r["estimator"], "units": units[r["estimator"]],
             **{q: r[q] for q in ("h_t", "i_xt", "i_ty")},
             **{f"{q}_se": r[q].stderr for q in ("h_t", "i_xt", "i_ty") if isinstance(r[q], Estimate)},
             "saturated": (r["estimator"], r["layer"]) in saturated}
            for r in measured.rows]
    warn_saturated(rows, measured.saturated)
    pairs, how = dpi_pairs(net, measured.order)
    tolerance = dpi_tolerance if dpi_tolerance is not None else {e.label: e.dpi_slack for e in estimators}
    return SweepResult(rows, dpi_violations(rows, tolerance, pairs), pairs, how, units, measured.skipped,
                       sweep_metadata(estimators, measured, net))


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
    skipped layers, how the probe streamed (passes and why, the layers
    held in slices of their features and how many, batch size), what X
    is, how token states were pooled and what each layer name is."""
    return {
        "points": point_descriptions(model, measured.order),
        "estimators": {e.label: {"repr": repr(e), "units": e.units, "h_x": measured.h_xy[i][0],
                                 "h_y": measured.h_xy[i][1], "note": e.note}
                       for i, e in enumerate(estimators)},
        "label_entropy_bits": measured.label_entropy_bits,
        "skipped_layers": measured.skipped,
        "probe_passes": measured.passes,
        "passes_reason": measured.passes_reason,
        "sliced_layers": measured.sliced,
        "batch_size": measured.batch_size,
        "x": measured.x_source,
        "pooling": measured.pooling,
    }
