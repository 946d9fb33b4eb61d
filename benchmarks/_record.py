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


def environment() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "device": f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pyfastent": pyfastent.__version__,
        "backend": pyfastent.backend_info()["backend"],
        "commit": commit,
        "date": time.strftime("%Y-%m-%d"),
    }


def write(name: str, record: dict, table: str) -> Path:
    """Write ``results/<name>.json`` and ``results/<name>.md``; return the JSON path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    env = record["environment"]
    header = f"# {name}\n\n{env['device']}; torch {env['torch']}; commit {env['commit']}; {env['date']}\n\n"
    (RESULTS / f"{name}.md").write_text(header + table + "\n")
    return path
