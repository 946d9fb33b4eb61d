"""Pictures of information-plane runs and token profiles (matplotlib, headless).

Most functions take an ``InformationPlane`` tracker or a ``PlaneTable``
(e.g. from ``InformationPlane.load``; ``token_curves`` a ``TokenProfile``)
and write an image file; the format follows the path's suffix (``.png``,
``.pdf``, ``.svg``).

Each layer keeps one colour in every picture; time (epochs, or steps) runs
from faint and small markers to solid and large ones, and the last point of
each trajectory is ringed. Legends sit outside the axes.
"""
from __future__ import annotations

import math
from pathlib import Path

from pyfastent.nn.transfer import TE_ESTIMATOR


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


def _colours(layers: list) -> dict:
    """One colour per layer, the same in every panel and picture."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(layers) <= 10 else "tab20"]
    return {layer: cmap(i % cmap.N) for i, layer in enumerate(layers)}


def _layers(table) -> list:
    """The layers of the rows in firing order: a module called twice is two
    layers (``act``, ``act#2``), while the metadata names the module once."""
    return list(dict.fromkeys(r["layer"] for r in table.rows))


def _time(row):
    return row["epoch"] if row["epoch"] is not None else row["step"]


def _time_label(table) -> str:
    return "epoch" if any(r["epoch"] is not None for r in table.rows) else "step"


def _series(table, estimator, qx, qy):
    """{layer: (times, x values, y values)} pairing two quantities per step."""
    xs = {(r["layer"], r["step"]): r for r in table.values(qx, estimator)}
    out: dict = {}
    for r in table.values(qy, estimator):
        other = xs.get((r["layer"], r["step"]))
        if other is None:
            continue
        t, x, y = out.setdefault(r["layer"], ([], [], []))
        t.append(_time(r))
        x.append(other["value"])
        y.append(r["value"])
    return out


def _trajectories(ax, series: dict, colours: dict, xlabel: str, ylabel: str, title: str):
    times = [t for (ts, _, _) in series.values() for t in ts]
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if not times:
        ax.text(0.5, 0.5, "no rows of this estimator", transform=ax.transAxes, ha="center", va="center", fontsize=8)
        return
    lo, hi = min(times), max(times)
    span = (hi - lo) or 1
    for layer, (ts, xs, ys) in series.items():
        colour = colours[layer]
        ax.plot(xs, ys, "-", color=colour, linewidth=1.2, alpha=0.6, zorder=1)
        for t, x, y in zip(ts, xs, ys):
            age = (t - lo) / span  # 0 at the first step, 1 at the last
            ax.scatter([x], [y], s=12 + 40 * age, color=colour, alpha=0.25 + 0.75 * age, linewidths=0, zorder=2)
        ax.scatter([xs[-1]], [ys[-1]], s=70, facecolors="none", edgecolors=colour, linewidths=1.5, zorder=3)
        ax.plot([], [], "-o", color=colour, label=layer)  # the legend entry


def _legend(fig, ax, time_label: str, first, last):
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, title=f"layer  ({time_label} {first}→{last}:\nfaint → solid, last ringed)",
               loc="outside right upper", fontsize=7, title_fontsize=7)


def _label_entropy(table, unit: str) -> float | None:
    bits = table.metadata.get("label_entropy_bits")
    if bits is None:
        return None
    return {"bits": bits, "nats": bits * math.log(2)}.get(unit)


def information_plane(table_or_tracker, path) -> Path:
    """I(X;T) (x axis) against I(T;Y) (y axis): one trajectory per layer
    over training, one panel per estimator, with the labels' plug-in
    entropy H(Y) as a reference line. LogDet is not bounded by H(Y): where
    its I(T;Y) rises above the line, the panel says so."""
    fig = information_plane_figure(table_or_tracker)
    fig.savefig(path, dpi=110)
    return Path(path)


def information_plane_figure(table_or_tracker):
    """The picture of ``information_plane`` as a matplotlib ``Figure`` (for
    loggers that take figures, e.g. TensorBoard's ``add_figure``)."""
    table = _table(table_or_tracker)
    estimators = table.metadata["estimators"]
    colours = _colours(_layers(table))
    fig, axes = _figure(len(estimators))
    times = [_time(r) for r in table.rows]
    for ax, est in zip(axes[0], estimators):
        unit = table.metadata.get("units", {}).get(est, "bits")
        series = _series(table, est, "i_xt", "i_ty")
        _trajectories(ax, series, colours, f"I(X;T) [{unit}]", f"I(T;Y) [{unit}]", est)
        h_y = _label_entropy(table, unit)
        if h_y is not None:
            ax.axhline(h_y, color="0.4", linestyle="--", linewidth=1)
            ax.annotate("H(Y) of the labels", (0.01, h_y), xycoords=("axes fraction", "data"), fontsize=7,
                        color="0.3", va="bottom")
            if any(y > h_y * (1 + 1e-9) for (_, _, ys) in series.values() for y in ys):
                ax.text(0.99, 0.02, f"values above H(Y): {est.split('(')[0]} is not\nbounded by the label entropy",
                        transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="firebrick")
    _legend(fig, axes[0][-1], _time_label(table), min(times), max(times))
    fig.suptitle("Information plane")
    return fig


