"""Wickstrøm et al.: information planes of an MLP and a CNN with
tensor-kernel matrix-based Rényi entropy, kNN and label-alignment widths,
estimated as the paper's code does: on mini-batches, averaged."""
from __future__ import annotations

import math
import time
from collections import defaultdict

import torch

from pyfastent import data, models, plot
from pyfastent.estimators import Renyi
from pyfastent.estimators.base import SATURATION
from pyfastent.nn import InformationPlane
from pyfastent.nn.table import PlaneTable
from pyfastent.nn.train import train_classifier
from pyfastent.reproduce._report import Report, Settings, describe_settings, write_csv

TITLE = "Information planes with tensor-kernel matrix-based Rényi entropy"
PAPER = ("Wickstrøm, Løkse, Kampffmeyer, Yu, Príncipe & Jenssen, \"Information Plane Analysis of Deep Neural "
         "Networks via Matrix-Based Rényi's Entropy and Tensor Kernels\" (2019; Entropy 25:899, 2023).")
CLAIM = ("Information planes measured with tensor-kernel matrix-based Rényi entropy show a fitting phase, in which "
         "I(T;Y) of every layer rises, and a compression phase, in which the later layers lose I(X;T) as training "
         "goes on (most clearly on the training data).")
MARGIN = 0.05  # bits: a change smaller than this is not counted
BATCH = 100  # samples per estimate, as the paper's code estimates
ITERATION_MOMENTUM = 0.9  # the paper's β of σ_t = β·σ_{t−1} + (1 − β)·σ*_t, one update per training iteration
TRAIN_BATCH = 32  # train_classifier's default mini-batch
RULE = (f"Measured after every epoch on mini-batches of {BATCH} training samples (the same batches each epoch), "
        f"each quantity the mean over the batches, α = 1.01, one tensor kernel per layer, for an MLP and a CNN and "
        f"for both width rules (kNN, k = 10; label alignment), σ smoothed as the paper's moving average over "
        f"training iterations (β = {ITERATION_MOMENTUM}). "
        f"**Fitting** holds if I(T;Y) at the last epoch exceeds I(T;Y) at the first by more than {MARGIN} bits for "
        f"at least 75% of the (model, width rule, layer) curves. **Compression** holds if, for at least half of the "
        f"(model, width rule) pairs, most of the later layers (the second half of the hidden layers) end at least "
        f"{MARGIN} bits below their own maximum I(X;T). A curve whose H(T) reaches log2(0.9·n) in any batch "
        f"(saturated: it measures the batch size n, not the layer) counts as failing. The claim is **supported** if "
        f"both parts hold, **not supported** if neither does, **inconclusive** otherwise.")
CODE = "Wickstrom/InformationTheoryExperiment"
SETUP = [
    f"Mini-batches: the code's `compute_mi` (`python/network.py`, {CODE}) splits the samples into batches "
    f"(`make_batches`), measures every layer on each batch and returns the mean over them (`np.array(MI).mean(0)`); "
    f"its per-iteration script (`iteration_cnnhero_ex.py`) measures after every 1200 training samples on 200 test "
    f"samples in batches of {BATCH} (`batch_size_te // 2`). Here the first 1000 training samples (300 in quick "
    f"runs) are cut into batches of {BATCH}, the same for the whole run, so that epochs differ only by the "
    f"network. They are training samples because the claim is about the training data (the 2023 paper: "
    f"compression is apparent mostly for the training data).",
    "Width by label alignment (the paper's rule): for each layer and batch, the σ maximizing "
    "⟨K_σ, K_Y⟩_F / (‖K_σ‖_F ‖K_Y‖_F) (uncentred, as the paper defines it), K_Y the labels' kernel. The code "
    "gives the labels as one-hot codes with a narrow RBF; between classes its kernel is below 1e-9, so K_Y here "
    "is the delta kernel. The search range is not given in the paper's text or code read for this report; here "
    "60 log-spaced factors from 0.05 to 5 of the layer's median pairwise distance (`pyfastent.widths.Alignment`).",
    f"Smoothing: the paper's σ_t = β·σ_{{t−1}} + (1 − β)·σ*_t with β = {ITERATION_MOMENTUM} moves once per training "
    f"iteration, and the code measures after every iteration. Measured once per epoch, the same recursion run over "
    f"the epoch's iterations with σ* held is σ_t = β^n·σ_{{t−1}} + (1 − β^n)·σ*_t, n the iterations per epoch; "
    f"that is the momentum used. An earlier version of this reproduction applied β = {ITERATION_MOMENTUM} per "
    f"epoch: σ then trailed the layers' distances, which grow several-fold in the first epochs (the CNN's median "
    f"pairwise distance from epoch 1 to 10, 1000 samples: conv2 0.82 → 4.87, fc1 0.42 → 8.63), so H(T) reached "
    f"the saturation ceiling in early epochs (every CNN layer from conv2 on, paper-sized).",
    "Kernel: one RBF on the flattened layer output (the tensor kernel). The code writes exp(−d²/σ²) "
    "(`calc_kernel`, commit 09a2a51; a later commit uses exp(−d²/(2σ²))), ours exp(−d²/(2σ²)): a width search "
    "picks the same kernel matrix in either form. X gets its width by the same rule as the layers; Y is the "
    "labels' delta kernel.",
    "kNN, k = 10 (mean distance to the 10 nearest other samples) is this library's default rule, the second of "
    "the rule's two; it is not the paper's. The code's earlier rule is the mean distance to the n_n-th nearest "
    "sample in exp(−d²/σ²).",
    "α = 1.01, entropies in bits from the eigenvalues of the trace-normalized Gram matrix, "
    "I(X;T) = H(X) + H(T) − H(X,T) with the Hadamard product for the joint (the code's `entropy` and "
    "`j_entropy`, α = 1.01 in its `small_test`).",
    "Data and networks: scikit-learn's 8×8 digits instead of MNIST (nothing is downloaded); the MLP "
    "64-1024-20-20-20-10 (tanh) and a small two-block CNN (4 and 8 filters); Adam at lr 1e-3 as the "
    "code's `train_model`, mini-batches of 32. Every layer of the network is measured (conv, ReLU and pooling "
    "outputs separately); the output layer is measured before its softmax.",
]


