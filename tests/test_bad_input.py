"""Bad input is a ValueError naming the argument (DESIGN.md section 4)."""
import math

import numpy as np
import pytest
import torch

import pyfastent as pf
import pyfastent._memory

X = torch.randn(20, 3)
Y = torch.randint(0, 2, (20,))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("est", [pf.Renyi(), pf.LogDet()], ids=repr)
def test_non_finite_values(bad, est):
    x = X.clone()
    x[3, 1] = bad
    with pytest.raises(ValueError, match=r"^x contains 1 non-finite"):
        est.entropy(x)
    with pytest.raises(ValueError, match=r"^y contains 1 non-finite"):
        pf.mutual_information(X, x, estimator=est)


@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_samples(n):
    with pytest.raises(ValueError, match=r"^x needs at least N = 2"):
        pf.Renyi().entropy(torch.randn(n, 3))
    with pytest.raises(ValueError, match=r"^x needs at least N = 2"):
        pf.gram(torch.randn(n, 3))


def test_scalar_and_featureless_variables():
    with pytest.raises(ValueError, match=r"^x must have a sample dimension"):
        pf.Renyi().entropy(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"^x has no features"):
        pf.LogDet().entropy(torch.randn(5, 0))


def test_mismatched_sample_counts():
    with pytest.raises(ValueError, match=r"^y has 19 samples but x has 20"):
        pf.mutual_information(X, Y[:19])
    with pytest.raises(ValueError, match=r"^z has 19 samples but x has 20"):
        pf.conditional_mutual_information(X, X, X[:19])
    with pytest.raises(ValueError, match=r"^variables\[1\] has 19 samples"):
        pf.Renyi().entropy(X, X[:19])
    with pytest.raises(ValueError, match=r"^target has 19 time steps but source has 20"):
        pf.transfer_entropy(Y, Y[:19])


@pytest.mark.parametrize("sigma", [0, -1.0, math.nan, math.inf])
def test_non_positive_sigma(sigma):
    with pytest.raises(ValueError, match=r"^sigma must be a positive"):
        pf.Renyi(sigma=sigma)
    with pytest.raises(ValueError, match=r"^sigma must be a positive"):
        pf.Variable(X, sigma=sigma)
    with pytest.raises(ValueError, match=r"^sigma must be a positive"):
        pf.gram(X, sigma=sigma)


@pytest.mark.parametrize("alpha", [0, -0.5, math.nan, math.inf, "2"])
def test_non_positive_alpha(alpha):
    with pytest.raises(ValueError, match=r"^alpha must be a positive"):
        pf.Renyi(alpha=alpha)
    with pytest.raises(ValueError, match=r"^alpha must be a positive"):
        pf.renyi_entropy_from_gram(torch.eye(3), alpha)


@pytest.mark.parametrize("beta", [0, -1.0, math.nan])
def test_non_positive_beta(beta):
    with pytest.raises(ValueError, match=r"^beta must be a positive"):
        pf.LogDet(beta=beta)


def test_float_where_labels_are_required():
    with pytest.raises(ValueError, match=r"^x must be discrete labels"):
        pf.Discrete().entropy(X)
    with pytest.raises(ValueError, match=r"^y must be discrete labels"):
        pf.mutual_information(Y, X, estimator=pf.Discrete())
    with pytest.raises(ValueError, match=r"^labels must be discrete labels"):
        pf.Renyi(sigma="alignment", labels=X[:, 0])


def test_unknown_sigma_rule_and_missing_labels():
    with pytest.raises(ValueError, match=r"^sigma must be a positive number or one of"):
        pf.Renyi(sigma="scott")
    with pytest.raises(ValueError, match=r"^sigma='alignment' needs class labels"):
        pf.Renyi(sigma="alignment")
    with pytest.raises(ValueError, match=r"^labels has 10 samples but the variable has 20"):
        pf.Renyi(sigma="alignment", labels=Y[:10]).entropy(X)


def test_unknown_options():
    with pytest.raises(ValueError, match=r"^kernel must be one of"):
        pf.Renyi(kernel="laplace")
    with pytest.raises(ValueError, match=r"^mode must be one of"):
        pf.LogDet(mode="pearson")
    with pytest.raises(ValueError, match=r"^kernel must be 'rbf' when channels=True"):
        pf.Variable(X, kernel="linear", channels=True)
    with pytest.raises(ValueError, match=r"^k must be a positive integer"):
        pf.widths.KNN(k=0)


