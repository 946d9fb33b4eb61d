"""Eigenvalues of symmetric matrices: the one place that solves them, by a
measured *plan* per machine (DESIGN.md, "Eigenvalues"; measurements in
``benchmarks/results/bench_eigensolvers_cpu.md``).

- Drivers (eigenvalues only, float64): ``"torch"``, ``"numpy"``,
  ``"scipy-evd"``, ``"scipy-evr"`` (SciPy when installed). NumPy and SciPy
  run side by side on ``pyfastent.ops.threads.workers()`` threads with one
  BLAS thread each, never as a multi-threaded OpenBLAS (whose spinning
  workers slow the torch work that follows).
- One entry per size class (the next power of two) from 64 rows and batch
  kind (how many matrices of the class one solve gets: one, a few (up to
  the threads side by side) or many), since drivers that win one at a time
  lose in batches; smaller matrices go to torch, padded into one stack. An
  undecided entry is measured on the real work, chunk by chunk at the
  kind's shape, until a driver's median is 10% below every other's (three
  chunks each) or after six chunks each.
- Kept in ``eigen-plan.json`` in the cache directory (``PYFASTENT_CACHE_DIR``,
  else ``$XDG_CACHE_HOME/pyfastent``, else ``~/.cache/pyfastent``), written
  atomically, for the same CPU, library versions and threads; a corrupt,
  stale or foreign file is measured again, never an error.
- ``pyfastent.settings.eigensolver`` or ``PYFASTENT_EIGENSOLVER`` forces a
  driver; under ``torch.distributed`` ``share_plan()`` gives every rank
  rank 0's plan.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from pyfastent import _ranks, settings
from pyfastent._memory import ensure_square_fits
from pyfastent.ops import threads
from pyfastent.ops.eigensolvers import SOLVERS, available_drivers, padded, size_class, torch_solve

DRIVERS = settings.EIGENSOLVERS
SMALLEST_CLASS = 64  # smaller matrices, whose solves thread and call overheads dominate, go to torch
_ENV = "PYFASTENT_EIGENSOLVER"
_FILE = "eigen-plan.json"
_VERSION = 2  # 2: entries per size class and batch kind


def symmetric_eigenvalues(matrices: list) -> list:
    """Eigenvalues (ascending, float64) of each symmetric matrix [n_i, n_i],
    or of each matrix of a stack [b_i, n_i, n_i]: a list of float64 [n_i]
    (or [b_i, n_i]) tensors on the matrices' devices. Only the lower
    triangle is read; no eigenvectors are computed. CPU matrices go to the
    plan's driver for their size class (see the module docstring); CUDA
    ones to torch.

    Spectra are always computed in float64, whatever the matrices' dtype:
    a float32 eigensolver was measured to lose 3e-4 bits at α = 0.5 and
    2e-5 bits at α = 1.01 (N = 2048), above the 1e-4-bit target, while a
    float32 Gram matrix with a float64 spectrum stays within 4e-6 bits.
    """
    out: list = [None] * len(matrices)
    classes: dict = {}
    small: list = []
    direct: list = []
    counts: dict = {}
    for m in matrices:
        if m.device.type == "cpu" and m.shape[-1] >= SMALLEST_CLASS:
            size = size_class(m.shape[-1])
            counts[size] = counts.get(size, 0) + (m.shape[0] if m.dim() == 3 else 1)
    largest: dict = {}  # device -> (copies·n² entries, n, copies) of its largest solve
    for i, m in enumerate(matrices):
        size = size_class(m.shape[-1])
        on_plan = size in counts
        # A float64 copy of the matrices (unless they are float64), and the solver's own copy and work
        # space for every matrix solved at once: all of a stack for torch, one per thread side by side.
        count = m.shape[0] if m.dim() == 3 else 1
        side_by_side = on_plan and PLAN.driver_for(size, counts[size]) != "torch"
        at_once = min(count, threads.workers()) if side_by_side else count
        copies = (0 if m.dtype == torch.float64 else count) + 1.25 * at_once
        need = copies * m.shape[-1] ** 2
        if need > largest.get(m.device, (-1,))[0]:
            largest[m.device] = (need, m.shape[-1], copies)
        if on_plan:
            classes.setdefault(size, []).append(i)
        elif m.dim() == 2 and m.device.type == "cpu":
            small.append(i)
        else:
            direct.append(i)
    # The solves run one after another, each freeing its copies: the largest is the peak to check.
    for device, (_, n, copies) in largest.items():
        ensure_square_fits(n, torch.float64, device, copies, "the eigenvalues of the Gram matrix")
    for i in direct:
        out[i] = torch_solve([matrices[i]])[0]
    for i, values in zip(small, padded([matrices[i] for i in small])):
        out[i] = values
    for size, indices in classes.items():
        for i, values in zip(indices, PLAN.solve(size, [matrices[i] for i in indices])):
            out[i] = values
    return out


def eigenvalues(matrix: torch.Tensor) -> torch.Tensor:
    """Eigenvalues (ascending, float64) of one symmetric [n, n] matrix, or
    of each matrix of a batch [..., n, n] (then [..., n])."""
    if matrix.dim() == 2:
        return symmetric_eigenvalues([matrix])[0]
    flat = matrix.reshape(-1, *matrix.shape[-2:])
    return torch.stack(symmetric_eigenvalues(list(flat))).reshape(matrix.shape[:-1])


KINDS = ("1", "few", "many")


def batch_kind(count: int) -> str:
    """How many matrices of one class a solve gets: ``"1"``, ``"few"`` (up
    to the threads run side by side) or ``"many"``."""
    return "1" if count <= 1 else "few" if count <= threads.workers() else "many"


# The chunk a batch kind is measured in: its own shape (a real batch for "many", so that a
# driver that gains from batches is seen gaining).
CHUNK = {"1": lambda: 1, "few": threads.workers, "many": lambda: max(8, 4 * threads.workers())}


def entry_name(entry: tuple) -> str:
    """``"1024/many"``: a plan entry as the file and ``pyfastent info`` name it."""
    return f"{entry[0]}/{entry[1]}"


def parse_entry(name: str) -> tuple:
    size, kind = name.split("/")
    if kind not in KINDS:
        raise ValueError(f"unknown batch kind {kind!r}")
    return int(size), kind


# ---- the plan --------------------------------------------------------------------


def machine_key() -> dict:
    """What a plan is valid for: the CPU as /proc/cpuinfo names it (vendor,
    family, model, stepping, a hash of its flags: under KVM the model name
    alone is just "AMD EPYC"), the library versions and torch's threads."""
    cpu = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("vendor_id", "cpu family", "model", "model name", "stepping", "flags") and key not in cpu:
                cpu[key] = value.strip()
            if not line.strip() and cpu:
                break
    except OSError:
        cpu = {"processor": platform.processor() or platform.machine()}
    if "flags" in cpu:
        cpu["flags"] = hashlib.sha1(cpu["flags"].encode()).hexdigest()[:16]
    versions = {"torch": torch.__version__, "numpy": np.__version__}
    try:
        import scipy

        versions["scipy"] = scipy.__version__
    except ImportError:
        versions["scipy"] = None
    return {"cpu": cpu, "libraries": versions, "threads": threads.workers()}


