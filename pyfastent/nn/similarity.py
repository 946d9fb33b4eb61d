"""Layer × layer similarity maps, within one model or across two, from one
streamed pass per group of layers: each layer's rows are turned into what
the measure reads (a kernel matrix, nearest-neighbour indices, a prepared
variable) as soon as they are complete, and dropped; every pair is then
arithmetic on those (``pyfastent.similarity``)."""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from pyfastent import _checks, distributed, similarity
from pyfastent._progress import progress_bar
from pyfastent._version import __version__
from pyfastent.measures import JointEntropies, chosen_estimator
from pyfastent.nn import planner, stream
from pyfastent.nn.hooks import model_mode, named_layers, select_layers
from pyfastent.nn.inputs import Probe
from pyfastent.nn.sequence import resolve_pooling
from pyfastent.nn.table import atomic_write, meta_path
from pyfastent.ops import threads
from pyfastent.ops.deferred import SpectralBatch

MEASURES = ("cka", "hsic", "mknn", "mi")


class _Pair(nn.Module):
    """Two models fed the same inputs in one forward pass, so one pass over
    the batches serves both (their layers are ``model.<name>``, ``other.<name>``)."""

    def __init__(self, model: nn.Module, other: nn.Module):
        super().__init__()
        self.model, self.other = model, other

    def forward(self, *args, **kwargs):
        self.model(*args, **kwargs)
        return self.other(*args, **kwargs)


@dataclass
class SimilarityMap:
    """A layer × layer similarity map.

    Attributes:
        matrix: [L, M] float64 tensor: row i is ``layers[i]`` of the model,
            column j ``other_layers[j]`` (of ``other``, or of the model itself).
        layers, other_layers: the layer names, in firing order.
        measure: ``"cka"``, ``"hsic"``, ``"mknn"`` or ``"mi"``.
        metadata: the measure's options, N, pooling, the models' classes.
        null_mean, p_value: [L, M] permutation baselines (``permutations > 0``), else ``None``.
    """

    matrix: torch.Tensor
    layers: list
    other_layers: list
    measure: str
    metadata: dict = field(default_factory=dict)
    null_mean: torch.Tensor | None = None
    p_value: torch.Tensor | None = None

    @property
    def rows(self) -> list:
        """Tidy rows: one per cell (``layer``, ``other_layer``, ``value``, and the null's when computed)."""
        out = []
        for i, a in enumerate(self.layers):
            for j, b in enumerate(self.other_layers):
                row = {"layer": a, "other_layer": b, "measure": self.measure, "value": float(self.matrix[i, j])}
                if self.p_value is not None:
                    row.update(null_mean=float(self.null_mean[i, j]), p_value=float(self.p_value[i, j]))
                out.append(row)
        return out

    def to_csv(self, path) -> Path:
        """Write the tidy rows as CSV and the metadata as ``<name>.meta.json``
        beside it, each atomically; returns the path (rank 0 writes)."""
        path = Path(path)
        if not distributed.is_root():
            return path
        rows = self.rows
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: float.__repr__(v) if isinstance(v, float) else v for k, v in r.items()} for r in rows)
        atomic_write(meta_path(path), json.dumps(self.metadata, indent=1) + "\n")
        atomic_write(path, buf.getvalue())
        return path


