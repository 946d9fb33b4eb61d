"""Moldovan, Cataron & Andonie: transfer entropy between the layers of a
network during training, the TE plane, and how it moves with generalization,
against a noise floor of time-shuffled source series."""
from __future__ import annotations

import math
import time

import torch

from pyfastent import data, models, plot
from pyfastent.estimators import Discrete
from pyfastent.measures import transfer_entropy
from pyfastent.nn import InformationPlane, LayerTE
from pyfastent.nn.transfer import TE_ESTIMATOR
from pyfastent.nn.train import train_classifier
from pyfastent.reproduce._report import Report, Settings, describe_settings, spearman, write_csv
from pyfastent.significance import permutation_test

TITLE = "Transfer entropy between layers during training"
PAPER = ("Moldovan, Cataron & Andonie, \"Information Plane Analysis Visualization in Deep Learning via Transfer "
         "Entropy\" (2023/2024).")
CLAIM = ("Transfer entropy from the input into each layer, computed on binarized neuron outputs over consecutive "
         "training samples, measures a real information flow, and its course over training follows the "
         "network's generalization (the train/test accuracy gap).")
ALPHA = 0.05
MIN_SIGNIFICANT = 0.5
MIN_CORRELATION = 0.5
FLIP = 0.45  # the power check's copy error: TE = 1 − H_b(0.45) ≈ 0.0072 bits, a few times the plane's values
RULE = (f"The 64-1024-20-20-20-10 MLP (tanh) on digits; after every epoch, for the outputs of its layers, TE over the last window of training samples fed, neurons "
        f"binarized as |a| ≥ 0.5 (the output as softmax ≥ 0.9), lag 1. **Flow**: TE(X → T) beats its null "
        f"(the source series shuffled in time, `pyfastent.permutation_test`) at p < {ALPHA} in at least "
        f"{MIN_SIGNIFICANT:.0%} of the (layer, epoch ≥ 2) cases. **Generalization**: the Spearman correlation "
        f"over epochs between the mean TE between consecutive layers (averaged over layers) and the train − test "
        f"accuracy gap has |ρ| ≥ {MIN_CORRELATION}. The claim is **supported** if both hold, **not supported** if "
        f"neither does, **inconclusive** otherwise. A power check is reported beside it: the same test on one "
        f"pair of fair random bit series over the same window, the target copying the source with probability "
        f"{1 - FLIP:.2f} (closed form 1 − H_b({FLIP}) bits).")


def power_check(window: int, permutations: int, seed: int) -> dict:
    """The permutation test on a weak flow of known size: is the window long
    enough to tell TE of a few millibits from the floor?"""
    g = torch.Generator().manual_seed(seed)
    source = torch.randint(0, 2, (window,), generator=g)
    copied = torch.roll(source, 1)
    flips = torch.rand(window, generator=g) < FLIP
    target = torch.where(flips, 1 - copied, copied)
    test = permutation_test(transfer_entropy, source, target, estimator=Discrete(), n_permutations=permutations,
                            seed=seed)
    exact = 1 + FLIP * math.log2(FLIP) + (1 - FLIP) * math.log2(1 - FLIP)
    return {"exact": exact, "value": test.value, "null_mean": test.null_mean, "p": test.p_value}


