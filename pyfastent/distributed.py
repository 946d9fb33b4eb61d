"""Several processes, one answer: pyfastent on ``torch.distributed``.

When the default process group is initialized (``torchrun``, or your own
``init_process_group``) with more than one rank:

- ``layer_sweep`` and ``InformationPlane.step`` split the (layer, estimator)
  pairs across the ranks, balanced by their estimated cost, and every rank
  gets every row back, in the single-process order. Every rank runs the
  probe forward pass (the model is replicated, as under DDP), so every
  rank must call them, with the same probe.
- ``Renyi(method="lanczos", distributed=True)`` splits the rows of each
  N×N kernel across the ranks: every rank computes its block of rows of
  each product K·V, and the blocks are gathered. Every rank must make the
  same calls on the same data.
- Files (the tracker's log, tables, CSVs) are written by rank 0 only;
  progress bars show on rank 0 only.

A rank that fails makes every rank raise: the failing rank its own error,
the others ``RankFailed`` naming it, at the next collective. A rank that
dies outright leaves the others waiting until the process group's timeout.

Nothing here runs, and nothing changes, without an initialized process
group of two or more ranks.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn


class RankFailed(RuntimeError):
    """Another rank raised while this one waited for it at a collective."""


def world() -> tuple[int, int]:
    """(rank, number of ranks) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def active() -> bool:
    """Whether a process group of two or more ranks is initialized."""
    return world()[1] > 1


def is_root() -> bool:
    """Rank 0, or the only process: the one that writes files and prints."""
    return world()[0] == 0


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` (or ``DataParallel``):
    its layer names are the single-process ones, and a forward pass through
    it runs no collective (DDP would broadcast its buffers)."""
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return model.module
    return model


def gather(local: Callable[[], object], what: str) -> list:
    """Run ``local()`` on every rank and return all ranks' results, by rank.

    Any rank's exception becomes every rank's: the failing rank re-raises
    its own, the others raise ``RankFailed`` naming the rank and the error.
    Without a process group this is ``[local()]``.
    """
    if not active():
        return [local()]
    failure = None
    try:
        mine = ("ok", local())
    except Exception as exc:  # noqa: BLE001 - reported to every rank, then re-raised here
        failure = exc
        mine = ("error", _describe(exc))
    everyone: list = [None] * dist.get_world_size()
    _collective(lambda: dist.all_gather_object(everyone, mine), what)
    if failure is not None:
        raise failure
    for rank, (status, value) in enumerate(everyone):
        if status == "error":
            raise RankFailed(f"rank {rank} failed while {what}: {value}")
    return [value for _, value in everyone]


def from_root(local: Callable[[], object], what: str):
    """``local()`` run on rank 0 only; its result (or its error) on every rank."""
    if not active():
        return local()
    if is_root():
        try:
            message = ["ok", local()]
        except Exception as exc:  # noqa: BLE001 - reported to every rank, then re-raised here
            report = [["error", _describe(exc)]]
            _collective(lambda: dist.broadcast_object_list(report, src=0), what)
            raise
    else:
        message = None
    box = [message]
    _collective(lambda: dist.broadcast_object_list(box, src=0), what)
    status, value = box[0]
    if status == "error":
        raise RankFailed(f"rank 0 failed while {what}: {value}")
    return value


def _collective(call: Callable[[], None], what: str) -> None:
    """A collective; a rank that died or timed out becomes ``RankFailed``."""
    try:
        call()
    except RankFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - gloo and nccl raise RuntimeError subclasses of their own
        raise RankFailed(f"lost contact with another rank while {what}: {_describe(exc, kind=False)}") from exc


def _describe(exc: Exception, kind: bool = True) -> str:
    """An exception on one line, as other ranks are told of it."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if kind else text


class Scheduler:
    """Assigns work items to ranks as they come, each to the least loaded
    rank so far (ties: the lowest rank). Every rank runs the same scheduler
    on the same costs, so all agree on the owners without communicating."""

    def __init__(self, ranks: int):
        self.load = [0.0] * ranks

    def assign(self, cost: float) -> int:
        rank = min(range(len(self.load)), key=lambda r: (self.load[r], r))
        self.load[rank] += cost
        return rank


def layer_cost(estimator, n: int, width: int, x_width: int) -> float:
    """Relative cost of one layer's H(T), I(X;T) and I(T;Y) for ``estimator``
    on N samples: what the scheduler balances. Rough operation counts; only
    their ratios matter."""
    from pyfastent.estimators import Discrete, LogDet, Renyi

    if isinstance(estimator, Discrete):
        return float(n * (width + x_width))
    if isinstance(estimator, LogDet):
        side = min(n, width + x_width)
        return 3.0 * (n * (width + x_width) * side + side**3)
    if isinstance(estimator, Renyi) and not estimator.exact_for(n):
        return 24.0 * n * n * (width + x_width)
    return 2.0 * n**3 + n * n * (width + x_width)


class RowShardedKernel:
    """A ``JointKernel`` whose rows are split across the ranks: each rank
    computes the tiles of its own rows of every product A·V and the row
    blocks are gathered, so each rank does 1/P of the work and keeps at
    most 1/P of the tiles. The features are on every rank (N×D); only the
    N×N kernel is split. Every rank must call every method, in the same
    order: they are collectives.
    """

    def __init__(self, kernel, keep_bytes: int = 0):
        rank, ranks = world()
        self.kernel = kernel.keeping(keep_bytes)
        self.size, self.dtype, self.device = kernel.size, kernel.dtype, kernel.device
        step = kernel.tile_rows()
        tiles = math.ceil(self.size / step)
        per_rank = math.ceil(tiles / ranks)  # whole tiles: the same tiles as one process computes
        self.bounds = [(min(r * per_rank * step, self.size), min((r + 1) * per_rank * step, self.size))
                       for r in range(ranks)]
        self.rows = self.bounds[rank]

    def matmul(self, v: torch.Tensor) -> torch.Tensor:
        """A @ v [n, s]: this rank's rows, then every rank's, gathered."""
        start, stop = self.rows
        longest = max(b - a for a, b in self.bounds)
        mine = v.new_zeros(longest, v.shape[1])
        mine[: stop - start] = self.kernel.rows_matmul(v, start, stop)
        parts = [torch.empty_like(mine) for _ in self.bounds]
        _collective(lambda: dist.all_gather(parts, mine), "multiplying by a row-split kernel")
        return torch.cat([part[: b - a] for part, (a, b) in zip(parts, self.bounds)])

    def trace(self) -> float:
        return self.kernel.trace()

    def squared_frobenius(self) -> float:
        """Σ A_ij² in float64: each rank's rows, summed across ranks."""
        total = torch.tensor([self.kernel.rows_squared_frobenius(*self.rows)], dtype=torch.float64,
                             device=self.device)
        _collective(lambda: dist.all_reduce(total), "summing a row-split kernel's squares")
        return float(total)