@dataclass(frozen=True)
class LayerSimilarity:
    """A tracker's layer × layer similarity map: ``InformationPlane(...,
    similarity=LayerSimilarity(...))`` measures it on the probe every
    ``every``-th measured step, with ``layer_similarity``'s options (the
    tracker's own layers, pooling, batches and budget). Each cell is a row
    with ``quantity="similarity"``, the column's layer in ``other_layer``
    and ``estimator`` = ``label``."""

    measure: str = "cka"
    every: int = 1
    kernel: str = "linear"
    sigma: object = None
    debiased: bool = False
    k: int = 10
    metric: str = "cosine"
    normalization: str = "sqrt"

    def __post_init__(self):
        _options(self.measure, self.kernel, self.sigma, self.debiased, self.k, self.metric, None,
                 self.normalization)
        _checks.positive_int("every", self.every)

    @property
    def label(self) -> str:
        if self.measure in ("cka", "hsic"):
            return f"{self.measure}({self.kernel}{',debiased' if self.debiased else ''})"
        return f"mknn(k={self.k},{self.metric})" if self.measure == "mknn" else f"nmi({self.normalization})"

    def measure_map(self, model, probe, layers, **passes) -> SimilarityMap:
        """The map of ``model``'s ``layers`` on ``probe`` (``passes``: pooling,
        batch_size, memory_budget, train_mode, progress)."""
        return layer_similarity(model, probe, measure=self.measure, layers=layers, kernel=self.kernel,
                                sigma=self.sigma, debiased=self.debiased, k=self.k, metric=self.metric,
                                normalization=self.normalization, **passes)


def map_of_step(rows: list, label: str, step: int | None = None) -> SimilarityMap:
    """The similarity map a tracker logged (its rows of ``estimator=label``)
    at ``step`` (``None``: the last one that has it)."""
    mine = [r for r in rows if r["quantity"] == "similarity" and r["estimator"] == label]
    if not mine:
        raise ValueError(f"no similarity rows of {label!r}: track with similarity=LayerSimilarity(...)")
    step = max(r["step"] for r in mine) if step is None else step
    cells = {(r["layer"], r["other_layer"]): r["value"] for r in mine if r["step"] == step}
    if not cells:
        raise ValueError(f"step {step} has no similarity map (steps with one: "
                         f"{sorted({r['step'] for r in mine})})")
    layers = list(dict.fromkeys(a for a, _ in cells))
    matrix = torch.tensor([[cells[(a, b)] for b in layers] for a in layers], dtype=torch.float64)
    return SimilarityMap(matrix, layers, layers, measure_of_label(label), {"label": label, "step": step})


def measure_of_label(label: str) -> str:
    """The measure (``"cka"``, ``"hsic"``, ``"mknn"``, ``"mi"``) of a ``LayerSimilarity.label``."""
    return label.split("(")[0].replace("nmi", "mi")


@dataclass(frozen=True)
class _Options:
    measure: str
    kernel: str
    sigma: tuple
    debiased: bool
    k: int
    metric: str
    estimator: object
    normalization: str