@pytest.mark.parametrize("base", [0, 1, -2, math.nan])
def test_bad_base(base):
    with pytest.raises(ValueError, match=r"^base must be"):
        pf.Renyi(base=base)
    with pytest.raises(ValueError, match=r"^base must be"):
        pf.Discrete(base=base)


def test_bad_measure_arguments():
    with pytest.raises(ValueError, match=r"^estimator must be a pyfastent estimator"):
        pf.mutual_information(X, X, estimator="renyi")
    with pytest.raises(ValueError, match=r"^sources must be a list of at least 2"):
        pf.pid(Y, [X])
    with pytest.raises(ValueError, match=r"^sources must be a list of at least 2"):
        pf.pid(Y, X)
    with pytest.raises(ValueError, match=r"^variables must be a list of at least 2"):
        pf.total_correlation([X])
    with pytest.raises(ValueError, match=r"^variables: entropy needs at least one"):
        pf.Renyi().entropy()
    for name in ("k", "l", "lag"):
        with pytest.raises(ValueError, match=rf"^{name} must be a positive integer"):
            pf.transfer_entropy(Y, Y, **{name: 0})
    with pytest.raises(ValueError, match=r"^source and target are too short"):
        pf.transfer_entropy(Y[:4], Y[:4], k=3)
    with pytest.raises(ValueError, match=r"^source must have shape \(T,\) or \(T, n\)"):
        pf.transfer_entropy(torch.randn(20, 2, 2), torch.randn(20))


def test_prepared_by_another_estimator():
    px = pf.Renyi().prepare(X)
    with pytest.raises(ValueError, match=r"^y was prepared by another estimator"):
        pf.mutual_information(X, px, estimator=pf.Renyi())


def test_bad_gram_matrices():
    with pytest.raises(ValueError, match=r"^A must be a square matrix"):
        pf.renyi_entropy_from_gram(torch.ones(3, 4), 2)
    with pytest.raises(ValueError, match=r"^A must be symmetric"):
        pf.renyi_entropy_from_gram(torch.tensor([[1.0, 0.5], [0.0, 1.0]]), 2)
    with pytest.raises(ValueError, match=r"^A contains non-finite"):
        pf.renyi_entropy_from_gram(torch.tensor([[1.0, math.nan], [math.nan, 1.0]]), 2)
    with pytest.raises(ValueError, match=r"^A must have a positive trace"):
        pf.renyi_entropy_from_gram(torch.zeros(3, 3), 2)


def test_non_numeric_data():
    with pytest.raises(ValueError, match=r"^x must hold numbers"):
        pf.Renyi().entropy(np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match=r"^x must be real"):
        pf.Renyi().entropy(torch.randn(5, 2, dtype=torch.complex64))
    with pytest.raises(ValueError, match=r"^x could not be converted"):
        pf.Renyi().entropy([[1.0, 2.0], [3.0]])


def test_degenerate_widths_and_kernels():
    duplicates = torch.tensor([[0.0], [0.0], [1.0], [1.0]])
    with pytest.raises(ValueError, match=r"^sigma rule 'knn' \(k=1\) gives 0"):
        pf.Renyi(sigma=pf.widths.KNN(k=1)).entropy(duplicates)
    with pytest.raises(ValueError, match=r"^x has 1 samples with K_ii <= 0"):
        pf.gram(torch.tensor([[0.0, 0.0], [1.0, 2.0], [2.0, 1.0]]), kernel="linear")


def test_gram_that_cannot_fit_is_a_clear_memory_error(monkeypatch):
    monkeypatch.setattr(pf._memory, "available_bytes", lambda device: 1000)
    with pytest.raises(MemoryError, match=r"^the Gram matrix of x needs about .* 20×20 float32\) .* use fewer samples"):
        pf.Renyi().entropy(X)


@pytest.mark.parametrize("alpha", [2, 1.5])
def test_gram_that_is_not_positive_semidefinite(alpha):
    with pytest.raises(ValueError, match=r"^A is not positive semidefinite"):
        pf.renyi_entropy_from_gram([[1.0, 2.0], [2.0, 1.0]], alpha)
    # Round-off below zero is not: a rank-1 matrix's zero eigenvalues come out as ±1e-17.
    v = torch.randn(30, 1, dtype=torch.float64)
    assert pf.renyi_entropy_from_gram(v @ v.T, alpha) == pytest.approx(0.0, abs=1e-9)


