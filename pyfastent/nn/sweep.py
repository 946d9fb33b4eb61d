"""Layer sweeps: H(T), I(X;T) and I(T;Y) of every layer, with the data
processing inequality check of DESIGN.md 3.6."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from pyfastent.estimators import Estimator, LogDet, Renyi
from pyfastent.measures import mutual_information
from pyfastent.nn.capture import _named, run_hooked, select_layers
from pyfastent.variable import Variable

COLUMNS = ("layer", "estimator", "h_t", "i_xt", "i_ty")


@dataclass
class SweepResult:
    """Per-layer information quantities of one sweep.

    Attributes:
        rows: dicts with ``layer``, ``estimator``, ``h_t``, ``i_xt``,
            ``i_ty`` (in the estimator's base), in forward order per estimator.
        dpi_violations: dicts with ``estimator``, ``quantity`` (``"i_xt"`` or
            ``"i_ty"``), ``earlier``, ``later`` (layer names) and ``size``
            (how much the later layer exceeds the earlier one).
    """

    rows: list = field(default_factory=list)
    dpi_violations: list = field(default_factory=list)

    def to_csv(self, path) -> Path:
        """Write ``rows`` as CSV; returns the path."""
        path = Path(path)
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)
        return path


def dpi_violations(rows: list, tolerance: float = 0.0) -> list:
    """Data processing inequality check along each estimator's layer order.

    For a feed-forward chain X → T_1 → T_2 → …, I(X;T_l) and I(T_l;Y) must
    not increase with l. Every consecutive pair where the later layer exceeds
    the earlier one by more than ``tolerance`` is reported.
    """
    violations = []
    for est in dict.fromkeys(r["estimator"] for r in rows):
        chain = [r for r in rows if r["estimator"] == est]
        for quantity in ("i_xt", "i_ty"):
            for a, b in zip(chain[:-1], chain[1:]):
                size = b[quantity] - a[quantity]
                if size > tolerance:
                    violations.append({"estimator": est, "quantity": quantity, "earlier": a["layer"],
                                       "later": b["layer"], "size": size})
    return violations


def estimator_label(est: Estimator) -> str:
    return repr(est)


def layer_variable(activation: torch.Tensor, channels: bool) -> Variable:
    """A layer's activation as a variable: per-channel (Hadamard) for conv
    maps when ``channels``, else the tensor kernel on the flattened map."""
    return Variable(activation, channels=channels and activation.dim() >= 3)


def measure_layers(model: nn.Module, x, y, estimators, layers, variable) -> tuple[list, dict]:
    """Run the model once and measure every selected layer with every estimator.

    ``variable(i, name, activation)`` makes estimator i's variable for a
    layer. Each layer is prepared as soon as its hook fires and its raw
    activation is then dropped; X and Y are prepared once per estimator.

    Returns:
        (rows, prepared): wide rows (see ``SweepResult``) and
        ``prepared[name][i]``, estimator i's ``Prepared`` of layer ``name``.
    """
    estimators = tuple(estimators)
    if not estimators or not all(isinstance(e, Estimator) for e in estimators):
        raise ValueError(f"estimators must be a non-empty sequence of pyfastent estimators, got {estimators!r}")
    prepared_xy = [(est, est.prepare(x, "x"), est.prepare(y, "y")) for est in estimators]
    prepared: dict = {}

    def prepare_layer(name, activation):
        prepared[name] = [est.prepare(variable(i, name, activation), name) for i, est in enumerate(estimators)]

    order = run_hooked(model, x, select_layers(model, layers), prepare_layer, required=_named(layers))
    rows = []
    for i, (est, px, py) in enumerate(prepared_xy):
        for name in order:
            pt = prepared[name][i]
            rows.append({
                "layer": name,
                "estimator": estimator_label(est),
                "h_t": est.joint_entropy([pt]),
                "i_xt": mutual_information(px, pt, estimator=est),
                "i_ty": mutual_information(pt, py, estimator=est),
            })
    return rows, prepared


def layer_sweep(model: nn.Module, x, y, estimators=None, layers=None, channels: bool = False,
                dpi_tolerance: float = 0.0) -> SweepResult:
    """H(T), I(X;T) and I(T;Y) for every captured layer T and every estimator.

    Every Gram matrix or covariance is built once per call; the model runs
    once, under ``no_grad``, in its current train/eval mode.

    Args:
        model: the network.
        x: the probe inputs (N, ...), passed to ``model(x)``; also the variable X.
        y: the probe labels (N,) (integer), the variable Y.
        estimators: estimators to use; default ``(Renyi(), LogDet())``.
        layers: which layers (see ``pyfastent.nn.capture``).
        channels: treat conv maps per channel (Yu et al. 2020) instead of
            with the tensor kernel (Wickstrøm et al. 2019); Rényi only.
        dpi_tolerance: slack before a DPI violation is reported.

    Returns:
        ``SweepResult``.
    """
    estimators = tuple(estimators) if estimators is not None else (Renyi(), LogDet())
    rows, _ = measure_layers(model, x, y, estimators, layers, lambda i, name, act: layer_variable(act, channels))
    return SweepResult(rows, dpi_violations(rows, dpi_tolerance))
