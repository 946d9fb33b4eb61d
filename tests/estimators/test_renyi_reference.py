"""Rényi entropy, joint entropy and MI against the float64 reference."""
import numpy as np
import pytest
import torch

import pyfastent as pf

import reference as ref

ALPHAS = [0.5, 1.0, 1.01, 2.0, 3.0]


@pytest.fixture
def data(rng):
    x = torch.randn(120, 6, generator=rng, dtype=torch.float64)
    t = torch.tanh(x @ torch.randn(6, 9, generator=rng, dtype=torch.float64)) + 0.3 * torch.randn(
        120, 9, generator=rng, dtype=torch.float64
    )
    return x, t


@pytest.mark.parametrize("alpha", ALPHAS)
def test_entropy_joint_and_mi_match_reference(alpha, data, device):
    x, t = data
    sx, st = 1.7, 2.2
    est = pf.Renyi(alpha=alpha)
    vx, vt = pf.Variable(x.to(device), sigma=sx), pf.Variable(t.to(device), sigma=st)
    ax, at = ref.rbf_gram(x.numpy(), sx), ref.rbf_gram(t.numpy(), st)
    hx, ht, hxt = ref.renyi_bits(ax, alpha), ref.renyi_bits(at, alpha), ref.joint_bits([ax, at], alpha)
    assert est.entropy(vx) == pytest.approx(hx, abs=1e-6)
    assert est.entropy(vx, vt) == pytest.approx(hxt, abs=1e-6)
    assert pf.mutual_information(vx, vt, estimator=est) == pytest.approx(hx + ht - hxt, abs=1e-6)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_knn_width_rule_matches_reference(alpha, data):
    x, t = data
    est = pf.Renyi(alpha=alpha)  # sigma="knn", k = 10
    ax = ref.rbf_gram(x.numpy(), ref.knn_sigma(x.numpy(), 10))
    at = ref.rbf_gram(t.numpy(), ref.knn_sigma(t.numpy(), 10))
    expected = ref.renyi_bits(ax, alpha) + ref.renyi_bits(at, alpha) - ref.joint_bits([ax, at], alpha)
    assert pf.mutual_information(x, t, estimator=est) == pytest.approx(expected, abs=1e-6)


def test_knn_uses_the_nearest_not_the_first_columns():
    # Samples 0..9 are far from sample 10 and from each other; the 2 nearest
    # neighbours of every sample are at distance 1.
    pts = torch.tensor([[100.0 * i, 0.0] for i in range(6)] + [[100.0 * i, 1.0] for i in range(6)])
    pts = torch.cat([pts, pts + torch.tensor([0.0, 2.0])])
    a = pf.gram(pts.double(), sigma=pf.widths.KNN(k=1))
    sigma = 1.0
    np.testing.assert_allclose(a.numpy(), ref.rbf_gram(pts.numpy(), sigma), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("n", [256, pytest.param(2048, marks=pytest.mark.slow)])
def test_float32_and_float64_agree(n, rng):
    x = torch.randn(n, 16, generator=rng, dtype=torch.float64) * 3.0 + 5.0
    t = torch.relu(x @ torch.randn(16, 32, generator=rng, dtype=torch.float64))
    for est in (pf.Renyi(), pf.Renyi(alpha=0.5), pf.Renyi(alpha=2), pf.LogDet(beta=1.0)):
        for args in ((x,), (x, t)):
            h64 = est.entropy(*args)
            h32 = est.entropy(*[a.float() for a in args])
            assert h32 == pytest.approx(h64, abs=1e-4), (est, len(args))


def test_renyi_entropy_from_gram_batches(rng):
    x = torch.randn(3, 30, 4, generator=rng, dtype=torch.float64)
    mats = torch.stack([pf.gram(xi, sigma=1.0) for xi in x])
    batch = pf.renyi_entropy_from_gram(mats, 1.5)
    for i in range(3):
        assert float(batch[i]) == pytest.approx(ref.renyi_bits(mats[i].numpy(), 1.5), abs=1e-9)
