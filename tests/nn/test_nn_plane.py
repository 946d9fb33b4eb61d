"""Information-plane tracker, layer transfer entropy and feature-map PID."""
import itertools
import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

import pyfastent as pf
import pyfastent.nn as pnn

import reference as ref


def tiny_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 16, 5), nn.ReLU(),
                         nn.Linear(5, 3))


def train_epoch(net, x, y, opt, tracker=None):
    net.train()
    for b in range(0, len(y), 16):
        loss = nn.functional.cross_entropy(net(x[b:b + 16]), y[b:b + 16])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(96, 1, 4, 4, generator=g)
    y = (x.mean((1, 2, 3)) > 0.5).long() + (x[:, 0, 0, 0] > 0.5).long()
    return x, y


def test_tracker_rows_match_a_sweep_and_round_trip(tmp_path, data):
    x, y = data
    net = tiny_cnn()
    est = (pf.Renyi(), pf.LogDet(beta=10.0))
    tracker = pnn.InformationPlane(net, x[:40], y[:40], estimators=est, every=2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    measured = []
    for epoch in range(3):
        loss = train_epoch(net, x, y, opt)
        measured.append(tracker.step(epoch=epoch, loss=loss))
    assert measured == [True, False, True]
    assert net.training  # the mode is restored after measuring in eval mode
    sweep = pnn.layer_sweep(net.eval(), x[:40], y[:40], estimators=est)
    last = {(r["layer"], r["estimator"], r["quantity"]): r["value"] for r in tracker.rows if r["step"] == 2}
    for r in sweep.rows:
        for q in ("h_t", "i_xt", "i_ty"):
            assert last[(r["layer"], r["estimator"], q)] == pytest.approx(r[q], abs=1e-9)
    for suffix in (".csv", ".jsonl"):
        path = tracker.save(tmp_path / f"plane{suffix}")
        table = pnn.InformationPlane.load(path)
        assert table.rows == tracker.rows
        assert table.metadata == tracker.table.metadata
        assert table.metadata["probe_size"] == 40 and table.metadata["estimators"] == [e.label for e in est]


@pytest.mark.filterwarnings("ignore::pyfastent.SaturationWarning")  # kNN widths on 40 samples
def test_sigma_smoothing_across_steps(data):
    x, y = data
    net = tiny_cnn()
    tracker = pnn.InformationPlane(net, x[:40], y[:40], estimators=(pf.Renyi(),), layers=["3"], sigma_smoothing=0.9)
    tracker.step()
    first = tracker.table.values("sigma")[0]["value"]
    with torch.no_grad():
        net[3].weight.mul_(3.0)
    tracker.step()
    second = tracker.table.values("sigma")[1]["value"]
    t = pnn.capture(net.eval(), x[:40], layers=["3"])["3"]
    raw = ref.knn_sigma(t.double().numpy(), 10)
    assert second == pytest.approx(0.9 * first + 0.1 * raw, rel=1e-5)


def test_tracker_with_label_alignment_widths(data):
    x, y = data
    est = pf.Renyi(sigma="alignment", labels=y[:40])
    tracker = pnn.InformationPlane(tiny_cnn(), x[:40], y[:40], estimators=(est,), layers=["3"], sigma_smoothing=0.9)
    tracker.step()
    (row,) = tracker.table.values("sigma")
    t = pnn.capture(tracker.model.eval(), x[:40], layers=["3"])["3"]
    from pyfastent._distances import squared_distances

    assert row["value"] == pytest.approx(pf.widths.Alignment(y[:40])(squared_distances(t), 40, t.shape[1]), rel=1e-6)


class Delay(nn.Module):
    """Outputs the previous sample's input (a delay line across batches)."""

    def __init__(self):
        super().__init__()
        self.last = None

    def forward(self, x):
        prev = torch.zeros_like(x[:1]) if self.last is None else self.last
        self.last = x[-1:].detach()
        return torch.cat([prev, x[:-1]])


def test_tracker_te_of_a_delayed_copy_is_one_bit():
    # Input bits cycle 0110: consecutive pairs are exactly uniform, and the
    # delay's initial 0 is the cycle's predecessor of the first bit.
    bits = torch.tensor([0.0, 1.0, 1.0, 0.0]).repeat(50)
    bits = torch.cat([bits, bits[:1]]).reshape(-1, 1)  # 4·50 + 1 samples
    net = nn.Sequential(OrderedDict(copy=nn.ReLU(), delayed=Delay(), out=nn.Linear(1, 2)))
    tracker = pnn.InformationPlane(net, bits[:20], torch.zeros(20, dtype=torch.long), estimators=(pf.LogDet(),),
                                   layers=["copy", "delayed", "out"], transfer_entropy=pnn.LayerTE(window=500))
    net.train()
    with torch.no_grad():
        for b in range(0, len(bits), 32):
            net(bits[b:b + 32])
    tracker.step()
    te = {(r["layer"], r["quantity"]): r["value"] for r in tracker.rows if r["estimator"] == "binary-te"}
    assert te[("delayed", "te_in_mean")] == pytest.approx(1.0, abs=1e-12)
    assert te[("delayed", "te_in_pairs")] == 1
    assert te[("copy", "te_in_mean")] == pytest.approx(0.0, abs=1e-12)  # same-sample copy of the input: no transfer
    tracker.close()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_te_only_tracker_and_its_p_values():
    g = torch.Generator().manual_seed(5)
    bits = (torch.rand(401, 1, generator=g) > 0.5).float()
    net = nn.Sequential(OrderedDict(copy=nn.ReLU(), delayed=Delay(), out=nn.Linear(1, 2)))
    te = pnn.LayerTE(window=500, floor_permutations=19)
    tracker = pnn.InformationPlane(net, bits[:20], torch.zeros(20, dtype=torch.long), estimators=(),
                                   layers=["copy", "delayed", "out"], transfer_entropy=te)
    net.train()
    with torch.no_grad():
        for b in range(0, len(bits), 32):
            net(bits[b:b + 32])
    assert tracker.step(epoch=1)
    assert {r["estimator"] for r in tracker.rows} == {"binary-te"}
    p = {r["layer"]: r["value"] for r in tracker.rows if r["quantity"] == "te_x_p"}
    # X -> delayed carries ~1 bit; no shuffle of the source gets near it: the smallest p the test can give.
    assert p["delayed"] == pytest.approx(1 / 20, abs=1e-12)
    floor = {r["layer"]: r["value"] for r in tracker.rows if r["quantity"] == "te_x_floor"}
    assert 0 <= floor["delayed"] < 0.05
    tracker.close()


def test_a_tracker_that_would_measure_nothing_is_refused(data):
    x, y = data
    with pytest.raises(ValueError, match="estimators is empty"):
        pnn.InformationPlane(tiny_cnn(), x, y, estimators=())


def test_layer_transfer_entropy_pairs_and_subsets():
    g = torch.Generator().manual_seed(2)
    a = (torch.rand(400, 3, generator=g) > 0.5).float()
    b = torch.cat([torch.zeros(1, 3), a[:-1]])  # b_{t+1} = a_t, neuron by neuron
    rows = pnn.layer_transfer_entropy(OrderedDict(a=a, b=b), softmax_output=False, max_pairs=None)
    full = pnn.pairwise_te(a > 0.5, b > 0.5)
    expected = [[ref.plugin_te_bits(a[:, j].long().tolist(), b[:, i].long().tolist(), 1, 1, 1) for j in range(3)]
                for i in range(3)]
    torch.testing.assert_close(full, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)
    assert rows[0]["te_sum"] == pytest.approx(float(full.sum()), abs=1e-12) and rows[0]["pairs"] == 9
    off_diagonal = full[~torch.eye(3, dtype=torch.bool)]
    assert float(full.diagonal().min()) > 0.95 and float(off_diagonal.max()) < 0.05
    (sub,) = pnn.layer_transfer_entropy(OrderedDict(a=a, b=b), softmax_output=False, max_pairs=4)
    assert sub["pairs"] == 4  # a random 2 × 2 grid of the 3 × 3 pairs
    grids = [float(full[list(t)][:, list(s)].sum()) for t in itertools.combinations(range(3), 2)
             for s in itertools.combinations(range(3), 2)]
    assert min(abs(sub["te_sum"] - v) for v in grids) < 1e-12


def test_continuous_layer_te_uses_the_generic_estimator():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(300, 2, generator=g, dtype=torch.float64)
    b = torch.cat([torch.zeros(1, 2, dtype=torch.float64), a[:-1]])
    (row,) = pnn.continuous_layer_transfer_entropy(OrderedDict(a=a, b=b), estimator=pf.LogDet(beta=1.0))
    assert row["te"] == pytest.approx(pf.transfer_entropy(a, b, estimator=pf.LogDet(beta=1.0)), abs=1e-12)
    # A perfect copy at β = 1: −(d/2)·log2(1 − β²/(1+β)²) = 0.415 bits for d = 2, up to sampling.
    assert row["te"] == pytest.approx(-math.log2(0.75), abs=0.05)


def maps_from_bits(*bits):
    """(N, C, 2, 2) activation whose channel c is constant at bits[c]."""
    return torch.stack([b.float()[:, None, None].expand(-1, 2, 2) for b in bits], dim=1)


def test_feature_map_pid_copies_are_redundant_xor_is_synergistic():
    a = torch.tensor([0, 0, 1, 1]).repeat(16)
    b = torch.tensor([0, 1, 0, 1]).repeat(16)
    est = pf.Renyi(alpha=1, kernel="delta")
    (copies,) = pnn.feature_map_pid(maps_from_bits(a, a), a, estimator=est)
    assert copies["redundancy"] == pytest.approx(1.0, abs=1e-9) and copies["synergy"] == pytest.approx(0.0, abs=1e-9)
    rows = pnn.feature_map_pid(maps_from_bits(a, b, a), a ^ b, estimator=est)
    assert [r["k"] for r in rows] == [2, 3]
    assert rows[0]["synergy"] == pytest.approx(1.0, abs=1e-9) and rows[0]["redundancy"] == pytest.approx(0.0, abs=1e-9)
    grouped = pnn.feature_map_pid(maps_from_bits(a, b, a, b), a ^ b, estimator=est, groups=[[0, 1], [2], [3]])
    assert grouped[0]["mutual_information"] == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match=r"^counts must hold integers between 2 and 2"):
        pnn.feature_map_pid(maps_from_bits(a, b), a, estimator=est, counts=[3])