def _networks(quick: bool):
    mlp_width = 0.25 if quick else 1.0  # hidden widths 256, 5, 5, 5 (quick) or 1024, 20, 20, 20
    return {"mlp": models.mlp(width=mlp_width, in_features=64, activation="tanh"),
            "cnn": models.mnist_cnn(in_size=8)}


def epoch_momentum(beta: float, iterations: int) -> float:
    """The momentum per measurement of a moving average with momentum
    ``beta`` per training iteration, ``iterations`` iterations apart:
    σ ← β·σ + (1 − β)·σ* applied n times with σ* held is
    σ ← β^n·σ + (1 − β^n)·σ*."""
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations!r}")
    return beta ** iterations


class BatchPlanes:
    """One ``InformationPlane`` per mini-batch of ``batch`` probe samples,
    both width rules on each, and the mean over the batches (the paper's
    ``compute_mi``).

    Args:
        net: the model.
        x, y: the probe (N, ...) and its labels (N,); N a multiple of ``batch``.
        batch: samples per estimate.
        momentum: σ smoothing per measured step (``epoch_momentum``).
    """

    def __init__(self, net, x, y, batch: int, momentum: float | None):
        if len(y) % batch:
            raise ValueError(f"the probe's {len(y)} samples are not a multiple of batch={batch}")
        self.planes = [InformationPlane(net, x[s:s + batch], y[s:s + batch],
                                        estimators=(Renyi(), Renyi(sigma="alignment", labels=y[s:s + batch])),
                                        sigma_smoothing=momentum, progress=False)
                       for s in range(0, len(y), batch)]
        self.seconds = 0.0  # spent measuring

    @property
    def names(self) -> list:
        return self.planes[0].names

    def step(self, **metrics) -> None:
        started = time.perf_counter()
        for plane in self.planes:
            plane.step(**metrics)
        self.seconds += time.perf_counter() - started

    def mean_table(self) -> PlaneTable:
        """The rows of the first batch's table with each value the mean over
        the batches (σ included); the labels' entropy is their mean too."""
        values = defaultdict(list)
        for plane in self.planes:
            for r in plane.rows:
                values[_key(r)].append(r["value"])
        rows = [{**r, "value": math.fsum(values[_key(r)]) / len(self.planes)} for r in self.planes[0].rows]
        label_bits = [p.table.metadata["label_entropy_bits"] for p in self.planes]
        metadata = {**self.planes[0].table.metadata, "estimation_batches": len(self.planes),
                    "label_entropy_bits": math.fsum(label_bits) / len(label_bits)}
        return PlaneTable(metadata, rows)

    def highest_entropy(self, estimator: str, layer: str) -> float:
        """The highest H(T) of ``layer`` in any batch at any step."""
        return max(r["value"] for p in self.planes for r in p.table.values("h_t", estimator) if r["layer"] == layer)


def _key(row) -> tuple:
    return row["step"], row["layer"], row["estimator"], row["quantity"]


