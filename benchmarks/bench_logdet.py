"""CUDA LogDet kernels against plain PyTorch on the same GPU.

Correctness first, then CUDA-event medians; ratio = torch time / our time.
Goals (issue "CUDA kernels for LogDet"):

- batched Cholesky log-det, B = 4096, n = 64: ≥ 5;
- B = 256, n = 256: ≥ 2;
- B = 1, n = 4096: ≥ 0.8 (within 25% of the vendor solver), with the
  fraction of the FP32 rate reached (n³/3 FLOPs);
- the layer-sweep LogDet workload (every layer of VGG-16 at width 1, 1000
  probe samples, I(X;T) and I(T;Y)) end to end: ≥ 3.

The PyTorch side is the plain way: construction (centre, GEMM, identity),
``torch.linalg.cholesky`` and the log of the diagonal.
Usage on a GPU machine: ``python benchmarks/bench_logdet.py [--out DIR]``.
"""
from __future__ import annotations

import math
import sys

import torch

import pyfastent as pf
from pyfastent import models, ops
from pyfastent.nn import layer_sweep
from _record import cuda_median_ms, gpu_setup, ratio_table, write_gpu


def torch_logdet(m):
    return 2.0 * torch.linalg.cholesky(m).diagonal(dim1=-2, dim2=-1).log().sum(-1)


def spd(b, n):
    g = torch.Generator(device="cuda").manual_seed(n)
    a = torch.randn(b, n, n, generator=g, device="cuda") / math.sqrt(n)
    return a @ a.transpose(1, 2) + torch.eye(n, device="cuda")


def cholesky_case(b, n, rate):
    m = spd(b, n)
    ours = ops.spd_logdet(m, backend="cuda")
    ref = torch.linalg.slogdet(m.double())[1]
    err = float(((ours - ref).abs() / ref.abs().clamp(min=1)).max())
    assert err < 1e-5, f"Cholesky B={b} n={n}: relative error {err:.2e}"
    t_ours = cuda_median_ms(lambda: ops.spd_logdet(m, backend="cuda"))
    t_torch = cuda_median_ms(lambda: torch_logdet(m))
    return {"op": "cholesky logdet", "B": b, "n": n, "ours_ms": t_ours, "torch_ms": t_torch,
            "ratio": t_torch / t_ours, "max_rel_err": err,
            "fp32_fraction": b * n**3 / 3 / (t_ours / 1e3) / rate}


def sweep_case(probe: int):
    torch.manual_seed(0)
    net = models.vgg16_bn(width=1.0).cuda().eval()
    x = torch.rand(probe, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (probe,), device="cuda")
    est = (pf.LogDet(beta=100.0 * 3 * 32 * 32),)

    def sweep():
        with pf.use_backend("cuda"):
            return layer_sweep(net, x, y, estimators=est)

    ours = sweep()
    with pf.use_backend("torch"):
        ref = layer_sweep(net, x, y, estimators=est)
    err = max(abs(a[q] - b[q]) / max(1.0, abs(b[q])) for a, b in zip(ours.rows, ref.rows) for q in ("i_xt", "i_ty"))
    assert err < 1e-4, f"LogDet sweep: kernels and torch differ by {err:.2e} (relative)"
    t_ours = cuda_median_ms(sweep, repeats=3, warmup=1)
    with pf.use_backend("torch"):
        t_torch = cuda_median_ms(lambda: layer_sweep(net, x, y, estimators=est), repeats=3, warmup=1)
    return {"op": "LogDet layer sweep", "model": "vgg16_bn(width=1)", "layers": len(ours.rows), "probe": probe,
            "ours_ms": t_ours, "torch_ms": t_torch, "ratio": t_torch / t_ours, "max_rel_err": err}


def main():
    setup = gpu_setup("bench_logdet", __doc__.splitlines()[0])
    if setup is None:
        return 1
    out, rate = setup
    rows = [cholesky_case(4096, 64, rate), cholesky_case(256, 256, rate), cholesky_case(1, 4096, rate),
            sweep_case(1000)]
    table = ratio_table(rows, ("B", "n", "model", "layers", "probe")) + (
        f"\n\nMeasured FP32 rate (SGEMM 8192³, TF32 off): {rate / 1e12:.1f} TFLOP/s; "
        f"Cholesky n=4096 reaches {rows[2]['fp32_fraction']:.1%} of it.")
    print("wrote", write_gpu("bench_logdet", rows, rate, table, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
