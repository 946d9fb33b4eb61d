"""Sweeps that scale: the probe streamed through the model under a memory
budget, one reduction per layer, the model left as it was, and inputs as
the user gave them."""
import gc
import math
import weakref
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import pyfastent as pf
import pyfastent.nn as pnn
from pyfastent.ops import reduction

from budget import smallest_budget

N = 120


def mlp(width=300):
    """float64, with a layer wider than N (300 > 120: LogDet's Sylvester side) and narrow ones."""
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        fc1=nn.Linear(6, 40), act1=nn.Tanh(), fc2=nn.Linear(40, width), act2=nn.ReLU(), fc3=nn.Linear(width, 8),
        act3=nn.Tanh(), out=nn.Linear(8, 3))).double()


def cnn():
    torch.manual_seed(1)
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(1, 4, 3, padding=1), bn=nn.BatchNorm2d(4), act=nn.ReLU(), pool=nn.MaxPool2d(2),
        flat=nn.Flatten(), fc=nn.Linear(16, 3))).double()


def data(shape=(6,), dtype=torch.float64, seed=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, *shape, generator=g, dtype=dtype)
    y = torch.randint(0, 3, (N,), generator=g)
    return x, y


ESTIMATORS = (pf.Renyi(), pf.LogDet(beta=1.0), pf.LogDet(beta=1.0, mode="correlation"))


def assert_rows_equal(got, want, rel=1e-9, abs_bits=0.0):
    assert [(r["layer"], r["estimator"]) for r in got.rows] == [(r["layer"], r["estimator"]) for r in want.rows]
    for a, b in zip(got.rows, want.rows):
        for q in ("h_t", "i_xt", "i_ty"):
            assert a[q] == pytest.approx(b[q], rel=rel, abs=abs_bits), (a["layer"], a["estimator"], q)


def counting_forward(model):
    """The batch sizes of every forward pass of ``model``, as they happen."""
    sizes = []
    model.register_forward_pre_hook(lambda module, args, kwargs: sizes.append(
        (args[0] if args else next(iter(kwargs.values()))).shape[0]), with_kwargs=True)
    return sizes


@pytest.mark.parametrize("batch_size", [7, 16, 119])  # 119: a last batch of one sample
def test_streamed_sweeps_equal_one_pass(batch_size):
    x, y = data()
    one = pnn.layer_sweep(mlp(), x, y, estimators=ESTIMATORS)
    assert one.metadata["probe_passes"] == 1 and one.metadata["batch_size"] is None
    streamed = pnn.layer_sweep(mlp(), x, y, estimators=ESTIMATORS, batch_size=batch_size)
    assert streamed.metadata["batch_size"] == batch_size
    assert_rows_equal(streamed, one)


def test_dataloaders_equal_one_pass():
    x, y = data()
    one = pnn.layer_sweep(mlp(), x, y, estimators=ESTIMATORS)
    pairs = DataLoader(TensorDataset(x, y), batch_size=13)  # labels from the batches
    assert_rows_equal(pnn.layer_sweep(mlp(), pairs, estimators=ESTIMATORS), one)
    inputs = DataLoader(TensorDataset(x), batch_size=13)  # labels from y=
    assert_rows_equal(pnn.layer_sweep(mlp(), inputs, y, estimators=ESTIMATORS), one)

    class Stream(IterableDataset):  # no length: the samples are counted as they come
        def __iter__(self):
            return iter(zip(x, y))

    assert_rows_equal(pnn.layer_sweep(mlp(), DataLoader(Stream(), batch_size=10), estimators=ESTIMATORS), one)


def test_per_channel_layers_streamed_equal_one_pass():
    x, y = data((1, 4, 4))
    one = pnn.layer_sweep(cnn(), x, y, channels=True)
    streamed = pnn.layer_sweep(cnn(), x, y, channels=True, batch_size=11)
    assert_rows_equal(streamed, one)
    widths = [r for r in pnn.capture(cnn(), x, layers=["conv"]).values()]
    assert widths[0].shape == (N, 4, 4, 4)


def test_float32_streamed_within_the_accuracy_targets():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 40), nn.Tanh(), nn.Linear(40, 300), nn.ReLU(), nn.Linear(300, 3))
    x, y = data(dtype=torch.float32)
    one = pnn.layer_sweep(net, x, y)
    streamed = pnn.layer_sweep(net, x, y, batch_size=9)
    for a, b in zip(streamed.rows, one.rows):
        renyi = a["estimator"].startswith("renyi")
        for q in ("h_t", "i_xt", "i_ty"):  # DESIGN.md: 1e-4 bits (Rényi), 1e-6 relative (LogDet)
            assert a[q] == pytest.approx(b[q], abs=1e-4 if renyi else 0, rel=0 if renyi else 1e-6)


