"""Exact shortcuts and randomized spectra (DESIGN.md 3.2, issue "Ahead of
every peer on the CPU"): class blocks for joints with discrete variables, the
randomized (Lanczos) method against exact spectra, reproducibility, and the
matrix-free path against the stored one."""
import math
import pickle

import numpy as np
import pytest
import torch

import pyfastent as pf
import pyfastent.nn as pnn
from pyfastent import _memory
from pyfastent.estimate import Estimate
from pyfastent.estimators import renyi as renyi_module
from pyfastent.ops import _torch_gram
from pyfastent.ops.spectral import LanczosConfig

import reference as ref

# Small enough to test in seconds, large enough that blocks above 16·3·4 = 192
# samples are randomized.
SMALL = LanczosConfig(block=16, depth=2, extra=1, steps=20, probes=16)


def clustered(n, d=8, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) + 2.0 * torch.randn(classes, d, generator=g,
                                                                                 dtype=torch.float64)[y]
    t = torch.tanh(x @ torch.randn(d, 12, generator=g, dtype=torch.float64) / 3)
    return x, y, t


# ---- class blocks ---------------------------------------------------------------


def test_labels_never_get_a_gram_matrix(monkeypatch):
    monkeypatch.setattr(_torch_gram, "delta", lambda *a: pytest.fail("a delta Gram matrix was built"))
    x, y, t = clustered(150)
    est = pf.Renyi(alpha=1.01, sigma=4.0)
    h_y = est.entropy(y)
    counts = np.bincount(y.numpy()) / 150
    assert h_y == pytest.approx(math.log2((counts**1.01).sum()) / (1 - 1.01), abs=1e-12)  # plug-in Rényi
    a = ref.rbf_gram(x.numpy(), 4.0)
    ky = (y.numpy()[:, None] == y.numpy()[None, :]).astype(float)
    mi = ref.renyi_bits(a, 1.01) + ref.renyi_bits(ky, 1.01) - ref.renyi_bits(a * ky, 1.01)
    assert pf.mutual_information(x, y, estimator=est) == pytest.approx(mi, abs=1e-10)
    pf.pid(y, [x, t], estimator=est)
    pf.conditional_mutual_information(x, t, y, estimator=est)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 3.0])
def test_joint_with_two_discrete_variables_is_block_diagonal(alpha):
    x, y, _ = clustered(120)
    z = (x[:, 0] > 0).long()
    est = pf.Renyi(alpha=alpha, sigma=4.0)
    a = ref.rbf_gram(x.numpy(), 4.0)
    same = lambda v: (v.numpy()[:, None] == v.numpy()[None, :]).astype(float)  # noqa: E731
    assert est.entropy(x, y, z) == pytest.approx(ref.renyi_bits(a * same(y) * same(z), alpha), abs=1e-10)
    assert est.entropy(y, z) == pytest.approx(ref.renyi_bits(same(y) * same(z), alpha), abs=1e-10)


# ---- the randomized method -------------------------------------------------------


@pytest.mark.parametrize("alpha", [1.01, 1.5, 3.0])
def test_randomized_entropies_match_exact_within_their_error(alpha):
    x, y, t = clustered(700)
    exact, approx = pf.Renyi(alpha=alpha, method="exact"), pf.Renyi(alpha=alpha, method="lanczos", lanczos=SMALL)
    for args in ((x,), (x, t), (t, y)):
        e, a = exact.entropy(*args), approx.entropy(*args)
        if isinstance(a, Estimate):
            # Stated confidence: within 4 standard errors plus the quadrature's bias, 0.005 bits.
            assert abs(a - e) <= 4 * a.stderr + 5e-3, (args, a, e)
        else:
            assert a == pytest.approx(e, abs=1e-9)
    mi = pf.mutual_information(x, t, estimator=approx)
    assert isinstance(mi, Estimate) and mi.stderr > 0
    assert abs(mi - pf.mutual_information(x, t, estimator=exact)) <= 4 * mi.stderr + 1e-2


def test_the_standard_error_is_honest_over_seeds():
    # Over 20 seeds, the errors' spread is what the reported standard errors say (to a factor 2).
    x, _, t = clustered(600, seed=3)
    exact = pf.Renyi(alpha=1.5, method="exact").entropy(x, t)
    values = [pf.Renyi(alpha=1.5, method="lanczos", lanczos=SMALL, seed=s).entropy(x, t) for s in range(20)]
    spread = float(np.std([float(v) for v in values], ddof=1))
    reported = float(np.mean([v.stderr for v in values]))
    assert 0.5 * reported <= spread <= 2.0 * reported
    assert abs(float(np.mean([float(v) for v in values])) - exact) <= 3 * spread / math.sqrt(20) + 1e-3


