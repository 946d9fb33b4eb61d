"""What the Python wrappers ask of the CUDA kernels, checked on the CPU.

``emulate_gram`` restates the contract of ``csrc/gram.h`` in float64 torch:
each element is transformed on load, (x − row_offset − k_offset)·k_scale·
row_scale, then the mode's epilogue is applied to the dot products. With it
standing in for the kernel launch, every op's CUDA route must give the
numbers of its torch route: a wrong argument (a centring the torch path does
not do, a missing scale) fails here without a GPU.
"""
import importlib

import pytest
import torch

from pyfastent import _distances, _native, ops
from pyfastent.ops import kernels, logdet
from pyfastent.samples import Observations
from pyfastent.widths import KNN, Fixed

gram_module = importlib.import_module("pyfastent.ops.gram")  # the name ops.gram is the function

pytestmark = pytest.mark.skipif(_native._C is None, reason="needs the compiled extension's mode constants")


def emulate_gram(x, mode, param=None, scale=1.0, row_offset=None, k_offset=None, k_scale=None, row_scale=None):
    C = _native._C
    t = x.double()
    if row_offset is not None:
        t = t - row_offset.double()[:, :, None]
    if k_offset is not None:
        t = t - k_offset.double()[:, None, :]
    if k_scale is not None:
        t = t * k_scale.double()[:, None, :]
    if row_scale is not None:
        t = t * row_scale.double()[:, :, None]
    dot = t @ t.transpose(1, 2)  # [B, R, R]
    norms = dot.diagonal(dim1=1, dim2=2)
    sq = (norms[:, :, None] + norms[:, None, :] - 2 * dot).clamp(min=0)
    eye = torch.eye(t.shape[1], dtype=torch.bool)
    if mode == C.GRAM_SQDIST:
        out = sq.masked_fill(eye, 0.0)
    elif mode == C.GRAM_RBF:
        out = (torch.exp(param.double()[:, None, None] * sq) * scale).masked_fill(eye, scale)
    elif mode == C.GRAM_LINEAR:
        out = dot / (norms[:, :, None] * norms[:, None, :]).sqrt() * scale
    else:
        out = param.double()[:, None, None] * dot
    return out.to(x.dtype)


@pytest.fixture
def cuda_route(monkeypatch):
    """Send every op not asked for "torch" down its CUDA route, with the kernel emulated."""
    from pyfastent.ops import _cuda_gram

    for module in (kernels, logdet, gram_module):
        monkeypatch.setattr(module, "resolve_backend", lambda backend, tensors, op: "torch" if backend == "torch" else "cuda")
    monkeypatch.setattr(_cuda_gram, "gram", emulate_gram)


def offset_data(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64) * 0.5 + 3.0  # centring matters


@pytest.mark.parametrize("kernel", ["rbf", "linear", "sqdist"])
def test_batched_gram_routes_agree(cuda_route, kernel):
    x = offset_data(3, 17, 5)
    sigma = torch.tensor([0.7, 1.0, 2.0], dtype=torch.float64)
    got = ops.batched_gram(x, kernel, sigma, backend="cuda")
    want = ops.batched_gram(x, kernel, sigma, backend="torch")
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_linear_kernel_is_the_plain_inner_product(cuda_route):
    x = offset_data(1, 9, 4)[0]
    k = x @ x.T
    want = k / (k.diagonal()[:, None] * k.diagonal()[None, :]).sqrt() / 9
    for backend in ("torch", "cuda"):
        torch.testing.assert_close(ops.batched_gram(x[None], "linear", backend=backend)[0], want)


def test_hadamard_gram_routes_agree(cuda_route):
    x = offset_data(21, 4, 6)
    sigmas = [0.5, 1.0, 1.5, 3.0]
    torch.testing.assert_close(ops.hadamard_gram(x, sigmas, backend="cuda"),
                               ops.hadamard_gram(x, sigmas, backend="torch"), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("mode", ["cov", "correlation"])
@pytest.mark.parametrize("columns", [True, False])
def test_centred_gram_routes_agree(cuda_route, mode, columns):
    x = offset_data(2, 15, 6)
    x[:, :, 2] = 4.0  # a constant column: zero in correlation mode
    got = logdet.centred_gram(x, mode, 0.3, columns=columns, backend="cuda")
    want = logdet.centred_gram(x, mode, 0.3, columns=columns, backend="torch")
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel,rule,channels", [("linear", Fixed(1.0), False), ("rbf", Fixed(2.0), False),
                                                  ("rbf", KNN(), False), ("rbf", Fixed(2.0), True),
                                                  ("rbf", KNN(3), True)])
