"""Exact facts of matrix-based Rényi entropy (DESIGN.md 3.1-3.2)."""
import math

import numpy as np
import pytest
import torch

import pyfastent as pf
from pyfastent.widths import Fixed

import reference as ref

ALPHAS = [0.5, 1.0, 1.01, 2.0, 3.0]


@pytest.mark.filterwarnings("ignore::pyfastent.SaturationWarning")  # log N is the point
@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("n", [2, 17, 256])
def test_identity_kernel_gives_log_n(alpha, n, device):
    assert pf.renyi_entropy_from_gram(torch.eye(n, device=device) / n, alpha) == pytest.approx(math.log2(n), abs=1e-9)
    distinct = torch.arange(n, device=device)  # delta kernel on all-distinct labels is I
    assert pf.Renyi(alpha=alpha).entropy(distinct) == pytest.approx(math.log2(n), abs=1e-9)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_all_ones_kernel_gives_zero(alpha, device):
    n = 50
    assert pf.renyi_entropy_from_gram(torch.ones(n, n, device=device) / n, alpha) == pytest.approx(0.0, abs=1e-9)
    assert pf.Renyi(alpha=alpha).entropy(torch.zeros(n, dtype=torch.long, device=device)) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("classes", [2, 3, 10])
def test_balanced_labels_give_log_classes(alpha, classes, device):
    labels = torch.arange(classes * 20, device=device) % classes
    assert pf.Renyi(alpha=alpha).entropy(labels) == pytest.approx(math.log2(classes), abs=1e-9)


def test_entropy_in_nats_with_base_e():
    labels = torch.arange(40) % 4
    assert pf.Renyi(alpha=1, base=math.e).entropy(labels) == pytest.approx(math.log(4), abs=1e-12)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_delta_kernel_equals_plugin_renyi(alpha, rng, device):
    labels = torch.multinomial(torch.tensor([0.5, 0.2, 0.2, 0.07, 0.03]), 300, replacement=True, generator=rng)
    pairs = torch.stack([labels, torch.randint(0, 3, (300,), generator=rng)], dim=1)
    est = pf.Renyi(alpha=alpha)
    assert est.entropy(labels.to(device)) == pytest.approx(ref.plugin_renyi_bits(labels.numpy(), alpha), abs=1e-9)
    assert est.entropy(pairs.to(device)) == pytest.approx(ref.plugin_renyi_bits(pairs.numpy(), alpha), abs=1e-9)
    # The Hadamard joint of delta kernels is the plug-in joint entropy.
    joint = est.entropy(pairs[:, 0].to(device), pairs[:, 1].to(device))
    assert joint == pytest.approx(ref.plugin_renyi_bits(pairs.numpy(), alpha), abs=1e-9)


def test_mi_at_alpha_one_equals_plugin_shannon_mi(rng, device):
    x = torch.randint(0, 4, (400,), generator=rng)
    y = (x + torch.randint(0, 2, (400,), generator=rng)) % 3
    expected = ref.plugin_mi_bits(x.numpy(), y.numpy())
    assert expected > 0.3
    got = pf.mutual_information(x.to(device), y.to(device), estimator=pf.Renyi(alpha=1))
    assert got == pytest.approx(expected, abs=1e-9)
    assert pf.mutual_information(x, y, estimator=pf.Discrete()) == pytest.approx(expected, abs=1e-12)


@pytest.mark.filterwarnings("ignore::pyfastent.SaturationWarning")
def test_hadamard_of_channel_grams_equals_weighted_concatenation(rng, device):
    x = torch.randn(60, 5, 3, 4, generator=rng, dtype=torch.float64).to(device)
    x[:, 1] *= 4.0  # channels on different scales get different widths
    c = x.shape[1]
    # Each channel's width is the rule's width for it, times √C (pyfastent.widths.ChannelShare).
    sigmas = [math.sqrt(c) * ref.knn_sigma(x[:, i].cpu().numpy()) for i in range(c)]
    channel_grams = [pf.gram(x[:, i], sigma=s) for i, s in enumerate(sigmas)]
    product = channel_grams[0].clone()
    for g in channel_grams[1:]:
        product *= g
    product /= product.trace()
    fused = pf.gram(pf.Variable(x, channels=True))
    torch.testing.assert_close(fused, product, rtol=1e-10, atol=1e-14)
    scaled = torch.cat([x[:, i].reshape(60, -1) / s for i, s in enumerate(sigmas)], dim=1)
    torch.testing.assert_close(fused, pf.gram(scaled, sigma=1.0), rtol=1e-10, atol=1e-14)
    est = pf.Renyi(alpha=1.01)  # per channel: the median distance (channel_sigma), times √C
    medians = [math.sqrt(c) * ref.median_sigma(x[:, i].cpu().numpy()) for i in range(c)]
    joint = est.entropy(*[pf.Variable(x[:, i], sigma=m) for i, m in enumerate(medians)])
    assert est.entropy(pf.Variable(x, channels=True)) == pytest.approx(joint, abs=1e-9)
    per_map = pf.Renyi(alpha=1.01, channel_sigma="knn")
    joint = est.entropy(*[pf.Variable(x[:, i], sigma=s) for i, s in enumerate(sigmas)])
    assert per_map.entropy(pf.Variable(x, channels=True)) == pytest.approx(joint, abs=1e-9)


