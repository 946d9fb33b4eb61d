"""Deferred spectra: eigenproblems collected as work is planned, solved
together by the ops layer (DESIGN.md, "Sweeps at scale" and "Eigenvalues").

An estimator that needs the spectrum of a matrix (a Rényi joint, or the
class blocks of a joint with labels) does not solve it: it adds the
matrices to a ``SpectralBatch`` with the function of their eigenvalues it
needs, and gets a ``Pending`` value back. Whoever owns the batch (a measure,
a sweep step, a permutation test) solves it once all its work is planned;
the batch hands the matrices to ``pyfastent.ops.eigen``, which chooses the
driver, the threads and how many to solve side by side. Values that need no
spectrum (LogDet, plug-in entropies, α = 2) are ``Pending.done`` at once.
"""
from __future__ import annotations

from typing import Callable

import torch

from pyfastent._memory import available_bytes
from pyfastent.ops import eigen

_UNSOLVED = object()


class Pending:
    """A value that is known once its batch is solved.

    ``value`` computes it on first access (later accesses return the same
    object); reading it before the batch is solved is a ``RuntimeError``.
    ``then(f)`` is the pending ``f(value)``.
    """

    __slots__ = ("_compute", "_value")

    def __init__(self, compute: Callable[[], object]):
        self._compute = compute
        self._value = _UNSOLVED

    @classmethod
    def done(cls, value) -> "Pending":
        """A value that is already known."""
        pending = cls(lambda: value)
        pending._value = value
        return pending

    @property
    def value(self):
        if self._value is _UNSOLVED:
            self._value = self._compute()
            self._compute = None
        return self._value

    def then(self, fn: Callable[[object], object]) -> "Pending":
        return Pending(lambda: fn(self.value))


class SpectralBatch:
    """Symmetric eigenproblems collected for one solve.

    Args:
        max_bytes: when the matrices held would exceed this, the ones
            already added are solved first (and released), so a batch never
            holds more than about ``max_bytes``; ``"available"``: a quarter
            of the memory free on the first matrix's device when it is
            added; ``None``: no limit.
    """

    def __init__(self, max_bytes: int | str | None = None):
        if max_bytes not in (None, "available") and not (isinstance(max_bytes, int) and max_bytes > 0):
            raise ValueError(f"max_bytes must be a positive integer, 'available' or None, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self._queue: list = []  # (blocks, slot) of unsolved requests
        self._held = 0
        self.solved_matrices = 0  # how many matrices this batch has decomposed

    def add(self, blocks: list, reduce: Callable[[torch.Tensor], object]) -> Pending:
        """Defer ``reduce(eigenvalues)``: ``blocks`` are symmetric [n_i, n_i]
        matrices whose eigenvalues, concatenated (float64 [Σ n_i]), form one
        spectrum (the class blocks of one joint, or a single matrix)."""
        size = sum(b.numel() * b.element_size() for b in blocks)
        if self.max_bytes == "available":
            self.max_bytes = max(1, available_bytes(blocks[0].device) // 4)
        if self.max_bytes is not None and self._queue and self._held + size > self.max_bytes:
            self.solve()
        slot: list = [_UNSOLVED]
        self._queue.append((blocks, slot))
        self._held += size

        def compute():
            if slot[0] is _UNSOLVED:
                raise RuntimeError("a deferred spectrum was read before its SpectralBatch was solved")
            return reduce(slot[0])

        return Pending(compute)

    def solve(self) -> None:
        """Decompose every matrix added since the last solve, in one call
        to the ops layer's eigensolver, and release them."""
        if not self._queue:
            return
        queue, self._queue, self._held = self._queue, [], 0
        matrices = [b for blocks, _ in queue for b in blocks]
        spectra = iter(eigen.symmetric_eigenvalues(matrices))
        self.solved_matrices += len(matrices)
        for blocks, slot in queue:
            parts = [next(spectra) for _ in blocks]
            slot[0] = parts[0] if len(parts) == 1 else torch.cat(parts)
