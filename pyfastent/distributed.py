"""Several processes, one answer: pyfastent on ``torch.distributed``.

When the default process group is initialized (``torchrun``, or your own
``init_process_group``) with more than one rank:

- ``layer_sweep`` and ``InformationPlane.step`` split the layers across
  the ranks, whole layers (every estimator of a layer on one rank, so its
  reduction is built once), balanced by their estimated cost, and every
  rank gets every row back, in the single-process order. Every rank runs the
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
group of two or more ranks. The rank queries and collectives live in
``pyfastent._ranks`` (below ``pyfastent.ops``, which needs them too) and
the row-split kernel in ``pyfastent.ops.operators``; this module adds what
sweeps need and names it all in one place.
"""
from __future__ import annotations

from torch import nn

from pyfastent._ranks import RankFailed, active, from_root, gather, is_root, world
from pyfastent.estimators import Discrete, LogDet, Renyi
from pyfastent.ops.operators import RowShardedKernel

__all__ = ["RankFailed", "RowShardedKernel", "Scheduler", "active", "from_root", "gather", "is_root", "layer_cost",
           "unwrap", "world"]


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` (or ``DataParallel``):
    its layer names are the single-process ones, and a forward pass through
    it runs no collective (DDP would broadcast its buffers)."""
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return model.module
    return model


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
    if isinstance(estimator, Discrete):
        return float(n * (width + x_width))
    if isinstance(estimator, LogDet):
        side = min(n, width + x_width)
        return 3.0 * (n * (width + x_width) * side + side**3)
    if isinstance(estimator, Renyi) and not estimator.exact_for(n):
        return 24.0 * n * n * (width + x_width)
    return 2.0 * n**3 + n * n * (width + x_width)
