"""``reduce_rows`` on its own: every product a reader can ask for, against
float64 formulas written here, from one tensor and from mini-batches, on
the torch and the BLAS paths, and with per-channel distances."""
import numpy as np
import pytest
import torch

from pyfastent.ops import products
from pyfastent.ops.reduction import Needs, add_slice, reduce_rows
from pyfastent.samples import Rows
from pyfastent.widths import Fixed


def data(n=40, d=7, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64) * 3 + 5).to(dtype)


def centred(x: torch.Tensor) -> np.ndarray:
    a = x.double().numpy()
    return a - a.mean(axis=0)


@pytest.fixture(params=["torch", "blas"])
def path(request, monkeypatch):
    """Both product paths: BLAS for any size of work, or never."""
    monkeypatch.setattr(products, "BLAS_WORK", 0 if request.param == "blas" else 1 << 62)
    return request.param


@pytest.mark.parametrize("batches", [1, 3])
def test_gram_and_its_offsets_give_the_uncentred_products(path, batches):
    x = data()
    rows = Rows(torch.tensor_split(x, batches), "x")
    r = reduce_rows(rows, Needs(gram=torch.float64))
    xc, mean = centred(x), x.numpy().mean(axis=0)
    np.testing.assert_allclose(r.gram.numpy(), xc @ xc.T, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(r.gram_offset.numpy(), xc @ mean, rtol=1e-12, atol=1e-10)
    # X·Xᵀ = Xc·Xcᵀ + u·1ᵀ + 1·uᵀ + ‖m‖², as the Reduction's docstring states.
    u = r.gram_offset.numpy()
    rebuilt = r.gram.numpy() + u[:, None] + u[None, :] + r.gram_square
    np.testing.assert_allclose(rebuilt, x.numpy() @ x.numpy().T, rtol=1e-12)


def test_float32_rows_give_float32_products_unless_a_reader_wants_float64(path):
    x = data(dtype=torch.float32)
    assert reduce_rows(Rows([x], "x"), Needs(gram=torch.float32)).gram.dtype == torch.float32
    both = Needs(gram=torch.float32) | Needs(gram=torch.float64)
    r = reduce_rows(Rows([x], "x"), both)
    assert r.gram.dtype == torch.float64
    xc = centred(x)
    np.testing.assert_allclose(r.gram.numpy(), xc @ xc.T, rtol=1e-10, atol=1e-9)


def test_covariance_crosses_and_columns(path):
    x, p = data(d=5), data(d=3, seed=1)
    partner = torch.from_numpy(centred(p))
    r = reduce_rows(Rows([x], "x"), Needs(covariance=True, columns=True, crosses=frozenset({("p", partner)})))
    xc = centred(x)
    np.testing.assert_allclose(r.covariance.numpy(), xc.T @ xc, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(r.columns.numpy(), xc, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(r.crosses["p"].numpy(), partner.numpy().T @ xc, rtol=1e-12, atol=1e-10)


def test_standardized_gram_and_a_constant_column(path):
    x = data()
    x[:, 2] = 0.1  # a constant column: scale 0, never blown up to unit variance
    r = reduce_rows(Rows([x], "x"), Needs(standardized_gram=True))
    a = x.numpy()
    std = a.std(axis=0)
    scale = np.where(np.arange(a.shape[1]) == 2, 0.0, 1.0 / np.where(std > 0, std, 1))
    z = centred(x) * scale
    np.testing.assert_allclose(r.scale.numpy(), scale, rtol=1e-12)
    np.testing.assert_allclose(r.standardized_gram.numpy(), z @ z.T, rtol=1e-11, atol=1e-10)


def test_per_channel_distances_weighted_by_each_channels_width():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(30, 4, 3, 3, generator=g, dtype=torch.float64)
    rule = Fixed(2.0)
    r = reduce_rows(Rows([x], "x", channels=True), Needs(channel_rules=(rule,)))
    total, sigmas = r.channels_weighted[rule]
    want = np.zeros((30, 30))
    for c in range(4):
        a = x[:, c].reshape(30, -1).numpy()
        want += ((a[:, None, :] - a[None, :, :]) ** 2).sum(-1) / 4.0
    assert sigmas == (2.0,) * 4
    np.testing.assert_allclose(total.numpy(), want, rtol=1e-11, atol=1e-10)


def test_column_blocks_cover_every_column_once_and_never_split_a_channel(monkeypatch):
    monkeypatch.setattr(products, "BLOCK_BYTES", 40 * 8 * 5)  # 5 float64 columns of 40 rows
    rows = Rows([data(d=23)], "x")
    blocks = products.blocks(rows, torch.float64)
    assert blocks[0][0] == 0 and blocks[-1][1] == 23
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    per_channel = Rows([torch.zeros(40, 6, 2, 2, dtype=torch.float64)], "x", channels=True)
    assert all((b - a) % 4 == 0 and a % 4 == 0 for a, b in products.blocks(per_channel, torch.float64))
    # Several blocks give the same products as one.
    x = data(d=23)
    xc = centred(x)
    np.testing.assert_allclose(reduce_rows(Rows([x], "x"), Needs(gram=torch.float64)).gram.numpy(), xc @ xc.T,
                               rtol=1e-12, atol=1e-10)


def test_discrete_rows_read_as_one_hot_columns():
    labels = torch.tensor([0, 2, 1, 2, 0, 0, 1, 2])
    r = reduce_rows(Rows([labels], "y"), Needs(covariance=True, discrete_as="one_hot"))
    one_hot = np.eye(3)[labels.numpy()]
    oc = one_hot - one_hot.mean(axis=0)
    assert r.width == 3
    np.testing.assert_allclose(r.covariance.numpy(), oc.T @ oc, rtol=1e-12, atol=1e-12)


def test_rows_so_large_that_float64_overflows_are_refused():
    x = torch.full((8, 3), 1e300, dtype=torch.float64)
    x[0] = -1e300
    with pytest.raises(ValueError, match="overflow even float64; rescale the data"):
        reduce_rows(Rows([x], "wide"), Needs(gram=torch.float64))


def test_no_products_asked_reads_only_the_codes():
    x = torch.tensor([[1, 2], [1, 2], [3, 4]])
    r = reduce_rows(Rows([x], "x"), Needs(codes=True))
    assert r.gram is None and r.covariance is None
    assert r.codes[0] == r.codes[1] != r.codes[2]


def test_slices_of_the_columns_add_up_to_the_reduction_of_all(path):
    """Inner products, their row-mean terms, standardized products and
    per-channel distances of slices of the channels, summed (``add_slice``),
    against float64 references of all the columns."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(30, 5, 2, 3, generator=g, dtype=torch.float64) * 2 + 1
    rule = Fixed(3.0)
    flat = Needs(gram=torch.float64, standardized_gram=True)
    assert flat.sliceable and Needs(channel_rules=(rule,)).sliceable
    assert not any(n.sliceable for n in (Needs(covariance=True), Needs(columns=True), Needs(codes=True),
                                         Needs(features=(("rbf", rule),))))
    total = per_channel = None
    for start, stop in [(0, 2), (2, 3), (3, 5)]:
        part = x[:, start:stop]
        total = add_slice(total, reduce_rows(Rows([part.reshape(30, -1)], "x"), flat))
        per_channel = add_slice(per_channel, reduce_rows(Rows([part], "x", channels=True),
                                                         Needs(channel_rules=(rule,))))
    a = x.reshape(30, -1).numpy()
    xc = a - a.mean(axis=0)
    z = xc / a.std(axis=0)
    assert total.width == 30 and total.shape == (30,)
    np.testing.assert_allclose(total.gram.numpy(), xc @ xc.T, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(total.gram_offset.numpy(), xc @ a.mean(axis=0), rtol=1e-12, atol=1e-10)
    assert total.gram_square == pytest.approx(float(a.mean(axis=0) @ a.mean(axis=0)), rel=1e-12)
    np.testing.assert_allclose(total.standardized_gram.numpy(), z @ z.T, rtol=1e-11, atol=1e-10)
    np.testing.assert_allclose(total.scale.numpy(), 1 / a.std(axis=0), rtol=1e-12)
    weighted, sigmas = per_channel.channels_weighted[rule]
    want = sum(((x[:, c].reshape(30, 1, -1) - x[:, c].reshape(1, 30, -1)) ** 2).sum(-1).numpy() / 9.0
               for c in range(5))
    assert per_channel.channels == 5 and per_channel.shape[0] == 5 and sigmas == (3.0,) * 5
    np.testing.assert_allclose(weighted.numpy(), want, rtol=1e-11, atol=1e-10)
