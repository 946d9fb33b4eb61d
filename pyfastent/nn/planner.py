"""The pass planner (DESIGN.md, "Sweeps at scale"): how many passes over
the probe a sweep needs under its memory budget, and what each holds.

The budget pays for what a sweep holds besides the rows (``Costs``: the
reductions, X's and Y's, the deferred spectra, the model's batch); the rest
is for held rows. Layers are planned into groups in the order they fire,
one pass per group; a layer whose rows alone do not fit is held in slices
of its first axis (``pyfastent.nn.stream.Slice``) when its reduction is a
sum over its features, the slices packed into passes beside other layers.
The passes themselves run in ``pyfastent.nn.stream``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from pyfastent import settings
from pyfastent._memory import available_bytes, format_bytes, parse_size
from pyfastent.nn.inputs import Probe
from pyfastent.nn.stream import LayerInfo, Layers, Slice

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


@dataclass
class Plan:
    """How the probe passes run.

    Attributes:
        single: the whole probe set is one batch: layers are reduced as
            they fire, and their rows are never held.
        groups: what each pass holds, in firing order: layer names, and
            ``Slice`` objects of the layers held in slices.
        batch_size: the batch size used for a tensor or dict probe.
        rows_budget: ``f(n)``: bytes the held rows of one group may take
            when the probe has n samples (a loader without a length is
            counted as it goes, and its first pass trimmed by it).
        spectral_bytes: bytes the deferred spectra may hold before a solve.
        reason: why the passes are as many as they are, in words.
    """

    single: bool
    groups: list
    batch_size: int | None
    rows_budget: Callable[[int], int]
    spectral_bytes: int
    reason: str = ""

    @property
    def sliced(self) -> dict:
        """Layer -> the number of slices it is held in, for the layers held in slices."""
        return {unit.layer: unit.count for group in self.groups for unit in group if isinstance(unit, Slice)}


@dataclass(frozen=True)
class Costs:
    """What a sweep holds besides the layers' rows, as functions of N.

    Attributes:
        reduction: ``f(layer, n)``: the peak bytes of building and measuring
            one layer's reduction.
        fixed: ``f(n)``: bytes held throughout (X's and Y's reductions).
        slice_sums: ``f(layer, n)``: the bytes of a layer's sums over its
            slices, held from its first slice to its last, or ``None`` when
            its reduction is not a sum over slices (it must be held whole).
    """

    reduction: Callable
    fixed: Callable
    slice_sums: Callable = lambda layer, n: None


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
    is held in slices (``Slice``) when ``costs.slice_sums`` allows, the
    budget then also holding one layer's slice sums; else, or when one
    position of its first axis does not fit, it is a ``MemoryError`` now,
    before any work.
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
            return Plan(False, [names], None, lambda count: room(count, batch)[1], budget // 8,
                        "a loader of unknown length: one pass, trimmed as its rows arrive")
    elif batch_size is None:
        spectral, free = room(n, 0)
        if n * per_sample <= free // 2:
            return Plan(True, [names], None, lambda count: 0, spectral, "one batch: every layer reduced as it fires")
        batch = batch_size = max(1, min(n, free // 10 // max(per_sample, 1)))
    else:
        batch = batch_size
        if batch_size >= n:
            return Plan(True, [names], None, lambda count: 0, room(n, 0)[0],
                        "one batch: every layer reduced as it fires")
    spectral, rows_budget = room(n, batch)
    wide = [layer for layer in layers if n * layer.sample_bytes > rows_budget]
    rows_budget -= max((costs.slice_sums(layer, n) or 0 for layer in wide), default=0)
    groups, current, held = [], [], 0
    for layer in layers:
        need = n * layer.sample_bytes
        if need > rows_budget:  # slices of its first axis, the first filling what this pass has left
            one = _position_bytes(layer, n, rows_budget, costs.slice_sums(layer, n) is not None, budget)
            start, axis = 0, layer.shape[0]
            while start < axis:
                take = min(axis - start, (rows_budget - held) // one)
                if take == 0:
                    groups.append(current)
                    current, held = [], 0
                    continue
                current.append((layer.name, start, start + take))
                held += take * one
                start += take
            continue
        if current and held + need > rows_budget:
            groups.append(current)
            current, held = [], 0
        current.append(layer.name)
        held += need
    if current:
        groups.append(current)
    groups = _numbered(groups)
    total = sum(n * layer.sample_bytes for layer in layers)
    reason = (f"the rows of all {len(layers)} layers ({format_bytes(total)}) fit the {format_bytes(rows_budget)} "
              "the budget leaves for held rows" if len(groups) == 1 else
              f"the rows of all {len(layers)} layers take {format_bytes(total)} and the budget of "
              f"{format_bytes(budget)} leaves {format_bytes(rows_budget)} for held rows per pass")
    if wide:
        reason += (f"; {len(wide)} layer(s) wider than that held in slices of their "
                   f"{'channels' if any(len(layer.shape) > 1 for layer in wide) else 'features'}")
    return Plan(False, groups, batch_size, lambda count: rows_budget, spectral, reason)


def _position_bytes(layer: LayerInfo, n: int, rows_budget: int, sliceable: bool, budget: int) -> int:
    """The bytes of one position of a wide layer's first axis for N rows,
    or a MemoryError when the layer cannot be held in slices that fit."""
    need = n * layer.sample_bytes
    one = need // layer.shape[0] if layer.shape else need
    advice = "raise memory_budget, use fewer probe samples, or leave this layer out (layers=)"
    if not sliceable or not layer.shape:
        raise MemoryError(
            f"layer {layer.name!r} alone needs {format_bytes(need)} for its {n} rows of shape {layer.shape}, "
            f"but the memory budget of {format_bytes(budget)} leaves {format_bytes(max(rows_budget, 0))} for held "
            "rows (the rest is for reductions, spectra and the model's batch), and its reduction cannot be summed "
            f"over slices of its features (a layer at most N wide, discrete, or a randomized estimate); {advice}")
    if one > rows_budget:
        raise MemoryError(
            f"layer {layer.name!r} is held in slices of its first axis, but one position of it needs "
            f"{format_bytes(one)} for {n} rows and the memory budget of {format_bytes(budget)} leaves "
            f"{format_bytes(max(rows_budget, 0))} for held rows; {advice}")
    return one


def _numbered(groups: list) -> list:
    """The groups with each (layer, start, stop) piece as a ``Slice`` that knows its index and count."""
    counts: dict = {}
    for group in groups:
        for unit in group:
            if isinstance(unit, tuple):
                counts[unit[0]] = counts.get(unit[0], 0) + 1
    seen: dict = {}
    out = []
    for group in groups:
        out.append([])
        for unit in group:
            if isinstance(unit, tuple):
                name, start, stop = unit
                out[-1].append(Slice(name, start, stop, seen.get(name, 0), counts[name]))
                seen[name] = seen.get(name, 0) + 1
            else:
                out[-1].append(unit)
    return out
