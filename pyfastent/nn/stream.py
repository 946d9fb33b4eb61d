"""Streamed probe passes under a memory budget (DESIGN.md, "Sweeps at scale");
the passes are planned in ``pyfastent.nn.planner``.

The model sees the probe set one mini-batch at a time. A layer's rows are
held only until all N have been seen, then reduced (``pyfastent.ops.reduction``)
and dropped. When the whole probe set is one batch, each layer is complete
the moment its hook fires and is reduced right there, so no layer's rows
are ever held. When the layers' rows do not fit in the budget together,
they are planned into groups, in the order they fire, with one pass over
the probe batches per group; a pass stops once its group's last layer has
fired. A layer whose rows alone do not fit is held in slices of its first
axis (channels, or features of a flat layer), one group of slices per pass,
when its reduction is a sum over its features (``Needs.sliceable``); slices
of several layers share a pass. Every pass must see the same batches in the same order: each batch's
fingerprint is checked, and one-shot iterators and shuffling loaders are
refused when more than one pass is needed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from pyfastent import distributed
from pyfastent.nn import sequence
from pyfastent.nn.hooks import run_hooked
from pyfastent.nn.inputs import (Batch, Probe, fingerprint, parameter_dtype_device, takes_positions, to_model,
                                 with_positions)

@dataclass(frozen=True)
class LayerInfo:
    """A selected layer as its hook sees it: name (``name#k`` for the k-th
    call of a reused module), per-sample output shape and dtype."""

    name: str
    shape: tuple
    dtype: torch.dtype

    @property
    def sample_bytes(self) -> int:
        return int(torch.Size(self.shape).numel()) * torch.empty((), dtype=self.dtype).element_size()


@dataclass
class Layers:
    """What one small forward pass taught about the model on this probe.

    Attributes:
        layers: the selected layers in firing order, broadcast outputs left out.
        skipped: default-selected modules whose output does not have the
            batch as its first dimension (e.g. position embeddings [1, T, D]).
        modules: the module names to hook.
        input_sample_bytes, input_width: bytes and numbers in one sample of
            the inputs.
        dtype, device: where the model's parameters are (floating inputs are
            converted to them).
        pooling: how ``[B, T, D]`` outputs become one vector per sequence
            (``pyfastent.nn.sequence``; ``"none"``: they do not); the
            layers' shapes are the pooled ones.
    """

    layers: list
    skipped: list
    modules: list
    input_sample_bytes: int
    input_width: int
    dtype: torch.dtype
    device: torch.device
    pooling: str = "none"
    positions: bool = False

    def convert(self, inputs):
        """A batch's inputs as the model takes them (``pyfastent.nn.inputs``):
        converted, and with ``position_ids`` for a left-padded batch when
        the model takes them (``positions``)."""
        inputs = to_model(inputs, self.dtype, self.device)
        return with_positions(inputs) if self.positions else inputs

    def pool(self, out: torch.Tensor, inputs) -> torch.Tensor:
        """A layer's output for a batch of (converted) ``inputs``, pooled."""
        return sequence.pool(out, inputs, self.pooling)

    def working_set(self) -> int:
        """Bytes per sample a forward pass holds at once, estimated: the
        inputs, and four times the largest layer output (its input, its
        output, a residual and the copy of a held layer)."""
        return self.input_sample_bytes + 4 * max((layer.sample_bytes for layer in self.layers), default=0)


def learn_layers(model: nn.Module, probe: Probe, names: list, required: tuple, pooling: str = "none") -> Layers:
    """Run the model on the first two samples of the first batch and record
    every selected layer's output shape (after ``pooling``) and dtype, in
    firing order (inside ``model_mode``, which restores whatever train mode
    changes)."""
    dtype, device = parameter_dtype_device(model)
    positions = takes_positions(distributed.unwrap(model))
    first = probe.first_batch()
    sample = first.take(min(2, first.size))
    inputs = to_model(sample.inputs, dtype, device)
    inputs = with_positions(inputs) if positions else inputs
    seen: list = []

    def record(name, out):
        if out.dim() and out.shape[0] == sample.size:
            out = sequence.pool(out, inputs, pooling)
        seen.append((name, tuple(out.shape), out.dtype))

    run_hooked(model, inputs, names, record, required)
    layers, skipped = [], []
    for name, shape, out_dtype in seen:
        if not shape or shape[0] != sample.size:
            if name.split("#")[0] in required:
                raise ValueError(f"layers: {name!r} outputs shape {shape}, whose first dimension is not the "
                                 f"batch of {sample.size} samples; it cannot be measured per sample")
            skipped.append(name)
            continue
        layers.append(LayerInfo(name, shape[1:], out_dtype))
    modules = list(dict.fromkeys(layer.name.split("#")[0] for layer in layers))
    return Layers(layers, skipped, modules, sample.sample_bytes(), sample.sample_width(), dtype, device, pooling,
                  positions)


@dataclass(frozen=True)
class Slice:
    """Positions [start, stop) of a layer's first per-sample axis (its
    channels; its features when it is flat), the ``index``-th of ``count``
    slices that together hold the layer."""

    layer: str
    start: int
    stop: int
    index: int
    count: int

    def cut(self, out: torch.Tensor) -> torch.Tensor:
        """This slice of a batch of the layer's outputs [B, ...], as a copy of its own."""
        return out[:, self.start:self.stop].clone(memory_format=torch.contiguous_format)