def run(settings: Settings) -> Report:
    started = time.perf_counter()
    epochs, permutations = (12, 50) if settings.quick else (40, 200)
    torch.manual_seed(settings.seed)
    split = data.digits(seed=settings.seed).to(settings.device)
    x_probe, y_probe = split.x_test, split.y_test
    net = models.mlp(in_features=64, activation="tanh").to(settings.device)
    te = LayerTE(window=1000, floor_permutations=permutations, seed=settings.seed)
    # The layers' outputs (tanh, softmax); the linear maps before them would repeat each binarization.
    layers = ["act1", "act2", "act3", "act4", "out"]
    tracker = InformationPlane(net, x_probe, y_probe, estimators=(), layers=layers, transfer_entropy=te,
                               progress=False)
    gaps = {}

    def on_epoch(stats):
        gaps[stats.epoch] = stats.gap
        tracker.step(epoch=stats.epoch, loss=stats.loss, gap=stats.gap, test_accuracy=stats.test_accuracy)

    try:
        history = train_classifier(net, split, epochs, seed=settings.seed, progress=settings.progress,
                                   on_epoch=on_epoch)
    finally:
        tracker.close()
    table = write_csv(tracker.rows, settings.out / "results.csv")
    flow = _by_epoch(tracker.rows, "te_in_mean")
    epochs_seen = sorted(flow)
    figures = [plot.te_plane(tracker, settings.out / "te_plane.png"),
               plot.twin_curves(epochs_seen, {"mean TE between consecutive layers": [flow[e] for e in epochs_seen]},
                                {"train − test accuracy gap": [gaps[e] for e in epochs_seen]},
                                settings.out / "te_and_gap.png", "epoch", "bits", "accuracy gap",
                                "Transfer entropy and generalization over training")]
    power = power_check(te.window, permutations, settings.seed)
    return _report(tracker.rows, flow, gaps, history[-1], power, figures, table,
                   describe_settings(settings, started, epochs=epochs, hidden=f"{net.fc1.out_features}, "
                                     f"{net.fc2.out_features}, {net.fc3.out_features}, {net.fc4.out_features}",
                                     window=te.window, permutations=permutations))


def _by_epoch(rows, quantity) -> dict:
    """{epoch: mean over layers of ``quantity``}."""
    values: dict = {}
    for r in rows:
        if r["estimator"] == TE_ESTIMATOR and r["quantity"] == quantity:
            values.setdefault(r["epoch"], []).append(r["value"])
    return {e: sum(v) / len(v) for e, v in values.items()}


def _report(rows, flow, gaps, last, power, figures, table, settings) -> Report:
    p_values = [r for r in rows if r["quantity"] == "te_x_p" and r["epoch"] >= 2]
    significant = sum(r["value"] < ALPHA for r in p_values)
    p_out = [r for r in rows if r["quantity"] == "te_y_p" and r["epoch"] >= 2]
    share = significant / len(p_values) if p_values else 0.0
    flows = share >= MIN_SIGNIFICANT
    epochs = sorted(flow)
    rho = spearman([flow[e] for e in epochs], [gaps[e] for e in epochs])
    tracks = abs(rho) >= MIN_CORRELATION
    verdict = "supported" if flows and tracks else "not supported" if not (flows or tracks) else "inconclusive"
    te_x = {(r["layer"], r["epoch"]): r["value"] for r in rows if r["quantity"] == "te_x"}
    floor = {(r["layer"], r["epoch"]): r["value"] for r in rows if r["quantity"] == "te_x_floor"}
    p = {(r["layer"], r["epoch"]): r["value"] for r in rows if r["quantity"] == "te_x_p"}
    final = max(epochs)
    lines = ["| layer | TE(X → T) | null mean | p |", "|---|---|---|---|"]
    lines += [f"| {layer} | {value:.2e} | {floor[layer, epoch]:.2e} | {p[layer, epoch]:.3f} |"
              for (layer, epoch), value in te_x.items() if epoch == final]
    measured = [
        f"Final epoch: train accuracy {last.train_accuracy:.3f}, test accuracy {last.test_accuracy:.3f} "
        f"(gap {last.gap:.3f}).",
        f"Flow: TE(X → T) beat its null at p < {ALPHA} in {significant} of {len(p_values)} (layer, epoch ≥ 2) "
        f"cases ({share:.0%}; {'holds' if flows else 'does not hold'}). Without a verdict: TE(T → Ŷ) beat its "
        f"null in {sum(r['value'] < ALPHA for r in p_out)} of {len(p_out)} such cases.",
        f"Generalization: Spearman ρ = {rho:+.2f} between the mean consecutive-layer TE and the accuracy gap over "
        f"{len(epochs)} epochs ({'holds' if tracks else 'does not hold'}).",
        f"At epoch {final} (bits):\n\n" + "\n".join(lines),
        f"Power check: a flow of {power['exact']:.4f} bits (closed form) was estimated at {power['value']:.4f} "
        f"bits against a null mean of {power['null_mean']:.4f}, p = {power['p']:.3f}.",
    ]
    reason = {"supported": "Both parts hold by the rule.",
              "not supported": "Neither part holds by the rule.",
              "inconclusive": f"Only the {'flow' if flows else 'generalization'} part holds by the rule."}[verdict]
    return Report(TITLE, PAPER, CLAIM, RULE, verdict, reason, measured, figures, table, settings)
