"""LogDet entropy (DESIGN.md 3.3)."""
import math

import numpy as np
import pytest
import torch

import pyfastent as pf

import reference as ref


def gaussian_pairs_with_exact_covariance(n, d, rho, seed=0):
    """X, Y (n × d each) whose sample covariance (÷N) is exactly [[I, ρI], [ρI, I]]."""
    g = np.random.default_rng(seed)
    z = g.standard_normal((n, 2 * d))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(z.T @ z / n)).T  # exactly white
    target = np.block([[np.eye(d), rho * np.eye(d)], [rho * np.eye(d), np.eye(d)]])
    z = z @ np.linalg.cholesky(target).T
    return torch.from_numpy(z[:, :d].copy()), torch.from_numpy(z[:, d:].copy())


@pytest.mark.parametrize("beta", [1.0, 1e4])
@pytest.mark.parametrize("rho", [0.3, 0.8])
def test_gaussian_mi_formula(beta, rho, device):
    d = 3
    x, y = gaussian_pairs_with_exact_covariance(500, d, rho)
    est = pf.LogDet(beta=beta, base=math.e)
    expected = -(d / 2) * math.log(1 - beta**2 * rho**2 / (1 + beta) ** 2)
    assert pf.mutual_information(x.to(device), y.to(device), estimator=est) == pytest.approx(expected, rel=1e-9)


def test_large_beta_tends_to_shannon_mi():
    d, rho = 2, 0.6
    x, y = gaussian_pairs_with_exact_covariance(400, d, rho, seed=3)
    shannon = -(d / 2) * math.log(1 - rho**2)
    gaps = [abs(pf.mutual_information(x, y, estimator=pf.LogDet(beta=b, base=math.e)) - shannon) for b in (1, 10, 1e3, 1e5)]
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[-1] < 1e-4


@pytest.mark.parametrize("n,d", [(80, 5), (30, 200)])  # d < N and d > N (Sylvester side)
def test_entropy_matches_direct_reference(n, d, rng, device):
    x = torch.randn(n, d, generator=rng, dtype=torch.float64) * torch.linspace(0.1, 3, d, dtype=torch.float64)
    y = torch.randn(n, 4, generator=rng, dtype=torch.float64)
    est = pf.LogDet(beta=2.5)
    assert est.entropy(x.to(device)) == pytest.approx(ref.logdet_bits(x.numpy(), 2.5), rel=1e-10)
    joint = ref.logdet_bits(np.hstack([x.numpy(), y.numpy()]), 2.5)
    assert est.entropy(x.to(device), y.to(device)) == pytest.approx(joint, rel=1e-10)


def test_correlation_mode_is_scale_invariant(rng):
    x = torch.randn(100, 4, generator=rng, dtype=torch.float64)
    scaled = x * torch.tensor([1e-3, 1.0, 50.0, 7.0], dtype=torch.float64) + 3.0
    est = pf.LogDet(beta=1.0, mode="correlation")
    standardized = (x - x.mean(0)) / x.std(0, unbiased=False)
    assert est.entropy(scaled) == pytest.approx(ref.logdet_bits(standardized.numpy(), 1.0), rel=1e-10)


def test_correlation_mode_constant_column_adds_nothing(rng):
    x = torch.randn(50, 3, generator=rng, dtype=torch.float64)
    with_dead = torch.cat([x, torch.full((50, 1), 2.0, dtype=torch.float64)], dim=1)
    est = pf.LogDet(mode="correlation")
    assert est.entropy(with_dead) == pytest.approx(est.entropy(x), rel=1e-12)


def test_labels_enter_as_one_hot(rng):
    labels = torch.randint(0, 3, (60,), generator=rng)
    one_hot = torch.nn.functional.one_hot(labels).double()
    est = pf.LogDet(beta=3.0)
    assert est.entropy(labels) == pytest.approx(ref.logdet_bits(one_hot.numpy(), 3.0), rel=1e-12)
