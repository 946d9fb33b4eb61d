"""MI, CMI, TC and DTC on exact discrete facts, for every estimator that can
reach them exactly; and the reuse of prepared variables."""
import warnings

import numpy as np
import pytest
import torch

import pyfastent as pf
import pyfastent.ops

import reference as ref

EXACT = [pf.Discrete(), pf.Renyi(alpha=1)]


def xor_triple():
    x1 = torch.tensor([0, 0, 1, 1]).repeat(10)
    x2 = torch.tensor([0, 1, 0, 1]).repeat(10)
    return x1, x2, x1 ^ x2


@pytest.mark.parametrize("est", EXACT, ids=repr)
def test_xor_triple(est):
    x1, x2, x3 = xor_triple()
    assert pf.mutual_information(x1, x2, estimator=est) == pytest.approx(0.0, abs=1e-9)
    assert pf.conditional_mutual_information(x1, x2, x3, estimator=est) == pytest.approx(1.0, abs=1e-9)
    assert pf.total_correlation([x1, x2, x3], estimator=est) == pytest.approx(1.0, abs=1e-9)
    assert pf.dual_total_correlation([x1, x2, x3], estimator=est) == pytest.approx(2.0, abs=1e-9)


def test_discrete_measures_match_counting_reference(rng):
    x = torch.randint(0, 4, (500,), generator=rng)
    y = (x * torch.randint(0, 2, (500,), generator=rng)) % 3
    z = torch.randint(0, 2, (500, 2), generator=rng)
    est = pf.Discrete()
    assert pf.mutual_information(x, y, estimator=est) == pytest.approx(ref.plugin_mi_bits(x.numpy(), y.numpy()), abs=1e-12)
    h = lambda *v: ref.plugin_renyi_bits(np.column_stack([a.numpy() for a in v]), 1)  # noqa: E731
    expected = h(x, z) + h(y, z) - h(x, y, z) - h(z)
    assert pf.conditional_mutual_information(x, y, z, estimator=est) == pytest.approx(expected, abs=1e-12)
    # A list is a group of variables taken jointly.
    assert pf.mutual_information([x, y], z, estimator=est) == pytest.approx(h(x, y) + h(z) - h(x, y, z), abs=1e-12)


def test_numpy_and_lists_are_accepted(rng):
    x = torch.randn(50, 4, generator=rng, dtype=torch.float64)
    y = torch.randint(0, 3, (50,), generator=rng)
    est = pf.Renyi()
    expected = pf.mutual_information(x, y, estimator=est)
    assert pf.mutual_information(x.numpy(), y.numpy(), estimator=est) == pytest.approx(expected, abs=1e-12)
    # Lists of Python floats become float32 tensors (torch's default dtype).
    assert pf.mutual_information(x.tolist(), y.tolist(), estimator=est) == pytest.approx(expected, abs=1e-5)


def test_variable_overrides(rng):
    x = torch.randn(60, 3, generator=rng, dtype=torch.float64)
    labels = torch.randint(0, 3, (60,), generator=rng)
    est = pf.Renyi(alpha=2)
    as_rbf = est.entropy(pf.Variable(labels, kernel="rbf", sigma=0.5))
    assert as_rbf == pytest.approx(pf.Renyi(alpha=2, sigma=0.5).entropy(labels.float()), abs=1e-12)
    assert est.entropy(pf.Variable(x, sigma=0.7)) == pytest.approx(pf.Renyi(alpha=2, sigma=0.7).entropy(x), abs=1e-12)


