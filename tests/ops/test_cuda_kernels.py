"""Every CUDA kernel against its PyTorch op on the same GPU (issues 4 and 5).

Awkward sizes (not multiples of the 64 tile, N = 2, batch 1), both dtypes,
non-contiguous inputs. Skipped where there is no GPU or no extension.
"""
import math

import pytest
import torch

import pyfastent as pf
from pyfastent import _native, ops

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available() or not _native.has_cuda(),
                       reason="needs a CUDA GPU and the compiled extension"),
]

DTYPES = [torch.float32, torch.float64]


def tolerance(dtype, n):
    # float32 kernels against the float64 torch path: 1e-5 relative to the
    # entries' scale (normalized Gram entries are at most 1/N).
    return dict(rtol=1e-5, atol=1e-5 / n) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12 / n)


def data(b, n, d, dtype, contiguous=True, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    if contiguous:
        x = torch.randn(b, n, d, generator=g, device="cuda", dtype=torch.float64)
    else:  # rows contiguous, features strided: the transposed layout
        x = torch.randn(b, d, n, generator=g, device="cuda", dtype=torch.float64).transpose(1, 2)
    return (x * 0.5 + 3.0).to(dtype)  # an offset: centring matters


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [2, 33, 1000, 1025])
@pytest.mark.parametrize("d", [1, 7, 4099])
@pytest.mark.parametrize("b", [1, 5])
@pytest.mark.parametrize("kernel", ["rbf", "linear", "sqdist"])
def test_batched_gram(kernel, b, d, n, dtype):
    x = data(b, n, d, dtype, contiguous=(n + d) % 2 == 0)
    sigma = torch.linspace(0.5, 3.0, b, device="cuda", dtype=torch.float64) * math.sqrt(d)
    got = ops.batched_gram(x, kernel, sigma, backend="cuda")
    want = ops.batched_gram(x.double(), kernel, sigma, backend="torch")
    tol = tolerance(dtype, n) if kernel != "sqdist" else dict(rtol=1e-4 if dtype == torch.float32 else 1e-10,
                                                               atol=1e-3 * d if dtype == torch.float32 else 1e-8)
    torch.testing.assert_close(got.double(), want, **tol)
    torch.testing.assert_close(got, got.transpose(1, 2), rtol=0, atol=0)  # mirrored exactly


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c,hw", [(2, 1, 1), (33, 5, 7), (1000, 3, 65), (1025, 64, 4)])
def test_hadamard_gram(n, c, hw, dtype):
    x = data(1, n, c * hw, dtype)[0].reshape(n, c, hw)
    sigmas = torch.linspace(0.5, 2.0, c, dtype=torch.float64) * math.sqrt(hw)
    got = ops.hadamard_gram(x, sigmas, backend="cuda")
    want = ops.hadamard_gram(x.double(), sigmas, backend="torch")
    torch.testing.assert_close(got.double(), want, **tolerance(dtype, n))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [2, 33, 1000, 1025])
@pytest.mark.parametrize("k", [2, 3])
def test_hadamard_normalized(n, k, dtype):
    mats = [ops.batched_gram(data(1, n, 7, torch.float64, seed=i), "rbf", 2.0 + i)[0] for i in range(k)]
    got = ops.hadamard_normalized([m.to(dtype) for m in mats], backend="cuda")
    want = ops.hadamard_normalized(mats, backend="torch")
    torch.testing.assert_close(got.double(), want, **tolerance(dtype, n))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [2, 33, 1000, 1025])
@pytest.mark.parametrize("labels", [False, True])
def test_alpha2_entropies(n, labels, dtype):
    x = data(1, n, 7, dtype)[0]
    y = torch.arange(n, device="cuda") % 3 if labels else data(1, n, 4099, dtype, seed=1)[0]
    got = ops.alpha2_entropies(x, y, 2.5, 40.0, backend="cuda")
    want = ops.alpha2_entropies(x.double(), y if labels else y.double(), 2.5, 40.0, backend="torch")
    assert got == pytest.approx(want, abs=1e-4 if dtype == torch.float32 else 1e-9)


def spd(b, n, cond, dtype, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(b, n, n, generator=g, device="cuda", dtype=torch.float64))
    eig = torch.logspace(0, math.log10(cond), n, device="cuda", dtype=torch.float64).expand(b, n)
    return ((q * eig[:, None, :]) @ q.transpose(1, 2)).to(dtype)


def logdet_tolerance(n, cond, dtype):
    """Bound on |computed − exact| log det of spd(·, n, cond) in ``dtype``.

    To first order log det(A + E) − log det A = tr(A⁻¹E), so |error| ≤
    ‖E‖₂·tr(A⁻¹) for SPD A, and Cholesky's backward error is ‖E‖₂ ≈ c·ε·‖A‖₂
    (the worst case has c ∝ n; measured c ≤ 0.54 for LAPACK's spotrf and ≤ 0.38
    for an emulation of the kernels' right-looking order, n = 2..300, cond 10
    and 1e5). With the spectrum λ_i = logspace(0, log10 cond, n) this is
    ε·Σ_i λ_max/λ_i; c = 4 leaves a margin of 7 over LAPACK, so a failure
    means a kernel bug, not rounding.
    """
    eig = torch.logspace(0, math.log10(cond), n, dtype=torch.float64)
    return 4.0 * torch.finfo(dtype).eps * float((eig.max() / eig).sum())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,b", [(1, 1000), (2, 3), (31, 1000), (33, 3), (64, 1000), (65, 3), (127, 3), (129, 1),
                                 (1000, 1), (1000, 3)])
