"""The batched ops (the oracles of the CUDA kernels) against float64
references, on every device present; backend selection and bad input."""
import math

import numpy as np
import pytest
import torch

import pyfastent as pf
from pyfastent import ops

import reference as ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_gram_matches_reference(dtype, device, rng):
    x = torch.randn(3, 20, 5, generator=rng, dtype=torch.float64)
    sigmas = torch.tensor([0.7, 1.5, 3.0], dtype=torch.float64)
    tol = dict(rtol=1e-5, atol=1e-7) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-15)
    a = ops.batched_gram(x.to(device, dtype), "rbf", sigmas.to(device))
    for i in range(3):
        np.testing.assert_allclose(a[i].double().cpu().numpy(), ref.rbf_gram(x[i].numpy(), float(sigmas[i])), **tol)
    sq = ops.batched_gram(x.to(device, dtype), "sqdist").double().cpu()
    diffs = x[:, :, None, :] - x[:, None, :, :]
    np.testing.assert_allclose(sq.numpy(), (diffs**2).sum(-1).numpy(), rtol=1e-5 if dtype == torch.float32 else 1e-12,
                               atol=1e-5 if dtype == torch.float32 else 1e-12)
    lin = ops.batched_gram(x.to(device, dtype), "linear").double().cpu()
    xn = x / x.norm(dim=-1, keepdim=True)
    np.testing.assert_allclose(lin.numpy(), (xn @ xn.transpose(1, 2)).numpy() / 20, **tol)


def test_hadamard_gram_is_the_product_of_channel_grams(device, rng):
    x = torch.randn(25, 4, 3, 2, generator=rng, dtype=torch.float64)
    sigmas = [0.5, 1.0, 2.0, 4.0]
    fused = ops.hadamard_gram(x.to(device), sigmas).cpu()
    product = np.ones((25, 25))
    for c, s in enumerate(sigmas):
        product *= ref.rbf_gram(x[:, c].numpy(), s)
    np.testing.assert_allclose(fused.numpy(), product / np.trace(product), rtol=1e-12, atol=1e-300)
    pair = ops.hadamard_normalized([torch.from_numpy(ref.rbf_gram(x[:, c].numpy(), sigmas[c])).to(device)
                                    for c in range(3)]).cpu()
    expected = np.prod([ref.rbf_gram(x[:, c].numpy(), sigmas[c]) for c in range(3)], axis=0)
    np.testing.assert_allclose(pair.numpy(), expected / np.trace(expected), rtol=1e-12, atol=1e-300)


def test_alpha2_entropies_match_the_estimator(device, rng):
    x = torch.randn(60, 4, generator=rng, dtype=torch.float64)
    t = torch.tanh(x @ torch.randn(4, 6, generator=rng, dtype=torch.float64))
    y = torch.randint(0, 3, (60,), generator=rng)
    est = pf.Renyi(alpha=2)
    hx, ht, hxt = ops.alpha2_entropies(x.to(device), t.to(device), 1.3, 0.8)
    vx, vt = pf.Variable(x, sigma=1.3), pf.Variable(t, sigma=0.8)
    assert (hx, ht, hxt) == pytest.approx((est.entropy(vx), est.entropy(vt), est.entropy(vx, vt)), abs=1e-9)
    hx, hy, hxy = ops.alpha2_entropies(x.to(device), y.to(device), 1.3)
    assert hy == pytest.approx(ref.plugin_renyi_bits(y.numpy(), 2), abs=1e-9)
    assert hxy == pytest.approx(est.entropy(vx, y), abs=1e-9)


def random_spd(b, n, rng, cond=10.0, dtype=torch.float64):
    q, _ = torch.linalg.qr(torch.randn(b, n, n, generator=rng, dtype=torch.float64))
    eig = torch.logspace(0, math.log10(cond), n, dtype=torch.float64).expand(b, n)
    return (q * eig[:, None, :]) @ q.transpose(1, 2)