def layer_curves(table_or_tracker, path) -> Path:
    """H(T), I(X;T) and I(T;Y) of every layer against the epoch: one row of
    panels per estimator."""
    from matplotlib.ticker import MaxNLocator

    table = _table(table_or_tracker)
    estimators = table.metadata["estimators"]
    colours = _colours(_layers(table))
    quantities = (("h_t", "H(T)"), ("i_xt", "I(X;T)"), ("i_ty", "I(T;Y)"))
    fig, axes = _figure(len(quantities), len(estimators), size=(4.2, 3.4))
    for row, est in zip(axes, estimators):
        unit = table.metadata.get("units", {}).get(est, "bits")
        for ax, (q, label) in zip(row, quantities):
            by_layer: dict = {}
            for r in table.values(q, est):
                ts, vs = by_layer.setdefault(r["layer"], ([], []))
                ts.append(_time(r))
                vs.append(r["value"])
            for layer, (ts, vs) in by_layer.items():
                ax.plot(ts, vs, marker=".", color=colours[layer], label=layer)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel(_time_label(table))
            ax.set_ylabel(f"{label} [{unit}]")
            ax.set_title(est, fontsize=8)
            ax.grid(alpha=0.3)
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, title="layer", loc="outside right upper", fontsize=7, title_fontsize=7)
    fig.savefig(path, dpi=110)
    return Path(path)


def te_plane(table_or_tracker, path) -> Path:
    """The transfer-entropy plane: mean TE(X → T) against mean TE(T → Ŷ)
    per layer over training (needs ``transfer_entropy`` on the tracker). The
    shaded bands are the noise floor: the mean TE the same neuron pairs give
    with the source's time order shuffled (averaged over layers and steps),
    what the plug-in estimator reports when nothing is transferred; dashed
    lines mark the largest such value."""
    table = _table(table_or_tracker)
    series = _series(table, TE_ESTIMATOR, "te_x", "te_y")
    if not series:
        raise ValueError("table_or_tracker has no transfer-entropy rows: track with transfer_entropy=LayerTE(...) "
                         "and train between steps (TE is measured on the training samples fed in train mode)")
    colours = _colours(_layers(table))
    fig, axes = _figure(1, size=(6.0, 4.6))
    ax = axes[0][0]
    floor_x = [r["value"] for r in table.values("te_x_floor", TE_ESTIMATOR)]
    floor_y = [r["value"] for r in table.values("te_y_floor", TE_ESTIMATOR)]
    if floor_x and floor_y:
        ax.axvspan(0, sum(floor_x) / len(floor_x), color="0.88", zorder=0)
        ax.axhspan(0, sum(floor_y) / len(floor_y), color="0.88", zorder=0)
        ax.axvline(max(floor_x), color="0.5", linestyle="--", linewidth=0.8, zorder=0)
        ax.axhline(max(floor_y), color="0.5", linestyle="--", linewidth=0.8, zorder=0)
        ax.plot([], [], "s", color="0.88", label="noise floor: mean TE\nwith time-shuffled source")
        ax.plot([], [], "--", color="0.5", linewidth=0.8, label="largest shuffled TE")
    _trajectories(ax, series, colours, "mean TE(X → T) [bits]", "mean TE(T → Ŷ) [bits]",
                  "binarized neurons, consecutive training samples")
    ax.ticklabel_format(style="sci", axis="both", scilimits=(-2, 3))
    times = [_time(r) for r in table.rows]
    _legend(fig, ax, _time_label(table), min(times), max(times))
    fig.suptitle("Transfer-entropy plane")
    fig.savefig(path, dpi=110)
    return Path(path)


