"""Pictures of information-plane runs (matplotlib, headless).

Every function takes an ``InformationPlane`` tracker or a ``PlaneTable``
(e.g. from ``InformationPlane.load``) and writes an image file; the format
follows the path's suffix (``.png``, ``.pdf``, ``.svg``).
"""
from __future__ import annotations

from pathlib import Path


def _table(table_or_tracker):
    table = getattr(table_or_tracker, "table", table_or_tracker)
    if not hasattr(table, "rows") or not hasattr(table, "metadata"):
        raise ValueError(f"table_or_tracker must be an InformationPlane or a PlaneTable, got {type(table_or_tracker).__name__}")
    if not table.rows:
        raise ValueError("table_or_tracker has no rows yet: call step() at least once")
    return table


def _figure(ncols: int, nrows: int = 1, size=(5.0, 4.2)):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError('plots need matplotlib: pip install "pyfastent[plot]"') from None
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _series(table, estimator, qx, qy):
    """{layer: (times, x values, y values)} pairing two quantities per step."""
    xs = {(r["layer"], r["step"]): r for r in table.values(qx, estimator)}
    out: dict = {}
    for r in table.values(qy, estimator):
        other = xs.get((r["layer"], r["step"]))
        if other is None:
            continue
        time = r["epoch"] if r["epoch"] is not None else r["step"]
        t, x, y = out.setdefault(r["layer"], ([], [], []))
        t.append(time)
        x.append(other["value"])
        y.append(r["value"])
    return out


def _trajectories(fig, ax, series, xlabel, ylabel, title):
    times = [t for (ts, _, _) in series.values() for t in ts]
    lo, hi = min(times), max(times)
    scatter = None
    for i, (layer, (ts, xs, ys)) in enumerate(series.items()):
        ax.plot(xs, ys, "-", color="0.75", linewidth=1, zorder=1)
        scatter = ax.scatter(xs, ys, c=ts, cmap="viridis", vmin=lo, vmax=hi, s=22, zorder=2,
                             marker="osD^v<>ph*"[i % 10], label=layer)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if scatter is not None:
        fig.colorbar(scatter, ax=ax, label="epoch")
        legend = ax.legend(title="layer", fontsize=7, title_fontsize=7, loc="best")
        for handle in legend.legend_handles:
            handle.set_color("0.3")


def information_plane(table_or_tracker, path) -> Path:
    """I(X;T) (x axis) against I(T;Y) (y axis): one trajectory per layer,
    coloured by epoch, one panel per estimator."""
    table = _table(table_or_tracker)
    estimators = table.metadata["estimators"]
    fig, axes = _figure(len(estimators))
    for ax, est in zip(axes[0], estimators):
        unit = table.metadata.get("units", {}).get(est, "bits")
        _trajectories(fig, ax, _series(table, est, "i_xt", "i_ty"), f"I(X;T) [{unit}]", f"I(T;Y) [{unit}]", est)
    fig.suptitle("Information plane")
    fig.savefig(path, dpi=110)
    return Path(path)


def layer_curves(table_or_tracker, path) -> Path:
    """H(T), I(X;T) and I(T;Y) of every layer against the epoch: one row of
    panels per estimator."""
    table = _table(table_or_tracker)
    estimators = table.metadata["estimators"]
    quantities = (("h_t", "H(T)"), ("i_xt", "I(X;T)"), ("i_ty", "I(T;Y)"))
    fig, axes = _figure(len(quantities), len(estimators), size=(4.2, 3.4))
    for row, est in zip(axes, estimators):
        unit = table.metadata.get("units", {}).get(est, "bits")
        for ax, (q, label) in zip(row, quantities):
            by_layer: dict = {}
            for r in table.values(q, est):
                ts, vs = by_layer.setdefault(r["layer"], ([], []))
                ts.append(r["epoch"] if r["epoch"] is not None else r["step"])
                vs.append(r["value"])
            for layer, (ts, vs) in by_layer.items():
                ax.plot(ts, vs, marker=".", label=layer)
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"{label} [{unit}]")
            ax.set_title(est, fontsize=8)
            ax.grid(alpha=0.3)
        row[-1].legend(title="layer", fontsize=7, title_fontsize=7)
    fig.savefig(path, dpi=110)
    return Path(path)


def te_plane(table_or_tracker, path) -> Path:
    """The transfer-entropy plane: mean TE(X → T) against mean TE(T → Ŷ)
    per layer, coloured by epoch (needs ``transfer_entropy`` on the tracker)."""
    table = _table(table_or_tracker)
    series = _series(table, "binary-te", "te_x", "te_y")
    if not series:
        raise ValueError("table_or_tracker has no transfer-entropy rows: track with transfer_entropy=LayerTE(...) "
                         "and train between steps (TE is measured on the training samples fed in train mode)")
    fig, axes = _figure(1)
    _trajectories(fig, axes[0][0], series, "mean TE(X → T) [bits]", "mean TE(T → Ŷ) [bits]",
                  "binarized neurons, consecutive training samples")
    fig.suptitle("Transfer-entropy plane")
    fig.savefig(path, dpi=110)
    return Path(path)