def test_each_gram_is_built_once(built_grams, rng):
    calls = built_grams
    x = torch.randn(40, 5, generator=rng)
    y = torch.randint(0, 2, (40,), generator=rng)
    layers = [torch.randn(40, 8, generator=rng) for _ in range(3)]
    est = pf.Renyi()

    pf.conditional_mutual_information(x, y, layers[0], estimator=est)  # 4 joint entropies, 3 variables
    assert sorted(calls) == ["x", "z"]  # labels never get an N×N matrix: joints with them are block diagonal

    calls.clear()
    px, py = est.prepare(x), est.prepare(y, "y")
    for t in layers:  # the information-plane pattern: X and Y reused for every layer
        pt = est.prepare(t, "t")
        pf.mutual_information(px, pt, estimator=est)
        pf.mutual_information(pt, py, estimator=est)
    assert calls == ["t", "t"]  # x and layers[0] are the tensors the estimator just prepared

    calls.clear()
    pf.clear_reuse()
    for t in layers:  # the same, called the plain way, a new estimator each call: each is still prepared once
        pf.mutual_information(x, t, estimator=pf.Renyi())
        pf.mutual_information(t, y, estimator=pf.Renyi())
    assert calls == ["x", "y", "y", "y"]  # named by argument position: x is X, y each layer
    calls.clear()
    for t in layers:  # nothing is built again for estimators of the same options, whichever object
        pf.mutual_information(x, t)
    assert calls == []
    pf.mutual_information(x, layers[0], estimator=pf.Renyi(alpha=2))  # other options: their own products
    assert calls == ["x", "y"]


@pytest.mark.parametrize("estimator", [pf.Renyi(), pf.Renyi(method="lanczos"), pf.LogDet(beta=1.0)])
def test_data_that_requires_grad_gives_plain_numbers_and_keeps_no_graph(estimator, rng):
    x = torch.randn(60, 3, generator=rng, dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when a grad-tracking tensor becomes a number
        prepared = estimator.prepare(x)
        value = float(estimator.entropy(x))
    tensors = [v for v in vars(prepared.payload).values() if isinstance(v, torch.Tensor)]
    assert tensors and not any(t.requires_grad for t in tensors)
    assert value == pytest.approx(float(estimator.entropy(x.detach())), abs=1e-12)


def test_logdet_wide_joint_gram_is_built_once(rng):
    est = pf.LogDet()
    wide = est.prepare(torch.randn(20, 50, generator=rng))  # d > N: its N×N products are what it keeps
    narrow = est.prepare(torch.randn(20, 5, generator=rng))  # Zᵀ·Z and Z; Z·Zᵀ when a wide joint needs it
    assert wide.payload.gram is not None and narrow.payload.gram is None
    est.joint_entropy([wide, narrow])
    cached = narrow.payload.gram
    assert cached is not None
    est.joint_entropy([wide, narrow])
    assert narrow.payload.gram is cached


def test_marginal_entropy_of_a_prepared_variable_is_computed_once(monkeypatch, rng):
    est = pf.Renyi()
    px = est.prepare(torch.randn(30, 4, generator=rng))
    layers = [est.prepare(torch.randn(30, 6, generator=rng), "t") for _ in range(3)]
    joints = []
    inner = est._defer_joint_nats
    monkeypatch.setattr(est, "_defer_joint_nats",
                        lambda payloads, batch: joints.append(len(payloads)) or inner(payloads, batch))
    for pt in layers:
        pf.mutual_information(px, pt, estimator=est)
    assert sorted(joints) == [1, 1, 1, 1, 2, 2, 2]  # H(X) once, H(T) and H(X,T) per layer


def test_joint_with_labels_matches_a_float64_reference(rng):
    x = torch.randn(120, 3, generator=rng, dtype=torch.float64)
    y = torch.randint(0, 4, (120,), generator=rng)
    sigma = 1.3
    a = ref.rbf_gram(x.numpy(), sigma)
    ky = (y.numpy()[:, None] == y.numpy()[None, :]).astype(np.float64)
    want = ref.renyi_bits(a, 1.01) + ref.renyi_bits(ky, 1.01) - ref.renyi_bits(a * ky, 1.01)
    est = pf.Renyi(alpha=1.01, sigma=sigma)
    assert pf.mutual_information(y, x, estimator=est) == pytest.approx(want, abs=1e-10)
