"""Reducing and measuring the layers of one sweep or tracker step
(``pyfastent.nn.measure``): X and Y prepared once, each layer's rows (or
the slices of its features) reduced once for every estimator, its
entropies planned into the sweep's spectral batch, the layers shared
across ranks."""
from __future__ import annotations

import functools

import torch

from pyfastent import _checks, distributed
from pyfastent.estimators import Estimator, Renyi
from pyfastent.measures import JointEntropies
from pyfastent.nn.inputs import Probe
from pyfastent.nn.stream import Slice
from pyfastent.nn.variables import XSource
from pyfastent.ops import products, threads
from pyfastent.ops import reduction as reductions
from pyfastent.ops.deferred import SpectralBatch
from pyfastent.ops.reduction import Needs
from pyfastent.samples import Rows, observe_rows
from pyfastent.variable import Variable


class Measurer:
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
        self.rank, self.owners = 0, {}  # which rank measures which layer (``assign``)
        self.labels = None  # Y on the layers' device, once X and Y are prepared
        self.slice_sums: dict = {}  # layer -> the reduction of its slices so far

    @property
    def has_xy(self) -> bool:
        return bool(self.prepared_xy)

    def measured_names(self) -> list:
        """The layers measured as rows, in firing order."""
        return [layer.name for layer in self.found.layers if self.x_measured or layer.name != self.source.layer]

    def assign(self, ranks: int, rank: int) -> dict:
        """Layer -> rank, whole layers by estimated cost (identical on every
        rank); this rank measures the layers assigned to ``rank``."""
        scheduler = distributed.Scheduler(ranks)
        x_width = self.found.input_width
        n = self.probe.n or 1  # a loader of unknown length: the widths alone order the costs
        measured = set(self.measured_names())
        self.rank = rank
        self.owners = {layer.name: scheduler.assign(sum(
            distributed.layer_cost(e, n, int(torch.Size(layer.shape).numel()), x_width) for e in self.estimators))
            for layer in self.found.layers if layer.name in measured}
        return self.owners

    def pairs(self, mine: list, owners: dict, rank: int) -> int:
        return sum(1 for layer in mine for i in range(len(self.estimators))
                   if layer.name in owners and (self.shared[i] or owners[layer.name] == rank))

    def reduction_bytes(self, layer, n: int) -> int:
        """The peak of reducing and measuring one layer, estimated: the
        products (one per BLAS worker), kernels, joints and spectra, each
        N×N float64, each worker's column block and its converted copy
        (``ops.products``), and the features of a randomized estimate."""
        randomized = any(isinstance(e, Renyi) and not e.exact_for(n) for e in self.estimators)
        width = int(torch.Size(layer.shape).numel())
        features = n * width * 4 if randomized else 0
        blocks = 2 * threads.workers() * products.widest_block_bytes(n, width, threads.workers())
        return (4 + 2 * threads.workers()) * n * n * 8 + blocks + features

    def fixed_bytes(self, n: int) -> int:
        """Held for the whole sweep: X's and Y's reductions, and a streamed
        probe's inputs until X is reduced."""
        streamed = self.probe.kind == "batches" and self.source.kind == "inputs"
        inputs = n * self.found.input_sample_bytes if streamed else 0
        return 3 * n * n * 8 + inputs

    def start(self, plan, bar) -> None:
        """Begin measuring: the spectra's batch, the progress bar."""
        self.batch = SpectralBatch(max_bytes=plan.spectral_bytes)
        self.marginals_planned = {}
        self.bar = bar

    def know_labels(self, labels) -> None:
        """The labels, once known (X's layer is reduced with them when it fires)."""
        self.known_labels = labels

    def at(self, where: str) -> None:
        """Which pass is running, for the progress bar."""
        self.where = where

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

    def slice_sum_bytes(self, layer, n: int) -> int | None:
        """The bytes of a layer's sums over slices of its features (its N×N
        products, float64: the inner products, their standardized copy, a
        per-channel sum), or ``None`` when some estimator reads a product
        that is not such a sum: a layer at most N wide, discrete rows, a
        randomized estimate, or X's own layer."""
        if layer.name == self.source.layer or not self._mine(layer.name):
            return None
        variables = self._variables(layer.name, tuple(layer.shape))
        needs = self._needs(variables, self._whole_rows(layer, n, variables))
        if not needs.sliceable:
            return None
        sums = (needs.gram is not None) + needs.standardized_gram + len(needs.channel_rules)
        return sums * n * n * 8 + 2 * n * 8

    def take(self, unit, parts) -> None:
        """The rows a pass kept for a unit of its group: a whole layer, or a ``Slice`` of one."""
        if isinstance(unit, Slice):
            self.layer_slice(unit, parts)
        else:
            self.layer(unit, parts)

    def layer_slice(self, unit: Slice, parts: list) -> None:
        """Reduce one slice of a layer's features, with the needs of the
        whole layer, and add it to the layer's sum (``reductions.add_slice``);
        with its last slice, measure the layer as ``layer`` does."""
        name = unit.layer
        info = next(layer for layer in self.found.layers if layer.name == name)
        variables = self._variables(name, info.shape)
        needs = self._needs(variables, self._whole_rows(info, sum(p.shape[0] for p in parts), variables))
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.where}, {name} slice {unit.index + 1}/{unit.count}")
        rows = observe_rows(next(iter(variables.values())), parts, name)
        del parts
        self.slice_sums[name] = reductions.add_slice(self.slice_sums.get(name), reductions.reduce_rows(rows, needs))
        del rows
        if unit.index == unit.count - 1:
            self._measure(name, variables, self.slice_sums.pop(name))

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
        if not self._mine(name):
            return
        variables = self._variables(name, tuple(parts[0].shape[1:]))
        rows = observe_rows(next(iter(variables.values())), parts, name)
        del parts
        reduction = reductions.reduce_rows(rows, self._needs(variables, rows))
        del rows
        self._measure(name, variables, reduction)

    def _mine(self, name: str) -> list:
        """The estimators (indices) this rank measures a layer with."""
        return [i for i in range(len(self.estimators)) if self.shared[i] or self.owners.get(name) == self.rank]

    def _variables(self, name: str, shape: tuple) -> dict:
        """Estimator index -> the layer's ``Variable``, for this rank's estimators."""
        return {i: self.variable(i, name, shape) for i in self._mine(name)}

    def _needs(self, variables: dict, rows) -> Needs:
        """The union of what the estimators of ``variables`` read of a layer's rows."""
        partners = {i: list(self.prepared_xy[i]) if self.prepared_xy else None for i in variables}
        return _union(self.estimators[i].needs(v, rows, partners[i]) for i, v in variables.items())

    def _whole_rows(self, layer, n: int, variables: dict) -> Rows:
        """A layer's N rows as shapes only (meta tensors), read as its
        ``variables`` read them, for the needs of the whole layer while its
        slices are reduced."""
        dtype = layer.dtype if layer.dtype in (torch.float32, torch.float64) else torch.float32
        channels = next(iter(variables.values())).channels
        return Rows([torch.empty((n,) + tuple(layer.shape), dtype=dtype, device="meta")], layer.name,
                    channels=channels)

    def _measure(self, name: str, variables: dict, reduction) -> None:
        """Plan a reduced layer's entropies for this rank's estimators."""
        for i in variables:
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