def layer_of(unit) -> str:
    """The layer a planned unit (a layer name or a ``Slice``) belongs to."""
    return unit.layer if isinstance(unit, Slice) else unit


@dataclass
class PassState:
    """What the passes have seen so far: the sample count, the batches'
    fingerprints (checked on later passes), and the labels and input rows
    gathered on the first pass."""

    n: int = 0
    fingerprints: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    passes: int = 0


def run_pass(model: nn.Module, probe: Probe, found: Layers, group: list, state: PassState, keep: dict,
             on_layer=None, rows_budget=None, gather_inputs: bool = False, progress=None) -> list:
    """One pass over the probe batches for the layers of ``group``; returns
    the group as it ended (see ``rows_budget``).

    With ``on_layer`` (a single-batch probe), ``on_layer(name, output)`` is
    called from each hook with the complete rows. Otherwise the rows of each
    unit of the group (a layer name, or a ``Slice``) are copied into
    ``keep[unit]`` (a list of batches). With
    ``rows_budget`` (a first pass over a loader of unknown length:
    ``f(samples so far)``), layers are dropped from the end of the group,
    with their rows, whenever the rows held would exceed it (all of them,
    if need be: the pass then only counts the samples); later passes
    measure them. ``gather_inputs
    keeps each batch's inputs in ``state.inputs`` (the variable X of a
    streamed probe); ``progress(batches done)`` is called after each batch.
    """
    first_pass = state.passes == 0
    group = list(group)
    shapes = {layer.name: tuple(layer.shape) for layer in found.layers}
    count = 0
    for index, batch in enumerate(probe.batches()):
        _check_batch(state, batch, index, first_pass)
        if first_pass and gather_inputs:
            state.inputs.append(batch.inputs)
        wanted: dict = {}  # layer -> its units in this group (trimmed as the pass goes)
        for unit in group:
            wanted.setdefault(layer_of(unit), []).append(unit)
        inputs = found.convert(batch.inputs)

        def sink(name, out, size=batch.size):
            if name not in wanted:
                return
            if out.shape[0] != size:
                raise ValueError(f"layer {name!r} output {tuple(out.shape)} for a batch of {size} samples: its first "
                                 "dimension is not the batch")
            out = found.pool(out, inputs)
            if tuple(out.shape[1:]) != shapes[name]:
                hint = ("; sequences padded to other lengths need pooling='mean' (or 'first', 'last')"
                        if found.pooling == "none" else "")
                raise ValueError(f"layer {name!r} outputs samples of shape {tuple(out.shape[1:])} in batch {index} "
                                 f"but {shapes[name]} in the first{hint}")
            if on_layer is not None:
                on_layer(name, out)
                return
            for unit in wanted[name]:
                keep.setdefault(unit, []).append(unit.cut(out) if isinstance(unit, Slice) else out.clone())

        if group:
            run_hooked(model, inputs, found.modules, sink,
                       last=None if on_layer is not None else layer_of(group[-1]))
        if rows_budget is not None:
            _trim(group, keep, rows_budget(state.n))
        count = index + 1
        if progress is not None:
            progress(count)
    if first_pass and count == 0:
        raise ValueError(f"{probe.name} yielded no batches")
    if not first_pass and count != len(state.fingerprints):
        raise ValueError(f"the probe gave {count} batches on pass {state.passes + 1} but {len(state.fingerprints)} on "
                         "the first: several passes need the same batches")
    state.passes += 1
    return group


def refuse_repeated_passes(probe: Probe, passes: int) -> None:
    """A ValueError when ``passes`` > 1 passes would be needed over a probe
    that cannot give the same batches again (a one-shot iterator, a
    shuffling DataLoader)."""
    if passes < 2 or not (probe.one_shot or probe.shuffles):
        return
    what = "a one-shot iterator" if probe.one_shot else "a shuffling DataLoader"
    raise ValueError(f"{probe.name} is {what}, but the layers' rows do not fit the memory budget together and {passes} "
                     "passes over the same batches are needed; pass a re-iterable, unshuffled loader (shuffle=False), "
                     "a tensor, or a larger memory_budget")


def _trim(group: list, keep: dict, rows_budget: int) -> None:
    """Drop layers (and their rows) from the end of ``group`` until the rows
    held fit in ``rows_budget``."""
    def held():
        return sum(t.numel() * t.element_size() for unit in group for t in keep.get(unit, ()))

    while group and held() > rows_budget:
        keep.pop(group.pop(), None)


def _check_batch(state: PassState, batch: Batch, index: int, first_pass: bool) -> None:
    mark = fingerprint(batch)
    if first_pass:
        state.fingerprints.append(mark)
        state.n += batch.size
        if batch.labels is not None:
            state.labels.append(batch.labels)
        return
    if index >= len(state.fingerprints) or state.fingerprints[index] != mark:
        raise ValueError(
            f"the probe batches changed between passes (batch {index} differs from the first pass): several "
            "passes need the same batches in the same order; use a DataLoader with shuffle=False, or a larger "
            "memory_budget so that one pass suffices")
