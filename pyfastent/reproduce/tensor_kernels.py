"""Wickstrøm et al.: information planes of an MLP and a CNN with
tensor-kernel matrix-based Rényi entropy, kNN and label-alignment widths."""
from __future__ import annotations

import math
import time

import torch

from pyfastent import data, models, plot
from pyfastent.estimators import Renyi
from pyfastent.estimators.base import SATURATION
from pyfastent.nn import InformationPlane
from pyfastent.nn.train import train_classifier
from pyfastent.reproduce._report import Report, Settings, describe_settings, write_csv

TITLE = "Information planes with tensor-kernel matrix-based Rényi entropy"
PAPER = ("Wickstrøm, Løkse, Kampffmeyer, Yu, Príncipe & Jenssen, \"Information Plane Analysis of Deep Neural "
         "Networks via Matrix-Based Rényi's Entropy and Tensor Kernels\" (2019; Entropy 25:899, 2023).")
CLAIM = ("Information planes measured with tensor-kernel matrix-based Rényi entropy show a fitting phase, in which "
         "I(T;Y) of every layer rises, and a compression phase, in which the later layers lose I(X;T) as training "
         "goes on (most clearly on the training data).")
MARGIN = 0.05  # bits: a change smaller than this is not counted
RULE = (f"Measured on a fixed probe of training samples, α = 1.01, one tensor kernel per layer, for an MLP and a CNN "
        f"and for both width rules (kNN, k = 10; label alignment), with σ smoothed across epochs (m = 0.9). "
        f"**Fitting** holds if I(T;Y) at the last epoch exceeds I(T;Y) at the first by more than {MARGIN} bits for "
        f"at least 75% of the (model, width rule, layer) curves. **Compression** holds if, for at least half of the "
        f"(model, width rule) pairs, most of the later layers (the second half of the hidden layers) end at least "
        f"{MARGIN} bits below their own maximum I(X;T). A curve whose H(T) reaches log2(0.9·N) (saturated: it "
        f"measures N, not the layer) counts as failing. The claim is **supported** if both parts hold, **not "
        f"supported** if neither does, **inconclusive** otherwise.")


def _networks(quick: bool):
    mlp_width = 0.25 if quick else 1.0  # hidden widths 256, 5, 5, 5 (quick) or 1024, 20, 20, 20
    return {"mlp": models.mlp(width=mlp_width, in_features=64, activation="tanh"),
            "cnn": models.mnist_cnn(in_size=8)}


def run(settings: Settings) -> Report:
    started = time.perf_counter()
    epochs, probe_size = (25, 300) if settings.quick else (150, 1000)
    torch.manual_seed(settings.seed)
    split = data.digits(seed=settings.seed).to(settings.device)
    x_probe, y_probe = split.x_train[:probe_size], split.y_train[:probe_size]
    ceiling = math.log2(SATURATION * probe_size)
    rows, curves, figures, accuracy = [], [], [], {}
    for model_name, net in _networks(settings.quick).items():
        net = net.to(settings.device)
        estimators = (Renyi(), Renyi(sigma="alignment", labels=y_probe))
        tracker = InformationPlane(net, x_probe, y_probe, estimators=estimators, sigma_smoothing=0.9, progress=False)
        history = train_classifier(net, split, epochs, seed=settings.seed, progress=settings.progress,
                                   on_epoch=lambda s: tracker.step(epoch=s.epoch, loss=s.loss,
                                                                   test_accuracy=s.test_accuracy))
        accuracy[model_name] = history[-1].test_accuracy
        rows += [{"model": model_name, **r} for r in tracker.rows]
        figures.append(plot.information_plane(tracker, settings.out / f"information_plane_{model_name}.png"))
        figures.append(plot.layer_curves(tracker, settings.out / f"layer_curves_{model_name}.png"))
        hidden = [n for n in tracker.names if n != "out"]
        for est in tracker.table.metadata["estimators"]:
            for layer in hidden:
                def series(q):
                    return [r["value"] for r in tracker.table.values(q, est) if r["layer"] == layer]

                i_xt, i_ty, h_t = series("i_xt"), series("i_ty"), series("h_t")
                curves.append({"model": model_name, "estimator": est, "layer": layer,
                               "later": hidden.index(layer) >= len(hidden) / 2,
                               "saturated": max(h_t) >= ceiling,
                               "i_ty_first": i_ty[0], "i_ty_last": i_ty[-1],
                               "i_xt_max": max(i_xt), "i_xt_last": i_xt[-1]})
    table = write_csv(rows, settings.out / "results.csv")
    return _report(curves, accuracy, figures, table,
                   describe_settings(settings, started, epochs=epochs, probe=f"{probe_size} training samples"))


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
        "\n".join(lines),
    ]
    reason = {"supported": "Both the fitting and the compression part hold by the rule.",
              "not supported": "Neither part holds by the rule.",
              "inconclusive": f"Only the {'fitting' if fitting else 'compression'} part holds by the rule."}[verdict]
    return Report(TITLE, PAPER, CLAIM, RULE, verdict, reason, measured, figures, table, settings)