def test_the_planner_splits_layers_when_they_do_not_fit_together():
    x, y = data()
    one = pnn.layer_sweep(mlp(), x, y, estimators=ESTIMATORS)
    budget = smallest_budget(lambda b: pnn.layer_sweep(mlp(), x, y, estimators=ESTIMATORS, batch_size=16,
                                                       memory_budget=b))
    tight = pnn.layer_sweep(mlp(), x, y, estimators=ESTIMATORS, batch_size=16, memory_budget=budget)
    assert tight.metadata["probe_passes"] > 1
    assert_rows_equal(tight, one)
    loose = pnn.layer_sweep(mlp(), x, y, estimators=ESTIMATORS, batch_size=16, memory_budget=4 * budget)
    assert loose.metadata["probe_passes"] < tight.metadata["probe_passes"]
    # Each pass stops after its group's last layer: passes before the last never reach the output.
    net = mlp()
    reached = []
    net.out.register_forward_hook(lambda *a: reached.append(1))
    pnn.layer_sweep(net, x, y, estimators=ESTIMATORS, batch_size=16, memory_budget=budget)
    assert len(reached) < tight.metadata["probe_passes"] * math.ceil(N / 16) + 1


def wide_mlp():
    """Two layers of 2000 features: too wide for a tight budget, held in slices."""
    return mlp(width=2000)


def wide_cnn():
    """float64, conv maps of 6 channels x 144 (864 > N) and 6 x 36 after pooling (216 > N)."""
    torch.manual_seed(1)
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(1, 6, 3, padding=1), act=nn.ReLU(), pool=nn.MaxPool2d(2), flat=nn.Flatten(),
        fc=nn.Linear(216, 3))).double()


def test_a_layer_too_wide_for_the_budget_is_held_in_slices_and_equals_one_pass():
    x, y = data()
    one = pnn.layer_sweep(wide_mlp(), x, y, estimators=ESTIMATORS)
    assert one.metadata["sliced_layers"] == {}

    def tight(b):
        return pnn.layer_sweep(wide_mlp(), x, y, estimators=ESTIMATORS, batch_size=16, memory_budget=b)

    budget = smallest_budget(tight)
    sliced = tight(budget)
    assert set(sliced.metadata["sliced_layers"]) == {"fc2", "act2"} and sliced.metadata["probe_passes"] > 2
    assert "held in slices of their features" in sliced.metadata["passes_reason"]
    assert_rows_equal(sliced, one)

    class Stream(IterableDataset):  # no length: the first pass counts the samples, the later ones slice
        def __iter__(self):
            return iter(zip(x, y))

    def streamed(b):
        return pnn.layer_sweep(wide_mlp(), DataLoader(Stream(), batch_size=16), estimators=ESTIMATORS,
                               memory_budget=b)

    loader = streamed(smallest_budget(streamed))
    assert set(loader.metadata["sliced_layers"]) == {"fc2", "act2"}
    assert_rows_equal(loader, one)


def test_per_channel_layers_held_in_slices_of_channels_equal_one_pass():
    x, y = data((1, 12, 12))
    estimators = (pf.Renyi(), *ESTIMATORS[1:])
    one = pnn.layer_sweep(wide_cnn(), x, y, estimators=estimators, channels=True)

    def tight(b):
        return pnn.layer_sweep(wide_cnn(), x, y, estimators=estimators, channels=True, batch_size=16,
                               memory_budget=b)

    sliced = tight(smallest_budget(tight))
    assert "conv" in sliced.metadata["sliced_layers"]
    assert "held in slices of their channels" in sliced.metadata["passes_reason"]
    assert_rows_equal(sliced, one)


def test_tracker_steps_hold_wide_layers_in_slices():
    x, y = data()
    one = pnn.InformationPlane(wide_mlp(), x, y, estimators=ESTIMATORS)
    one.step()
    budget = smallest_budget(lambda b: pnn.InformationPlane(wide_mlp(), x, y, estimators=ESTIMATORS,
                                                            batch_size=16, memory_budget=b).step())
    tracker = pnn.InformationPlane(wide_mlp(), x, y, estimators=ESTIMATORS, batch_size=16, memory_budget=budget)
    tracker.step()
    assert one.passes[0]["probe_passes"] == 1 and tracker.passes[0]["probe_passes"] > 2
    assert set(tracker.passes[0]["sliced_layers"]) == {"fc2", "act2"}
    for a, b in zip(tracker.rows, one.rows):
        assert (a["layer"], a["estimator"], a["quantity"]) == (b["layer"], b["estimator"], b["quantity"])
        assert a["value"] == pytest.approx(b["value"], rel=1e-9)