def layer_similarity(model: nn.Module, probe, other: nn.Module | None = None, measure: str = "cka", layers=None,
                     other_layers=None, kernel: str = "linear", sigma=None, debiased: bool = False, k: int = 10,
                     metric: str = "cosine", estimator=None, normalization: str = "sqrt", pooling: str = "auto",
                     batch_size: int | None = None, memory_budget=None, permutations: int = 0, seed: int = 0,
                     train_mode: bool = False, progress: bool | None = None) -> SimilarityMap:
    """Similarity of every pair of layers: of ``model`` with itself, or of
    ``model`` (rows) with ``other`` (columns), on the same probe samples.

    Args:
        model, other: ``nn.Module`` objects taking the same inputs; both run in eval
            mode (``train_mode=True``: in their own) and get every
            submodule's mode back.
        probe: (N, ...) inputs, a dict of them, or a re-iterable of batches
            (as ``layer_sweep`` takes them; labels are not read).
        measure: ``"cka"`` (``pf.cka``), ``"hsic"`` (``pf.hsic``), ``"mknn"``
            (``pf.mutual_knn``, with ``k`` and ``metric``) or ``"mi"``
            (``pf.normalized_mutual_information`` with ``estimator`` and
            ``normalization``).
        layers, other_layers: as ``select_layers`` takes them (default: the
            layers ``capture`` selects).
        kernel, sigma, debiased: as ``pf.cka``; a width rule is applied per
            layer; a pair ``(sigma_model, sigma_other)`` gives each model its own.
        pooling, batch_size, memory_budget: as ``layer_sweep``. Both models
            run on the same batches, one pass per group of layers that fits.
        permutations: with P > 0, each cell's permutation null (the samples
            of the column's layer shuffled P times, ``seed``): its mean and
            the p-value (1 + #{null ≥ value})/(1 + P), for cka, hsic and mknn.
            As ``pf.permutation_test`` permutes samples, but on the kernel
            matrices (rows and columns together) or neighbour lists already
            built, so no layer is measured again.

    Returns:
        ``SimilarityMap``. Within one model the map is symmetric and each
        pair is computed once.
    """
    opts = _options(measure, kernel, sigma, debiased, k, metric, estimator, normalization)
    permutations = _checks.positive_int("permutations", permutations) if permutations else 0
    if permutations and measure == "mi":
        raise ValueError("permutations are for measure='cka', 'hsic' or 'mknn'; for MI use pf.permutation_test")
    net = distributed.unwrap(model)
    names = select_layers(net, layers)
    if other is None:
        joined, rows_of, cols_of = net, names, None
        pool = resolve_pooling(net, pooling)
    else:
        second = distributed.unwrap(other)
        other_names = select_layers(second, other_layers)
        joined = _Pair(net, second)
        rows_of = [f"model.{n}" for n in names]
        cols_of = [f"other.{n}" for n in other_names]
        pool = resolve_pooling(net, pooling)
        pool = pool if pool != "none" else resolve_pooling(second, pooling)
    wanted = rows_of + (cols_of or [])
    required = named_layers(layers) if other is None else tuple(
        [f"model.{n}" for n in named_layers(layers)] + [f"other.{n}" for n in named_layers(other_layers)])
    data = Probe(probe, batch_size=batch_size, name="probe")
    with model_mode(joined, train_mode):
        found = stream.learn_layers(joined, data, wanted, required, pool)
        if not found.layers:
            raise ValueError(f"layers: none of the selected layers outputs one row per sample (skipped: "
                             f"{', '.join(found.skipped) or 'none ran'}); name the layers to compare")
        budget = planner.resolve_budget(memory_budget, found.device)
        payloads = _payloads(joined, data, found, opts, budget, batch_size, progress)
    order = [layer.name for layer in found.layers]  # a module called k times: name, name#2, ..., name#k
    rows = [n for n in order if n.split("#")[0] in rows_of]
    cols = rows if cols_of is None else [n for n in order if n.split("#")[0] in cols_of]
    cells = len(rows) * (len(rows) + 1) // 2 if cols_of is None else len(rows) * len(cols)
    bar = progress_bar(cells, "similarity of layer pairs", progress, unit="pair")
    try:
        matrix, null_mean, p_value = _matrix(payloads, rows, cols, opts, cols_of is None, permutations, seed,
                                             _spectral_bytes(budget, len(payloads), opts,
                                                             next(iter(payloads.values())).n), bar)
    finally:
        bar.close()
    strip = (lambda n: n) if cols_of is None else (lambda n: n.split(".", 1)[1])
    meta = {"measure": opts.measure, "kernel": opts.kernel if measure in ("cka", "hsic") else None,
            "sigma": [str(s) for s in opts.sigma] if opts.kernel == "rbf" else None,
            "debiased": opts.debiased, "k": opts.k if measure == "mknn" else None,
            "metric": opts.metric if measure == "mknn" else None,
            "estimator": repr(opts.estimator) if measure == "mi" else None,
            "normalization": opts.normalization if measure == "mi" else None,
            "n": int(next(iter(payloads.values())).n), "pooling": pool, "model": type(net).__name__,
            "other": type(other).__name__ if other is not None else None, "skipped_layers": found.skipped,
            "permutations": permutations, "pyfastent": __version__}
    return SimilarityMap(matrix, [strip(n) for n in rows], [strip(n) for n in cols], measure, meta, null_mean, p_value)