def cache_dir() -> Path:
    """Where plans are kept: ``PYFASTENT_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/pyfastent``, else ``~/.cache/pyfastent``."""
    if os.environ.get("PYFASTENT_CACHE_DIR"):
        return Path(os.environ["PYFASTENT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pyfastent"


class EigenPlan:
    """Driver per size class, measured on the work it solves (see the
    module docstring). One instance per process: ``PLAN``."""

    def __init__(self):
        self._lock = threading.Lock()
        self._forget()

    def _forget(self) -> None:
        """The state of a plan that has read nothing and measured nothing."""
        self._loaded = False
        self._key = None
        self.decided: dict = {}  # (size class, batch kind) -> driver
        self.samples: dict = {}  # (size class, batch kind) -> driver -> [seconds per matrix, scaled to the class]
        self.source = "measured in this process"
        self.exploring = True
        self._turn: dict = {}  # (size class, batch kind) -> index of the next driver to try

    # -- lifecycle --

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        self._key = machine_key()
        path = cache_dir() / _FILE
        try:
            data = json.loads(path.read_text())
            if data.get("version") != _VERSION or data.get("key") != self._key:
                self.source = f"measured in this process ({path} is for another machine or library versions)"
                return
            drivers = available_drivers()
            self.decided = {parse_entry(k): v for k, v in data["decided"].items() if v in drivers}
            self.samples = {parse_entry(k): {d: [float(t) for t in ts] for d, ts in v.items() if d in drivers}
                            for k, v in data.get("samples", {}).items()}
            self.source = f"loaded from {path}"
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self.source = f"measured in this process ({path} could not be read)"

    def _save(self) -> None:
        """Write the plan atomically; an unwritable cache keeps it in memory."""
        folder = cache_dir()
        data = {"version": _VERSION, "key": self._key,
                "decided": {entry_name(k): v for k, v in self.decided.items()},
                "samples": {entry_name(k): v for k, v in self.samples.items()}}
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".eigen-plan-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1)
            os.replace(tmp, folder / _FILE)
        except OSError:
            with contextlib.suppress(OSError, UnboundLocalError):
                os.unlink(tmp)

    def reset(self) -> None:
        """Forget everything and read the cache file again on next use."""
        with self._lock:
            self._forget()

    # -- choosing --

    def driver_for(self, size: int, count: int = 1) -> str | None:
        """The decided (or forced) driver for ``count`` matrices of a size
        class solved together, or ``None`` while that is being measured."""
        forced = forced_driver()
        if forced is not None:
            return forced
        entry = (size, batch_kind(count))
        with self._lock:
            self._load()
            if entry in self.decided:
                return self.decided[entry]
            return None if self.exploring else "torch"

    def solve(self, size: int, matrices: list) -> list:
        """Eigenvalues of same-class CPU matrices: by the driver of the
        class and batch kind, or, while that is measured, in chunks of the
        kind's shape dealt to the drivers in turn."""
        count = sum(m.shape[0] if m.dim() == 3 else 1 for m in matrices)
        driver = self.driver_for(size, count)
        if driver is not None:
            return SOLVERS[driver](matrices)
        entry = (size, batch_kind(count))
        out = []
        chunk = CHUNK[entry[1]]()
        for start in range(0, len(matrices), chunk):
            part = matrices[start:start + chunk]
            driver = self.driver_for(size, count)  # decided by an earlier chunk?
            if driver is not None:
                out += SOLVERS[driver](part)
                continue
            driver = self._next(entry)
            began = time.perf_counter()
            out += SOLVERS[driver](part)
            seconds = time.perf_counter() - began
            scale = sum((m.shape[-1] / size) ** 3 * (m.shape[0] if m.dim() == 3 else 1) for m in part)
            self._record(entry, driver, seconds / scale)
        return out

    def _next(self, entry: tuple) -> str:
        with self._lock:
            drivers = available_drivers()
            turn = self._turn.get(entry, 0)
            self._turn[entry] = turn + 1
            counts = {d: len(self.samples.get(entry, {}).get(d, [])) for d in drivers}
            fewest = min(counts.values())
            behind = [d for d in drivers if counts[d] == fewest]
            return behind[turn % len(behind)]

    def _record(self, entry: tuple, driver: str, seconds: float) -> None:
        with self._lock:
            self._load()
            self.samples.setdefault(entry, {}).setdefault(driver, []).append(seconds)
            winner = _winner(self.samples[entry], available_drivers())
            if winner is not None:
                self.decided[entry] = winner
            self._save()

    def describe(self) -> dict:
        """The plan for ``pyfastent info``: where it comes from, the driver
        per size class, and the median seconds per matrix behind each choice."""
        forced = forced_driver()
        with self._lock:
            self._load()
            classes = {entry_name(k): {"driver": v, "median_s": {d: statistics.median(ts) for d, ts in
                                                                   self.samples.get(k, {}).items()}}
                       for k, v in sorted(self.decided.items(), key=lambda kv: (kv[0][0], KINDS.index(kv[0][1])))}
            measuring = sorted(entry_name(k) for k in self.samples if k not in self.decided)
        source = f"forced by {_ENV}={forced}" if forced else self.source
        return {"source": source, "classes": classes, "measuring": measuring,
                "drivers": list(available_drivers()), "smallest_class": SMALLEST_CLASS,
                "file": str(cache_dir() / _FILE)}

    # -- torch.distributed --

    def adopt(self, decided: dict) -> None:
        """Use another process's decided classes (rank 0's) and stop
        measuring: classes it has not decided go to torch."""
        with self._lock:
            self._load()
            self.decided = {parse_entry(k): v for k, v in decided.items() if v in available_drivers()}
            self.exploring = False
            self.source = "rank 0's plan"


def _winner(samples: dict, drivers: tuple) -> str | None:
    """The driver with the clearly lowest median, or ``None`` while unclear."""
    counts = [len(samples.get(d, [])) for d in drivers]
    if min(counts) < 3:
        return None
    medians = {d: statistics.median(samples[d]) for d in drivers}
    best = min(medians, key=medians.get)
    if min(counts) >= 6 or all(medians[best] < 0.9 * m for d, m in medians.items() if d != best):
        return best
    return None


def forced_driver() -> str | None:
    """``pyfastent.settings.eigensolver``, else ``PYFASTENT_EIGENSOLVER``,
    checked: a driver name, or ``None`` (the plan decides)."""
    value = settings.eigensolver.get() or os.environ.get(_ENV, "").strip().lower()
    if not value:
        return None
    if value not in DRIVERS:
        raise ValueError(f"{_ENV} must be one of {DRIVERS}, got {value!r}")
    if value not in available_drivers():
        raise ValueError(f"{_ENV}={value} needs SciPy, which is not installed: pip install scipy")
    return value


PLAN = EigenPlan()


def share_plan() -> None:
    """Under ``torch.distributed``: every rank takes rank 0's plan (different
    drivers round differently) and stops measuring. No-op without a process group."""
    if not _ranks.active():
        return
    decided = _ranks.from_root(lambda: PLAN.describe()["classes"], "sharing the eigensolver plan")
    PLAN.adopt({k: v["driver"] for k, v in decided.items()})
