"""Kernel width rules (DESIGN.md 3.1)."""
import math

import pytest
import torch

import pyfastent as pf
from pyfastent.ops._torch_gram import squared_distances

import reference as ref


def test_silverman_formula(rng):
    x = torch.randn(100, 7, generator=rng, dtype=torch.float64)
    sq = squared_distances(x)
    assert pf.widths.Silverman()(sq, 100, 7) == pytest.approx(math.sqrt(7) * 100 ** (-1 / 11), rel=1e-12)
    assert pf.widths.Silverman(gamma=2.0, scale_by_dim=False)(sq, 100, 7) == pytest.approx(2.0 * 100 ** (-1 / 11), rel=1e-12)
    a = pf.gram(x, sigma="silverman")
    assert a[0, 1].item() == pytest.approx(ref.rbf_gram(x.numpy(), math.sqrt(7) * 100 ** (-1 / 11))[0, 1], rel=1e-12)


def test_knn_caps_k_at_n_minus_one():
    x = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
    # Every other sample is used: mean of (1, 3), (1, 2), (2, 3) / 2 each.
    assert pf.widths.KNN(k=10)(squared_distances(x), 3, 1) == pytest.approx((2 + 1.5 + 2.5) / 3, rel=1e-12)


def test_alignment_maximizes_alignment_over_the_grid(rng):
    labels = torch.arange(90) % 3
    centres = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    x = centres[labels] + 0.5 * torch.randn(90, 2, generator=rng, dtype=torch.float64)
    sq = squared_distances(x)
    rule = pf.widths.Alignment(labels)
    chosen = rule(sq, 90, 2)
    same = (labels[:, None] == labels[None, :]).double()

    def alignment(sigma):
        k = torch.exp(-sq / (2 * sigma**2))
        return float((k * same).sum() / (k.norm() * same.norm()))

    median = float(sq[sq > 0].sqrt().median())
    scores = [alignment(f * median) for f in rule.grid]
    assert alignment(chosen) == pytest.approx(max(scores), rel=1e-12)
    assert 0.05 * median < chosen < 5 * median  # an interior optimum for clustered data
    est = pf.Renyi(sigma="alignment", labels=labels)
    assert est.entropy(x) == pytest.approx(pf.Renyi(sigma=chosen).entropy(x), abs=1e-12)