def test_gram_has_unit_trace_and_matches_reference(rng):
    x = torch.randn(40, 7, generator=rng, dtype=torch.float64)
    a = pf.gram(x, sigma=1.3)
    assert float(a.trace()) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(a.numpy(), ref.rbf_gram(x.numpy(), 1.3), rtol=1e-12, atol=1e-15)
    lin = pf.gram(x, kernel="linear")
    xn = x / x.norm(dim=1, keepdim=True)
    np.testing.assert_allclose(lin.numpy(), (xn @ xn.T).numpy() / 40, rtol=1e-12, atol=1e-15)


@pytest.mark.filterwarnings("ignore::pyfastent.SaturationWarning")  # a near-identity Gram on purpose
def test_matrix_values_bounded_by_log_n(rng):
    x = torch.randn(64, 3, generator=rng)
    t = torch.randn(64, 8, generator=rng)
    est = pf.Renyi(alpha=1.01, sigma=Fixed(0.05))  # a tiny width: near-identity Gram
    assert est.entropy(x) <= math.log2(64) + 1e-9
    assert pf.mutual_information(x, t, estimator=est) <= math.log2(64) + 1e-9


def near_one_reference(lam, alpha):
    """S_α in bits from the cumulant expansion around α = 1 of log Σλ^α:
    S_α = S_1 − (α−1)/2·Var_λ(log λ) + O((α−1)²), with S_1 = −E_λ[log λ]."""
    lam = lam[lam > 0] / lam[lam > 0].sum()
    log_lam = np.log(lam)
    mean = (lam * log_lam).sum()
    var = (lam * (log_lam - mean) ** 2).sum()
    return float((-mean - (alpha - 1) / 2 * var) / math.log(2))


@pytest.mark.parametrize("delta", [1e-16, 1e-12, 1e-10, 1e-7, -1e-7, -1e-10, -1e-12, -1e-16])
def test_alpha_near_one_tends_to_the_von_neumann_entropy(delta, rng):
    x = torch.randn(30, 2, generator=rng, dtype=torch.float64)
    a = pf.gram(x, sigma=0.8)
    lam = np.linalg.eigvalsh(a.numpy())
    lam = np.where(lam > 30 * np.finfo(np.float64).eps * lam.max(), lam, 0.0)
    got = pf.renyi_entropy_from_gram(a, 1.0 + delta)
    assert got == pytest.approx(near_one_reference(lam, 1.0 + delta), abs=1e-11)
    assert got <= math.log2(30)


def test_alpha_near_one_is_continuous_across_one(rng):
    a = pf.gram(torch.randn(50, 3, generator=rng, dtype=torch.float64), sigma=1.0)
    values = [pf.renyi_entropy_from_gram(a, alpha) for alpha in (1 - 1e-4, 1 - 1e-9, 1.0, 1 + 1e-9, 1 + 1e-4)]
    assert values == sorted(values, reverse=True)  # S_α decreases in α
    assert max(values) - min(values) < 1e-3 and abs(values[1] - values[3]) < 1e-8


@pytest.mark.parametrize("alpha", [0.5, 1.01, 1.5, 2.0, 3.0])
def test_every_alpha_still_matches_the_reference(alpha, rng):
    a = pf.gram(torch.randn(40, 3, generator=rng, dtype=torch.float64), sigma=0.7)
    assert pf.renyi_entropy_from_gram(a, alpha) == pytest.approx(ref.renyi_bits(a.numpy(), alpha), abs=1e-10)


def test_many_variables_join_without_underflow():
    # 64 float32 copies of x: the Hadamard product of their RBF Gram matrices
    # at σ is the Gram matrix at σ/8. The plain product of 64 trace-normalized
    # matrices (diagonal 1/N) underflows float32.
    g = torch.Generator().manual_seed(5)
    x = torch.randn(449, 3, generator=g)
    est = pf.Renyi(alpha=1.01, sigma=6.0)
    joint = est.entropy(*[x] * 64)
    assert joint == pytest.approx(pf.Renyi(alpha=1.01, sigma=6.0 / 8).entropy(x.double()), abs=1e-4)
    # 20 different variables at N = 1000, against a float64 log-domain reference.
    g = torch.Generator().manual_seed(6)
    xs = [torch.randn(1000, 2, generator=g) for _ in range(20)]
    sq = sum(((v.double()[:, None, :] - v.double()[None, :, :]) ** 2).sum(-1) for v in xs)
    reference = ref.renyi_bits(np.exp(-sq.numpy() / (2 * 9.0**2)), 1.01)
    assert pf.Renyi(alpha=1.01, sigma=9.0).entropy(*xs) == pytest.approx(reference, abs=1e-4)
