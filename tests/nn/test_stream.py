"""The pass planner and one pass on their own (``pyfastent.nn.stream``):
the groups a budget allows, computed by hand here; the rows a pass keeps,
against the model's own outputs; trimming and the checks between passes."""
from collections import OrderedDict

import pytest
import torch
from torch import nn

from pyfastent.nn.inputs import Probe
from pyfastent.nn.planner import Costs, plan_passes
from pyfastent.nn.stream import LayerInfo, Layers, PassState, Slice, learn_layers, run_pass

N = 100
FREE = Costs(lambda layer, n: 0, lambda n: 0)  # nothing held besides rows, spectra and the batch


def four_layers(width=100) -> Layers:
    """Four float32 layers of ``width`` numbers: 400 bytes per sample each."""
    layers = [LayerInfo(name, (width,), torch.float32) for name in "abcd"]
    return Layers(layers, [], list("abcd"), 0, 1, torch.float32, torch.device("cpu"))


def probe(batch_size=None, n=N):
    return Probe(torch.zeros(n, 1), batch_size=batch_size)


def test_a_probe_that_fits_runs_in_one_pass_as_one_batch():
    plan = plan_passes(four_layers(), probe(), 10 ** 9, FREE, None)
    assert plan.single and plan.groups == [list("abcd")] and plan.batch_size is None


def test_groups_are_as_large_as_the_rows_budget_allows():
    # Working set per sample: 4 × 400 bytes; batches of 10: 16 000. Spectra: budget / 8 = 16 000.
    # Rows budget: 128 000 − 16 000 − 16 000 = 96 000, and a layer's rows are 100 × 400 = 40 000:
    # two layers per pass.
    plan = plan_passes(four_layers(), probe(10), 128_000, FREE, 10)
    assert not plan.single
    assert plan.groups == [["a", "b"], ["c", "d"]]
    assert plan.rows_budget(N) == 96_000 and plan.batch_size == 10
    # Room for three layers at 160 000 (rows budget 160 000 − 20 000 − 16 000 = 124 000): the fourth alone.
    assert plan_passes(four_layers(), probe(10), 160_000, FREE, 10).groups == [["a", "b", "c"], ["d"]]


def test_the_fixed_part_and_the_largest_reduction_come_off_the_rows_budget():
    costs = Costs(lambda layer, n: 8_000, lambda n: 10_000)
    plan = plan_passes(four_layers(), probe(10), 128_000, costs, 10)
    # 128 000 − 10 000 fixed − 16 000 spectra − 8 000 reduction − 16 000 batch = 78 000: one layer per pass.
    assert plan.rows_budget(N) == 78_000
    assert plan.groups == [["a"], ["b"], ["c"], ["d"]]


def test_a_layer_whose_rows_alone_do_not_fit_stops_before_work():
    with pytest.raises(MemoryError, match=r"layer 'a' alone needs 39.1 KiB for its 100 rows of shape \(100,\)"):
        plan_passes(four_layers(), probe(10), 60_000, FREE, 10)


def test_without_a_batch_size_one_is_chosen_to_take_a_tenth_of_the_free_budget():
    # Free after spectra: 7/8 of 300 000 = 262 500, less than twice the 160 000 one batch of all 100
    # samples holds: batches of 262 500 / 10 / 1 600 = 16 samples, every layer in one pass.
    plan = plan_passes(four_layers(), probe(), 300_000, FREE, None)
    assert not plan.single and plan.batch_size == 16 and plan.groups == [list("abcd")]
    # At 400 000 (free 350 000 ≥ 2 × 160 000) the probe is one batch.
    assert plan_passes(four_layers(), probe(), 400_000, FREE, None).single


def test_a_layer_too_wide_for_the_budget_is_held_in_slices_that_fill_each_pass():
    # Layer "w" has 10 channels of 100 float32 per sample: 40 000 bytes per channel at N = 100, 400 000 in all;
    # "a" and "b" 40 000 each. Budget 136 000 in batches of one: spectra 17 000, the batch 4 x 4 000, the
    # slice sums of "w" 2 000: 101 000 for held rows.
    found = Layers([LayerInfo("a", (100,), torch.float32), LayerInfo("w", (10, 10, 10), torch.float32),
                    LayerInfo("b", (100,), torch.float32)], [], ["a", "w", "b"], 0, 1, torch.float32,
                   torch.device("cpu"))
    sums = Costs(lambda layer, n: 0, lambda n: 0, lambda layer, n: 2_000 if layer.name == "w" else None)
    plan = plan_passes(found, probe(1), 136_000, sums, 1)
    # One channel fits beside "a", two in each later pass, "b" beside the last one.
    assert plan.groups == [["a", Slice("w", 0, 1, 0, 6)], [Slice("w", 1, 3, 1, 6)], [Slice("w", 3, 5, 2, 6)],
                           [Slice("w", 5, 7, 3, 6)], [Slice("w", 7, 9, 4, 6)], [Slice("w", 9, 10, 5, 6), "b"]]
    assert plan.sliced == {"w": 6} and "1 layer(s) wider than that held in slices of their channels" in plan.reason
    with pytest.raises(MemoryError, match="'w' alone needs .* cannot be summed over slices"):
        plan_passes(found, probe(1), 136_000, FREE, 1)  # no slice sums: "w" must be held whole
    only_w = Layers([found.layers[1]], [], ["w"], 0, 1, torch.float32, torch.device("cpu"))
    with pytest.raises(MemoryError, match="one position of it needs 39.1 KiB"):
        plan_passes(only_w, probe(1), 60_000, sums, 1)  # 34 500 for held rows


