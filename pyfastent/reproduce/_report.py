"""What every reproduction writes: report.md (claim, rule, numbers, verdict,
pictures), a CSV of its numbers, and the settings it ran with."""
from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pyfastent.nn.table import atomic_write

VERDICTS = ("supported", "not supported", "inconclusive")


@dataclass(frozen=True)
class Settings:
    """How a reproduction runs: ``quick`` (minutes on a 2-core CPU) or paper-sized."""

    out: Path
    quick: bool = False
    seed: int = 0
    device: str = "cpu"
    progress: bool | None = None

    @property
    def size(self) -> str:
        return "quick" if self.quick else "paper-sized"


@dataclass
class Report:
    """The outcome of one reproduction; ``write`` renders report.md."""

    title: str
    paper: str
    claim: str
    rule: str
    verdict: str
    reason: str
    measured: list = field(default_factory=list)  # Markdown blocks
    figures: list = field(default_factory=list)  # paths inside the output folder
    table: Path | None = None
    settings: dict = field(default_factory=dict)
    setup: list = field(default_factory=list)  # Markdown bullets: each choice and the line of the paper or code it follows

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    def write(self, out: Path) -> Path:
        settings = "\n".join(f"- {k}: {v}" for k, v in self.settings.items())
        pictures = "\n\n".join(f"![{p.stem}]({p.name})" for p in self.figures)
        measured = "\n\n".join(self.measured)
        setup = "".join(f"- {line}\n" for line in self.setup)
        setup = f"## The set-up, against the paper's code\n\n{setup}\n" if setup else ""
        text = f"""# {self.title}

{self.paper}

## The paper's claim

{self.claim}

## The rule (fixed before the numbers)

{self.rule}

{setup}## Settings

{settings}

## What this run measured

{measured}

## Verdict: **{self.verdict}**

{self.reason}

## Pictures

{pictures}

Numbers: `{self.table.name if self.table else '-'}`.
"""
        path = Path(out) / "report.md"
        atomic_write(path, text)
        return path


def write_csv(rows: list, path: Path) -> Path:
    """Rows (dicts) as a CSV any spreadsheet or pandas reads; floats without loss."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: float.__repr__(v) if isinstance(v, float) else v for k, v in r.items()} for r in rows)
    atomic_write(path, buf.getvalue())
    return path


def describe_settings(settings: Settings, started: float, **extra) -> dict:
    return {"size": settings.size, "seed": settings.seed, "device": settings.device,
            "torch": torch.__version__, **extra, "seconds": round(time.perf_counter() - started, 1)}


def spearman(a, b) -> float:
    """Spearman's rank correlation of two sequences (average ranks for ties)."""
    def ranks(v):
        v = torch.as_tensor(v, dtype=torch.float64)
        order = torch.argsort(v)
        r = torch.empty_like(v)
        r[order] = torch.arange(len(v), dtype=torch.float64)
        for value in torch.unique(v):  # ties share their mean rank
            tied = v == value
            r[tied] = r[tied].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denominator if denominator else 0.0
