"""The tidy table an information-plane run produces, and its files.

One row per value: ``step``, ``epoch``, ``layer``, ``estimator``,
``quantity``, ``value``, then one column per training metric given to
``InformationPlane.step``.

Files:

- JSON lines (``.jsonl``, the log format): the first line is
  ``{"metadata": {...}}``, then one line per measured step,
  ``{"step": s, "rows": [...]}``. A step is one line, so a crash while it is
  written leaves a torn last line, which loading drops with a warning:
  never a partial step.
- CSV (``.csv``): a plain header line and one line per row, readable by
  ``pandas.read_csv`` with no options; floats are written as ``repr`` (no
  loss). The metadata and the column types go beside it, in
  ``<name>.meta.json``.

Whole-file saves go to a temporary file in the same folder that is renamed
into place, so a failed save never damages the previous file.
"""
from __future__ import annotations

import csv
import io
import json
import numbers
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

BASE_COLUMNS = ("step", "epoch", "layer", "estimator", "quantity", "value")
_PARSE = {"int": int, "float": float, "str": str, "bool": lambda v: v == "True"}


def metric_values(metrics: dict) -> dict:
    """Training metrics as table values: numbers (Python, NumPy, one-element
    tensors) become floats, strings stay strings, ``None`` is a missing value.

    Raises ValueError for a name that is a column of the table, or a value
    that is neither (e.g. a tensor with several elements).
    """
    out = {}
    for name, value in metrics.items():
        if name in BASE_COLUMNS:
            raise ValueError(f"metrics: {name!r} is a column of the table; give the metric another name")
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(f"metrics: {name} must be a number, got a tensor of shape {tuple(value.shape)}")
            value = value.detach().cpu().reshape(()).item()
        elif isinstance(value, np.ndarray):
            if value.size != 1:
                raise ValueError(f"metrics: {name} must be a number, got an array of shape {value.shape}")
            value = value.reshape(()).item()
        if value is None or isinstance(value, str):
            out[name] = value
        elif isinstance(value, (numbers.Real, np.generic)) and not isinstance(value, complex):
            out[name] = float(value)
        else:
            raise ValueError(f"metrics: {name} must be a number or a string, got {type(value).__name__}")
    return out


@dataclass
class PlaneTable:
    """Rows (dicts) plus run metadata (model, probe size, estimators, versions)."""

    metadata: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)

    @property
    def columns(self) -> list:
        extra = sorted({k for r in self.rows for k in r} - set(BASE_COLUMNS))
        return list(BASE_COLUMNS) + extra

    def values(self, quantity: str, estimator: str | None = None) -> list:
        """The rows of one quantity (and estimator), in table order."""
        return [r for r in self.rows if r["quantity"] == quantity and (estimator is None or r["estimator"] == estimator)]

    def to_pandas(self):
        """The rows as a ``pandas.DataFrame`` (needs pandas); the metadata in ``.attrs``."""
        try:
            import pandas
        except ImportError:
            raise ImportError("to_pandas needs pandas: pip install pandas") from None
        frame = pandas.DataFrame(self.rows, columns=self.columns)
        frame.attrs["metadata"] = self.metadata
        return frame

    def save(self, path) -> Path:
        """Write ``path`` as CSV (``.csv``, with ``<name>.meta.json`` beside it)
        or JSON lines (``.jsonl``), each file atomically; returns the path."""
        path = Path(path)
        if path.suffix not in (".csv", ".jsonl"):
            raise ValueError(f"path must end in .csv or .jsonl, got {str(path)!r}")
        if path.suffix == ".jsonl":
            lines = [_metadata_line(self.metadata)] + [_step_line(s, rows) for s, rows in _by_step(self.rows)]
            atomic_write(path, "".join(lines))
            return path
        write_csv(path, self.columns, self.rows, self.metadata)
        return path

    @classmethod
    def load(cls, path) -> "PlaneTable":
        """Read a table written by ``save`` or a tracker's log.

        A torn last line of a ``.jsonl`` file (a crash while a step was
        written) is dropped with a warning; any other damage is a ValueError.
        """
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"path {str(path)!r} is not a file")
        if path.suffix == ".jsonl":
            return cls(*read_log(path))
        if path.suffix != ".csv":
            raise ValueError(f"path must end in .csv or .jsonl, got {str(path)!r}")
        return cls(*read_csv(path, BASE_COLUMNS))