def test_a_loader_of_unknown_length_is_one_group_trimmed_as_it_goes():
    loader = (torch.zeros(10, 1) for _ in range(3))
    plan = plan_passes(four_layers(), Probe(loader), 128_000, FREE, None)
    assert plan.groups == [list("abcd")] and not plan.single
    assert plan.rows_budget(N) == 128_000 - 16_000 - 10 * 1_600


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(fc=nn.Linear(3, 5), act=nn.Tanh(), out=nn.Linear(5, 2))).double()


def test_a_pass_keeps_each_layers_rows_as_the_model_computes_them():
    model, x = mlp(), torch.randn(30, 3, dtype=torch.float64)
    p = Probe(x, batch_size=10)
    found = learn_layers(model, p, ["fc", "act", "out"], ())
    assert [(layer.name, layer.shape) for layer in found.layers] == [("fc", (5,)), ("act", (5,)), ("out", (2,))]
    state, keep, seen = PassState(), {}, []
    ended = run_pass(model, p, found, ["fc", "out"], state, keep, progress=seen.append)
    with torch.no_grad():
        want = {"fc": model.fc(x), "out": model(x)}
    assert ended == ["fc", "out"] and set(keep) == {"fc", "out"}
    for name in ended:
        torch.testing.assert_close(torch.cat(keep[name]), want[name], rtol=0, atol=0)
    assert state.n == 30 and state.passes == 1 and len(state.fingerprints) == 3 and seen == [1, 2, 3]


def test_a_single_batch_pass_hands_each_layer_over_as_it_fires():
    model, x = mlp(), torch.randn(12, 3, dtype=torch.float64)
    p = Probe(x)
    found = learn_layers(model, p, ["fc", "out"], ())
    handed = []
    run_pass(model, p, found, ["fc", "out"], PassState(), {}, on_layer=lambda name, out: handed.append((name, out)))
    assert [name for name, _ in handed] == ["fc", "out"]
    with torch.no_grad():
        torch.testing.assert_close(handed[1][1], model(x), rtol=0, atol=0)


def test_a_first_pass_over_unknown_length_drops_layers_from_the_end_of_its_group():
    model = mlp()
    batches = [torch.randn(10, 3, dtype=torch.float64) for _ in range(3)]
    p = Probe(batches)
    found = learn_layers(model, p, ["fc", "act", "out"], ())
    keep: dict = {}
    # Room for 30 rows of fc (5 float64: 1 200 bytes) and of out (2: 480), not also of act.
    ended = run_pass(model, p, found, ["fc", "act", "out"], PassState(), keep, rows_budget=lambda n: 1_300)
    assert ended == ["fc"] and set(keep) == {"fc"}
    # A layer that cannot fit alone is dropped too: the pass only counts the samples, and a plan that knows
    # N holds that layer in slices (or refuses it) on the later passes.
    state, keep = PassState(), {}
    assert run_pass(model, Probe(batches), found, ["fc"], state, keep, rows_budget=lambda n: 100) == []
    assert keep == {} and state.n == 30 and state.passes == 1


def test_a_later_pass_must_see_the_same_batches():
    model = mlp()
    batches = [torch.randn(10, 3, dtype=torch.float64) for _ in range(3)]
    found = learn_layers(model, Probe(batches), ["fc"], ())
    state = PassState()
    run_pass(model, Probe(batches), found, ["fc"], state, {})
    changed = [b.clone() for b in batches]
    changed[1][0, 0] += 1
    with pytest.raises(ValueError, match=r"changed between passes \(batch 1 differs"):
        run_pass(model, Probe(changed), found, ["fc"], state, {})
    with pytest.raises(ValueError, match="gave 2 batches on pass 2 but 3 on the first"):
        run_pass(model, Probe(batches[:2]), found, ["fc"], state, {})
