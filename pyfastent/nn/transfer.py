"""Transfer entropy between layers, after Moldovan, Cataron & Andonie,
"Information Plane Analysis Visualization in Deep Learning via Transfer
Entropy" (2023/2024), DESIGN.md 3.5.

Each neuron's output is binarized per sample (``|a| ≥ θ``; softmax outputs
p ≥ 0.9), consecutive training samples are the time axis, and the plug-in
TE_{S→T} = I(T_{t+1}; S_{t+1−lag} | T_t) (history 1, JIDT conventions) is
computed for neuron pairs between layers, in bits.
"""
from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass

import torch

from pyfastent import _checks
from pyfastent.measures import transfer_entropy
from pyfastent.significance import permutation_test

SOFTMAX_THRESHOLD = 0.9
INPUT = "input"  # the series of the variable X


def binarize(activation: torch.Tensor, threshold: float) -> torch.Tensor:
    """``|a| ≥ θ`` per neuron: (T, ...) -> (T, n) bool, trailing dims flattened."""
    return activation.reshape(activation.shape[0], -1).abs() >= threshold


def binarize_softmax(logits: torch.Tensor, threshold: float = SOFTMAX_THRESHOLD) -> torch.Tensor:
    """softmax(logits) ≥ p per output unit: (T, C) -> (T, C) bool."""
    return torch.softmax(logits.reshape(logits.shape[0], -1).double(), dim=1) >= threshold


def pairwise_te(source: torch.Tensor, target: torch.Tensor, lag: int = 1) -> torch.Tensor:
    """Plug-in TE in bits from every source neuron to every target neuron.

    Args:
        source: (T, n_s) binary series (bool, or integers 0/1), time on axis 0.
        target: (T, n_t) binary series.
        lag: source-target delay ≥ 1.

    Returns:
        (n_t, n_s) float64 matrix.
    """
    lag = _checks.positive_int("lag", lag)
    source, target = _checks.binary_series("source", source), _checks.binary_series("target", target)
    if source.shape[0] != target.shape[0]:
        raise ValueError(f"target has {target.shape[0]} time steps but source has {source.shape[0]}")
    start = lag - 1
    n = source.shape[0] - 1 - start
    if n < 2:
        raise ValueError(f"source and target are too short for lag={lag}: {source.shape[0]} steps")
    # One-hot of the 2-bit target state (T_{t+1}, T_t) and of the source bit
    # S_{t+1-lag}; one product counts all 8 patterns of every pair.
    state = target[start + 1 :].long() * 2 + target[start:-1].long()  # [n, n_t]
    a = torch.nn.functional.one_hot(state, 4).reshape(n, -1).float()  # [n, n_t*4]
    b = torch.nn.functional.one_hot(source[:n].long(), 2).reshape(n, -1).float()  # [n, n_s*2]
    # float32 sums of 0/1 products are exact up to 2^24 samples.
    counts = (a.T @ b).double().reshape(target.shape[1], 2, 2, source.shape[1], 2).permute(0, 3, 1, 2, 4)
    c_fp = counts.sum(-1, keepdim=True)  # [n_t, n_s, f, p, s]
    c_ps = counts.sum(-3, keepdim=True)
    c_p = counts.sum((-3, -1), keepdim=True)
    ratio = counts * c_p / (c_ps * c_fp)
    terms = torch.where(counts > 0, counts / n * torch.log2(torch.where(counts > 0, ratio, 1.0)), 0.0)
    return terms.sum((-3, -2, -1))


