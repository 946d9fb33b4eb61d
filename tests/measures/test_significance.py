"""Permutation tests (pf.permutation_test): nulls of MI, PID and transfer
entropy, p-values that are uniform under independence and small under
dependence, and Gram matrices that are permuted, not rebuilt."""
import numpy as np
import pytest
import torch

import pyfastent as pf
from pyfastent import significance
from pyfastent.nn.transfer import mean_pairwise_te


@pytest.mark.slow  # statistics over many permutation tests
def test_dependent_data_gives_small_p_values():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(150, 2, generator=g, dtype=torch.float64)
    y = x[:, :1] + 0.5 * torch.randn(150, 1, generator=g, dtype=torch.float64)
    r = pf.permutation_test(pf.mutual_information, x, y, estimator=pf.Renyi(sigma=1.0))
    assert r.p_value < 0.01 and r.value > r.null_mean + 5 * r.null_std
    bits = (torch.rand(300, generator=g) < 0.5).long()
    copy = torch.roll(bits, 1)
    te = pf.permutation_test(pf.transfer_entropy, bits, copy, estimator=pf.Discrete())
    assert te.p_value < 0.01 and te.value == pytest.approx(1.0, abs=0.02)
    assert te.permuted.startswith("source past")
    a, b = (torch.rand(200, generator=g) < 0.5).long(), (torch.rand(200, generator=g) < 0.5).long()
    xor = pf.permutation_test(pf.pid, a ^ b, [a, b], estimator=pf.Discrete(), statistic=lambda r: r.synergy)
    assert xor.p_value < 0.01 and xor.value == pytest.approx(1.0, abs=0.02)


@pytest.mark.slow  # statistics over many permutation tests
def test_independent_data_gives_p_values_spread_over_the_unit_interval():
    p_values = []
    for seed in range(40):
        g = torch.Generator().manual_seed(seed)
        x, y = torch.randn(50, 2, generator=g, dtype=torch.float64), torch.randn(50, 1, generator=g, dtype=torch.float64)
        r = pf.permutation_test(pf.mutual_information, x, y, estimator=pf.Renyi(sigma=1.0), n_permutations=50,
                                seed=seed)
        p_values.append(r.p_value)
    p = np.array(p_values)
    assert p.min() > 0 and p.max() <= 1
    # A rough uniformity check: mean near 1/2, not piled up at either end.
    assert 0.35 <= p.mean() <= 0.65
    assert (p <= 0.1).mean() <= 0.25 and (p >= 0.9).mean() <= 0.25


def test_gram_matrices_are_built_once_and_permuted(built_grams):
    calls = built_grams
    g = torch.Generator().manual_seed(1)
    x = torch.randn(80, 3, generator=g, dtype=torch.float64)
    y = torch.randn(80, 2, generator=g, dtype=torch.float64)
    r = pf.permutation_test(pf.mutual_information, x, y, n_permutations=30)
    assert sorted(calls) == ["args[0]", "args[1]"]
    # The same null as permuting the data and estimating from scratch.
    gen = torch.Generator().manual_seed(0)
    first = pf.mutual_information(x, y[torch.randperm(80, generator=gen)])
    assert float(r.null[0]) == pytest.approx(first, abs=1e-9)


def test_block_permutations_keep_blocks_together():
    order = significance._permutation(10, 3, torch.Generator().manual_seed(0)).tolist()
    assert sorted(order) == list(range(10))
    blocks, i = [], 0
    while i < 10:  # read the order back as whole blocks [0 1 2] [3 4 5] [6 7 8] [9]
        block = list(range(order[i], min(order[i] + 3, 10)))
        assert order[i] % 3 == 0 and order[i:i + len(block)] == block
        blocks.append(order[i])
        i += len(block)
    assert blocks != [0, 3, 6, 9]  # and they did move


def test_any_callable_can_be_tested_and_bad_arguments_are_named():
    g = torch.Generator().manual_seed(2)
    source = torch.rand(400, 4, generator=g) > 0.5
    target = torch.roll(source, 1, dims=0)
    r = pf.permutation_test(mean_pairwise_te, source, target, n_permutations=20)
    assert r.p_value < 0.05 and r.null_mean < r.value
    with pytest.raises(ValueError, match="^n_permutations must be a positive integer"):
        pf.permutation_test(pf.mutual_information, source.long(), target.long(), n_permutations=0)
    with pytest.raises(ValueError, match="^argument must index one of the 2 positional arguments"):
        pf.permutation_test(pf.mutual_information, source.long(), target.long(), argument=2)
    with pytest.raises(ValueError, match="^measure must be a callable"):
        pf.permutation_test("mi", source, target)
    with pytest.raises(ValueError, match="^seed must be an integer"):
        pf.permutation_test(pf.mutual_information, source.long(), target.long(), seed=0.5)