def test_float_labels_are_rejected_where_class_labels_are_needed():
    from torch import nn

    import pyfastent.nn as pnn

    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    x, y = torch.randn(20, 3), torch.randint(0, 2, (20,)).float()
    with pytest.raises(ValueError, match=r"^y must be integer class labels of shape \(N,\), got float32"):
        pnn.layer_sweep(net, x, y)
    with pytest.raises(ValueError, match=r"^y_probe must be integer class labels"):
        pnn.InformationPlane(net, x, y)
    with pytest.raises(ValueError, match=r"^labels must be integer class labels"):
        pnn.feature_map_pid(torch.rand(20, 3, 2, 2), y)
    with pytest.raises(ValueError, match=r"^y must be integer class labels of shape \(N,\), got int64 of shape \(20, 2\)"):
        pnn.layer_sweep(net, x, torch.randint(0, 2, (20, 2)))


def test_binary_te_needs_binary_series():
    import pyfastent.nn as pnn

    bits = torch.rand(50, 3) > 0.5
    with pytest.raises(ValueError, match=r"^source must hold binary states"):
        pnn.pairwise_te(torch.rand(50, 2), bits)
    with pytest.raises(ValueError, match=r"^target must hold binary states"):
        pnn.pairwise_te(bits, torch.randint(0, 3, (50, 2)))
    as_ints = pnn.pairwise_te(bits.long(), bits[:, :2].long())
    torch.testing.assert_close(as_ints, pnn.pairwise_te(bits, bits[:, :2]))


def test_masked_sparse_meta_and_datetime_inputs():
    masked = np.ma.masked_array(np.random.rand(10, 2), mask=np.zeros((10, 2), dtype=bool))
    masked.mask[3, 1] = True
    with pytest.raises(ValueError, match=r"^x is a masked array with 1 masked entries"):
        pf.Renyi().entropy(masked)
    unmasked = np.ma.masked_array(masked.data, mask=False)
    assert pf.Renyi().entropy(unmasked) == pytest.approx(pf.Renyi().entropy(masked.data), abs=1e-12)
    with pytest.raises(ValueError, match=r"^x is a sparse tensor"):
        pf.Renyi().entropy(torch.eye(5).to_sparse())
    with pytest.raises(ValueError, match=r"^y is a 'meta' tensor"):
        pf.mutual_information(X, torch.empty(20, 3, device="meta"))
    with pytest.raises(ValueError, match=r"^x must hold numbers, got a NumPy array of dtype datetime64"):
        pf.LogDet().entropy(np.arange(10).astype("datetime64[D]").reshape(5, 2))
    with pytest.raises(ValueError, match=r"^x must hold numbers, got a NumPy array of dtype timedelta64"):
        pf.Renyi().entropy(np.arange(10).astype("timedelta64[s]").reshape(5, 2))


@pytest.mark.parametrize("scale,dtype", [(1e19, torch.float32), (1e30, torch.float32), (1e150, torch.float64)])
def test_huge_values_give_the_right_gram_matrix(scale, dtype):
    # The kNN width scales with the data, so the normalized Gram matrix does not change.
    x = torch.randn(40, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    want = pf.gram(x)
    got = pf.gram((x * scale).to(dtype))
    assert bool(torch.isfinite(got).all())
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-8)
    assert pf.Renyi().entropy((x * scale).to(dtype)) == pytest.approx(pf.Renyi().entropy(x), abs=1e-4)
    lin = pf.gram((x * scale).to(dtype), kernel="linear")
    torch.testing.assert_close(lin.double(), pf.gram(x, kernel="linear"), rtol=1e-5, atol=1e-8)


def test_huge_values_in_alpha2_and_integers():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(60, 3, generator=g), torch.randint(0, 3, (60,), generator=g)
    want = pf.ops.alpha2_entropies(x.double(), y, 1.5)
    got = pf.ops.alpha2_entropies(x * 1e20, y, 1.5e20)
    assert got == pytest.approx(want, abs=1e-5)
    ints = (torch.randn(30, 2, 2, generator=g, dtype=torch.float64) * 1e18).long()  # continuous: 3-D
    assert pf.Renyi().entropy(ints) == pytest.approx(pf.Renyi().entropy(ints.double() / 1e18), abs=1e-4)


def test_values_that_overflow_float64_are_a_clear_error():
    x = torch.randn(20, 3, dtype=torch.float64) * 1e200
    with pytest.raises(ValueError, match=r"^x has values so large .* overflow even float64; rescale"):
        pf.Renyi().entropy(x)
    with pytest.raises(ValueError, match=r"^x has values so large .* overflow even float64; rescale"):
        pf.LogDet(beta=1.0).entropy(x)
    with pytest.raises(ValueError, match=r"^I \+ beta\*C overflows float64 .* rescale the data or lower beta"):
        pf.LogDet(beta=1e300).entropy(torch.randn(20, 3, dtype=torch.float64) * 1e10)
