"""Kernel width rules (DESIGN.md 3.1)."""
import math

import pytest
import torch

import pyfastent as pf
from pyfastent._distances import squared_distances

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


@pytest.mark.parametrize("rule", ["knn", "alignment"])
def test_constant_variable_has_zero_entropy_and_carries_nothing(rule, rng):
    """A dead feature map (constant over the probe) is a valid variable: its
    kernel is all ones for any width, so H = 0 and I(T;Y) = 0 exactly."""
    labels = torch.arange(60) % 3
    dead = torch.full((60, 5), 0.7, dtype=torch.float64)
    est = pf.Renyi(sigma=rule, labels=labels) if rule == "alignment" else pf.Renyi()
    assert est.entropy(dead) == pytest.approx(0.0, abs=1e-12)
    assert pf.mutual_information(dead, labels, estimator=est) == pytest.approx(0.0, abs=1e-12)
    live = torch.randn(60, 4, generator=rng, dtype=torch.float64)
    # Joined with a live variable, the dead one changes nothing.
    assert est.entropy(live, dead) == pytest.approx(est.entropy(live), abs=1e-10)


def test_constant_variable_width_without_the_distance_matrix():
    x = torch.full((300, 3), -2.0, dtype=torch.float64)
    assert pf.widths.KNN().of_samples(x, "x") == pf.widths.CONSTANT_SIGMA
    assert pf.widths.KNN()(squared_distances(x), 300, 3) == pf.widths.CONSTANT_SIGMA


def test_duplicates_that_are_not_constant_are_still_refused():
    x = torch.tensor([[0.0]] * 11 + [[1.0]] * 11, dtype=torch.float64)
    with pytest.raises(ValueError, match="duplicates"):
        pf.Renyi().entropy(x)