@pytest.mark.parametrize("cond", [10.0, 1e5])
def test_spd_logdet(n, b, cond, dtype):
    m = spd(b, n, cond, dtype)
    got = ops.spd_logdet(m, backend="cuda")
    want = torch.linalg.slogdet(m.double())[1]  # of the matrix as given: rounding to dtype is not the kernel's
    torch.testing.assert_close(got, want, rtol=0, atol=logdet_tolerance(n, cond, dtype))


def test_batches_above_the_grid_limit_are_split():
    b = 65535 + 100
    x = data(b, 3, 2, torch.float32)
    got = ops.batched_gram(x, "rbf", 1.5, backend="cuda")
    torch.testing.assert_close(got.double(), ops.batched_gram(x.double(), "rbf", 1.5, backend="torch"),
                               **tolerance(torch.float32, 3))
    for n in (3, 70):  # the one-block and the blocked factorization
        m = spd(b if n == 3 else 65535 + 2, n, 10.0, torch.float32)
        torch.testing.assert_close(ops.spd_logdet(m, backend="cuda"), torch.linalg.slogdet(m.double())[1],
                                   rtol=0, atol=logdet_tolerance(n, 10.0, torch.float32))


def test_linear_kernel_survives_huge_norms():
    x = data(1, 50, 8, torch.float32) * 1e12  # squared norms ≈ 1e26: their product overflows float32
    got = ops.batched_gram(x, "linear", backend="cuda")
    torch.testing.assert_close(got.double(), ops.batched_gram(x.double(), "linear", backend="torch"),
                               **tolerance(torch.float32, 50))


def test_hadamard_normalized_promotes_to_the_widest_dtype():
    a = ops.batched_gram(data(1, 40, 3, torch.float64), "rbf", 2.0)[0]
    b = ops.batched_gram(data(1, 40, 3, torch.float64, seed=1), "rbf", 2.0)[0]
    got = ops.hadamard_normalized([a.float(), b], backend="cuda")
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, ops.hadamard_normalized([a.float().double(), b], backend="torch"))


@pytest.mark.parametrize("n", [5, 64, 65, 300])
def test_spd_logdet_names_the_failing_matrix(n):
    m = spd(4, n, 10.0, torch.float64)
    m[2, n // 2, n // 2] = -1e3
    with pytest.raises(ValueError, match=r"^matrices\[2\] is not positive definite"):
        ops.spd_logdet(m, backend="cuda")


def test_spd_logdet_of_a_strided_batch():
    m = spd(6, 20, 100.0, torch.float64)[::2].transpose(1, 2)  # symmetric, non-contiguous
    torch.testing.assert_close(ops.spd_logdet(m, backend="cuda"), torch.linalg.slogdet(m)[1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,d", [(2, 1), (33, 7), (1000, 65), (100, 4099)])
@pytest.mark.parametrize("mode", ["cov", "correlation"])
def test_covariance_logdet(n, d, mode, dtype):
    x = data(3, n, d, dtype, contiguous=d % 2 == 1)
    got = ops.covariance_logdet(x, beta=2.0, mode=mode, backend="cuda")
    want = ops.covariance_logdet(x.double(), beta=2.0, mode=mode, backend="torch")
    rel = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(got, want, rtol=rel, atol=rel * max(1.0, float(want.abs().max())))


@pytest.mark.parametrize("dtype", DTYPES)
def test_logdet_joints(dtype):
    x = data(1, 500, 40, dtype)[0]
    g = torch.Generator().manual_seed(3)
    joints = [torch.randperm(40, generator=g)[: 1 + i % 3].tolist() for i in range(1000)] + [list(range(40))]
    got = ops.logdet_joints(x, joints, beta=5.0, backend="cuda")
    want = ops.logdet_joints(x.double(), joints, beta=5.0, backend="torch")
    rel = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(got, want, rtol=rel, atol=rel)


@pytest.mark.parametrize("est", [pf.Renyi(), pf.Renyi(alpha=2, sigma="silverman"), pf.LogDet(beta=10.0),
                                 pf.LogDet(mode="correlation")], ids=repr)
def test_estimators_on_the_gpu_match_the_cpu(est):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(700, 20, generator=g, dtype=torch.float64)
    t = torch.relu(torch.randn(700, 8, 6, 6, generator=g, dtype=torch.float64))
    y = torch.randint(0, 10, (700,), generator=g)
    for args in ((x, t), (t, y), (x, pf.Variable(t, channels=True))):
        cpu = pf.mutual_information(*args, estimator=est)
        gpu_args = [a.cuda() if isinstance(a, torch.Tensor) else pf.Variable(a.data.cuda(), channels=a.channels)
                    for a in args]
        gpu32 = [a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in gpu_args]
        with pf.use_backend("cuda"):
            assert pf.mutual_information(*gpu_args, estimator=est) == pytest.approx(cpu, abs=1e-6)
            assert pf.mutual_information(*gpu32, estimator=est) == pytest.approx(cpu, abs=1e-4)


def test_cupy_arrays_are_accepted_without_copy():
    cupy = pytest.importorskip("cupy")
    x = cupy.random.standard_normal((200, 5), dtype=cupy.float32)
    a = pf.gram(x, sigma=1.0, backend="cuda")
    assert a.is_cuda
    torch.testing.assert_close(a, pf.gram(torch.from_dlpack(x), sigma=1.0))