def test_a_wide_layer_whose_products_are_not_sums_over_features_is_refused_before_work():
    x, y = data()
    randomized = (pf.Renyi(method="lanczos"),)  # its features are N x D: not a sum over slices
    budget = smallest_budget(lambda b: pnn.layer_sweep(wide_mlp(), x, y, estimators=randomized, layers=["fc2"],
                                                       batch_size=16, memory_budget=b))
    net = wide_mlp()
    sizes = counting_forward(net)
    with pytest.raises(MemoryError, match=r"'fc2' alone needs .* cannot be summed over slices .* randomized"):
        pnn.layer_sweep(net, x, y, estimators=randomized, layers=["fc2"], batch_size=16,
                        memory_budget=int(0.9 * budget))
    assert sizes == [2]


@pytest.mark.parametrize("budgeted", [False, True])
def test_h_x_is_one_spectrum_for_all_layers(monkeypatch, budgeted):
    """Each layer's row plans H(T), H(X,T) and H(T,Y); H(X) is solved once
    per estimator and sweep, however many probe passes it takes, and the
    metadata's H(X) is that value."""
    from pyfastent.ops import eigen

    solve, sizes = eigen.symmetric_eigenvalues, []

    def spy(matrices):
        sizes.extend(m.shape[-1] for m in matrices for _ in range(m.shape[0] if m.dim() == 3 else 1))
        return solve(matrices)

    x, y = data()
    budget = {}
    if budgeted:
        budget = dict(batch_size=16, memory_budget=smallest_budget(
            lambda b: pnn.layer_sweep(mlp(), x, y, estimators=(pf.Renyi(),), batch_size=16, memory_budget=b)))
    monkeypatch.setattr(eigen, "symmetric_eigenvalues", spy)
    result = pnn.layer_sweep(mlp(), x, y, estimators=(pf.Renyi(),), **budget)
    passes = result.metadata["probe_passes"]
    assert passes > 1 if budgeted else passes == 1
    # The class blocks of H(T,Y) are ~N/3 rows: only H(X), H(T) and H(X,T) are N x N.
    assert sizes.count(N) == 2 * len(result.rows) + 1
    direct = float(pf.Renyi().entropy(x))
    assert result.metadata["estimators"][result.rows[0]["estimator"]]["h_x"] == pytest.approx(direct, abs=1e-9)


def test_an_impossible_budget_is_a_memory_error_before_the_real_work():
    x, y = data()
    net = mlp()
    sizes = counting_forward(net)
    with pytest.raises(MemoryError, match=r"^layer 'fc1' alone needs .* raise memory_budget"):
        pnn.layer_sweep(net, x, y, batch_size=16, memory_budget=1)
    assert sizes == [2]  # the pass that learns the layers' shapes, on two samples, and nothing else
    with pytest.raises(ValueError, match=r"^memory_budget must be"):
        pnn.layer_sweep(net, x, y, memory_budget="lots")
    with pytest.raises(MemoryError, match=r"^the captured activations would take"):
        pnn.capture(net, x, memory_budget="1KB")


def test_shuffling_and_one_shot_loaders_are_refused_when_two_passes_are_needed():
    x, y = data()
    budget = smallest_budget(lambda b: pnn.layer_sweep(mlp(), x, y, estimators=ESTIMATORS, batch_size=16,
                                                       memory_budget=b))
    shuffled = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    with pytest.raises(ValueError, match=r"shuffling DataLoader, but the layers' rows do not fit .*\(shuffle=False\)"):
        pnn.layer_sweep(mlp(), shuffled, estimators=ESTIMATORS, memory_budget=budget)
    one_shot = iter(DataLoader(TensorDataset(x, y), batch_size=16))
    with pytest.raises(ValueError, match=r"one-shot iterator"):
        pnn.layer_sweep(mlp(), one_shot, estimators=ESTIMATORS, memory_budget=budget)
    # One pass is enough with room for every layer: both are fine then.
    pnn.layer_sweep(mlp(), DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True), estimators=ESTIMATORS)
    pnn.layer_sweep(mlp(), iter(DataLoader(TensorDataset(x, y), batch_size=16)), estimators=ESTIMATORS)