def _options(measure, kernel, sigma, debiased, k, metric, estimator, normalization) -> _Options:
    _checks.choice("measure", measure, MEASURES)
    _checks.choice("kernel", kernel, similarity.KERNELS)
    _checks.choice("metric", metric, ("cosine", "euclidean"))
    _checks.choice("normalization", normalization, similarity.NORMALIZATIONS)
    return _Options(measure, kernel, similarity.width_rules(sigma), bool(debiased), _checks.positive_int("k", k),
                    metric, chosen_estimator(estimator) if measure == "mi" else None, normalization)


@dataclass
class _Payload:
    """What the map reads of one layer."""

    n: int
    terms: similarity.HSICTerms | None = None  # [N, N] float64 (cka, hsic)
    neighbours: torch.Tensor | None = None  # [N, k] (mknn)
    prepared: object = None  # the estimator's prepared variable (mi)


def _payload(name: str, rows: torch.Tensor, opts: _Options, side: int) -> _Payload:
    flat = rows.reshape(rows.shape[0], -1)
    n = flat.shape[0]
    if opts.measure in ("cka", "hsic"):
        if opts.debiased and n < 4:
            raise ValueError(f"debiased HSIC needs at least N = 4 probe samples, got {n}")
        gram = similarity.centred_gram(name, flat)
        kernel = similarity.kernel_matrix(name, gram, opts.kernel, opts.sigma[side])
        return _Payload(n, terms=similarity.hsic_terms(kernel, opts.debiased))
    if opts.measure == "mknn":
        if opts.k >= n:
            raise ValueError(f"k must be below N = {n} (each sample has N − 1 others), got {opts.k}")
        return _Payload(n, neighbours=similarity.neighbours(name, flat, opts.k, opts.metric))
    return _Payload(n, prepared=opts.estimator.prepare(flat, name))


def _held_bytes(opts: _Options, n: int) -> int:
    """Bytes one layer's payload holds at N samples."""
    return n * opts.k * 8 if opts.measure == "mknn" else n * n * 8


def _payloads(joined, data: Probe, found, opts: _Options, budget: int, batch_size, progress) -> dict:
    """Every layer's payload, from passes planned within ``budget`` bytes."""
    count = len(found.layers)
    costs = planner.Costs(lambda layer, n: 3 * n * n * 8, lambda n: count * _held_bytes(opts, n))
    plan = planner.plan_passes(found, data, budget, costs, batch_size)
    data = data.with_batch_size(plan.batch_size)
    groups = list(plan.groups)
    if len(groups) > 1:
        stream.refuse_repeated_passes(data, len(groups))
    side = {layer.name: int(layer.name.startswith("other.")) for layer in found.layers}
    out: dict = {}
    state = stream.PassState()
    bar = progress_bar(count, "layer similarity", progress, unit="layer")

    def done(name, rows):
        out[name] = _payload(name, rows, opts, side[name])
        bar.update(1)

    try:
        while groups:
            group = groups.pop(0)
            keep: dict = {}
            on_layer = done if plan.single else None
            ended = stream.run_pass(joined, data, found, group, state, keep, on_layer=on_layer,
                                    rows_budget=plan.rows_budget if data.n is None and state.passes == 0 else None)
            if len(ended) < len(group):  # a loader of unknown length, trimmed on its first pass
                stream.refuse_repeated_passes(data, 2)
                rest = set(group[len(ended):])
                replanned = planner.plan_passes(found, data, budget, costs, None, state.n).groups
                groups = [g for g in ([n for n in g if n in rest] for g in replanned) if g]
            for name in ended:
                if name in keep:
                    parts = keep.pop(name)
                    done(name, parts[0] if len(parts) == 1 else torch.cat(parts))
            threads.release_freed_memory()  # the pass's rows: not resident while the next pass holds its own
    finally:
        bar.close()
    return out


