"""The ``pyfastent`` command: ``demo`` (the main job), ``sweep`` and ``info``."""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import torch

import pyfastent
from pyfastent import Discrete, LogDet, Renyi

ESTIMATORS = {"renyi": Renyi, "logdet": LogDet, "discrete": Discrete}  # LogDet's β: 100·d of X, bound on X


class UsageError(Exception):
    """A mistake on the command line: reported in one line, exit code 2."""


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (UsageError, ValueError, FileNotFoundError, ImportError, MemoryError) as exc:
        print(f"pyfastent {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyfastent", description=pyfastent.__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train a small CNN on the built-in digits and track its information plane")
    demo.add_argument("--out", default="pyfastent-demo", help="output directory (default: ./pyfastent-demo)")
    demo.add_argument("--epochs", type=int, default=20, help="training epochs (default: 20)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the data split, initialization and order")
    demo.add_argument("--batch-size", type=int, default=32)
    demo.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.set_defaults(run=run_demo)

    sweep = sub.add_parser("sweep", help="H(T), I(X;T), I(T;Y) of every layer of your model on your data")
    sweep.add_argument("--model", required=True, help="module:factory, a callable returning the nn.Module")
    sweep.add_argument("--data", required=True, help=".npz file with arrays x (inputs) and y (integer labels)")
    sweep.add_argument("--layers", help="comma-separated module names (default: every leaf layer)")
    sweep.add_argument("--estimators", default="renyi,logdet", help="comma-separated: renyi, logdet, discrete")
    sweep.add_argument("--channels", action="store_true", help="conv maps per channel (multivariate Rényi)")
    sweep.add_argument("--out", default="sweep.csv", help="CSV file to write (default: sweep.csv)")
    sweep.set_defaults(run=run_sweep)

    info = sub.add_parser("info", help="which backend is in use, and why")
    info.set_defaults(run=run_info)
    return parser


def run_info(args) -> int:
    info = pyfastent.backend_info()
    policy = info.pop("auto_kernels")
    for key, value in info.items():
        print(f"{key:18s} {value}")
    if not policy:
        print(f"{'auto policy':18s} no kernel validated on a GPU yet: 'auto' runs every op on torch")
    else:
        print(f"{'auto policy':18s} op, shapes, evidence:")
        for row in policy:
            print(f"  {row['op']:20s} {row['shapes']:28s} {row['evidence']}")
    return 0


def _output_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {path!r} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    return out


def run_demo(args) -> int:
    from pyfastent import data, models, plot
    from pyfastent.nn import InformationPlane, LayerTE

    if args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {args.epochs}")
    out = _output_dir(args.out)
    torch.manual_seed(args.seed)
    split = data.digits(seed=args.seed)
    net = models.mnist_cnn(in_size=8)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    x_probe, y_probe = split.x_test, split.y_test
    tracker = InformationPlane(net, x_probe, y_probe, sigma_smoothing=0.9, transfer_entropy=LayerTE(window=1000, seed=args.seed))
    order = torch.Generator().manual_seed(args.seed)
    bar = _progress(args.epochs, not args.no_progress)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        net.train()
        total = 0.0
        perm = torch.randperm(len(split.y_train), generator=order)
        for b in range(0, len(perm), args.batch_size):
            idx = perm[b : b + args.batch_size]
            loss = torch.nn.functional.cross_entropy(net(split.x_train[idx]), split.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        accuracy = _accuracy(net, split.x_test, split.y_test)
        tracker.step(epoch=epoch, loss=total / len(perm), test_accuracy=accuracy)
        bar.update(1)
        bar.set_postfix(loss=f"{total / len(perm):.3f}", acc=f"{accuracy:.3f}")
    bar.close()
    tracker.close()
    seconds = time.perf_counter() - start

    table_path = tracker.save(out / "information_plane.csv")
    tracker.save(out / "information_plane.jsonl")
    images = [plot.information_plane(tracker, out / "information_plane.png"),
              plot.layer_curves(tracker, out / "layer_curves.png"),
              plot.te_plane(tracker, out / "te_plane.png")]
    summary = _summary_rows(tracker)
    report = _report(args, tracker, summary, images, seconds)
    (out / "report.md").write_text(report)
    print(_text_table(summary))
    print(f"\nfinal test accuracy {accuracy:.3f}; {args.epochs} epochs in {seconds:.0f} s")
    print(f"wrote {table_path}, {', '.join(p.name for p in images)} and report.md in {out}")
    return 0


def _progress(total: int, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:
        raise ImportError('the demo needs tqdm: pip install "pyfastent[demo]"') from None
    return tqdm(total=total, desc="training", unit="epoch", disable=not enabled, file=sys.stderr)


def _accuracy(net, x, y) -> float:
    net.eval()
    with torch.no_grad():
        return float((net(x).argmax(1) == y).double().mean())


def _summary_rows(tracker) -> list:
    """Last step's I(X;T) and I(T;Y) per layer and estimator, plus layer TE."""
    last = max(r["step"] for r in tracker.rows)
    values = {(r["layer"], r["estimator"], r["quantity"]): r["value"] for r in tracker.rows if r["step"] == last}
    rows = []
    for layer in tracker.names:
        row = {"layer": layer}
        for est in tracker.table.metadata["estimators"]:
            short = est.split("(")[0]
            row[f"{short} I(X;T)"] = values.get((layer, est, "i_xt"))
            row[f"{short} I(T;Y)"] = values.get((layer, est, "i_ty"))
        row["TE in (mean)"] = values.get((layer, "binary-te", "te_in_mean"))
        rows.append(row)
    return rows


def _text_table(rows: list) -> str:
    columns = list(rows[0])
    cell = lambda v: "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    widths = [max(len(c), *(len(cell(r[c])) for r in rows)) for c in columns]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(cell(r[c]).rjust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(lines)


def _markdown_table(rows: list) -> str:
    columns = list(rows[0])
    cell = lambda v: "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _report(args, tracker, summary, images, seconds) -> str:
    from pyfastent.nn import dpi_violations
    from pyfastent.nn.graph import dpi_pairs

    last = max(r["step"] for r in tracker.rows)
    wide: dict = {}
    for r in tracker.rows:
        if r["step"] == last and r["quantity"] in ("i_xt", "i_ty"):
            wide.setdefault((r["estimator"], r["layer"]), {"estimator": r["estimator"], "layer": r["layer"]})[
                r["quantity"]] = r["value"]
    pairs, _ = dpi_pairs(tracker.model, tracker.names)
    violations = dpi_violations(list(wide.values()), {e.label: e.dpi_slack for e in tracker.estimators}, pairs)
    dpi = "\n".join(f"- {v['estimator'].split('(')[0]}: {v['quantity']} rises from {v['earlier']} to "
                    f"{v['later']} by {v['size']:.4g} bits" for v in violations) or "- none"
    meta = tracker.table.metadata
    pictures = "\n\n".join(f"![{p.stem}]({p.name})" for p in images)
    return f"""# pyfastent demo

Small CNN (`pyfastent.models.mnist_cnn`) trained for {args.epochs} epochs on scikit-learn's digits
(seed {args.seed}); information plane on the {meta['probe_size']} held-out images, every epoch.
Estimators: {', '.join(f'`{e}`' for e in meta['estimators'])}; binary layer transfer entropy
over the last {meta['transfer_entropy']['window']} training samples. Values in bits. Run time {seconds:.0f} s.

## Last epoch

{_markdown_table(summary)}

## Data processing inequality (last epoch, consecutive layers)

For a feed-forward chain the true I(X;T) and I(T;Y) cannot rise from one layer to the next. Estimates
can: every layer gets its own kernel width (Rényi) and LogDet's β sets its scale per layer. Rises:

{dpi}

## Pictures

{pictures}

Full table: `information_plane.csv` (and `.jsonl`); read it with
`pyfastent.nn.InformationPlane.load(path)`.
"""


def run_sweep(args) -> int:
    import numpy as np

    from pyfastent.nn import layer_sweep

    model = _load_model(args.model)
    path = Path(args.data)
    if not path.is_file():
        raise FileNotFoundError(f"--data {args.data!r} does not exist")
    try:
        arrays = np.load(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--data {args.data!r} is not an .npz file: {exc}") from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise UsageError(f"--data {args.data!r} has no array named {', '.join(missing)} (it has {', '.join(arrays)})")
    x = torch.as_tensor(arrays["x"])
    x = x.float() if not x.is_floating_point() else x
    y = torch.as_tensor(arrays["y"])
    names = [e.strip() for e in args.estimators.split(",") if e.strip()]
    unknown = [e for e in names if e not in ESTIMATORS]
    if unknown or not names:
        raise UsageError(f"--estimators must be from {', '.join(ESTIMATORS)}, got {args.estimators!r}")
    layers = [n.strip() for n in args.layers.split(",")] if args.layers else None
    model.eval()
    result = layer_sweep(model, x, y, estimators=[ESTIMATORS[n]() for n in names], layers=layers,
                         channels=args.channels)
    print(_text_table(result.rows))
    for v in result.dpi_violations:
        print(f"DPI violation ({v['estimator'].split('(')[0]}): {v['quantity']} rises from {v['earlier']} to "
              f"{v['later']} by {v['size']:.4g}")
    print(f"wrote {result.to_csv(args.out)}")
    return 0


def _load_model(spec: str):
    module_name, sep, factory_name = spec.partition(":")
    if not sep or not module_name or not factory_name:
        raise UsageError(f"--model must look like module:factory, got {spec!r}")
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--model: cannot import module {module_name!r} ({exc})") from None
    finally:
        sys.path.pop(0)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise UsageError(f"--model: {module_name!r} has no callable {factory_name!r}")
    model = factory()
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"--model: {spec} returned {type(model).__name__}, not a torch.nn.Module")
    return model


if __name__ == "__main__":
    sys.exit(main())
