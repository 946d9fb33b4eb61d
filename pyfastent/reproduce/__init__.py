"""``pyfastent reproduce NAME``: each seed paper's analysis in one command, on
bundled data (scikit-learn's digits, synthetic Gaussians; nothing is
downloaded), writing pictures, a CSV and report.md: the paper's claim, a
rule fixed before the numbers, the numbers, and the verdict the rule gives
(supported, not supported, inconclusive).

``quick`` runs take minutes on a 2-core CPU; the default is the paper-sized
run, on the GPU when one is present. Every reproduction reuses
``pyfastent.nn``, the estimators and ``pyfastent.plot``.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import torch

from pyfastent.reproduce._report import Report, Settings

REPRODUCTIONS = {
    "tensor-kernels": "pyfastent.reproduce.tensor_kernels",
    "cnn-pid": "pyfastent.reproduce.cnn_pid",
    "logdet": "pyfastent.reproduce.logdet",
    "transfer-entropy": "pyfastent.reproduce.transfer_entropy",
}


def module(name: str):
    """The module of reproduction ``name`` (its PAPER, CLAIM, RULE and run)."""
    if name not in REPRODUCTIONS:
        raise ValueError(f"name must be one of {tuple(REPRODUCTIONS)}, got {name!r}")
    return importlib.import_module(REPRODUCTIONS[name])


def run(name: str, out, quick: bool = False, seed: int = 0, device: str | None = None,
        progress: bool | None = None) -> Report:
    """Run one reproduction into the folder ``out``; returns its ``Report``
    (report.md is written there, with the pictures and results.csv)."""
    reproduction = module(name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    report = reproduction.run(Settings(out, quick, seed, device, progress))
    report.write(out)
    return report


__all__ = ["REPRODUCTIONS", "Report", "module", "run"]