def pid_curves(rows: list, path) -> Path:
    """The partial information decomposition of feature maps.

    Args:
        rows: dicts from ``pyfastent.nn.feature_map_pid`` with ``epoch`` and
            ``layer`` added.

    Left: redundancy, synergy and I(Y; first k maps) against the number of
    maps k at the last epoch, one colour per layer. Right: the trade-off
    (Rdn − Syn)/I and the non-redundant ratio (I − Rdn)/I of all the maps
    of each layer over training.
    """
    if not rows:
        raise ValueError("rows is empty: compute feature_map_pid first")
    if any("layer" not in r or "epoch" not in r for r in rows):
        raise ValueError("rows: each row needs 'layer' and 'epoch' keys added to feature_map_pid's output")
    from matplotlib.ticker import MaxNLocator

    layers = list(dict.fromkeys(r["layer"] for r in rows))
    colours = _colours(layers)
    last = max(r["epoch"] for r in rows)
    fig, axes = _figure(2, size=(5.2, 4.2))
    left, right = axes[0]
    for layer in layers:
        at_last = sorted((r for r in rows if r["layer"] == layer and r["epoch"] == last), key=lambda r: r["k"])
        ks = [r["k"] for r in at_last]
        colour = colours[layer]
        left.plot(ks, [r["mutual_information"] for r in at_last], "-", color=colour, label=f"{layer}: I(Y; maps)")
        left.plot(ks, [r["redundancy"] for r in at_last], "--", color=colour, label=f"{layer}: redundancy")
        left.plot(ks, [r["synergy"] for r in at_last], ":", color=colour, label=f"{layer}: synergy")
        full = max(r["k"] for r in rows if r["layer"] == layer)
        over = sorted((r for r in rows if r["layer"] == layer and r["k"] == full), key=lambda r: r["epoch"])
        epochs = [r["epoch"] for r in over]
        right.plot(epochs, [r["tradeoff"] for r in over], "-o", color=colour, markersize=3,
                   label=f"{layer}: trade-off")
        right.plot(epochs, [r["nonredundant"] for r in over], "--s", color=colour, markersize=3,
                   label=f"{layer}: non-redundant")
    left.set_xlabel("number of feature maps k")
    left.set_ylabel("bits")
    left.set_title(f"PID of the first k maps, epoch {last}", fontsize=9)
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_xlabel("epoch")
    right.set_ylabel("ratio")
    right.set_title("all maps of the layer, over training", fontsize=9)
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (left, right):
        ax.grid(alpha=0.3)
    handles, labels = left.get_legend_handles_labels()
    more, more_labels = right.get_legend_handles_labels()
    fig.legend(handles + more, labels + more_labels, loc="outside right upper", fontsize=7)
    fig.suptitle("Partial information decomposition of feature maps")
    fig.savefig(path, dpi=110)
    return Path(path)


def reference_curves(curves: dict, path, xlabel: str, ylabel: str, title: str, log_x: bool = False,
                     log_y: bool = False, reference: float | None = None) -> Path:
    """Named curves {name: (xs, ys)} on one axis, with an optional
    horizontal reference line (e.g. 1 for a ratio to a closed form)."""
    if not curves:
        raise ValueError("curves is empty")
    colours = _colours(list(curves))
    fig, axes = _figure(1, size=(6.2, 4.2))
    ax = axes[0][0]
    if reference is not None:
        ax.axhline(reference, color="0.4", linestyle="--", linewidth=1, label="reference")
    for name, (xs, ys) in curves.items():
        ax.plot(list(xs), [float(y) for y in ys], "-o", color=colours[name], markersize=3, label=name)
    if log_x:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=7)
    fig.savefig(path, dpi=110)
    return Path(path)


