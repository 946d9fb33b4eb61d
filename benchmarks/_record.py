"""Shared helpers for benchmark scripts: timing, environment, JSON + Markdown output."""
from __future__ import annotations

import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

import pyfastent

RESULTS = Path(__file__).resolve().parent / "results"


def median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cuda_median_ms(fn, repeats: int = 20, warmup: int = 3) -> float:
    """Median time of ``fn()`` in milliseconds with CUDA events, after warm-up."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def fp32_fma_rate(size: int = 8192) -> float:
    """Measured FP32 FLOP/s of this GPU: a large SGEMM with TF32 off (each
    multiply-add counts 2 FLOPs)."""
    a = torch.randn(size, size, device="cuda")
    ms = cuda_median_ms(lambda: a @ a, repeats=10)
    return 2.0 * size**3 / (ms / 1e3)


def environment() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    from pyfastent.ops import eigen

    cpu = eigen.machine_key()["cpu"]
    cpu_name = (f"{cpu.get('model name', platform.processor() or platform.machine())} (vendor {cpu.get('vendor_id')}, "
                f"family {cpu.get('cpu family')}, model {cpu.get('model')}, stepping {cpu.get('stepping')})")
    if torch.cuda.is_available():
        device = f"GPU: {torch.cuda.get_device_name()} (CUDA {torch.version.cuda}); CPU: {cpu_name}"
    else:
        device = f"CPU: {cpu_name}, {torch.get_num_threads()} torch threads"
    return {
        "device": device,
        "cpu": cpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pyfastent": pyfastent.__version__,
        "backend": pyfastent.backend_info()["backend"],
        "eigensolver": pyfastent.backend_info()["eigensolver"],
        "commit": commit,
        "date": time.strftime("%Y-%m-%d"),
    }


def write(name: str, record: dict, table: str, folder: Path = RESULTS) -> Path:
    """Write ``<folder>/<name>.json`` and ``<name>.md``; return the JSON path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    env = record["environment"]
    header = f"# {name}\n\n{env['device']}; torch {env['torch']}; commit {env['commit']}; {env['date']}\n\n"
    (folder / f"{name}.md").write_text(header + table + "\n")
    return path


def ratio_table(rows: list, size_keys: tuple) -> str:
    """Markdown table of GPU comparisons: op, size, our and torch times, ratio."""
    lines = ["| op | size | ours (ms) | torch (ms) | torch / ours |", "|---|---|---|---|---|"]
    for r in rows:
        size = ", ".join(f"{k}={r[k]}" for k in size_keys if k in r)
        torch_ms = f"{r['torch_ms']:.2f}" if r.get("torch_ms") else r.get("torch", "")
        ratio = f"{r['ratio']:.2f}x" if r.get("ratio") else "-"
        lines.append(f"| {r['op']} | {size} | {r['ours_ms']:.2f} | {torch_ms} | {ratio} |")
    return "\n".join(lines)


def gpu_environment_name() -> str:
    """The GPU's name as a file-name part, e.g. ``NVIDIA_H100_80GB_HBM3``."""
    return torch.cuda.get_device_name().replace(" ", "_")


def write_gpu(name: str, rows: list, rate: float, table: str, folder) -> Path:
    """Print ``table`` and write the record of a GPU benchmark, named after the GPU."""
    print(table)
    record = {"benchmark": name, "environment": environment(), "fp32_flops": rate, "results": rows}
    return write(f"{name}_{gpu_environment_name()}", record, table, folder)


def gpu_setup(name: str, description: str):
    """Parse ``--out``, check for a GPU and the extension, turn TF32 off and
    measure the FP32 rate: (output folder, FLOP/s), or None when there is no GPU."""
    import argparse
    import sys

    from pyfastent import _native

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    args = parser.parse_args()
    if not _native.has_cuda():
        print(f"{name}: needs a CUDA GPU and the compiled extension; nothing measured", file=sys.stderr)
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return args.out, fp32_fma_rate()
