"""Refuse to materialize N×N matrices that cannot fit (DESIGN.md section 4).

Every site that allocates N×N matrices asks ``ensure_square_fits`` first, with the
peak it adds: how many N×N matrices it holds at once on top of what is
already allocated (``tests/test_memory.py`` measures these peaks against the
process's resident memory). Memory already held by earlier steps (prepared
Gram matrices) is out of what the system reports as available, so each
site's own peak is what must fit.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch

_UNLIMITED = 1 << 62


def available_bytes(device: torch.device) -> int:
    """Bytes this process can still allocate on ``device``: free GPU memory,
    or on the CPU the smaller of MemAvailable and the cgroup's headroom."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return min(_mem_available(), _cgroup_headroom())


def _mem_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # not Linux: the free pages, the best the OS offers
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return _UNLIMITED


def _cgroup_headroom() -> int:
    """Limit minus usage of this process's memory cgroup (v2, else v1)."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= _UNLIMITED:
            return _UNLIMITED
        return max(int(limit) - usage, 0)
    return _UNLIMITED


def parse_size(name: str, value) -> int:
    """Bytes of ``value``: a positive number, or a string with a unit
    (``"4GB"``, ``"512 MiB"``; decimal and binary units); else a ValueError
    naming ``name``."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]i?[bB]?|[bB]?)\s*", value)
        if not match:
            raise ValueError(f"{name} must be a number of bytes or a size such as '4GB', got {value!r}")
        number, unit = float(match.group(1)), match.group(2).upper().rstrip("B")
        power = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}[unit[:1]]
        value = number * (1024 if unit.endswith("I") else 1000) ** power
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number of bytes or a size such as '4GB', got {value!r}")
    return int(value)


def format_bytes(count: float) -> str:
    """A byte count for people: ``"3.2 GiB"``, ``"48 MiB"``, ``"512 KiB"``."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(count) >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count:.0f} B"


def ensure_square_fits(n: int, dtype: torch.dtype, device: torch.device, copies: float, what: str) -> None:
    """Raise ``MemoryError`` with advice if ``copies`` more N×N matrices of
    ``dtype`` would not fit now."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    need = int(copies * n * n * itemsize)
    have = available_bytes(device)
    if need > have:
        raise MemoryError(
            f"{what} needs about {need / 2**30:.1f} GiB ({copies:g} matrices of {n}×{n} "
            f"{str(dtype).replace('torch.', '')}) on {device}, but only {have / 2**30:.1f} GiB is available; "
            "use fewer samples (a probe batch of a few thousand is typical)"
        )