def twin_curves(xs, left: dict, right: dict, path, xlabel: str, left_label: str, right_label: str,
                title: str) -> Path:
    """Curves on two y axes sharing x: ``left`` and ``right`` map names to
    y values (e.g. a transfer entropy in bits beside an accuracy gap)."""
    if not left or not right:
        raise ValueError("left and right each need at least one curve")
    colours = _colours(list(left) + list(right))
    fig, axes = _figure(1, size=(6.2, 4.2))
    ax = axes[0][0]
    other = ax.twinx()
    for axis, curves, style in ((ax, left, "-o"), (other, right, "--s")):
        for name, ys in curves.items():
            axis.plot(list(xs), [float(y) for y in ys], style, color=colours[name], markersize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(left_label)
    other.set_ylabel(right_label)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    more, more_labels = other.get_legend_handles_labels()
    fig.legend(handles + more, labels + more_labels, loc="outside lower center", fontsize=7)
    fig.savefig(path, dpi=110)
    return Path(path)


def token_curves(profile, path, normalization: str | None = None) -> Path:
    """The measures of a ``pyfastent.nn.TokenProfile`` over depth: one
    panel per measure and normalization (or only ``normalization``), the
    mean over prompts with a band of ± one standard error."""
    rows = getattr(profile, "rows", None)
    if not rows:
        raise ValueError("profile has no rows: pass a TokenProfile from pyfastent.nn.token_profile")
    from matplotlib.ticker import MaxNLocator

    norms = [n for n in dict.fromkeys(r["normalization"] for r in rows) if n]
    if normalization is not None and normalization not in norms:
        raise ValueError(f"normalization {normalization!r} is not in the profile (it has {', '.join(norms)})")
    panels = [p for p in dict.fromkeys((r["measure"], r["normalization"]) for r in rows)
              if normalization is None or p[1] in (None, normalization)]
    colours = _colours(list(dict.fromkeys(m for m, _ in panels)))
    ncols = min(4, len(panels))
    fig, axes = _figure(ncols, math.ceil(len(panels) / ncols), size=(4.0, 3.4))
    flat = [ax for line in axes for ax in line]
    for ax, (measure, norm) in zip(flat, panels):
        curve = sorted((r for r in rows if r["measure"] == measure and r["normalization"] == norm),
                       key=lambda r: r["layer"])
        depth, mean = [r["layer"] for r in curve], [r["mean"] for r in curve]
        ax.plot(depth, mean, "-o", markersize=3, color=colours[measure])
        if all(r["stderr"] is not None for r in curve):
            ax.fill_between(depth, [m - r["stderr"] for m, r in zip(mean, curve)],
                            [m + r["stderr"] for m, r in zip(mean, curve)], color=colours[measure], alpha=0.25)
        ax.set_title(measure.replace("_", " ") + (f" ({norm})" if norm and norm != "raw" else ""), fontsize=9)
        ax.set_xlabel("layer (0: embeddings)")
        ax.set_ylabel(curve[0]["units"])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    meta = getattr(profile, "metadata", {})
    fig.suptitle(f"Token-level measures of {meta.get('model', 'the model')} over depth "
                 f"({meta.get('prompts', '?')} prompts; mean ± s.e.)", fontsize=10)
    fig.savefig(path, dpi=110)
    return Path(path)


SIMILARITY_TITLES = {"cka": "CKA", "hsic": "HSIC", "mknn": "mutual kNN", "mi": "normalized MI"}


def similarity_heatmap(result, path) -> Path:
    """A layer × layer similarity map (``pyfastent.nn.layer_similarity``):
    the model's layers down the side, the other model's (or its own) along
    the bottom, a colour bar over the measure's range ([0, 1] for CKA,
    mutual kNN and normalized MI, below 0 where a debiased value is;
    the values' range for HSIC). Labels shrink with the number of layers,
    so 60 stay readable."""
    fig = similarity_figure(result)
    fig.savefig(path, dpi=110)
    return Path(path)


def similarity_figure(result):
    """The picture of ``similarity_heatmap`` as a matplotlib ``Figure``."""
    matrix = getattr(result, "matrix", None)
    if matrix is None or not hasattr(result, "layers"):
        raise ValueError(f"result must be a SimilarityMap from pyfastent.nn.layer_similarity, got "
                         f"{type(result).__name__}")
    values = matrix.detach().cpu().double().numpy()
    rows, cols = len(result.layers), len(result.other_layers)
    lo, hi = float(values.min()), float(values.max())
    if result.measure != "hsic":
        lo, hi = min(0.0, lo), max(1.0, hi)
    side = min(16.0, 3.0 + 0.2 * max(rows, cols))  # inches
    fontsize = max(4.0, min(8.0, 0.5 * 72 * 0.8 * side / max(rows, cols)))  # half of each row's height, in points
    fig, axes = _figure(1, size=(side * 1.15, side))
    ax = axes[0][0]
    image = ax.imshow(values, vmin=lo, vmax=hi, cmap="viridis", aspect="auto", interpolation="nearest")
    ax.set_yticks(range(rows), result.layers, fontsize=fontsize)
    ax.set_xticks(range(cols), result.other_layers, fontsize=fontsize, rotation=90)
    meta = result.metadata
    kind = f" ({meta['kernel']}{', debiased' if meta.get('debiased') else ''})" if meta.get("kernel") else ""
    label = SIMILARITY_TITLES.get(result.measure, result.measure) + kind
    fig.colorbar(image, ax=ax, label=label, shrink=0.8)
    ax.set_ylabel(f"{meta.get('model', 'model')} layer")
    ax.set_xlabel(f"{meta.get('other') or meta.get('model', 'model')} layer")
    ax.set_title(f"{label}, N = {meta.get('n')}", fontsize=9)
    return fig
