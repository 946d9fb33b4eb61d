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


def test_constant_column_of_inexact_values_is_exactly_zero():
    # A mean of 36 copies of 0.1 is not exactly 0.1: the column's variance is
    # round-off, which must not be blown up to unit variance.
    c = torch.full((36, 1), 0.1, dtype=torch.float64)
    y = torch.arange(36) % 3
    est = pf.LogDet(beta=1.0, mode="correlation")
    assert est.entropy(c) == 0.0
    assert pf.mutual_information(c, y, estimator=est) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("d", [784, 3072])
def test_float32_layers_are_factored_in_float64(d):
    # The paper's information-plane β = 100·d: in float32, I + βC loses up to 0.38 bits.
    g = torch.Generator().manual_seed(d)
    n = 256
    x = torch.rand(n, d, generator=g)  # float32, like a layer
    est32, est64 = pf.LogDet(beta=100.0 * d), pf.LogDet(beta=100.0 * d)
    assert est32.entropy(x) == pytest.approx(est64.entropy(x.double()), abs=1e-9)
    assert est32.entropy(x) == pytest.approx(ref.logdet_bits(x.double().numpy(), 100.0 * d), rel=1e-11)


def test_float32_products_when_switched_on_are_read_in_float64(monkeypatch):
    """The measured alternative (benchmarks/bench_precision.py): float32 products of float32 rows, the
    matrix I + β·C still made and factored in float64."""
    from pyfastent.estimators import logdet

    g = torch.Generator().manual_seed(1)
    x = torch.rand(200, 700, generator=g)  # float32, wider than N: the Sylvester side
    want = ref.logdet_bits(x.double().numpy(), 1e4)
    monkeypatch.setattr(logdet, "FLOAT32_PRODUCTS", True)
    est = pf.LogDet(beta=1e4)
    assert est.needs(pf.Variable(x), pf.samples.observe_rows(pf.Variable(x), [x], "x")).gram == torch.float32
    prepared = est.prepare(x)
    assert prepared.payload.gram.dtype == torch.float64
    assert est.joint_entropy([prepared]) == pytest.approx(want, rel=1e-5)


def test_default_beta_is_the_papers_and_is_shared():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 12, generator=g, dtype=torch.float64)
    t = torch.tanh(x @ torch.randn(12, 30, generator=g, dtype=torch.float64))
    est = pf.LogDet()
    assert est.beta is None and est.label == "logdet(b=paper,cov)"
    mi_xt = pf.mutual_information(x, t, estimator=est)  # X prepared first: β = 100·12
    assert est.beta == 1200.0 and est.label == "logdet(b=1200,cov)" and "1200" in repr(est)
    assert mi_xt == pytest.approx(pf.mutual_information(x, t, estimator=pf.LogDet(beta=1200.0)), abs=1e-12)
    # Later quantities keep that β, whatever the width of their first variable.
    assert est.entropy(t) == pytest.approx(pf.LogDet(beta=1200.0).entropy(t), abs=1e-12)
    assert pf.LogDet(beta="paper").label == "logdet(b=paper,cov)"
    with pytest.raises(ValueError, match="^beta must be a positive number"):
        pf.LogDet(beta="papers")
