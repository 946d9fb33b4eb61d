"""Progress bars for long work (tqdm on stderr)."""
from __future__ import annotations

import sys

from tqdm.auto import tqdm

from pyfastent import _ranks, settings


def progress_bar(total: int, description: str, enabled: bool | None = None, unit: str = "it"):
    """A tqdm bar on stderr. ``enabled=None`` follows ``pyfastent.settings.progress``,
    else shows it only when stderr is a terminal (never in logs or CI);
    ``False`` never, ``True`` always. Under ``torch.distributed`` only rank 0
    shows bars."""
    if enabled is None:
        enabled = settings.progress.get()
    if not _ranks.is_root():
        enabled = False
    return tqdm(total=total, desc=description, unit=unit, file=sys.stderr, leave=False,
                disable=None if enabled is None else not enabled, dynamic_ncols=True)
