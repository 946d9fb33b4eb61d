"""Layer capture and sweeps on any nn.Module."""
import json

import pytest
import torch
from torch import nn

import pyfastent as pf
import pyfastent.nn as pnn


def small_net():
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Dropout(0.5), nn.Linear(5, 4), nn.Tanh(), nn.Flatten(),
                         nn.Linear(4, 3))


class Branchy(nn.Module):
    """Reuses one ReLU twice and has a head that never runs."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.unused = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.b(self.act(self.a(x))))


def test_default_layers_skip_dropout_and_flatten():
    acts = pnn.capture(small_net(), torch.randn(10, 6))
    assert list(acts) == ["0", "1", "3", "4", "6"]
    assert acts["3"].shape == (10, 4)
    assert not any(a.requires_grad for a in acts.values())


def test_select_by_names_types_and_predicate():
    net, x = small_net().eval(), torch.randn(10, 6)
    assert list(pnn.capture(net, x, layers=["4", "0"])) == ["0", "4"]
    assert list(pnn.capture(net, x, layers=nn.Linear)) == ["0", "3", "6"]
    assert list(pnn.capture(net, x, layers=(nn.ReLU, nn.Tanh))) == ["1", "4"]
    assert list(pnn.capture(net, x, layers=lambda name, m: name in ("1", "6"))) == ["1", "6"]
    torch.testing.assert_close(pnn.capture(net, x, layers=["6"])["6"], net(x).detach())


def test_missing_and_unfired_layers_are_named():
    with pytest.raises(ValueError, match=r"^layers: the model has no module named 'fc9'"):
        pnn.capture(small_net(), torch.randn(4, 6), layers=["fc9"])
    with pytest.raises(ValueError, match=r"^layers: 'unused' did not run during the forward pass"):
        pnn.capture(Branchy(), torch.randn(4, 4), layers=["a", "unused"])


def test_reused_module_reports_each_call():
    acts = pnn.capture(Branchy(), torch.randn(4, 4), layers=["act"])
    assert list(acts) == ["act", "act#2"]


def test_hooks_are_removed_even_when_forward_raises():
    net = small_net()
    with pytest.raises(RuntimeError):
        pnn.capture(net, torch.randn(4, 7))  # wrong input width
    assert all(not m._forward_hooks for m in net.modules())
    pnn.capture(net, torch.randn(4, 6))
    assert all(not m._forward_hooks for m in net.modules())


def test_sweep_values_equal_direct_estimator_calls():
    torch.manual_seed(0)
    net, x = small_net().eval(), torch.randn(40, 6)
    y = torch.randint(0, 3, (40,))
    renyi, logdet = pf.Renyi(), pf.LogDet(beta=5.0)
    result = pnn.layer_sweep(net, x, y, estimators=(renyi, logdet))
    acts = pnn.capture(net, x)
    assert [r["layer"] for r in result.rows] == list(acts) * 2
    for r in result.rows:
        est = renyi if r["estimator"] == renyi.label else logdet
        # Rényi alone builds float32 distances; beside LogDet, from the float64 inner products it reads.
        tol = 1e-6 if est is renyi else 1e-9
        t = acts[r["layer"]]
        assert r["h_t"] == pytest.approx(est.entropy(t), abs=tol)
        assert r["i_xt"] == pytest.approx(pf.mutual_information(x, t, estimator=est), abs=tol)
        assert r["i_ty"] == pytest.approx(pf.mutual_information(t, y, estimator=est), abs=tol)


def test_sweep_prepares_each_layer_once(built_grams):
    calls = built_grams
    net, x, y = small_net().eval(), torch.randn(30, 6), torch.randint(0, 3, (30,))
    pnn.layer_sweep(net, x, y, estimators=(pf.Renyi(),))
    assert sorted(calls) == sorted(["x", "0", "1", "3", "4", "6"])  # the labels need no Gram matrix


def test_dpi_check_flags_a_constructed_violation(tmp_path):
    class Leaky(nn.Module):
        """The second layer sees the input again: not a chain, so I(X;T) grows."""

        def __init__(self):
            super().__init__()
            self.squash = nn.Linear(4, 1)
            self.restore = nn.Identity()

        def forward(self, x):
            return self.restore(torch.cat([self.squash(x), x], dim=1))

    torch.manual_seed(1)
    x = torch.randn(60, 4, dtype=torch.float64)
    net = Leaky().double()
    result = pnn.layer_sweep(net, x, (x[:, 0] > 0).long(), estimators=(pf.LogDet(),), layers=["squash", "restore"])
    # The graph shows that restore is not computed from squash alone: no pair, no violation.
    assert result.dpi_method == "torch.fx graph" and result.dpi_pairs == [] and result.dpi_violations == []
    # Assuming a chain instead flags the rise.
    (v,) = [v for v in pnn.dpi_violations(result.rows) if v["quantity"] == "i_xt"]
    assert (v["earlier"], v["later"]) == ("squash", "restore")
    rows = {r["layer"]: r for r in result.rows}
    assert v["size"] == pytest.approx(rows["restore"]["i_xt"] - rows["squash"]["i_xt"], abs=1e-12)
    assert v["size"] > 0.5
    path = result.to_csv(tmp_path / "sweep.csv")
    assert path.read_text().splitlines()[0] == "layer,estimator,units,h_t,i_xt,i_ty,saturated"
    assert len(path.read_text().splitlines()) == 3
    meta = json.loads((tmp_path / "sweep.meta.json").read_text())
    (est,) = meta["estimators"].values()
    assert est["repr"].startswith("LogDet(beta=400.0") and "one-hot" in est["note"]


def test_dpi_holds_for_a_deterministic_chain_with_exact_estimator():
    rows = [{"estimator": "e", "layer": str(i), "i_xt": v, "i_ty": 0.0} for i, v in enumerate([3.0, 2.0, 2.5, 1.0])]
    (v,) = pnn.dpi_violations(rows)
    assert (v["earlier"], v["later"], v["size"]) == ("1", "2", 0.5)
    assert pnn.dpi_violations(rows, tolerance=0.6) == []


def test_sweep_per_channel_conv_maps():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Flatten(), nn.Linear(3 * 16, 2)).eval()
    x, y = torch.randn(30, 1, 4, 4), torch.randint(0, 2, (30,))
    est = pf.Renyi()
    rows = {r["layer"]: r for r in pnn.layer_sweep(net, x, y, estimators=(est,), channels=True).rows}
    conv = pnn.capture(net, x, layers=["0"])["0"]
    per_channel = pf.Variable(conv, channels=True)
    assert rows["0"]["h_t"] == pytest.approx(est.entropy(per_channel), abs=1e-9)
    assert rows["0"]["h_t"] != pytest.approx(est.entropy(conv), abs=1e-3)  # not the tensor kernel
    assert rows["2"]["h_t"] == pytest.approx(est.entropy(net(x).detach()), abs=1e-9)  # 2-D layers unchanged


def test_bad_arguments_of_the_analysis_functions():
    x, y = torch.randn(10, 6), torch.randint(0, 2, (10,))
    with pytest.raises(ValueError, match=r"^model must be a torch.nn.Module"):
        pnn.capture("net", x)
    with pytest.raises(ValueError, match=r"^estimators must be a non-empty sequence"):
        pnn.layer_sweep(small_net(), x, y, estimators=["renyi"])
    with pytest.raises(ValueError, match=r"^y_probe has 9 samples but x_probe has 10"):
        pnn.InformationPlane(small_net(), x, y[:9])
    with pytest.raises(ValueError, match=r"^every must be a positive integer"):
        pnn.InformationPlane(small_net(), x, y, every=0)
    with pytest.raises(ValueError, match=r"^sigma_smoothing must be in"):
        pnn.InformationPlane(small_net(), x, y, sigma_smoothing=1.0)
    with pytest.raises(ValueError, match=r"^window must be a positive integer"):
        pnn.LayerTE(window=0)
    with pytest.raises(ValueError, match=r"^series must hold at least 2 layers"):
        pnn.layer_transfer_entropy({"a": x})
    with pytest.raises(ValueError, match=r"^layers entries must be module names or types"):
        pnn.capture(small_net(), x, layers=[3])


class BnThenInplaceRelu(nn.Module):
    """The torchvision ResNet stem's pattern: a batch norm whose output an
    in-place ReLU overwrites."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 8)
        self.bn1 = nn.BatchNorm1d(8)
        self.relu = nn.ReLU(inplace=True)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        return self.out(self.relu(self.bn1(self.fc(x))))


