"""The tidy table an information-plane run produces, and its files.

One row per value: ``step``, ``epoch``, ``layer``, ``estimator``,
``quantity``, ``value``, then one column per training metric given to
``InformationPlane.step``. Saved as CSV (first line ``# {metadata JSON}``) or
JSON lines (first line ``{"metadata": ...}``); both load back exactly.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

BASE_COLUMNS = ("step", "epoch", "layer", "estimator", "quantity", "value")
_PARSE = {"int": int, "float": float, "str": str, "bool": lambda v: v == "True"}


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

    def save(self, path) -> Path:
        """Write ``path`` as CSV (``.csv``) or JSON lines (``.jsonl``)."""
        path = Path(path)
        if path.suffix not in (".csv", ".jsonl"):
            raise ValueError(f"path must end in .csv or .jsonl, got {str(path)!r}")
        meta = {**self.metadata, "columns": {c: _type_of(c, self.rows) for c in self.columns}}
        if path.suffix == ".jsonl":
            lines = [json.dumps({"metadata": meta})] + [json.dumps(r) for r in self.rows]
            path.write_text("\n".join(lines) + "\n")
            return path
        buf = io.StringIO()
        buf.write("# " + json.dumps(meta) + "\n")
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        for r in self.rows:
            writer.writerow({c: "" if r.get(c) is None else (repr(r[c]) if isinstance(r[c], float) else r[c])
                             for c in self.columns})
        path.write_text(buf.getvalue())
        return path

    @classmethod
    def load(cls, path) -> "PlaneTable":
        """Read a table written by ``save``."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"path {str(path)!r} is not a file")
        text = path.read_text()
        if path.suffix == ".jsonl":
            lines = [json.loads(line) for line in text.splitlines() if line.strip()]
            if not lines or "metadata" not in lines[0]:
                raise ValueError(f"path {str(path)!r} is not a pyfastent table (no metadata line)")
            meta = lines[0]["metadata"]
            meta.pop("columns", None)
            return cls(meta, lines[1:])
        first, _, body = text.partition("\n")
        if not first.startswith("# "):
            raise ValueError(f"path {str(path)!r} is not a pyfastent table (no metadata line)")
        meta = json.loads(first[2:])
        types = meta.pop("columns")
        rows = []
        for raw in csv.DictReader(io.StringIO(body)):
            # Empty cells are None; a metric column left empty was absent from that row.
            row = {c: None if v == "" else _PARSE[types[c]](v) for c, v in raw.items()}
            rows.append({c: v for c, v in row.items() if v is not None or c in BASE_COLUMNS})
        return cls(meta, rows)


def _type_of(column: str, rows: list) -> str:
    for r in rows:
        v = r.get(column)
        if isinstance(v, bool):
            return "bool"
        if isinstance(v, str):
            return "str"
        if isinstance(v, int):
            return "int"
        if isinstance(v, float):
            return "float"
    return "str"