def write_csv(path: Path, columns: list, rows: list, metadata: dict) -> None:
    """``rows`` as CSV (``None`` as an empty cell, floats as ``repr``), and
    the metadata and column types as ``<name>.meta.json``; each atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow(["" if r.get(c) is None else (float.__repr__(r[c]) if isinstance(r[c], float) else r[c])
                         for c in columns])
    meta = {"metadata": metadata, "columns": {c: _type_of(c, rows) for c in columns}}
    atomic_write(meta_path(path), json.dumps(meta, indent=1) + "\n")
    atomic_write(path, buf.getvalue())


def read_csv(path: Path, base_columns) -> tuple[dict, list]:
    """(metadata, rows) of a CSV written by ``write_csv``. An empty cell is
    ``None`` in a column of ``base_columns`` and absent from the row in any
    other (a metric that row did not have)."""
    meta_file = meta_path(path)
    if not meta_file.is_file():
        raise ValueError(f"path {str(path)!r} has no {meta_file.name} beside it (its metadata and column types)")
    meta = json.loads(meta_file.read_text())
    types = meta["columns"]
    rows = []
    with path.open(newline="") as fh:
        for raw in csv.DictReader(fh):
            row = {c: None if v == "" else _PARSE[types[c]](v) for c, v in raw.items()}
            rows.append({c: v for c, v in row.items() if v is not None or c in base_columns})
    return meta["metadata"], rows


def meta_path(path: Path) -> Path:
    """``run.csv`` -> ``run.meta.json``."""
    return path.with_suffix(".meta.json")


class StepLog:
    """The append-only JSON-lines log of a tracker: one line per measured
    step, each flushed and fsync'd before ``append`` returns, so a crash or
    SIGKILL loses at most the step being measured.

    Args:
        path: the ``.jsonl`` file.
        metadata: the run's metadata (first line).
        resume: continue an existing log (its metadata must match) instead
            of refusing to touch it; a missing file is started either way.
    """

    def __init__(self, path, metadata: dict, resume: bool = False):
        self.path = Path(path)
        if self.path.suffix != ".jsonl":
            raise ValueError(f"log must be a .jsonl file, got {str(self.path)!r}")
        self.rows: list = []
        if self.path.exists():
            if not resume:
                raise ValueError(f"log {str(self.path)!r} already exists: pass resume=True to continue it, "
                                 "or choose another path")
            old_meta, self.rows = read_log(self.path)
            differ = run_differences(old_meta, metadata)
            if differ:
                raise ValueError(f"log {str(self.path)!r} belongs to another run ({differ}); resume it with the same "
                                 "settings or log to another path")
            self._truncate_torn_tail()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write(_metadata_line(metadata), mode="x")

    def append(self, step: int, rows: list) -> None:
        self._write(_step_line(step, rows), mode="a")
        self.rows.extend(rows)

    def _write(self, text: str, mode: str) -> None:
        try:
            with self.path.open(mode) as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise OSError(exc.errno, f"cannot write the log {str(self.path)!r}: {exc.strerror or exc}") from exc

    def _truncate_torn_tail(self) -> None:
        """Cut a torn last line off before appending after it."""
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            with self.path.open("r+b") as fh:
                fh.truncate(end)
                fh.flush()
                os.fsync(fh.fileno())


def read_log(path: Path) -> tuple[dict, list]:
    """(metadata, rows) of a ``.jsonl`` table or log; a torn last line is
    dropped with a warning."""
    lines = path.read_text().split("\n")
    complete, tail = lines[:-1], lines[-1]  # text after the last newline was cut off mid-write
    if tail.strip():
        warnings.warn(f"{path}: ignored a torn last line ({len(tail)} characters; the step being written when "
                      "the run stopped)", RuntimeWarning, stacklevel=3)
    entries = []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"path {str(path)!r} line {number} is not valid JSON ({exc.msg}); the file is "
                             "damaged") from None
    if not entries or not isinstance(entries[0], dict) or "metadata" not in entries[0]:
        raise ValueError(f"path {str(path)!r} is not a pyfastent table (no metadata line)")
    rows = []
    for entry in entries[1:]:
        if not isinstance(entry, dict) or not isinstance(entry.get("rows"), list):
            raise ValueError(f"path {str(path)!r} has a line that is not a step of a pyfastent table")
        rows.extend(entry["rows"])
    return entries[0]["metadata"], rows


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync it and rename
    it into place: ``path`` holds either its old content or the new one."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise OSError(exc.errno, f"cannot save {str(path)!r}: {exc.strerror or exc}; the previous file, if any, "
                                 "is unchanged") from exc


def _metadata_line(metadata: dict) -> str:
    return json.dumps({"metadata": metadata}) + "\n"


def _step_line(step: int, rows: list) -> str:
    return json.dumps({"step": step, "rows": rows}) + "\n"


def _by_step(rows: list) -> list:
    steps: dict = {}
    for r in rows:
        steps.setdefault(r["step"], []).append(r)
    return list(steps.items())


# Keys that may differ between a log and the run that resumes it.
_VOLATILE = ("pyfastent", "torch")


def run_differences(old: dict, new: dict) -> str:
    """How two runs' metadata differ (up to three keys, versions aside); empty when they agree."""
    keys = sorted((set(old) | set(new)) - set(_VOLATILE))
    differ = [k for k in keys if _normalized(old.get(k)) != _normalized(new.get(k))]
    return "; ".join(f"{k}: saved {old.get(k)!r}, this run {new.get(k)!r}" for k in differ[:3])


def _normalized(value):
    return json.loads(json.dumps(value))  # tuples -> lists, as the file holds them


def _type_of(column: str, rows: list) -> str:
    kinds = set()
    for r in rows:
        v = r.get(column)
        if isinstance(v, bool):
            kinds.add("bool")
        elif isinstance(v, str):
            kinds.add("str")
        elif isinstance(v, int):
            kinds.add("int")
        elif isinstance(v, float):
            kinds.add("float")
    if kinds <= {"int"} and kinds:
        return "int"
    if kinds <= {"int", "float"} and kinds:
        return "float"  # mixed numbers load back as floats, never as strings
    return kinds.pop() if len(kinds) == 1 else "str"