def _spectral_bytes(budget: int, layers: int, opts: _Options, n: int) -> int:
    """What the deferred joint spectra of the MI map may hold before they
    are solved: an eighth of what the held payloads leave of the budget (the
    solve stacks and works on copies), at most 32 joints (larger batches
    were no faster, and each held joint multiplies the solve's peak), at
    least four."""
    joint = n * n * 8
    return max(min((budget - layers * _held_bytes(opts, n)) // 8, 32 * joint), 4 * joint)


def _matrix(payloads: dict, rows: list, cols: list, opts: _Options, symmetric: bool, permutations: int,
            seed: int, spectral_bytes: int, bar) -> tuple:
    """[L, M] values (and the permutation null's mean and p-values); ``bar``
    counts the pairs."""
    values = torch.empty(len(rows), len(cols), dtype=torch.float64)
    null_mean = torch.empty_like(values) if permutations else None
    p_value = torch.empty_like(values) if permutations else None
    if opts.measure == "mi":
        return _mi_matrix(payloads, rows, cols, opts, symmetric, values, spectral_bytes, bar), None, None
    selves = {name: similarity.self_hsic(f"layer {name!r}", p.terms) for name, p in payloads.items()} \
        if opts.measure == "cka" else {}
    g = torch.Generator().manual_seed(seed)
    orders = [torch.randperm(payloads[rows[0]].n, generator=g) for _ in range(permutations)]
    for i, a in enumerate(rows):
        for j, b in enumerate(cols):
            if symmetric and j < i:
                values[i, j] = values[j, i]
                if permutations:
                    null_mean[i, j], p_value[i, j] = null_mean[j, i], p_value[j, i]
                continue
            values[i, j] = _cell(payloads[a], payloads[b], opts, selves.get(a), selves.get(b))
            if permutations:
                null = torch.tensor([_cell(payloads[a], _permuted(payloads[b], order), opts, selves.get(a),
                                           selves.get(b)) for order in orders])
                null_mean[i, j] = null.mean()
                p_value[i, j] = (1 + int((null >= values[i, j]).sum())) / (1 + permutations)
            bar.update(1)
    return values, null_mean, p_value


def _permuted(p: _Payload, order: torch.Tensor) -> _Payload:
    """The payload of the same layer with its samples in ``order``."""
    if p.terms is not None:  # H commutes with a permutation of the samples
        t = p.terms
        rows = t.rows[order] if t.rows is not None else None
        return _Payload(p.n, terms=similarity.HSICTerms(t.matrix[order][:, order], rows, t.total, t.debiased))
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel())
    return _Payload(p.n, neighbours=inverse[p.neighbours[order]])


def _cell(a: _Payload, b: _Payload, opts: _Options, self_a, self_b) -> float:
    if opts.measure == "mknn":
        return similarity.shared_neighbours(a.neighbours, b.neighbours)
    value = similarity.hsic_of(a.terms, b.terms)
    return value if opts.measure == "hsic" else value / math.sqrt(self_a * self_b)


def _mi_matrix(payloads: dict, rows: list, cols: list, opts: _Options, symmetric: bool, values,
               spectral_bytes: int, bar) -> torch.Tensor:
    """Normalized MI of every pair: the L + M entropies and L·M joints are
    deferred and solved in batches of at most ``spectral_bytes`` (as the
    joints are requested, so ``bar`` advances with the solves)."""
    names = list(dict.fromkeys(rows + cols))
    h = JointEntropies(opts.estimator, {name: payloads[name].prepared for name in names},
                       SpectralBatch(max_bytes=spectral_bytes))
    for name in names:
        h.request(name)
    pairs = [(a, b) for i, a in enumerate(rows) for j, b in enumerate(cols) if not (symmetric and j < i)]
    for a, b in pairs:
        if a != b:
            h.request(a, b)
        bar.update(1)
    h.batch.solve()
    for i, a in enumerate(rows):
        for j, b in enumerate(cols):
            if symmetric and j < i:
                values[i, j] = values[j, i]
                continue
            hab = h(a) if a == b else h(a, b)
            values[i, j] = similarity.normalized(h(a) + h(b) - hab, h(a), h(b), hab, opts.normalization,
                                                 f"layers {a!r} and {b!r}")
    return values
