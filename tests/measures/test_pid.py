"""Partial information decomposition (DESIGN.md 3.4)."""
import math

import pytest
import torch

import pyfastent as pf

ESTIMATORS = [pf.Discrete(), pf.Renyi(alpha=1)]


def balanced_bits():
    t1 = torch.tensor([0, 0, 1, 1]).repeat(25)
    t2 = torch.tensor([0, 1, 0, 1]).repeat(25)
    return t1, t2


@pytest.mark.parametrize("est", ESTIMATORS, ids=repr)
def test_xor_is_pure_synergy(est):
    t1, t2 = balanced_bits()
    r = pf.pid(t1 ^ t2, [t1, t2], estimator=est)
    assert r.synergy == pytest.approx(1.0, abs=1e-9)
    assert r.redundancy == pytest.approx(0.0, abs=1e-9)
    assert r.unique == pytest.approx((0.0, 0.0), abs=1e-9)
    assert r.mutual_information == pytest.approx(1.0, abs=1e-9)
    assert r.tradeoff == pytest.approx(-1.0, abs=1e-9)
    assert r.nonredundant == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("est", ESTIMATORS, ids=repr)
def test_copies_are_pure_redundancy(est):
    t1, _ = balanced_bits()
    r = pf.pid(t1, [t1, t1.clone()], estimator=est)
    assert r.redundancy == pytest.approx(1.0, abs=1e-9)
    assert r.synergy == pytest.approx(0.0, abs=1e-9)
    assert r.tradeoff == pytest.approx(1.0, abs=1e-9)
    assert r.nonredundant == pytest.approx(0.0, abs=1e-9)


def test_k_sources_and_zero_information():
    t1, t2 = balanced_bits()
    t3 = torch.tensor([0, 1]).repeat(50)
    r = pf.pid(t1 ^ t2, [t1, t2, t3], estimator=pf.Discrete())
    assert len(r.unique) == 3
    assert r.synergy == pytest.approx(r.mutual_information - max(r.source_information), abs=1e-12)
    nothing = pf.pid(torch.zeros(100, dtype=torch.long), [t1, t2], estimator=pf.Discrete())
    assert nothing.mutual_information == 0.0
    assert (nothing.tradeoff, nothing.nonredundant) == (0.0, 0.0)


def test_grouped_sources(rng):
    x = torch.randint(0, 2, (128, 4), generator=rng)
    y = x[:, 0] ^ x[:, 1]
    r = pf.pid(y, [(x[:, 0], x[:, 2]), (x[:, 1], x[:, 3])], estimator=pf.Discrete())
    assert r.mutual_information == pytest.approx(pf.mutual_information(y, x, estimator=pf.Discrete()), abs=1e-12)


def test_pid_over_many_feature_maps():
    # 17 or more trace-normalized float32 factors used to underflow to a zero matrix.
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(449, 64, 4, 4, generator=g)
    labels = torch.randint(0, 10, (449,), generator=g)
    import pyfastent.nn as pnn

    est = pf.Renyi(sigma=12.0)
    rows = pnn.feature_map_pid(maps, labels, estimator=est, counts=[16, 17, 32, 64])
    h_labels = est.entropy(labels)
    for r in rows:
        assert all(math.isfinite(r[k]) for k in ("mutual_information", "redundancy", "synergy"))
        assert 0 < r["mutual_information"] <= h_labels + 1e-9  # S(Y, T) ≥ S(T)