def test_te_series_record_outputs_before_in_place_ops():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(inplace=True), nn.Linear(6, 2))
    x, y = torch.randn(50, 4), torch.randint(0, 2, (50,))
    tracker = pnn.InformationPlane(net, x, y, layers=["0", "2"], transfer_entropy=pnn.LayerTE(window=50))
    net.train()
    with torch.no_grad():
        truth = net[0](x)
        net(x)
    series = tracker._series.series()
    tracker.close()
    assert float(series["0"].min()) < 0
    torch.testing.assert_close(series["0"], truth)


@pytest.fixture
def fresh_warnings(monkeypatch):
    from pyfastent import _warnings

    monkeypatch.setattr(_warnings, "_warned_sites", set())


def test_saturated_joint_warns_once_per_call_site(fresh_warnings):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(400, 2, generator=g), torch.randn(400, 2, generator=g)  # independent
    with pytest.warns(pf.SaturationWarning) as caught:
        for _ in range(3):
            mi = pf.mutual_information(x, y)  # kNN widths on 2-D data: ~3.8 bits of "MI"
    assert len(caught) == 1 and mi > 3
    message = str(caught[0].message)
    assert "(x, y)" in message and "σ = " in message and "wider kernel" in message
    assert caught[0].filename == __file__
    with pytest.warns(pf.SaturationWarning):
        pf.mutual_information(x, y)  # another call site warns again