@pytest.mark.parametrize("n", [1, 2, 33, 70])
def test_spd_logdet(n, device, rng):
    m = random_spd(3, n, rng, cond=1e6)
    got = ops.spd_logdet(m.to(device)).cpu()
    torch.testing.assert_close(got, torch.linalg.slogdet(m)[1], rtol=1e-10, atol=1e-10)
    bad = m.clone()
    bad[1] = -bad[1]
    with pytest.raises(ValueError, match=r"^matrices\[1\] is not positive definite"):
        ops.spd_logdet(bad.to(device))


@pytest.mark.parametrize("n,d", [(40, 6), (12, 30)])
@pytest.mark.parametrize("mode", ["cov", "correlation"])
def test_covariance_logdet_and_joints(n, d, mode, device, rng):
    x = torch.randn(2, n, d, generator=rng, dtype=torch.float64) * torch.linspace(0.5, 2, d, dtype=torch.float64)
    got = ops.covariance_logdet(x.to(device), beta=3.0, mode=mode).cpu()
    for i in range(2):
        xi = x[i] - x[i].mean(0)
        if mode == "correlation":
            xi = xi / xi.std(0, unbiased=False)
        expected = torch.linalg.slogdet(torch.eye(d, dtype=torch.float64) + 3.0 * xi.T @ xi / n)[1]
        assert float(got[i]) == pytest.approx(float(expected), rel=1e-10)
    joints = [[0], [1, 2], [0, 3, 5]]
    got = ops.logdet_joints(x[0].to(device), joints, beta=3.0, mode=mode).cpu()
    for j, cols in enumerate(joints):
        expected = ops.covariance_logdet(x[0][:, cols][None], beta=3.0, mode=mode, backend="torch")[0]
        assert float(got[j]) == pytest.approx(float(expected), rel=1e-10)


def test_backend_argument():
    x = torch.randn(1, 6, 2)
    torch.testing.assert_close(ops.batched_gram(x, backend="torch"), ops.batched_gram(x))
    with pytest.raises(ValueError, match=r"^backend must be one of"):
        ops.batched_gram(x, backend="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"^backend='cuda' for batched_gram"):
            ops.batched_gram(x, backend="cuda")
    with pytest.raises(ValueError, match=r"^backend='cuda' .*(needs CUDA tensors|require grad|native extension|no CUDA)"):
        ops.spd_logdet(torch.eye(2)[None].requires_grad_(), backend="cuda")


def test_op_input_checks():
    with pytest.raises(ValueError, match=r"^x must have 3 dimensions"):
        ops.batched_gram(torch.randn(5, 2))
    with pytest.raises(ValueError, match=r"^x must be float32 or float64"):
        ops.batched_gram(torch.ones(1, 5, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"^sigma must be a number or hold one width per batch entry \(2\), got 3"):
        ops.batched_gram(torch.randn(2, 5, 2), sigma=torch.ones(3))
    with pytest.raises(ValueError, match=r"^sigmas must hold 3 positive"):
        ops.hadamard_gram(torch.randn(5, 3, 2), [1.0, 2.0])
    with pytest.raises(ValueError, match=r"^mats must be a list of at least 2"):
        ops.hadamard_normalized([torch.eye(3)])
    with pytest.raises(ValueError, match=r"^joints\[1\] must list 1 to 64 column indices below 4"):
        ops.logdet_joints(torch.randn(10, 4), [[0], [4]], beta=1.0)
    with pytest.raises(ValueError, match=r"^y has 9 samples but x has 10"):
        ops.alpha2_entropies(torch.randn(10, 2), torch.randn(9, 2), 1.0, 1.0)
    with pytest.raises(ValueError, match=r"^matrices contains non-finite"):
        ops.spd_logdet(torch.full((1, 2, 2), math.nan))


def test_use_backend_context():
    x = torch.randn(1, 5, 2)
    with pf.use_backend("torch"):
        torch.testing.assert_close(ops.batched_gram(x), ops.batched_gram(x, backend="torch"))
        if not torch.cuda.is_available():
            with pf.use_backend("cuda"), pytest.raises(ValueError, match=r"^backend='cuda' for batched_gram"):
                ops.batched_gram(x)
    with pytest.raises(ValueError, match=r"^backend must be one of"):
        with pf.use_backend("gpu"):
            pass
