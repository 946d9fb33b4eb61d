"""What one call prepared for a variable, kept for the next call with the
same data: ``mutual_information(x, t)`` for every layer t builds X's Gram
matrix and solves H(X) once, whichever estimator object of the same
configuration each call makes (docs/architecture.md, "Reuse across calls").

An entry is a prepared variable's payload (its Gram matrix, products or
codes) and its own entropy, under the estimator's configuration
(``Estimator.reuse_options``), the choices in force that change how it is
computed (the backend asked for with ``use_backend`` and a forced
eigensolver, so that paths compared in one process each compute their own
numbers) and the data's identity:

- a torch tensor by its identity and version counter (``t._version``,
  bumped by every in-place write, through any view of it), its storage,
  shape and strides; the entry goes when the tensor is freed (a weak
  reference), so a new tensor that gets the same ``id`` never hits it;
- a NumPy array, whose writes torch cannot see, by a digest of its bytes,
  but only where digesting costs under ``DIGEST_SHARE`` of the preparing
  it saves, as measured on the array's first call (arrays of that shape
  and dtype are not digested again when it did not); tensors that require
  grad are never kept.

The entries are bounded by bytes (``settings.reuse``, default
``DEFAULT_BYTES``), the least recently used dropped first; one lock keeps
the table consistent across threads (two threads preparing the same data
at once each compute it, and one entry is kept).
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from pyfastent import _native, settings

# Bytes of prepared payloads kept when ``settings.reuse`` is not set.
DEFAULT_BYTES = 1 << 30

# A NumPy array is digested only where that costs under this share of the preparing it saves.
DIGEST_SHARE = 0.05


@dataclass
class Entry:
    """A kept payload: the tensor it was made from (weakly), the payload,
    the shared memo of its entropy, and its bytes."""
    ref: object  # weakref.ref to the tensor, or None for a digested array
    n: int
    payload: object
    memo: dict
    nbytes: int


class ReuseTable:
    """Prepared payloads by (estimator options, data key), least recently used out."""

    def __init__(self):
        self._entries: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._digest_refused: set = set()  # (shape, dtype, options) of arrays not worth digesting

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self._digest_refused.clear()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def lookup(self, options, data) -> "Found":
        """The entry for ``data`` prepared with ``options``, if kept; its
        key is ``None`` where the data is not kept (reuse off, options
        ``None``, tensors that require grad, arrays not worth digesting)."""
        if not capacity() or options is None:
            return Found(None, None, 0.0)
        key, seconds = self._key(options, data)
        if key is None:
            return Found(None, None, 0.0)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or (entry.ref is not None and entry.ref() is not data):
                return Found(key, None, seconds)
            self._entries.move_to_end(key)
            return Found(key, entry, seconds)

    def keep(self, found: "Found", data, n: int, payload, memo: dict, seconds: float) -> None:
        """Keep a payload prepared in ``seconds`` under the key ``lookup`` found."""
        key = found.key
        if key is None:
            return
        if key[1][0] == "array" and found.digest_seconds > DIGEST_SHARE * seconds:
            with self._lock:  # digesting cost more than it would save: arrays like this one are left alone
                self._digest_refused.add(key[1][1:3] + (key[0],))
            return
        size = payload_bytes(payload)
        limit = capacity()
        if size > limit:
            return
        ref = weakref.ref(data, lambda _, key=key: self._drop(key)) if isinstance(data, torch.Tensor) else None
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._entries[key] = Entry(ref, n, payload, memo, size)
            self._bytes += size
            while self._bytes > limit:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.nbytes

    def _drop(self, key) -> None:
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._bytes -= entry.nbytes

    def _key(self, options, data) -> tuple:
        """(key or None, seconds spent digesting)."""
        options = (options, _context())
        if isinstance(data, torch.Tensor):
            if data.requires_grad or data.layout != torch.strided:
                return None, 0.0
            return (options, ("tensor", id(data), data._version, data.data_ptr(), tuple(data.shape), data.stride(),
                              data.dtype, data.device)), 0.0
        if isinstance(data, np.ndarray) and data.dtype.kind in "biufc":  # numbers: others are refused later
            if (data.shape, data.dtype.str, options) in self._digest_refused:
                return None, 0.0
            start = time.perf_counter()
            digest = hashlib.blake2b(np.ascontiguousarray(data).data, digest_size=16).digest()
            return (options, ("array", data.shape, data.dtype.str, digest)), time.perf_counter() - start
        return None, 0.0


@dataclass(frozen=True)
class Found:
    """What ``ReuseTable.lookup`` found: the key (``None``: not kept), the
    entry (``None``: not yet), and the seconds the key's digest took."""
    key: object
    entry: Entry | None
    digest_seconds: float


def _context() -> tuple:
    """The choices in force that change how a payload and its entropy are
    computed (not what): the backend asked for and a forced eigensolver, so
    that comparing paths in one process compares their own numbers."""
    return _native._override.get(), settings.eigensolver.get(), os.environ.get("PYFASTENT_EIGENSOLVER", "")


def capacity() -> int:
    """Bytes the table may hold now: 0 when reuse is off."""
    value = settings.reuse.get()
    if value is None or value is True:
        return DEFAULT_BYTES
    return 0 if value is False else int(value)


def payload_bytes(payload) -> int:
    """Bytes of the tensors a payload holds (its fields, dicts, lists, tuples)."""
    seen: set = set()

    def walk(obj) -> int:
        if isinstance(obj, torch.Tensor):
            if id(obj) in seen:
                return 0
            seen.add(id(obj))
            return obj.numel() * obj.element_size()
        if isinstance(obj, dict):
            return sum(walk(v) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return sum(walk(v) for v in obj)
        if hasattr(obj, "__dict__"):
            return sum(walk(v) for v in vars(obj).values())
        return 0

    return walk(payload)


TABLE = ReuseTable()


def clear_reuse() -> None:
    """Forget every kept payload and entropy (``pyfastent.reuse``)."""
    TABLE.clear()