def test_capture_records_the_output_before_later_in_place_ops():
    torch.manual_seed(3)
    net = BnThenInplaceRelu().double().eval()
    x = torch.randn(64, 5, dtype=torch.float64)
    truth = net.bn1(net.fc(x)).detach()
    acts = pnn.capture(net, x, layers=["bn1", "relu"])
    assert float(acts["bn1"].min()) < 0
    torch.testing.assert_close(acts["bn1"], truth)
    torch.testing.assert_close(acts["relu"], torch.relu(truth))


def test_sweep_measures_the_layer_not_what_an_in_place_op_left():
    torch.manual_seed(4)
    net = BnThenInplaceRelu().double().eval()
    x = torch.randn(64, 5, dtype=torch.float64)
    y = torch.randint(0, 2, (64,))
    truth = net.bn1(net.fc(x)).detach()
    est = pf.LogDet(beta=50.0)
    rows = {r["layer"]: r for r in pnn.layer_sweep(net, x, y, estimators=(est,), layers=["bn1", "relu"]).rows}
    assert rows["bn1"]["i_xt"] == pytest.approx(pf.mutual_information(x, truth, estimator=est), abs=1e-10)
    assert rows["bn1"]["i_xt"] != pytest.approx(rows["relu"]["i_xt"], abs=1e-3)