def test_meaningful_estimates_do_not_warn(fresh_warnings):
    import warnings

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(400, 2, generator=g), torch.randn(400, 2, generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert 0 < pf.mutual_information(x, y, estimator=pf.Renyi(sigma=1.0)) < 1
        pf.mutual_information(x, y, estimator=pf.LogDet(beta=1e6))  # LogDet is not bounded by log N


def test_distinct_discrete_states_warn(fresh_warnings):
    ids = torch.arange(100)
    with pytest.warns(pf.SaturationWarning, match="distinct state"):
        pf.Discrete().entropy(ids)


def test_te_hooks_read_keyword_calls_and_skip_what_they_cannot_read():
    from pyfastent._warnings import HookWarning

    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
    x, y = torch.randn(40, 4), torch.randint(0, 2, (40,))
    tracker = pnn.InformationPlane(net, x, y, layers=["0", "2"], transfer_entropy=pnn.LayerTE(window=40))
    net.train()
    with torch.no_grad():
        net(input=x[:20])  # keyword-only: X is the call's tensor argument
        net(x[20:])
    series = tracker._series.series()
    torch.testing.assert_close(series["input"], x)
    with pytest.warns(HookWarning, match="no tensor input"):
        with pytest.raises(TypeError):
            net()  # the model itself fails, as it would unhooked; our hook only warns
    with torch.no_grad():
        net(x[:5])  # recording goes on
    torch.testing.assert_close(tracker._series.series()["input"][-5:], x[:5])
    tracker.close()