def test_the_same_seed_gives_the_same_estimate():
    x, _, t = clustered(500)
    first = pf.Renyi(method="lanczos", lanczos=SMALL, seed=7).entropy(x, t)
    # The same probes; BLAS may still round differently with the buffers' memory alignment.
    assert pf.Renyi(method="lanczos", lanczos=SMALL, seed=7).entropy(x, t) == pytest.approx(first, rel=1e-12)
    assert abs(pf.Renyi(method="lanczos", lanczos=SMALL, seed=8).entropy(x, t) - first) > 1e-6


def test_alpha_two_stays_exact_in_the_randomized_method():
    x, y, t = clustered(400)
    exact, approx = pf.Renyi(alpha=2, method="exact"), pf.Renyi(alpha=2, method="lanczos", lanczos=SMALL)
    for args in ((x,), (x, t), (t, y)):
        value = approx.entropy(*args)
        assert not isinstance(value, Estimate) and value == pytest.approx(exact.entropy(*args), abs=1e-9)


def test_matrix_free_products_equal_stored_ones(monkeypatch):
    x, y, t = clustered(500)
    est = pf.Renyi(method="lanczos", lanczos=SMALL)
    stored = [est.entropy(x, t), est.entropy(t, y)]
    # Memory for the small exact blocks (115 samples), none to store a kernel (3 MB) or keep a tile
    # (1 MB): every product recomputes its tiles.
    monkeypatch.setattr(_memory, "available_bytes", lambda device: 1_500_000)
    tiled = [est.entropy(x, t), est.entropy(t, y)]
    for a, b in zip(stored, tiled):
        assert float(b) == pytest.approx(float(a), abs=1e-5)


def test_auto_is_exact_up_to_the_documented_size(monkeypatch):
    monkeypatch.setattr(renyi_module, "EXACT_UP_TO", 300)
    x, _, _ = clustered(301)
    est = pf.Renyi()
    assert est.prepare(x[:300]).payload.matrix is not None
    prepared = est.prepare(x)
    assert prepared.payload.matrix is None and prepared.payload.features is not None
    assert pf.Renyi(method="exact").prepare(x).payload.matrix is not None


def test_estimates_combine_probe_by_probe_and_travel():
    a = Estimate(2.0, torch.tensor([0.1, -0.1, 0.2, -0.2], dtype=torch.float64))
    b = Estimate(1.0, torch.tensor([0.1, -0.1, 0.2, -0.2], dtype=torch.float64))
    diff = pf.estimate.combine([(1, a), (-1, b)])
    assert float(diff) == 1.0 and diff.stderr == 0.0  # shared errors cancel
    total = pf.estimate.combine([(1, a), (1, b), (1, 3.0)])
    assert float(total) == 6.0 and total.stderr == pytest.approx(2 * a.stderr)
    back = pickle.loads(pickle.dumps(a))
    assert float(back) == 2.0 and back.stderr == a.stderr and "±" in repr(a)


def test_sweeps_take_the_method_and_report_standard_errors(tmp_path):
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh()).double()
    x, y, _ = clustered(1600)  # above the default settings' exact block size (1536)
    result = pnn.layer_sweep(net, x, y, method="lanczos", progress=False)
    renyi_rows = [r for r in result.rows if r["estimator"].startswith("renyi")]
    assert renyi_rows and all(r["i_xt_se"] > 0 for r in renyi_rows)
    header = result.to_csv(tmp_path / "s.csv").read_text().splitlines()[0]
    assert header.endswith("h_t_se,i_xt_se,i_ty_se,saturated")
    with pytest.raises(ValueError, match="method sets the default"):
        pnn.layer_sweep(net, x, y, estimators=(pf.Renyi(),), method="exact")
    tracker = pnn.InformationPlane(net, x, y, method="lanczos", layers=["1"], progress=False)
    tracker.step()
    assert {r["quantity"] for r in tracker.rows} >= {"i_xt_se", "i_ty_se", "h_t_se"}


def test_bad_randomized_settings():
    with pytest.raises(ValueError, match="^method must be one of"):
        pf.Renyi(method="svd")
    with pytest.raises(ValueError, match="^seed must be an integer"):
        pf.Renyi(seed=True)
    with pytest.raises(ValueError, match="^probes must be at least 2"):
        LanczosConfig(probes=1)
    with pytest.raises(ValueError, match="^lanczos must be a"):
        pf.Renyi(lanczos={"probes": 4})
