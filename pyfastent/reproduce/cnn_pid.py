"""Yu, Wickstrøm, Jenssen & Príncipe: data processing inequalities along a
CNN with the multivariate (per-channel) estimator, and the PID of feature
maps over training and as a function of the number of maps."""
from __future__ import annotations

import time

import torch

from pyfastent import data, models, plot
from pyfastent.estimators import Renyi
from pyfastent.measures import pid
from pyfastent.nn import InformationPlane, capture, dpi_pairs, dpi_violations, feature_map_pid
from pyfastent.nn.train import train_classifier
from pyfastent.reproduce._report import Report, Settings, describe_settings, write_csv
from pyfastent.significance import permutation_test

TITLE = "Data processing inequalities and PID of feature maps in a CNN"
PAPER = ("Yu, Wickstrøm, Jenssen & Príncipe, \"Understanding Convolutional Neural Networks with Information "
         "Theory: An Initial Exploration\", IEEE TNNLS 32(1), 2021.")
CLAIM = ("With the multivariate matrix-based Rényi estimator (each feature map its own variable, joined by the "
         "Hadamard product), both data processing inequalities hold along a CNN's layers: "
         "I(X;T₁) ≥ I(X;T₂) ≥ … and I(T₁;Y) ≥ I(T₂;Y) ≥ ….")
SLACK = 0.05  # bits
RULE = (f"Every epoch, for each pair of layers where the later one is computed from the earlier alone (the "
        f"model's torch.fx graph), both I(X;T) and I(T;Y) are checked, conv layers per channel, α = 1.01, kNN "
        f"widths. A check passes when the later value exceeds the earlier by at most {SLACK} bits. The claim is "
        f"**supported** if at least 90% of all checks pass, **not supported** if at most 50% do, "
        f"**inconclusive** otherwise. The partial information decomposition of the feature maps (redundancy, "
        f"synergy, the trade-off (Rdn − Syn)/I and the non-redundant ratio (I − Rdn)/I, for k = 2 … C maps) is "
        f"reported alongside, without a verdict, with permutation p-values (labels shuffled) of I(Y; all maps) and "
        f"of the synergy at the last epoch.")


def significance(net, x_probe, y_probe, layers, permutations: int, seed: int) -> list:
    """Permutation tests of I(Y; all maps) and of the synergy, per layer."""
    maps = capture(net, x_probe, layers=layers)
    rows = []
    for name, activation in maps.items():
        sources = [activation[:, c] for c in range(activation.shape[1])]
        dead = sum(bool((m == m.flatten()[0]).all()) for m in sources)  # constant over the probe
        for quantity, statistic in (("mutual_information", None), ("synergy", lambda r: float(r.synergy))):
            test = permutation_test(pid, y_probe, sources, estimator=Renyi(), n_permutations=permutations,
                                    seed=seed, statistic=statistic)
            rows.append({"layer": name, "dead_maps": dead, "quantity": quantity, "value": test.value, "null_mean": test.null_mean,
                         "null_std": test.null_std, "p": test.p_value})
    return rows


