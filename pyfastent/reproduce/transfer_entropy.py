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
from pyfastent.nn.transfer import SOFTMAX_THRESHOLD, TE_ESTIMATOR
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
THRESHOLD = 1.0  # the code's tr1 (RunConfig.py): |a| ≥ 1 on the pre-activations
WINDOW = 1000
# The linear layers' outputs (pre-activations, as the code binarizes fc8 before its softmax); the last is the output.
LAYERS = ["fc1", "fc2", "fc3", "fc4", "out"]
CODE = "avmoldovan/CNN-TE (commit 1cf87ec)"
SETUP = [
    f"Binarization |a| ≥ {THRESHOLD:g} of each hidden layer's pre-activation (the linear map before tanh): the "
    f"code binarizes the pre-softmax outputs of `fc8` with `xb[(xb <= -self.g1) | (xb >= self.g1)] = 1` "
    f"(`Cifar10CNN.py`), and `tr1` (= g1) is 1.0 in the `RunConfig.py` settings of USPS, FashionMNIST, CIFAR10, "
    f"SVHN and STL10 ({CODE}); DESIGN.md 3.5 has the threshold on pre-activations too. On the tanh outputs this is "
    f"|tanh z| ≥ {math.tanh(THRESHOLD):.2f}.",
    f"The output as softmax p ≥ {SOFTMAX_THRESHOLD:g}: `xb[xb >= self.g2] = 1` on `self.softmaxoutput`, `tr2` = 0.9 in every "
    "setting that has one.",
    "Time is the order in which the training loader feeds the samples, shuffled every epoch: the code appends "
    "each training batch's binarized rows (`prepare_activations` in `NNutils.py`, from `forward` while "
    "`self.training`) and its loader has `shuffle=True` (`run_main.py`). Probe passes are not recorded.",
    f"The window is the last {WINDOW} training samples of the epoch, emptied after each measurement: the code "
    "keeps the most recent `te_length` rows (`activations[:, -...:]`) and starts anew each epoch "
    "(`rolling_te_window: False`, `new_epoch()` resets `fc8activ`). Its `te_length` is 500 for USPS and "
    f"FashionMNIST and 512 for CIFAR10; {WINDOW} here, so that the power check below detects its flow of "
    "7.2 millibits: with 200 shuffles, p < 0.05 for seeds 0-4 in 5 of 5 at 1000 samples and 2 of 5 at 500 "
    "(measured; the digits' 1347 training samples hold either).",
    "Lag 1 and history length 1 (TE_{S→T} = I(T_{t+1}; S_t | T_t)): the code's `TEDiscrete`/`TEWindow` with "
    "k = 1 in base 2 (`PyTE/TEDiscrete.py`; the fixtures check our estimator against it).",
    "Source and target: the code measures neuron pairs between the last two layers (`fc8` → softmax, "
    "`calc_fc` over every pair). Here: every pair of consecutive layers (`te_in_mean`, the generalization "
    "part of the rule), and, for the TE plane, the input X → layer T and layer T → the output Ŷ, over at most "
    "4096 random neuron pairs per layer pair (the code's `fc8rate` option samples a share of the pairs too; its "
    "settings use all 10 × 10 pairs of its last two layers, `fc8rate: 0`; here fc1 → fc2 has 20 480).",
]
RULE = (f"The 64-1024-20-20-20-10 MLP (tanh) on digits; after every epoch, for the pre-activations of its layers, TE over the last window of training samples fed, neurons "
        f"binarized as |a| ≥ {THRESHOLD:g} (the output as softmax ≥ {SOFTMAX_THRESHOLD:g}), lag 1. **Flow**: TE(X → T) beats its null "
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
    te = LayerTE(window=WINDOW, threshold=THRESHOLD, floor_permutations=permutations, seed=settings.seed)
    tracker = InformationPlane(net, x_probe, y_probe, estimators=(), layers=LAYERS, transfer_entropy=te,
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
    return Report(TITLE, PAPER, CLAIM, RULE, verdict, reason, measured, figures, table, settings, SETUP)