def sample_neurons(n_target: int, n_source: int, max_pairs: int | None, generator: torch.Generator):
    """Random target and source neuron subsets whose grid of pairs has at most
    ``max_pairs`` pairs (``None``, ``None`` when all pairs fit). The mean TE
    over a random grid estimates the mean over all pairs without bias."""
    if max_pairs is None or n_target * n_source <= max_pairs:
        return None, None
    k_t = min(n_target, max(1, math.isqrt(max_pairs)))
    k_s = min(n_source, max_pairs // k_t)
    k_t = min(n_target, max_pairs // k_s)
    return (torch.randperm(n_target, generator=generator)[:k_t].sort().values,
            torch.randperm(n_source, generator=generator)[:k_s].sort().values)


def neuron_grid(source: torch.Tensor, target: torch.Tensor, max_pairs: int | None, generator: torch.Generator):
    """(source, target) restricted to a random grid of at most ``max_pairs`` neuron pairs."""
    t_idx, s_idx = sample_neurons(target.shape[1], source.shape[1], max_pairs, generator)
    if t_idx is None:
        return source, target
    return source[:, s_idx], target[:, t_idx]


def sampled_te(source: torch.Tensor, target: torch.Tensor, max_pairs: int | None, lag: int,
               generator: torch.Generator) -> torch.Tensor:
    """``pairwise_te`` on a random grid of at most ``max_pairs`` neuron pairs."""
    return pairwise_te(*neuron_grid(source, target, max_pairs, generator), lag)


def mean_pairwise_te(source: torch.Tensor, target: torch.Tensor, lag: int = 1) -> float:
    """The mean of ``pairwise_te`` over every pair: one layer-to-layer number, in bits."""
    return float(pairwise_te(source, target, lag).mean())


def layer_transfer_entropy(series, threshold: float = 0.5, softmax_output: bool = True, max_pairs: int | None = 4096,
                           lag: int = 1, seed: int = 0) -> list:
    """Binary TE between consecutive entries of an ordered mapping of series.

    Args:
        series: ordered mapping name -> (T, ...) activations, time on axis 0
            (consecutive training samples), e.g. the input first and the
            network output last.
        threshold: θ of ``|a| ≥ θ``.
        softmax_output: binarize the last entry as softmax probabilities
            ≥ 0.9 (the paper's rule for the output layer).
        max_pairs: evaluate at most this many neuron pairs per layer pair,
            a random grid of target and source neurons (``None``: all).
        lag: source-target delay.
        seed: seed of the pair sampling.

    Returns:
        dicts with ``source``, ``target``, ``te_mean`` and ``te_sum`` (bits,
        over the evaluated pairs) and ``pairs`` (how many were evaluated).
    """
    bits = binarized(series, threshold, softmax_output)
    generator = torch.Generator().manual_seed(seed)
    names = list(bits)
    rows = []
    for a, b in zip(names[:-1], names[1:]):
        te = sampled_te(bits[a], bits[b], max_pairs, lag, generator)
        rows.append({"source": a, "target": b, "te_mean": float(te.mean()), "te_sum": float(te.sum()),
                     "pairs": te.numel()})
    return rows


def binarized(series, threshold: float, softmax_output: bool) -> "OrderedDict[str, torch.Tensor]":
    threshold = _checks.positive_number("threshold", threshold)
    names = list(series)
    if len(names) < 2:
        raise ValueError(f"series must hold at least 2 layers, got {len(names)}")
    out = OrderedDict()
    for i, name in enumerate(names):
        act = _checks.samples(f"series[{name!r}]", _checks.as_tensor(f"series[{name!r}]", series[name]))
        last = i == len(names) - 1
        out[name] = binarize_softmax(act) if (last and softmax_output) else binarize(act.float(), threshold)
    return out


def continuous_layer_transfer_entropy(series, estimator, lag: int = 1) -> list:
    """TE between consecutive layers taken whole, on continuous activations,
    with any estimator (``Renyi``, ``LogDet``): no binarization.

    Returns dicts with ``source``, ``target`` and ``te`` (estimator's base).
    """
    names = list(series)
    if len(names) < 2:
        raise ValueError(f"series must hold at least 2 layers, got {len(names)}")
    flat = {n: _checks.as_tensor(f"series[{n!r}]", series[n]) for n in names}
    flat = {n: t.reshape(t.shape[0], -1) for n, t in flat.items()}
    return [{"source": a, "target": b, "te": transfer_entropy(flat[a], flat[b], estimator=estimator, lag=lag)}
            for a, b in zip(names[:-1], names[1:])]


class TrainingSeries:
    """A rolling window of the most recent ``window`` training samples'
    activations per layer, in the order the samples were fed: the time axis
    of layer TE. Fed by forward hooks while the model is in training mode."""

    def __init__(self, window: int):
        self.window = _checks.positive_int("window", window)
        self._chunks: dict = OrderedDict()

    def add(self, name: str, batch: torch.Tensor) -> None:
        chunks = self._chunks.setdefault(name, deque())
        # A copy: in-place ops later in the forward pass must not change the series.
        chunks.append(batch.detach().reshape(batch.shape[0], -1).to("cpu", torch.float32, copy=True))
        while sum(c.shape[0] for c in chunks) - chunks[0].shape[0] >= self.window:
            chunks.popleft()

    def accepts(self, name: str, rows: torch.Tensor) -> bool:
        """Whether ``rows`` [b, n] have the width of the series ``name`` so far."""
        chunks = self._chunks.get(name)
        return not chunks or chunks[0].shape[1:] == rows.reshape(rows.shape[0], -1).shape[1:]

    def series(self) -> "OrderedDict[str, torch.Tensor]":
        """name -> (T, n) tensor of the last ``window`` samples (T equal for all)."""
        full = OrderedDict((n, torch.cat(list(c))[-self.window:]) for n, c in self._chunks.items())
        length = min((t.shape[0] for t in full.values()), default=0)
        return OrderedDict((n, t[-length:]) for n, t in full.items())

    def clear(self) -> None:
        self._chunks.clear()


TE_ESTIMATOR = "binary-te"  # the estimator column of layer transfer-entropy rows


@dataclass(frozen=True)
class LayerTE:
    """Options of layer transfer entropy (Moldovan, Cataron & Andonie).

    Args:
        window: how many of the most recent training samples form the series.
        threshold: θ of the binarization ``|a| ≥ θ`` (the last layer, the
            network output, is binarized as softmax p ≥ 0.9).
        max_pairs: neuron pairs evaluated per layer pair, at most: a random
            grid of target and source neurons.
        lag: source-target delay in samples.
        seed: seed of the pair sampling and of the noise floor's shuffles.
        floor_permutations: time shuffles of the source behind the TE
            plane's noise floor (``te_x_floor``, ``te_y_floor``: the null
            mean of ``pyfastent.permutation_test``) and its p-values
            (``te_x_p``, ``te_y_p``; at least 1/(1 + floor_permutations)).
    """

    window: int = 1000
    threshold: float = 0.5
    max_pairs: int = 4096
    lag: int = 1
    seed: int = 0
    floor_permutations: int = 4

    def __post_init__(self):
        _checks.positive_int("window", self.window)
        _checks.positive_number("threshold", self.threshold)
        _checks.positive_int("max_pairs", self.max_pairs)
        _checks.positive_int("lag", self.lag)
        _checks.positive_int("floor_permutations", self.floor_permutations)


def layer_te_values(te: LayerTE, series: TrainingSeries) -> list:
    """One measured step of layer transfer entropy over the training
    samples recorded since the last (``InformationPlane``'s TE rows), as
    (layer, quantity, value); empties ``series``. Nothing when fewer than
    lag + 2 samples were recorded."""
    recorded = series.series()
    if INPUT not in recorded or recorded[INPUT].shape[0] < te.lag + 2:
        return []
    bits = binarized(recorded, te.threshold, softmax_output=True)
    g = torch.Generator().manual_seed(te.seed)
    names = list(bits)
    output = names[-1]

    def with_floor(src, dst):
        source, target = neuron_grid(bits[src], bits[dst], te.max_pairs, g)
        null = permutation_test(mean_pairwise_te, source, target, lag=te.lag, n_permutations=te.floor_permutations,
                                seed=te.seed)
        return pairwise_te(source, target, te.lag), null

    out = []
    for prev, layer in zip(names[:-1], names[1:]):
        inflow = sampled_te(bits[prev], bits[layer], te.max_pairs, te.lag, g)
        out += [(layer, "te_in_mean", inflow.mean()), (layer, "te_in_sum", inflow.sum()),
                (layer, "te_in_pairs", inflow.numel())]
        to_layer, null = with_floor(INPUT, layer)
        out += [(layer, "te_x", to_layer.mean()), (layer, "te_x_floor", null.null_mean),
                (layer, "te_x_p", null.p_value)]
        if layer != output:
            from_layer, null = with_floor(layer, output)
            out += [(layer, "te_y", from_layer.mean()), (layer, "te_y_floor", null.null_mean),
                    (layer, "te_y_p", null.p_value)]
    series.clear()
    return out
