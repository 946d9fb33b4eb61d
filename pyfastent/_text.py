"""Plain-text and Markdown tables for the command line and reports."""
from __future__ import annotations


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def text_table(rows: list, columns: list | None = None) -> str:
    """Right-aligned columns for a terminal; ``columns`` maps keys to headers
    ({key: header}) or lists keys (default: the first row's keys)."""
    headers = dict(columns) if isinstance(columns, dict) else {c: c for c in (columns or list(rows[0]))}
    widths = {c: max(len(h), *(len(_cell(r.get(c))) for r in rows)) for c, h in headers.items()}
    lines = ["  ".join(h.rjust(widths[c]) for c, h in headers.items())]
    lines += ["  ".join(_cell(r.get(c)).rjust(widths[c]) for c in headers) for r in rows]
    return "\n".join(lines)


def markdown_table(rows: list, columns: list | None = None) -> str:
    """A Markdown table; ``columns`` as in ``text_table``."""
    headers = dict(columns) if isinstance(columns, dict) else {c: c for c in (columns or list(rows[0]))}
    lines = ["| " + " | ".join(headers.values()) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in headers) + " |" for r in rows]
    return "\n".join(lines)