def run(settings: Settings) -> Report:
    started = time.perf_counter()
    epochs, probe_size = (25, 300) if settings.quick else (150, 1000)
    torch.manual_seed(settings.seed)
    split = data.digits(seed=settings.seed).to(settings.device)
    x_probe, y_probe = split.x_train[:probe_size], split.y_train[:probe_size]
    iterations = math.ceil(len(split.y_train) / TRAIN_BATCH)
    momentum = epoch_momentum(ITERATION_MOMENTUM, iterations)
    ceiling = math.log2(SATURATION * BATCH)
    rows, curves, figures, accuracy = [], [], [], {}
    seconds = {"training": 0.0, "measuring": 0.0, "pictures": 0.0}
    for model_name, net in _networks(settings.quick).items():
        net = net.to(settings.device)
        planes = BatchPlanes(net, x_probe, y_probe, BATCH, momentum)
        trained = time.perf_counter()
        history = train_classifier(net, split, epochs, batch_size=TRAIN_BATCH, seed=settings.seed,
                                   progress=settings.progress,
                                   on_epoch=lambda s: planes.step(epoch=s.epoch, loss=s.loss,
                                                                  test_accuracy=s.test_accuracy))
        seconds["training"] += time.perf_counter() - trained - planes.seconds
        seconds["measuring"] += planes.seconds
        accuracy[model_name] = history[-1].test_accuracy
        table = planes.mean_table()
        rows += [{"model": model_name, **r} for r in table.rows]
        drawn = time.perf_counter()
        figures.append(plot.information_plane(table, settings.out / f"information_plane_{model_name}.png"))
        figures.append(plot.layer_curves(table, settings.out / f"layer_curves_{model_name}.png"))
        seconds["pictures"] += time.perf_counter() - drawn
        curves += _curves(model_name, table, planes, ceiling)
    table = write_csv(rows, settings.out / "results.csv")
    parts = ", ".join(f"{part} {s:.1f} s" for part, s in seconds.items())
    described = describe_settings(
        settings, started, epochs=epochs,
        probe=f"{probe_size // BATCH} mini-batches of {BATCH} training samples, each quantity their mean",
        width_momentum=f"{momentum:.4f} per epoch ({ITERATION_MOMENTUM} per iteration, {iterations} iterations)",
        time_per_part=parts)
    return _report(curves, accuracy, figures, table, described)


def _curves(model_name: str, table: PlaneTable, planes: BatchPlanes, ceiling: float) -> list:
    hidden = [n for n in planes.names if n != "out"]
    curves = []
    for est in table.metadata["estimators"]:
        for layer in hidden:
            def series(q):
                return [r["value"] for r in table.values(q, est) if r["layer"] == layer]

            i_xt, i_ty = series("i_xt"), series("i_ty")
            curves.append({"model": model_name, "estimator": est, "layer": layer,
                           "later": hidden.index(layer) >= len(hidden) / 2,
                           "saturated": planes.highest_entropy(est, layer) >= ceiling,
                           "i_ty_first": i_ty[0], "i_ty_last": i_ty[-1],
                           "i_xt_max": max(i_xt), "i_xt_last": i_xt[-1]})
    return curves


def _report(curves, accuracy, figures, table, settings) -> Report:
    fits = [c["i_ty_last"] - c["i_ty_first"] > MARGIN and not c["saturated"] for c in curves]
    fitting = sum(fits) >= 0.75 * len(fits)
    pairs = {(c["model"], c["estimator"]) for c in curves}
    compressing_pairs = []
    for pair in sorted(pairs):
        later = [c for c in curves if (c["model"], c["estimator"]) == pair and c["later"]]
        drops = [c["i_xt_max"] - c["i_xt_last"] > MARGIN and not c["saturated"] for c in later]
        if sum(drops) > len(drops) / 2:
            compressing_pairs.append(pair)
    compression = len(compressing_pairs) >= len(pairs) / 2
    verdict = "supported" if fitting and compression else "not supported" if not (fitting or compression) \
        else "inconclusive"
    saturated = [f"{c['model']} {c['estimator']} {c['layer']}" for c in curves if c["saturated"]]
    lines = ["| model | estimator | layer | I(T;Y) first → last | I(X;T) max → last | saturated |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {c['model']} | {c['estimator']} | {c['layer']}{' (later)' if c['later'] else ''} | "
              f"{c['i_ty_first']:.3f} → {c['i_ty_last']:.3f} | {c['i_xt_max']:.3f} → {c['i_xt_last']:.3f} | "
              f"{'yes' if c['saturated'] else ''} |" for c in curves]
    measured = [
        "Test accuracy at the end: " + ", ".join(f"{m} {a:.3f}" for m, a in accuracy.items()) + ".",
        f"Fitting: I(T;Y) rose by more than {MARGIN} bits in {sum(fits)} of {len(fits)} curves "
        f"({'holds' if fitting else 'does not hold'}). Compression: later layers lost more than {MARGIN} bits of "
        f"I(X;T) from their maximum in {len(compressing_pairs)} of {len(pairs)} (model, width rule) pairs "
        f"({', '.join(f'{m} {e}' for m, e in compressing_pairs) or 'none'}; "
        f"{'holds' if compression else 'does not hold'}).",
        f"Saturated curves (H(T) ≥ log2(0.9·{BATCH}) = {math.log2(SATURATION * BATCH):.2f} bits in some batch): "
        + (f"{len(saturated)}, counted as failing: {', '.join(saturated)}." if saturated else "none."),
        "\n".join(lines),
    ]
    reason = {"supported": "Both the fitting and the compression part hold by the rule.",
              "not supported": "Neither part holds by the rule.",
              "inconclusive": f"Only the {'fitting' if fitting else 'compression'} part holds by the rule."}[verdict]
    return Report(TITLE, PAPER, CLAIM, RULE, verdict, reason, measured, figures, table, settings, SETUP)