def test_normalized_gram_routes_agree(cuda_route, kernel, rule, channels):
    x = offset_data(23, 3, 4) if channels else offset_data(23, 7)
    obs = Observations(x, False)
    got, sig_got = gram_module.normalized_gram(obs, kernel, rule, "x", backend="cuda")
    want, sig_want = gram_module.normalized_gram(obs, kernel, rule, "x", backend="torch")
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    assert sig_got == pytest.approx(sig_want, rel=1e-12)


def test_emulator_is_not_the_torch_path():
    # The oracle must itself be independent of what it checks: a hand-made case.
    x = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]]], dtype=torch.float64)
    sq = emulate_gram(x, _native._C.GRAM_SQDIST)[0]
    assert sq.tolist() == [[0.0, 5.0, 20.0], [5.0, 0.0, 13.0], [20.0, 13.0, 0.0]]
    lin = emulate_gram(x, _native._C.GRAM_LINEAR)[0]
    assert lin[0, 2].item() == pytest.approx(3.0 / 5.0)
    torch.testing.assert_close(_distances.squared_distances(x[0]), sq)


def test_large_batches_are_split_into_launches_the_grid_can_hold():
    from pyfastent.ops._cuda_gram import batch_slices

    assert _native._C.MAX_BATCH == 65535
    parts = batch_slices(2 * 65535 + 7, 65535)
    assert [(p.start, p.stop) for p in parts] == [(0, 65535), (65535, 131070), (131070, 131077)]
    assert [(p.start, p.stop) for p in batch_slices(5, 65535)] == [(0, 5)]


def fake_input(batch=1):
    v = _native._C.GramInput()
    v.x, v.batch, v.rows, v.depth = 1, batch, 4, 3  # never read: the checks come first
    v.stride_b, v.stride_r, v.stride_k = 12, 3, 1
    return v


@pytest.mark.parametrize("mode,norms,param,missing", [
    ("GRAM_RBF", 0, 8, "norms"), ("GRAM_SQDIST", 0, 0, "norms"), ("GRAM_LINEAR", 0, 0, "norms"),
    ("GRAM_RBF", 8, 0, "param"), ("GRAM_SCALED", 0, 0, "param")])
def test_kernel_entry_points_require_what_each_mode_reads(mode, norms, param, missing):
    C = _native._C
    with pytest.raises(RuntimeError, match=rf"^gram: {missing} .*is required"):
        C.gram(fake_input(), norms, getattr(C, mode), param, 1.0, 8, 0)
    with pytest.raises(RuntimeError, match="batch above 65535"):
        C.gram(fake_input(65536), 8, C.GRAM_RBF, 8, 1.0, 8, 0)


def test_kernel_entry_points_reject_a_zero_trace_and_missing_sums():
    C = _native._C
    for inv_trace in (float("inf"), 0.0, float("nan")):
        with pytest.raises(RuntimeError, match="trace"):
            C.hadamard_normalized(8, 8, 0, 4, inv_trace, False, 8, 0)
    with pytest.raises(RuntimeError, match="norms_b is required"):
        C.rbf_alpha2_sums(fake_input(), 8, -0.5, fake_input(), 0, -0.5, 0, 8, 0)
    with pytest.raises(RuntimeError, match="required"):
        C.cholesky_logdet(0, 1, 4, 16, 4, 1, False, 8, 8, 0)


@pytest.mark.parametrize("backend", ["torch", "cuda"])
def test_hadamard_product_without_positive_trace_is_an_error(backend, monkeypatch):
    from pyfastent.ops import _cuda_gram

    monkeypatch.setattr(kernels, "resolve_backend", lambda b, tensors, op: backend)
    monkeypatch.setattr(_cuda_gram, "hadamard_normalized", lambda mats, trace: pytest.fail("launched"))
    a = torch.diag(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    b = torch.diag(torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="trace"):
        ops.hadamard_normalized([a, b], backend=backend)