def test_a_one_shot_iterator_gives_every_batch_to_the_default_estimators():
    """The default estimators read X's first batch before the passes: from
    the same iterator, so the passes still see all N samples (a second
    iterator over it used to lose the first batch)."""
    x, y = data()
    batches = [(x[i:i + 40], y[i:i + 40]) for i in range(0, N, 40)]
    whole = pnn.layer_sweep(mlp(), x, y, progress=False)
    one_shot = pnn.layer_sweep(mlp(), iter(batches), progress=False)
    assert [r["estimator"] for r in one_shot.rows] == [r["estimator"] for r in whole.rows]
    assert_rows_equal(one_shot, whole, rel=1e-7)


def test_batches_that_change_between_passes_are_caught():
    x, y = data()
    budget = smallest_budget(lambda b: pnn.layer_sweep(mlp(), x, y, estimators=ESTIMATORS, batch_size=16,
                                                       memory_budget=b))

    class Drifting:  # re-iterable, but not the same batches twice
        calls = 0

        def __iter__(self):
            Drifting.calls += 1
            return iter([(x[i:i + 16] + Drifting.calls, y[i:i + 16]) for i in range(0, N, 16)])

    with pytest.raises(ValueError, match=r"^the probe batches changed between passes"):
        pnn.layer_sweep(mlp(), Drifting(), estimators=ESTIMATORS, memory_budget=budget)


