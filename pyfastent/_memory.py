"""Refuse to materialize N×N matrices that cannot fit (DESIGN.md section 4)."""
from __future__ import annotations

import os

import torch


def available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not available on this OS: do not guess
        return 1 << 62


def ensure_square_fits(n: int, dtype: torch.dtype, device: torch.device, copies: int, what: str) -> None:
    """Raise ``MemoryError`` with advice if ``copies`` N×N matrices would not fit."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    need = copies * n * n * itemsize
    have = available_bytes(device)
    if need > have:
        raise MemoryError(
            f"{what} needs about {need / 2**30:.1f} GiB for {copies} matrices of {n}×{n} "
            f"{str(dtype).replace('torch.', '')} on {device}, but only {have / 2**30:.1f} GiB is free; "
            "use fewer samples (a probe batch of a few thousand is typical)"
        )
