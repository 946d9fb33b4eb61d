"""Information-plane tracking during training (DESIGN.md 3.6)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

import pyfastent
from pyfastent import _checks
from pyfastent.estimators import Renyi
from pyfastent.nn.capture import select_layers
from pyfastent.nn.sweep import default_estimators, layer_variable, measure_layers
from pyfastent.nn.table import PlaneTable
from pyfastent.nn.transfer import TrainingSeries, binarized, sampled_te
from pyfastent.variable import Variable
from pyfastent.widths import Smoothed

INPUT = "input"


@dataclass(frozen=True)
class LayerTE:
    """Options of layer transfer entropy (Moldovan, Cataron & Andonie).

    Args:
        window: how many of the most recent training samples form the series.
        threshold: θ of the binarization |a| ≥ θ (the last layer, the
            network output, is binarized as softmax p ≥ 0.9).
        max_pairs: neuron pairs evaluated per layer pair, at most: a random
            grid of target and source neurons.
        lag: source-target delay in samples.
        seed: seed of the pair sampling.
    """

    window: int = 1000
    threshold: float = 0.5
    max_pairs: int = 4096
    lag: int = 1
    seed: int = 0

    def __post_init__(self):
        _checks.positive_int("window", self.window)
        _checks.positive_number("threshold", self.threshold)
        _checks.positive_int("max_pairs", self.max_pairs)
        _checks.positive_int("lag", self.lag)


class InformationPlane:
    """Tracks H(T), I(X;T) and I(T;Y) of every layer over training.

    Call ``step()`` from any training loop (once per epoch, or per batch);
    every ``every``-th call measures the probe batch with each estimator, in
    eval mode under ``no_grad`` (the model's mode is restored), and appends
    to ``table``, a ``PlaneTable`` with the quantities ``h_t``, ``i_xt``,
    ``i_ty`` and, for Rényi estimators on non-channel layers, ``sigma``.

    With ``transfer_entropy`` set, forward hooks record the binarized
    outputs of the input and every layer for the training samples as they
    are fed (``model.training`` true), and each measured step adds, per
    layer T: ``te_in_mean``/``te_in_sum``/``te_in_pairs`` (TE from the
    previous layer, or the input, into T over sampled neuron pairs) and the
    TE information plane ``te_x`` = mean TE(X → T) and ``te_y`` = mean
    TE(T → Ŷ), Ŷ the network output (the last layer). This is the TE plane
    variant of this library: the same axes as I(X;T), I(T;Y), with the
    network output standing for Y.

    Args:
        model: the network.
        x_probe: (N, ...) fixed probe inputs.
        y_probe: (N,) integer probe labels.
        estimators: default ``default_estimators(x_probe)``: ``Renyi()`` and
            ``LogDet`` with β = 100·d_input, the LogDet paper's
            information-plane β.
        layers: which layers (see ``pyfastent.nn.capture``).
        every: measure on every ``every``-th call of ``step``.
        channels: conv maps per channel (Hadamard) instead of tensor kernel.
        sigma_smoothing: momentum m of σ_t = m·σ_{t−1} + (1−m)·σ*_t per
            layer for Rényi widths (e.g. 0.9); ``None`` for no smoothing.
        transfer_entropy: a ``LayerTE`` (or ``True`` for the defaults).
    """

    def __init__(self, model: nn.Module, x_probe, y_probe, estimators=None, layers=None, every: int = 1,
                 channels: bool = False, sigma_smoothing: float | None = None, transfer_entropy=None):
        self.model = model
        y_probe = _checks.labels("y_probe", y_probe)
        n_x, n_y = len(x_probe), len(y_probe)
        if n_x != n_y:
            raise ValueError(f"y_probe has {n_y} samples but x_probe has {n_x}")
        self.x_probe, self.y_probe = x_probe, y_probe
        self.estimators = tuple(estimators) if estimators is not None else default_estimators(x_probe)
        self.layers = layers
        self.names = select_layers(model, layers)
        self.every = _checks.positive_int("every", every)
        self.channels = channels
        if sigma_smoothing is not None and not 0 <= sigma_smoothing < 1:
            raise ValueError(f"sigma_smoothing must be in [0, 1) or None, got {sigma_smoothing!r}")
        self.sigma_smoothing = sigma_smoothing
        self.te = LayerTE() if transfer_entropy is True else transfer_entropy
        if self.te is not None and not isinstance(self.te, LayerTE):
            raise ValueError(f"transfer_entropy must be a LayerTE, True or None, got {transfer_entropy!r}")
        self._calls = 0
        self._sigma: dict = {}
        self._series = TrainingSeries(self.te.window) if self.te else None
        self._handles: list = []
        self.table = PlaneTable(self._metadata())
        if self.te:
            self._attach_te_hooks()

    def _metadata(self) -> dict:
        n_probe = int(torch.as_tensor(self.y_probe).shape[0])
        return {
            "model": type(self.model).__name__,
            "probe_size": n_probe,
            "layers": self.names,
            "estimators": [e.label for e in self.estimators],
            "estimator_reprs": {e.label: repr(e) for e in self.estimators},
            "units": {e.label: e.units for e in self.estimators},
            "every": self.every,
            "channels": self.channels,
            "sigma_smoothing": self.sigma_smoothing,
            "transfer_entropy": asdict(self.te) if self.te else None,
            "pyfastent": pyfastent.__version__,
            "torch": torch.__version__,
        }

    def _attach_te_hooks(self):
        def record(name):
            def hook(module, args, output):
                if self.model.training:
                    self._series.add(name, output[0] if isinstance(output, (tuple, list)) else output)
            return hook

        def record_input(module, args):
            if self.model.training:
                self._series.add(INPUT, args[0])

        modules = dict(self.model.named_modules())
        self._handles.append(self.model.register_forward_pre_hook(record_input))
        self._handles += [modules[n].register_forward_hook(record(n)) for n in self.names]

    def close(self):
        """Remove the training hooks (transfer entropy)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    @property
    def rows(self) -> list:
        return self.table.rows

    def step(self, epoch=None, **metrics) -> bool:
        """Count one call; measure on every ``every``-th. ``metrics`` (loss,
        accuracy, …) are stored on every row of the step. Returns whether it
        measured."""
        self._calls += 1
        if (self._calls - 1) % self.every:
            return False
        step = self._calls - 1
        was_training = self.model.training
        self.model.eval()
        try:
            rows, prepared = measure_layers(self.model, self.x_probe, self.y_probe, self.estimators,
                                            self.layers, self._variable)
        finally:
            self.model.train(was_training)
        base = {"step": step, "epoch": epoch}
        for r in rows:
            for quantity in ("h_t", "i_xt", "i_ty"):
                self._add(base, r["layer"], r["estimator"], quantity, r[quantity], metrics)
        self._record_sigmas(base, prepared, metrics)
        if self.te:
            self._record_te(base, metrics)
        return True

    def _add(self, base, layer, estimator, quantity, value, metrics):
        self.table.rows.append({**base, "layer": layer, "estimator": estimator, "quantity": quantity,
                                "value": float(value), **metrics})

    def _variable(self, i, name, activation):
        var = layer_variable(activation, self.channels)
        est = self.estimators[i]
        if self.sigma_smoothing is None or not isinstance(est, Renyi) or var.channels:
            return var
        rule = Smoothed(est.sigma, self._sigma.get((i, name)), self.sigma_smoothing)
        return Variable(activation, sigma=rule)

    def _record_sigmas(self, base, prepared, metrics):
        for name, per_est in prepared.items():
            for i, p in enumerate(per_est):
                sigma = getattr(p.payload, "sigma", ())
                if len(sigma) == 1:
                    self._sigma[(i, name)] = sigma[0]
                    self._add(base, name, self.estimators[i].label, "sigma", sigma[0], metrics)

    def _record_te(self, base, metrics):
        series = self._series.series()
        if INPUT not in series or series[INPUT].shape[0] < self.te.lag + 2:
            return  # no training samples seen since the last measurement
        bits = binarized(series, self.te.threshold, softmax_output=True)
        g = torch.Generator().manual_seed(self.te.seed)
        names = list(bits)
        output = names[-1]

        def te(src, dst):
            return sampled_te(bits[src], bits[dst], self.te.max_pairs, self.te.lag, g)

        for prev, layer in zip(names[:-1], names[1:]):
            inflow = te(prev, layer)
            for quantity, value in (("te_in_mean", inflow.mean()), ("te_in_sum", inflow.sum()),
                                    ("te_in_pairs", inflow.numel())):
                self._add(base, layer, "binary-te", quantity, value, metrics)
            self._add(base, layer, "binary-te", "te_x", te(INPUT, layer).mean(), metrics)
            if layer != output:
                self._add(base, layer, "binary-te", "te_y", te(layer, output).mean(), metrics)
        self._series.clear()

    def save(self, path):
        """Write the table (``.csv`` or ``.jsonl``) with its metadata header."""
        return self.table.save(path)

    @staticmethod
    def load(path) -> PlaneTable:
        """Read a saved table back (a ``PlaneTable``; the model is not saved)."""
        return PlaneTable.load(path)
