"""What the pictures show, read back from the files: panel titles, axis
labels, legend entries and notes from SVG text; each layer's colour from
the PNG's pixels. Drawn from a table written here, so every expected
element is known."""
import numpy as np
import pytest

from pyfastent.nn.table import PlaneTable

matplotlib = pytest.importorskip("matplotlib")
plot = pytest.importorskip("pyfastent.plot")

LAYERS = ["conv1", "fc1"]
ESTIMATORS = ["renyi(a=1.01,knn10)", "logdet(b=6400,cov)"]


def table(logdet_i_ty=1.0, epochs=3) -> PlaneTable:
    """Two layers, two estimators, ``epochs`` epochs; LogDet's I(T;Y) is
    ``logdet_i_ty`` (H(Y) of the labels is 2 bits)."""
    meta = {"layers": LAYERS, "estimators": ESTIMATORS, "units": {e: "bits" for e in ESTIMATORS},
            "label_entropy_bits": 2.0}
    rows = []
    for step in range(epochs):
        for i, layer in enumerate(LAYERS):
            for est in ESTIMATORS:
                values = {"h_t": 3.0 + i, "i_xt": 2.0 + 0.1 * step + i,
                          "i_ty": logdet_i_ty if est.startswith("logdet") else 0.5 + 0.1 * step}
                rows += [{"step": step, "epoch": step + 1, "layer": layer, "estimator": est, "quantity": q,
                          "value": v} for q, v in values.items()]
    return PlaneTable(meta, rows)


def svg_text(draw, t, path) -> str:
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text as text, not glyph outlines
        draw(t, path)
    return path.read_text()


def test_the_information_plane_has_a_panel_per_estimator_and_a_legend_entry_per_layer(tmp_path):
    text = svg_text(plot.information_plane, table(), tmp_path / "plane.svg")
    for label in ESTIMATORS + LAYERS + ["I(X;T) [bits]", "I(T;Y) [bits]", "H(Y) of the labels",
                                        "Information plane", "epoch 1→3"]:
        assert label in text, label
    assert "bounded by the label entropy" not in text


def test_the_plane_says_when_logdet_rises_above_the_label_entropy(tmp_path):
    text = svg_text(plot.information_plane, table(logdet_i_ty=2.5), tmp_path / "plane.svg")
    assert "bounded by the label entropy" in text


def test_layer_curves_have_every_quantity_of_every_estimator(tmp_path):
    text = svg_text(plot.layer_curves, table(), tmp_path / "curves.svg")
    for label in ["H(T) [bits]", "I(X;T) [bits]", "I(T;Y) [bits]"] + ESTIMATORS + LAYERS:
        assert label in text, label


def layer_colour_pixels(path, index: int) -> int:
    """Pixels within a small distance of the ``index``-th tab10 colour."""
    image = matplotlib.image.imread(path)[..., :3]
    colour = np.array(matplotlib.colormaps["tab10"](index)[:3])
    return int((np.abs(image - colour).max(axis=-1) < 0.02).sum())


def test_every_layer_is_drawn_in_its_own_colour_and_no_other_colour_is(tmp_path):
    import matplotlib.image  # noqa: F401 - imread

    path = plot.information_plane(table(), tmp_path / "plane.png")
    drawn = [layer_colour_pixels(path, i) for i in range(4)]
    assert drawn[0] > 50 and drawn[1] > 50  # conv1 and fc1: lines, markers and legend
    assert drawn[2] == 0 and drawn[3] == 0  # no third or fourth layer


def test_the_te_plane_needs_transfer_entropy_rows(tmp_path):
    with pytest.raises(ValueError, match="no transfer-entropy rows"):
        plot.te_plane(table(), tmp_path / "te.png")
