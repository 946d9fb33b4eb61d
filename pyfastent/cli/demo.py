"""``pyfastent demo``, the main job: a small CNN trained on the built-in digits
with its information plane tracked, written as pictures, tables and a report.
``nn``, matplotlib and scikit-learn are imported when it runs
(``pyfastent.cli`` says why)."""
from __future__ import annotations

import math
import time

import torch

from pyfastent._text import markdown_table, text_table
from pyfastent.cli.checks import positive, writable_dir
from pyfastent.estimators.base import SATURATION

def run_demo(args) -> int:
    from pyfastent import data, models, plot
    from pyfastent.nn import InformationPlane, LayerTE
    from pyfastent.nn.train import train_classifier

    positive("--epochs", args.epochs)
    positive("--batch-size", args.batch_size)
    positive("--lr", args.lr, float)
    out = writable_dir("--out", args.out)
    log = out / "information_plane.jsonl"
    log.unlink(missing_ok=True)  # a new run of the demo replaces the last one's files

    torch.manual_seed(args.seed)
    split = data.digits(seed=args.seed)
    net = models.mnist_cnn(in_size=8)
    tracker = InformationPlane(net, split.x_test, split.y_test, sigma_smoothing=0.9,
                               transfer_entropy=LayerTE(window=1000, seed=args.seed), log=log, progress=False)
    start = time.perf_counter()
    history = train_classifier(
        net, split, args.epochs, args.batch_size, args.lr, seed=args.seed,
        on_epoch=lambda s: tracker.step(epoch=s.epoch, loss=s.loss, test_accuracy=s.test_accuracy),
        progress=False if args.no_progress else None)
    tracker.close()
    seconds = time.perf_counter() - start
    accuracy = history[-1].test_accuracy

    table_path = tracker.save(out / "information_plane.csv")
    images = [plot.information_plane(tracker, out / "information_plane.png"),
              plot.layer_curves(tracker, out / "layer_curves.png"),
              plot.te_plane(tracker, out / "te_plane.png")]
    summary = _summary_rows(tracker)
    (out / "report.md").write_text(_report(args, tracker, summary, images, seconds))
    print(text_table(summary))
    print(f"\nfinal test accuracy {accuracy:.3f}; {args.epochs} epochs in {seconds:.0f} s")
    print(f"wrote {log.name} (written as it went), {table_path.name}, {', '.join(p.name for p in images)} "
          f"and report.md in {out}")
    return 0


def _summary_rows(tracker) -> list:
    """Last step's I(X;T) and I(T;Y) per layer and estimator, plus layer TE."""
    from pyfastent.nn.plane import TE_ESTIMATOR

    last = max(r["step"] for r in tracker.rows)
    values = {(r["layer"], r["estimator"], r["quantity"]): r["value"] for r in tracker.rows if r["step"] == last}
    rows = []
    for layer in tracker.names:
        row = {"layer": layer}
        for est in tracker.table.metadata["estimators"]:
            row[f"{est} I(X;T)"] = values.get((layer, est, "i_xt"))
            row[f"{est} I(T;Y)"] = values.get((layer, est, "i_ty"))
        row["TE in (mean)"] = values.get((layer, TE_ESTIMATOR, "te_in_mean"))
        rows.append(row)
    return rows


def _report(args, tracker, summary, images, seconds) -> str:
    from pyfastent.nn import dpi_pairs, dpi_violations

    last = max(r["step"] for r in tracker.rows)
    wide: dict = {}
    for r in tracker.rows:
        if r["step"] == last and r["quantity"] in ("i_xt", "i_ty"):
            wide.setdefault((r["estimator"], r["layer"]), {"estimator": r["estimator"], "layer": r["layer"]})[
                r["quantity"]] = r["value"]
    pairs, how = dpi_pairs(tracker.model, tracker.names)
    violations = dpi_violations(list(wide.values()), {e.label: e.dpi_slack for e in tracker.estimators}, pairs)
    dpi = "\n".join(f"- {v['estimator']}: {v['quantity']} rises from {v['earlier']} to {v['later']} by "
                    f"{v['size']:.4g} bits" for v in violations) or "- none"
    meta = tracker.table.metadata
    ceiling = math.log2(SATURATION * meta["probe_size"])
    saturated = sorted({(r["layer"], r["epoch"]) for r in tracker.rows if r["estimator"].startswith("renyi")
                        and r["quantity"] == "h_t" and r["value"] >= ceiling})
    at_ceiling = (f"Rényi H(T) reached log2(0.9·N) = {ceiling:.2f} bits (an effective {SATURATION:.0%} of the "
                  f"{meta['probe_size']} samples distinct) in {len(saturated)} (layer, epoch) pairs, e.g. "
                  + ", ".join(f"{layer} at epoch {epoch}" for layer, epoch in saturated[:6])
                  + ". There the kNN width is far below the spread of the activations and I(X;T), I(T;Y) "
                  "reflect N more than the layer." if saturated else "No Rényi H(T) reached log2(0.9·N).")
    pictures = "\n\n".join(f"![{p.stem}]({p.name})" for p in images)
    return f"""# pyfastent demo

Small CNN (`pyfastent.models.mnist_cnn`) trained for {args.epochs} epochs on scikit-learn's digits
(seed {args.seed}); information plane on the {meta['probe_size']} held-out images, every epoch.
Estimators: {', '.join(f'`{e}`' for e in meta['estimators'])}; binary layer transfer entropy
over the last {meta['transfer_entropy']['window']} training samples. Values in bits. Run time {seconds:.0f} s.

## Last epoch

{markdown_table(summary)}

## Data processing inequality (last epoch)

For each layer and the layer it is computed from alone (pairs from the {how}), the true I(X;T) and
I(T;Y) cannot rise. Estimates can: every layer gets its own kernel width (Rényi) and LogDet's β sets
its scale per layer. Rises beyond each estimator's round-off slack:

{dpi}

## Estimates at their ceiling

{at_ceiling}

## Pictures

{pictures}

Full table: `information_plane.csv` (with `information_plane.meta.json`) and the log
`information_plane.jsonl`, written step by step; read either with
`pyfastent.nn.InformationPlane.load(path)`.
"""
