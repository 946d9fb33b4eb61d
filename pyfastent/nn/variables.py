"""The variables X and Y of a measurement over a model: where X comes from
(the inputs, ``x_variable``, or a transformer's embedding output), the
default estimators with LogDet's β fixed from X, and each layer's variable
options. ``measure_layers``, ``layer_sweep`` and ``InformationPlane`` read
them from here."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pyfastent import _checks
from pyfastent.estimators import LogDet, Renyi
from pyfastent.estimators.logdet import PAPER_BETA_PER_COLUMN
from pyfastent.nn.capture import capture
from pyfastent.nn.inputs import Batch
from pyfastent.nn.sequence import block_layers
from pyfastent.variable import Variable


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


def x_for_defaults(model: nn.Module, first: Batch, source: XSource, pooling: str = "auto"):
    """The samples of X that fix the default LogDet β before any
    measurement, so that an estimator's label is the same in the metadata
    and in every row: the inputs of the probe's ``first`` batch,
    ``x_variable``, or, when X is a layer (the embedding output), that
    layer's output for the first two samples (one small forward pass)."""
    if source.kind == "layer":
        sample = first.take(min(2, first.size)).inputs
        return capture(model, sample, layers=[source.layer], pooling=pooling)[source.layer]
    return {"inputs": first.inputs, "given": source.given}[source.kind]