def run(settings: Settings) -> Report:
    started = time.perf_counter()
    # probe_size None: the whole test split (449 of the digits)
    epochs, probe_size, width, every, permutations = (20, 300, 1.0, 5, 50) if settings.quick else \
        (60, None, 2.0, 10, 200)
    torch.manual_seed(settings.seed)
    split = data.digits(seed=settings.seed).to(settings.device)
    x_probe, y_probe = split.x_test[:probe_size], split.y_test[:probe_size]
    net = models.mnist_cnn(in_size=8, width=width).to(settings.device)
    layers = ["relu1", "pool1", "relu2", "pool2", "relu3", "out"]
    tracker = InformationPlane(net, x_probe, y_probe, estimators=(Renyi(),), layers=layers, channels=True,
                               progress=False)
    pid_rows = []

    def on_epoch(stats):
        tracker.step(epoch=stats.epoch, loss=stats.loss, test_accuracy=stats.test_accuracy)
        if stats.epoch == 1 or stats.epoch % every == 0:
            maps = capture(net, x_probe, layers=["relu1", "relu2"])
            for name, activation in maps.items():
                for r in feature_map_pid(activation, y_probe, estimator=Renyi()):
                    pid_rows.append({"epoch": stats.epoch, "layer": name, **{k: float(v) for k, v in r.items()}})

    history = train_classifier(net, split, epochs, seed=settings.seed, progress=settings.progress, on_epoch=on_epoch)
    pairs, how = dpi_pairs(net, tracker.names)
    label = tracker.estimators[0].label
    checks = []
    for epoch in sorted({r["epoch"] for r in tracker.rows}):
        wide = {}
        for r in tracker.rows:
            if r["epoch"] == epoch and r["quantity"] in ("i_xt", "i_ty"):
                wide.setdefault(r["layer"], {"estimator": label, "layer": r["layer"]})[r["quantity"]] = r["value"]
        violations = dpi_violations(list(wide.values()), SLACK, pairs)
        checks.append((epoch, 2 * len(pairs), violations))
    tests = significance(net, x_probe, y_probe, ["relu1", "relu2"], permutations, settings.seed)
    rows = [{"source": "information plane", **r} for r in tracker.rows]
    rows += [{"source": "pid", **r} for r in pid_rows]
    rows += [{"source": "permutation test", "epoch": epochs, **r} for r in tests]
    table = write_csv(rows, settings.out / "results.csv")
    figures = [plot.information_plane(tracker, settings.out / "information_plane.png"),
               plot.layer_curves(tracker, settings.out / "layer_curves.png"),
               plot.pid_curves(pid_rows, settings.out / "pid.png")]
    return _report(checks, pairs, how, pid_rows, tests, history[-1].test_accuracy, figures, table,
                   describe_settings(settings, started, epochs=epochs, probe=f"{len(y_probe)} test samples",
                                     filters=f"{net.conv1.out_channels} and {net.conv2.out_channels}",
                                     permutations=permutations))


def _bits(value: float) -> str:
    text = f"{value:.3f}"
    return "0.000" if text == "-0.000" else text


def _report(checks, pairs, how, pid_rows, tests, accuracy, figures, table, settings) -> Report:
    total = sum(n for _, n, _ in checks)
    failed = sum(len(v) for _, _, v in checks)
    passed = (total - failed) / total if total else 0.0
    verdict = "supported" if passed >= 0.9 else "not supported" if passed <= 0.5 else "inconclusive"
    worst = [v for _, _, vs in checks for v in vs]
    worst = max(worst, key=lambda v: v["size"]) if worst else None
    last_epoch = max(r["epoch"] for r in pid_rows)
    pid_lines = ["| layer | k | I(Y; k maps) | redundancy | synergy | trade-off | non-redundant |",
                 "|---|---|---|---|---|---|---|"]
    pid_lines += [f"| {r['layer']} | {r['k']:.0f} | "
                  + " | ".join(_bits(r[q]) for q in ("mutual_information", "redundancy", "synergy", "tradeoff",
                                                     "nonredundant")) + " |"
                  for r in pid_rows if r["epoch"] == last_epoch]
    dead = {t["layer"]: t["dead_maps"] for t in tests}
    measured = [
        f"Test accuracy at the end: {accuracy:.3f}. Layer pairs checked ({how}): "
        + ", ".join(f"{a} → {b}" for a, b in pairs) + ".",
        f"{total - failed} of {total} checks passed ({passed:.0%}) over {len(checks)} epochs."
        + (f" The largest rise: {worst['quantity']} from {worst['earlier']} to {worst['later']} by "
           f"{worst['size']:.3f} bits." if worst else " No rise beyond the slack."),
        f"PID of the feature maps at epoch {last_epoch} (bits; the first k maps of each layer):\n\n"
        + "\n".join(pid_lines)
        + "\n\nMaps constant over the probe (dead; they carry nothing, so the redundancy of any set holding one is "
          "0): " + ", ".join(f"{layer} {n}" for layer, n in dead.items()) + ".",
        "Against shuffled labels at the last epoch (bits):\n\n| layer | quantity | value | null mean ± sd | p |\n"
        "|---|---|---|---|---|\n" + "\n".join(
            f"| {t['layer']} | {t['quantity'].replace('_', ' ')} | {t['value']:.3f} | {t['null_mean']:.3f} ± "
            f"{t['null_std']:.3f} | {t['p']:.3f} |" for t in tests),
    ]
    reason = f"{passed:.0%} of the data processing checks passed; the rule needs 90% for supported."
    return Report(TITLE, PAPER, CLAIM, RULE, verdict, reason, measured, figures, table, settings)
