"""Streamed probe passes under a memory budget (DESIGN.md, "Sweeps at scale").

The model sees the probe set one mini-batch at a time. A layer's rows are
held only until all N have been seen, then reduced (``pyfastent.ops.reduction``)
and dropped. When the whole probe set is one batch, each layer is complete
the moment its hook fires and is reduced right there, so no layer's rows
are ever held. When the layers' rows do not fit in the budget together,
they are planned into groups, in the order they fire, with one pass over
the probe batches per group; a pass stops once its group's last layer has
fired. Every pass must see the same batches in the same order: each batch's
fingerprint is checked, and one-shot iterators and shuffling loaders are
refused when more than one pass is needed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from pyfastent import distributed, settings
from pyfastent._memory import available_bytes, format_bytes, parse_size
from pyfastent.nn import sequence
from pyfastent.nn.hooks import run_hooked
from pyfastent.nn.inputs import (Batch, Probe, fingerprint, parameter_dtype_device, takes_positions, to_model,
                                 with_positions)

# The default memory budget: this fraction of what the device has free when the work starts.
DEFAULT_BUDGET = 0.4


def resolve_budget(memory_budget, device: torch.device) -> int:
    """Bytes of a ``memory_budget``: a positive number of bytes or a string
    with a unit (``"4GB"``, ``"512 MiB"``; decimal and binary units); ``None``
    for ``pyfastent.settings.memory_budget``, else ``DEFAULT_BUDGET`` of the
    memory free on ``device`` (MemAvailable and the cgroup's headroom on the
    CPU, the free GPU memory on CUDA)."""
    if memory_budget is None:
        memory_budget = settings.memory_budget.get()
    if memory_budget is None:
        return int(DEFAULT_BUDGET * available_bytes(device))
    return parse_size("memory_budget", memory_budget)


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


@dataclass
class Plan:
    """How the probe passes run.

    Attributes:
        single: the whole probe set is one batch: layers are reduced as
            they fire, and their rows are never held.
        groups: the layers (names) of each pass, in firing order.
        batch_size: the batch size used for a tensor or dict probe.
        rows_budget: ``f(n)``: bytes the held rows of one group may take
            when the probe has n samples (a loader without a length is
            counted as it goes, and its first pass trimmed by it).
        spectral_bytes: bytes the deferred spectra may hold before a solve.
    """

    single: bool
    groups: list
    batch_size: int | None
    rows_budget: Callable[[int], int]
    spectral_bytes: int


@dataclass(frozen=True)
class Costs:
    """What a sweep holds besides the layers' rows, as functions of N.

    Attributes:
        reduction: ``f(layer, n)``: the peak bytes of building and measuring
            one layer's reduction.
        fixed: ``f(n)``: bytes held throughout (X's and Y's reductions).
    """

    reduction: Callable
    fixed: Callable


def plan_passes(found: Layers, probe: Probe, budget: int, costs: Costs, batch_size: int | None,
                n: int | None = None) -> Plan:
    """Plan the passes within ``budget`` bytes.

    Args:
        found: the layers, from ``learn_layers``.
        probe: the probe set (its batches, and N if known).
        budget: bytes for everything the sweep holds.
        costs: what besides the rows it holds.
        batch_size: the user's batch size, or ``None`` to choose one.
        n: the number of samples, when the probe could only count them.

    A probe that is one batch (a tensor or dict with ``batch_size=None``)
    runs in a single pass when its forward working set fits in half the
    budget; otherwise it is cut into batches whose working set takes a
    tenth of it. The rest, after the fixed part, the spectra and the
    largest reduction, is for held rows. A layer whose rows alone exceed it
    is a ``MemoryError`` now, before any work.
    """
    n = probe.n if n is None else n
    layers = found.layers
    per_sample = found.working_set()

    def room(count: int, batch: int) -> tuple[int, int]:
        """(spectra, free) bytes at ``count`` samples and batches of ``batch``."""
        largest = max((costs.reduction(layer, count) for layer in layers), default=0)
        spectral = max(budget // 8, largest)
        return spectral, budget - costs.fixed(count) - spectral - largest - batch * per_sample

    names = [layer.name for layer in layers]
    if probe.kind == "batches":
        batch = probe.first_batch().size
        if n is None:  # counted during the first pass: its group is trimmed as the rows arrive
            return Plan(False, [names], None, lambda count: room(count, batch)[1], budget // 8)
    elif batch_size is None:
        spectral, free = room(n, 0)
        if n * per_sample <= free // 2:
            return Plan(True, [names], None, lambda count: 0, spectral)
        batch = batch_size = max(1, min(n, free // 10 // max(per_sample, 1)))
    else:
        batch = batch_size
        if batch_size >= n:
            return Plan(True, [names], None, lambda count: 0, room(n, 0)[0])
    spectral, rows_budget = room(n, batch)
    groups, current, held = [], [], 0
    for layer in layers:
        need = n * layer.sample_bytes
        if need > rows_budget:
            raise MemoryError(
                f"layer {layer.name!r} alone needs {format_bytes(need)} for its {n} rows of shape {layer.shape}, "
                f"but the memory budget of {format_bytes(budget)} leaves {format_bytes(max(rows_budget, 0))} for "
                "held rows (the rest is for reductions, spectra and the model's batch); raise memory_budget, use "
                "fewer probe samples, or leave this layer out (layers=)")
        if current and held + need > rows_budget:
            groups.append(current)
            current, held = [], 0
        current.append(layer.name)
        held += need
    if current:
        groups.append(current)
    return Plan(False, groups, batch_size, lambda count: rows_budget, spectral)


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
    called from each hook with the complete rows. Otherwise each layer's
    rows are copied into ``keep[name]`` (a list of batches). With
    ``rows_budget`` (a first pass over a loader of unknown length:
    ``f(samples so far)``), layers are dropped from the end of the group,
    with their rows, whenever the rows held would exceed it; a later pass
    measures them. ``gather_inputs``
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
        wanted = set(group)
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
            else:
                keep.setdefault(name, []).append(out.clone())

        run_hooked(model, inputs, found.modules, sink,
                   last=None if on_layer is not None else group[-1])
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
    held fit in ``rows_budget``; a layer that cannot fit alone is a MemoryError."""
    def held():
        return sum(t.numel() * t.element_size() for name in group for t in keep.get(name, ()))

    while held() > rows_budget:
        if len(group) == 1:
            raise MemoryError(f"layer {group[0]!r} alone needs more than the {format_bytes(rows_budget)} the "
                              "memory budget leaves for held rows; raise memory_budget, use fewer probe samples, "
                              "or leave this layer out (layers=)")
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
