"""Layer × layer similarity maps: every cell against the measure applied to
captured activations, across two models on one pass per group, the
fixture's two-model recipe against exact CKA of its arrays, files and
pictures, bad input."""
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import pyfastent as pf
import pyfastent.nn as pnn

from budget import smallest_budget

DATA = json.loads((Path(__file__).parents[1] / "fixtures" / "similarity_values.json").read_text())


def mlp(seed=0, widths=(12, 9, 7)):
    torch.manual_seed(seed)
    layers, d = OrderedDict(), 5
    for i, w in enumerate(widths):
        layers[f"fc{i}"] = nn.Linear(d, w)
        layers[f"act{i}"] = nn.Tanh()
        d = w
    return nn.Sequential(layers).double()


def probe(n=60, seed=1):
    return torch.randn(n, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("measure, call", [
    ("cka", lambda a, b: pf.cka(a, b)),
    ("hsic", lambda a, b: pf.hsic(a, b)),
    ("mknn", lambda a, b: pf.mutual_knn(a, b, k=5)),
    ("mi", lambda a, b: pf.normalized_mutual_information(a, b)),
])
def test_each_cell_is_the_measure_of_the_captured_layers(measure, call):
    net, x = mlp(), probe()
    result = pnn.layer_similarity(net, x, measure=measure, k=5, progress=False)
    acts = pnn.capture(net, x)
    assert result.layers == result.other_layers == list(acts)
    for i, a in enumerate(result.layers):
        for j, b in enumerate(result.other_layers):
            if measure == "mi" and a == b:
                assert result.matrix[i, j] == pytest.approx(1.0, abs=1e-12)  # a layer with itself: I = H
                continue
            assert float(result.matrix[i, j]) == pytest.approx(call(acts[a], acts[b]), rel=1e-9, abs=1e-12), (a, b)
    torch.testing.assert_close(result.matrix, result.matrix.T, rtol=0, atol=0)


class Twice(nn.Module):
    """One activation module called twice, as a ResNet block calls its ReLU."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.act = nn.Linear(5, 6), nn.Linear(6, 4), nn.Tanh()

    def forward(self, x):
        return self.act(self.fc2(self.act(self.fc1(x))))


def test_a_module_called_twice_gives_a_row_per_call():
    torch.manual_seed(0)
    net, x = Twice().double(), probe()
    result = pnn.layer_similarity(net, x, progress=False)
    acts = pnn.capture(net, x)
    assert result.layers == list(acts) == ["fc1", "act", "fc2", "act#2"]
    assert float(result.matrix[1, 3]) == pytest.approx(pf.cka(acts["act"], acts["act#2"]), rel=1e-10)


def test_two_models_run_on_the_same_batches_in_one_pass():
    a, b, x = mlp(0), mlp(3, widths=(20, 4)), probe()
    calls = {"a": 0, "b": 0}
    a.register_forward_pre_hook(lambda *args: calls.__setitem__("a", calls["a"] + 1))
    b.register_forward_pre_hook(lambda *args: calls.__setitem__("b", calls["b"] + 1))
    result = pnn.layer_similarity(a, x, other=b, batch_size=20, progress=False)
    assert calls == {"a": 1 + 3, "b": 1 + 3}  # the two-sample look at the layers, then 3 batches, once each
    acts_a, acts_b = pnn.capture(a, x), pnn.capture(b, x)
    assert result.layers == list(acts_a) and result.other_layers == list(acts_b)
    want = torch.tensor([[pf.cka(acts_a[p], acts_b[q]) for q in acts_b] for p in acts_a], dtype=torch.float64)
    torch.testing.assert_close(result.matrix, want, rtol=1e-10, atol=1e-12)


def test_a_small_budget_splits_the_layers_into_passes_with_the_same_values():
    net, x = mlp(), probe(120)
    whole = pnn.layer_similarity(net, x, kernel="rbf", debiased=True, progress=False)
    budget = smallest_budget(lambda m: pnn.layer_similarity(net, x, kernel="rbf", debiased=True, batch_size=30,
                                                            memory_budget=m, progress=False))
    split = pnn.layer_similarity(net, x, kernel="rbf", debiased=True, batch_size=30, memory_budget=budget,
                                 progress=False)
    torch.testing.assert_close(split.matrix, whole.matrix, rtol=1e-12, atol=1e-12)


def fixture_models(scope, side):
    """The fixture's torch model of recipe S5's model A or B (weights from the recipe)."""
    ws, bs = scope[f"{side}_Ws"], scope[f"{side}_bs"]
    act = nn.Tanh if side == "A" else nn.ReLU
    layers = []
    for w, b in zip(ws, bs):
        linear = nn.Linear(*w.shape).double()
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w.T))
            linear.bias.copy_(torch.from_numpy(b))
        layers += [linear, act()]
    return nn.Sequential(*layers)


def test_the_fixture_two_model_recipe_gives_exact_cka_of_its_layer_arrays():
    scope = {"np": np}
    exec(DATA["recipes"]["S5"]["code"], scope)
    a, b = fixture_models(scope, "A"), fixture_models(scope, "B")
    x = torch.from_numpy(scope["X"])
    result = pnn.layer_similarity(a, x, other=b, layers=["1", "3", "5", "7"], other_layers=["1", "3", "5", "7", "9"],
                                  debiased=True, progress=False)
    want = np.array([[pf.cka(p, q, debiased=True) for q in scope["B_layers"]] for p in scope["A_layers"]])
    np.testing.assert_allclose(result.matrix.numpy(), want, atol=1e-10)
    # The minibatch values the packages give (cka-pytorch, batches of 64) are another, noisier estimate.
    packages = np.array(next(c for c in DATA["cases"] if c["inputs"].get("recipe") == "S5"
                             and isinstance(c["value"], list))["value"])
    assert 1e-4 < np.abs(packages - want).max() < 0.05


def test_permutation_baselines():
    net, x = mlp(), probe(40)
    result = pnn.layer_similarity(net, x, permutations=19, progress=False)
    assert result.p_value.shape == result.matrix.shape
    assert float(result.p_value.max()) <= 1.0 and float(result.p_value.min()) >= 1 / 20
    # Layers of one network on the same samples are far from their shuffled selves.
    assert float(result.p_value.max()) == pytest.approx(1 / 20)
    assert bool((result.null_mean < result.matrix).all())
    # A model whose output ignores its input: its layer is no more like the input's than chance.
    g = torch.Generator().manual_seed(9)
    unrelated = nn.Sequential(OrderedDict(noise=Noise(g)))
    knn = pnn.layer_similarity(nn.Sequential(OrderedDict(same=nn.Identity())), probe(40), other=unrelated,
                               layers=["same"], other_layers=["noise"], measure="mknn", k=5, permutations=99,
                               progress=False)
    assert float(knn.p_value[0, 0]) > 0.01
    assert float(knn.null_mean[0, 0]) == pytest.approx(5 / 39, rel=0.3)


class Noise(nn.Module):
    """Fresh Gaussian samples of the input's shape: no dependence on the input."""

    def __init__(self, generator):
        super().__init__()
        self.generator = generator

    def forward(self, x):
        return torch.randn(x.shape, generator=self.generator, dtype=x.dtype)


def test_files_and_the_heatmap(tmp_path):
    pytest.importorskip("matplotlib")
    import pyfastent.plot as plot

    net, x = mlp(), probe()
    result = pnn.layer_similarity(net, x, progress=False)
    path = result.to_csv(tmp_path / "map.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "layer,other_layer,measure,value" and len(lines) == 1 + len(result.layers) ** 2
    meta = json.loads((tmp_path / "map.meta.json").read_text())
    assert meta["measure"] == "cka" and meta["kernel"] == "linear" and meta["n"] == 60
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none"}):
        svg = plot.similarity_heatmap(result, tmp_path / "map.svg").read_text()
    for name in result.layers + ["CKA (linear)"]:
        assert name in svg


@pytest.mark.parametrize("kwargs, message", [
    ({"measure": "cca"}, "measure must be one of"),
    ({"kernel": "poly"}, "kernel must be one of"),
    ({"measure": "mknn", "k": 60}, "k must be below N = 60"),
    ({"measure": "mi", "permutations": 5}, "permutations are for"),
    ({"layers": ["nope"]}, "no module named 'nope'"),
])
def test_bad_arguments_name_themselves(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pnn.layer_similarity(mlp(), probe(), progress=False, **kwargs)


def test_a_constant_layer_is_named():
    net = nn.Sequential(OrderedDict(fc=nn.Linear(5, 3), zero=nn.Linear(3, 2))).double()
    with torch.no_grad():
        net.zero.weight.zero_()
        net.zero.bias.zero_()
    with pytest.raises(ValueError, match="layer 'zero' has HSIC .* with itself"):
        pnn.layer_similarity(net, probe(), progress=False)


def test_the_tracker_logs_a_map_every_few_steps(tmp_path):
    net, x = mlp(), probe()
    y = torch.randint(0, 3, (60,), generator=torch.Generator().manual_seed(4))
    tracker = pnn.InformationPlane(net, x, y, similarity=pnn.LayerSimilarity(every=2, debiased=True),
                                   log=tmp_path / "plane.jsonl", progress=False)
    maps = {}
    for step in range(3):
        tracker.step(epoch=step)
        maps[step] = pnn.layer_similarity(net, x, debiased=True, progress=False)
        with torch.no_grad():  # training moves the weights between steps
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
    logged = {r["step"] for r in tracker.rows if r["quantity"] == "similarity"}
    assert logged == {0, 2}
    for step in (0, 2):
        got = tracker.similarity_map(step)
        assert got.layers == maps[step].layers
        torch.testing.assert_close(got.matrix, maps[step].matrix, rtol=1e-12, atol=1e-12)
    assert tracker.similarity_map().metadata["step"] == 2
    again = pnn.InformationPlane.load(tmp_path / "plane.jsonl")
    cells = [r for r in again.rows if r["quantity"] == "similarity"]
    assert len(cells) == 2 * len(maps[0].layers) ** 2 and all("other_layer" in r for r in cells)
    assert tracker.table.metadata["similarity"]["label"] == "cka(linear,debiased)"
    with pytest.raises(ValueError, match="step 1 has no similarity map"):
        tracker.similarity_map(1)
    with pytest.raises(ValueError, match="similarity must be a LayerSimilarity"):
        pnn.InformationPlane(net, x, y, similarity="cka")
    with pytest.raises(ValueError, match="every must be a positive"):
        pnn.LayerSimilarity(every=0)


def test_no_measurable_layer_is_a_value_error():
    class Broadcast(nn.Module):
        def forward(self, x):
            return torch.zeros(1, 3, dtype=x.dtype)  # not one row per sample

    net = nn.Sequential(OrderedDict(b=Broadcast()))
    with pytest.raises(ValueError, match="none of the selected layers outputs one row per sample"):
        pnn.layer_similarity(net, probe(), progress=False)


def test_progress_counts_the_layers_and_then_the_pairs(capsys):
    pnn.layer_similarity(mlp(), probe(), measure="mi", progress=True)
    err = capsys.readouterr().err
    assert "layer similarity" in err and "0/6" in err  # 6 layers, then their 21 pairs
    assert "similarity of layer pairs" in err and "0/21" in err
