"""CUDA Gram-family kernels against the best plain PyTorch on the same GPU.

For each workload: check that kernel and PyTorch agree, then time both with
CUDA events (warm-up, medians), TF32 off on both sides. Ratio = torch time /
our time. Goals (issue "CUDA kernels for the Gram family"):

- Gram, B = 16, N = 2048, D = 4096: ≥ 1.2, and ≥ 50% of the measured FP32 rate;
- Gram, B = 64, N = 1024, D = 256: ≥ 2;
- multivariate Hadamard, N = 1024, C = 64, H·W = 64: ≥ 10;
- α = 2 MI triple, N = 16 384, D = 512: ≥ 3; N = 100 000 completes.

Usage on a GPU machine: ``python benchmarks/bench_gram.py [--out DIR]``.
"""
from __future__ import annotations

import math
import sys

import torch

from pyfastent import ops
from _record import cuda_median_ms, gpu_setup, ratio_table, write_gpu


def torch_rbf_gram(x, sigma):
    """The best plain PyTorch: centre, one batched GEMM, fused-ish epilogue."""
    xc = x - x.mean(dim=1, keepdim=True)
    sq = (xc * xc).sum(-1)
    d = torch.baddbmm(sq[:, :, None] + sq[:, None, :], xc, xc.transpose(1, 2), alpha=-2.0).clamp_(min=0)
    return d.mul_(-0.5 / sigma**2).exp_().div_(x.shape[1])


def torch_hadamard_gram(x, sigmas):
    """Per-channel Gram matrices (C × N × N), their product, its trace."""
    xc = (x - x.mean(0)).transpose(0, 1)  # [C, N, HW]
    sq = (xc * xc).sum(-1)
    d = torch.baddbmm(sq[:, :, None] + sq[:, None, :], xc, xc.transpose(1, 2), alpha=-2.0).clamp_(min=0)
    k = torch.exp(d * (-0.5 / sigmas**2)[:, None, None]).prod(0)
    return k / k.trace()


def torch_alpha2(x, y, sx, sy):
    kx = torch_rbf_gram(x[None], sx)[0] * x.shape[0]
    ky = torch_rbf_gram(y[None], sy)[0] * y.shape[0]
    n2 = x.shape[0] ** 2
    return [float(-torch.log((k.double() ** 2).sum() / n2)) / math.log(2) for k in (kx, ky, kx * ky)]


def gram_case(b, n, d, rate):
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(b, n, d, generator=g, device="cuda")
    sigma = math.sqrt(2 * d)
    ours = ops.batched_gram(x, "rbf", sigma, backend="cuda")
    ref = torch_rbf_gram(x.double(), sigma)
    err = float(((ours.double() - ref).abs().max() / ref.abs().max()))
    assert err < 1e-5, f"Gram B={b} N={n} D={d}: relative error {err:.2e}"
    t_ours = cuda_median_ms(lambda: ops.batched_gram(x, "rbf", sigma, backend="cuda"))
    t_torch = cuda_median_ms(lambda: torch_rbf_gram(x, sigma))
    tiles = math.ceil(n / 64)
    flops_done = 2.0 * b * (tiles * (tiles + 1) / 2) * 64 * 64 * d  # the upper-triangle tiles we compute
    return {"op": "gram rbf", "B": b, "N": n, "D": d, "ours_ms": t_ours, "torch_ms": t_torch,
            "ratio": t_torch / t_ours, "max_rel_err": err, "fp32_fraction": flops_done / (t_ours / 1e3) / rate}


def hadamard_case(n, c, hw):
    g = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(n, c, hw, generator=g, device="cuda")
    sigmas = torch.full((c,), math.sqrt(2 * hw), device="cuda")
    ours = ops.hadamard_gram(x, sigmas, backend="cuda")
    ref = torch_hadamard_gram(x.double(), sigmas.double())
    err = float(((ours.double() - ref).abs().max() / ref.abs().max()))
    assert err < 1e-5, f"Hadamard N={n} C={c}: relative error {err:.2e}"
    t_ours = cuda_median_ms(lambda: ops.hadamard_gram(x, sigmas, backend="cuda"))
    t_torch = cuda_median_ms(lambda: torch_hadamard_gram(x, sigmas))
    return {"op": "hadamard gram", "N": n, "C": c, "HW": hw, "ours_ms": t_ours, "torch_ms": t_torch,
            "ratio": t_torch / t_ours, "max_rel_err": err}


def alpha2_case(n, d, compare=True):
    g = torch.Generator(device="cuda").manual_seed(2)
    x = torch.randn(n, d, generator=g, device="cuda")
    y = torch.tanh(x @ torch.randn(d, d, generator=g, device="cuda") / math.sqrt(d))
    sx, sy = math.sqrt(2 * d), math.sqrt(d)
    torch.cuda.reset_peak_memory_stats()
    ours = ops.alpha2_entropies(x, y, sx, sy, backend="cuda")
    peak = torch.cuda.max_memory_allocated()
    t_ours = cuda_median_ms(lambda: ops.alpha2_entropies(x, y, sx, sy, backend="cuda"), repeats=5, warmup=1)
    row = {"op": "alpha2 MI triple", "N": n, "D": d, "ours_ms": t_ours, "ours_peak_bytes": peak}
    try:
        ref = torch_alpha2(x, y, sx, sy)
    except torch.cuda.OutOfMemoryError:
        row.update(torch_ms=None, ratio=None, torch="out of memory")
        torch.cuda.empty_cache()
        return row
    err = max(abs(a - b) for a, b in zip(ours, ref))
    assert err < 1e-3, f"alpha2 N={n}: differs by {err:.2e} bits"
    t_torch = cuda_median_ms(lambda: torch_alpha2(x, y, sx, sy), repeats=5, warmup=1)
    row.update(torch_ms=t_torch, ratio=t_torch / t_ours, max_abs_err_bits=err)
    return row


def main():
    setup = gpu_setup("bench_gram", __doc__.splitlines()[0])
    if setup is None:
        return 1
    out, rate = setup
    rows = [gram_case(16, 2048, 4096, rate), gram_case(64, 1024, 256, rate), hadamard_case(1024, 64, 64),
            alpha2_case(16384, 512), alpha2_case(100_000, 512)]
    table = ratio_table(rows, ("B", "N", "D", "C", "HW")) + (
        f"\n\nMeasured FP32 rate (SGEMM 8192³, TF32 off): {rate / 1e12:.1f} TFLOP/s; "
        f"Gram B=16 N=2048 D=4096 reaches {rows[0]['fp32_fraction']:.0%} of it. "
        f"alpha2 at N=100000: peak {rows[-1]['ours_peak_bytes'] / 2**20:.0f} MiB.")
    print("wrote", write_gpu("bench_gram", rows, rate, table, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
