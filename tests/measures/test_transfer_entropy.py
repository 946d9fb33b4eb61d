"""Transfer entropy (DESIGN.md 3.5)."""
import math

import numpy as np
import pytest
import torch

import pyfastent as pf

import reference as ref


def binary_entropy(p):
    return -p * math.log2(p) - (1 - p) * math.log2(1 - p)


def exact_copy_series(periods):
    """S cycles through 0011 (every pair of consecutive bits exactly equally
    often) and T_{t+1} = S_t, so TE_{S→T} is exactly 1 bit."""
    s = torch.tensor([0, 0, 1, 1]).repeat(periods + 1)[: 4 * periods + 1]
    t = torch.cat([torch.tensor([1]), s[:-1]])  # T_0 = the cyclic predecessor of S_0
    return s, t


@pytest.mark.parametrize("est", [pf.Discrete(), pf.Renyi(alpha=1)], ids=repr)
def test_exact_copy_gives_one_bit(est):
    s, t = exact_copy_series(100)
    assert pf.transfer_entropy(s, t, estimator=est) == pytest.approx(1.0, abs=1e-9)
    # S is periodic: two steps of its own past fix S_{t+1}, leaving T nothing to add.
    assert pf.transfer_entropy(t, s, estimator=est, k=2) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.slow  # statistics over many random series
def test_random_copy_noisy_copy_and_independent():
    g = torch.Generator().manual_seed(7)
    n = 200_000
    s = torch.randint(0, 2, (n,), generator=g)
    copy = torch.cat([torch.zeros(1, dtype=torch.long), s[:-1]])
    est = pf.Discrete()
    assert pf.transfer_entropy(s, copy, estimator=est) == pytest.approx(1.0, abs=1e-3)
    p = 0.1
    flips = (torch.rand(n, generator=g) < p).long()
    noisy = pf.transfer_entropy(s, copy ^ flips, estimator=est)
    realized = float(flips[1:].double().mean())
    assert noisy == pytest.approx(1 - binary_entropy(realized), abs=1e-4)
    assert noisy == pytest.approx(1 - binary_entropy(p), abs=1e-2)
    other = torch.randint(0, 2, (n,), generator=g)
    assert abs(pf.transfer_entropy(other, copy, estimator=est)) < 1e-3


@pytest.mark.parametrize("k,l,lag", [(1, 1, 1), (2, 1, 1), (1, 2, 3), (3, 2, 2)])
def test_plugin_te_matches_counting_reference(k, l, lag):
    g = np.random.default_rng(k * 100 + l * 10 + lag)
    s = g.integers(0, 3, 3000)
    t = (np.roll(s, lag) + (g.random(3000) < 0.3)) % 3
    got = pf.transfer_entropy(torch.from_numpy(s), torch.from_numpy(t), estimator=pf.Discrete(), k=k, l=l, lag=lag)
    assert got == pytest.approx(ref.plugin_te_bits(s.tolist(), t.tolist(), k, l, lag), abs=1e-10)


def test_renyi_delta_alpha_one_equals_plugin_te():
    g = torch.Generator().manual_seed(11)
    s = torch.randint(0, 2, (600,), generator=g)
    t = torch.cat([torch.zeros(2, dtype=torch.long), s[:-2]]) ^ (torch.rand(600, generator=g) < 0.2).long()
    plug = pf.transfer_entropy(s, t, estimator=pf.Discrete(), k=2, lag=2)
    assert plug > 0.1
    assert pf.transfer_entropy(s, t, estimator=pf.Renyi(alpha=1), k=2, lag=2) == pytest.approx(plug, abs=1e-9)


def test_continuous_te_with_renyi_and_logdet():
    g = torch.Generator().manual_seed(5)
    s = torch.randn(400, 2, generator=g, dtype=torch.float64)
    t = torch.cat([torch.zeros(1, 2, dtype=torch.float64), s[:-1]]) + 0.1 * torch.randn(400, 2, generator=g, dtype=torch.float64)
    noise = torch.randn(400, 2, generator=g, dtype=torch.float64)
    # A width on the scale of the data: kNN widths of 2-D data are so small
    # that every joint entropy saturates near log N.
    renyi = pf.Renyi(alpha=1.01, sigma=1.0)
    assert pf.transfer_entropy(s, t, estimator=renyi) > 2 * abs(pf.transfer_entropy(noise, t, estimator=renyi))
    logdet = pf.LogDet(beta=1.0)
    assert pf.transfer_entropy(s, t, estimator=logdet) > 50 * abs(pf.transfer_entropy(noise, t, estimator=logdet))