def test_dpi_pairs_follow_the_graph_of_a_residual_block():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Linear(4, 6)
            self.conv1 = nn.Linear(6, 6)
            self.bn1 = nn.BatchNorm1d(6)
            self.conv2 = nn.Linear(6, 6)
            self.relu = nn.ReLU()
            self.head = nn.Linear(6, 2)

        def forward(self, x):
            s = self.stem(x)
            return self.head(self.relu(self.conv2(self.bn1(self.conv1(s))) + s))

    pairs, how = pnn.dpi_pairs(Block(), ["stem", "conv1", "bn1", "conv2", "relu", "head"])
    assert how == "torch.fx graph"
    # relu sees conv2's output and the skip from stem: it is paired with stem, not conv2.
    assert pairs == [("stem", "conv1"), ("conv1", "bn1"), ("bn1", "conv2"), ("stem", "relu"), ("relu", "head")]


def test_dpi_pairs_of_reused_modules_and_untraceable_models():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = nn.Linear(3, 3)

        def forward(self, x):
            return self.f(self.f(x))

    assert pnn.dpi_pairs(Twice(), ["f", "f#2"]) == ([("f", "f#2")], "torch.fx graph")

    class Dynamic(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x):
            h = self.a(x)
            return self.b(h) if float(h.sum()) > 0 else h  # data-dependent control flow

    pairs, how = pnn.dpi_pairs(Dynamic(), ["a", "b"])
    assert pairs == [("a", "b")] and how.startswith("assumed chain (torch.fx cannot trace Dynamic")


def test_dpi_tolerance_is_the_estimators_round_off():
    rows = [{"estimator": "e", "layer": str(i), "i_xt": v, "i_ty": 0.0} for i, v in enumerate([3.0, 3.0 + 4e-9, 2.0])]
    est = pf.Renyi()
    assert pnn.dpi_violations(rows, {"e": est.dpi_slack}) == []
    (v,) = pnn.dpi_violations(rows)  # no slack at all
    assert v["size"] == pytest.approx(4e-9, rel=1e-6) and v["tolerance"] == 0.0
    rows[1]["i_xt"] = 3.0 + 2e-4  # above 1e-4 bits, Rényi's float32 accuracy target
    (v,) = pnn.dpi_violations(rows, {"e": est.dpi_slack})
    assert v["tolerance"] == pytest.approx(1e-4)