class Frozen(nn.Module):
    """A training model with a frozen batch norm and dropout."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        return self.out(self.drop(self.bn(self.fc(x))))


def frozen():
    torch.manual_seed(0)
    net = Frozen()
    net.train()
    net.bn.eval()  # fine-tuning with frozen statistics
    return net


def modes(net):
    return {name: m.training for name, m in net.named_modules()}


def test_the_model_is_left_as_it_was():
    x, y = data(dtype=torch.float32)
    net = frozen()
    before, stats = modes(net), net.bn.running_mean.clone()
    first = pnn.layer_sweep(net, x, y)
    assert modes(net) == before and torch.equal(net.bn.running_mean, stats)
    second = pnn.layer_sweep(net, x, y)  # eval mode: dropout is off, the numbers repeat
    assert_rows_equal(second, first, rel=0)
    acts = pnn.capture(net, x)
    assert modes(net) == before
    torch.testing.assert_close(acts["out"], net.eval()(x).detach())
    net = frozen()
    pnn.layer_sweep(net, x, y, train_mode=True)  # modules keep their modes; running statistics are restored
    assert modes(net) == before and torch.equal(net.bn.running_mean, stats)


def test_modes_are_restored_after_an_exception():
    x, y = data(dtype=torch.float32)
    net = frozen()
    before = modes(net)

    class Failing(pf.Renyi):
        def needs(self, var, rows, partners=None):
            raise RuntimeError("failed in the middle of the sweep")

    with pytest.raises(RuntimeError, match="failed in the middle"):
        pnn.layer_sweep(net, x, y, estimators=(Failing(),))
    assert modes(net) == before
    with pytest.raises(ValueError, match=r"^y has 5 samples but x has 120"):
        pnn.layer_sweep(net, x, y[:5])
    assert modes(net) == before


def test_labels_are_checked_before_the_forward_pass():
    x, y = data(dtype=torch.float32)
    net = frozen()
    sizes = counting_forward(net)
    with pytest.raises(ValueError, match=r"^y has 119 samples but x has 120"):
        pnn.layer_sweep(net, x, y[:-1])
    with pytest.raises(ValueError, match=r"^y_probe has 119 samples but x_probe has 120"):
        pnn.InformationPlane(net, x, y[:-1])
    assert sizes == []


@pytest.mark.filterwarnings("ignore::pyfastent.SaturationWarning")  # token ids: every sample distinct
def test_inputs_reach_the_model_in_its_dtype_integers_unconverted():
    x, y = data(dtype=torch.float32)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))  # float32
    reference = pnn.layer_sweep(net, x, y)
    for given in (x.double(), x.numpy(), x.double().numpy()):
        got = pnn.layer_sweep(net, given, y)  # X itself is measured as given: float64 here
        assert_rows_equal(got, reference, rel=0, abs_bits=1e-4)
    torch.manual_seed(0)
    tokens = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 3))
    ids = torch.randint(0, 10, (N, 3), generator=torch.Generator().manual_seed(0))
    seen = []
    tokens[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    pnn.layer_sweep(tokens, ids.numpy(), y)
    pnn.capture(tokens, ids)
    assert set(seen) == {torch.int64}


def test_no_rows_outlive_their_layers_reduction(monkeypatch):
    x, y = data()
    alive = []  # weak references to the rows of every layer reduced so far
    build = reduction.reduce_rows

    def watching(rows, needs):
        out = build(rows, needs)
        if rows.name not in ("x", "y"):
            gc.collect()
            assert all(ref() is None for ref in alive), "an earlier layer's rows are still alive"
            alive.extend(weakref.ref(p) for p in rows.parts)
        return out

    monkeypatch.setattr(reduction, "reduce_rows", watching)
    pnn.layer_sweep(mlp(), x, y, estimators=ESTIMATORS, batch_size=16)  # held rows, copied from each batch
    assert alive
    gc.collect()
    assert all(ref() is None for ref in alive)


def test_the_tracker_streams_a_dataloader():
    x, y = data(dtype=torch.float32)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    est = (pf.Renyi(), pf.LogDet(beta=1.0))
    plain = pnn.InformationPlane(net, x, y, estimators=est)
    plain.step()
    loader = pnn.InformationPlane(net, DataLoader(TensorDataset(x, y), batch_size=25), estimators=est,
                                  memory_budget="1GB")
    loader.step()
    assert len(loader.rows) == len(plain.rows)
    for a, b in zip(loader.rows, plain.rows):
        assert (a["layer"], a["quantity"]) == (b["layer"], b["quantity"])
        assert a["value"] == pytest.approx(b["value"], abs=1e-4, rel=1e-6)
    assert loader.table.metadata["probe_size"] == N


def test_capture_in_batches_equals_one_pass():
    x, y = data()
    net = mlp()
    whole = pnn.capture(net, x)
    batched = pnn.capture(net, x, batch_size=17)
    loader = pnn.capture(net, DataLoader(TensorDataset(x, y), batch_size=17))
    for name in whole:
        torch.testing.assert_close(batched[name], whole[name])
        torch.testing.assert_close(loader[name], whole[name])


def test_bad_batch_formats_are_named():
    x, y = data()
    with pytest.raises(ValueError, match=r"^x: batch 0 is a sequence of 3 items"):
        pnn.layer_sweep(mlp(), [(x, y, y)], y)
    with pytest.raises(ValueError, match=r"^x: batch 0 carries labels and y was given too"):
        pnn.layer_sweep(mlp(), [(x, y)], y)
    with pytest.raises(ValueError, match=r"^x: batch 0 has 120 samples but 5 labels"):
        pnn.layer_sweep(mlp(), [(x, y[:5])])
    with pytest.raises(ValueError, match=r"^batch_size must be a positive integer"):
        pnn.layer_sweep(mlp(), x, y, batch_size=0)
    with pytest.raises(ValueError, match=r"^batch_size applies to a tensor or dict x"):
        pnn.layer_sweep(mlp(), [x], y, batch_size=4)
    with pytest.raises(ValueError, match=r"^x must be a tensor or array of samples"):
        pnn.layer_sweep(mlp(), 3.0, y)
    with pytest.raises(ValueError, match=r"^y: labels are needed"):
        pnn.layer_sweep(mlp(), [x])


def test_memory_budget_sizes():
    from pyfastent.nn.planner import resolve_budget

    cpu = torch.device("cpu")
    assert resolve_budget("4GB", cpu) == 4 * 10**9
    assert resolve_budget("512 MiB", cpu) == 512 * 2**20
    assert resolve_budget(1e6, cpu) == 10**6
    assert 0 < resolve_budget(None, cpu) < np.iinfo(np.int64).max
    for bad in ("4 parsecs", -1, 0, True):
        with pytest.raises(ValueError, match=r"^memory_budget must be"):
            resolve_budget(bad, cpu)


def test_held_rows_are_the_layer_outputs_not_what_in_place_ops_left():
    x, y = data()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(inplace=True), nn.Linear(8, 3)).double()  # ReLU overwrites fc's output
    one = pnn.layer_sweep(net, x, y, estimators=ESTIMATORS, layers=["0", "2"])
    assert_rows_equal(pnn.layer_sweep(net, x, y, estimators=ESTIMATORS, layers=["0", "2"], batch_size=16), one)
    torch.testing.assert_close(pnn.capture(net, x, layers=["0"], batch_size=16)["0"], net[0](x).detach())
