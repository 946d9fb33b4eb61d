"""Joint Gram matrices as operators: products with the normalized Gram
matrix A = K/N of a variable or a joint, without storing it when it does not
fit (DESIGN.md 3.1-3.2: a joint's kernel is the elementwise product of its
variables' kernels; RBF factors multiply into one RBF on the concatenated,
width-scaled features).
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist

from pyfastent import _ranks
from pyfastent._distances import distance_rows
from pyfastent.ops._torch_spectrum import squared_norm64

# Rows of one tile: about 64 MiB of float32 per tile, at least 16 rows.
_TILE_ELEMENTS = 1 << 24


class JointKernel:
    """The unit-diagonal kernel K of a joint on a subset of its N samples.

    Args:
        rbf: [N, D] features whose RBF is the product of the joint's RBF
            factors: K_ij = exp(−½‖z_i − z_j‖²) (centred samples divided by
            their widths, variables concatenated), or ``None``.
        linear: [N, D_k] row-normalized features, one per linear factor:
            K_ij = g_i·g_j.
        n_total: N, the normalization of A = K/N.
        index: the samples of this block ([n] int64), ``None`` for all.
    """

    def __init__(self, rbf: torch.Tensor | None, linear: list, n_total: int, index: torch.Tensor | None = None,
                 keep_bytes: int = 0):
        self.rbf = rbf if index is None or rbf is None else rbf[index]
        self.linear = [g if index is None else g[index] for g in linear]
        self.n_total = n_total
        first = self.rbf if self.rbf is not None else self.linear[0]
        self.size = first.shape[0]
        self.dtype = first.dtype
        self.device = first.device
        self._sq = (self.rbf * self.rbf).sum(1) if self.rbf is not None else None  # [n] squared norms
        # Tiles computed once are kept while they fit in ``keep_bytes``: a
        # kernel too large to store whole is then recomputed only in part.
        self._kept: dict = {}
        self._keep_bytes = keep_bytes

    def restrict(self, index: torch.Tensor) -> "JointKernel":
        """The principal block of K on ``index`` (samples of this block)."""
        return JointKernel(self.rbf, self.linear, self.n_total, index)

    def keeping(self, keep_bytes: int) -> "JointKernel":
        """This kernel, keeping up to ``keep_bytes`` of computed tiles."""
        return JointKernel(self.rbf, self.linear, self.n_total, None, keep_bytes)

    def tile(self, start: int, stop: int) -> torch.Tensor:
        """K[start:stop, :] of this block: [stop − start, n]."""
        out = None
        if self.rbf is not None:
            out = distance_rows(self.rbf, self._sq, start, stop).mul_(-0.5).exp_()  # [b, n]
        for g in self.linear:
            part = g[start:stop] @ g.T
            out = part if out is None else out.mul_(part)
        return out

    def tile_rows(self) -> int:
        return max(16, _TILE_ELEMENTS // max(self.size, 1))

    def dense(self) -> torch.Tensor:
        """A = K/N on this block, materialized: [n, n]."""
        return self.tile(0, self.size).div_(self.n_total)

    def matmul(self, v: torch.Tensor) -> torch.Tensor:
        """A @ v for v [n, s], computed tile by tile: no n×n matrix is stored."""
        return self.rows_matmul(v, 0, self.size)

    def rows_matmul(self, v: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """(A @ v)[start:stop] for v [n, s]; ``start`` on a tile boundary
        (a multiple of ``tile_rows()``), so the tiles are the same whichever
        rows are asked for."""
        out = torch.empty(stop - start, v.shape[1], dtype=v.dtype, device=v.device)
        for first, last in self._tiles(start, stop):
            tile = self._kept.get(first)
            if tile is None:
                tile = self.tile(first, last).to(v.dtype)
                if self._keep_bytes >= tile.numel() * tile.element_size():
                    self._kept[first] = tile
                    self._keep_bytes -= tile.numel() * tile.element_size()
            torch.matmul(tile, v, out=out[first - start:last - start])
        return out.div_(self.n_total)

    def _tiles(self, start: int, stop: int):
        step = self.tile_rows()
        return [(first, min(first + step, stop)) for first in range(start, stop, step)]

    def trace(self) -> float:
        """tr A = n/N: K has a unit diagonal."""
        return self.size / self.n_total

    def squared_frobenius(self) -> float:
        """Σ_ij A_ij² in float64, tile by tile."""
        return self.rows_squared_frobenius(0, self.size)

    def rows_squared_frobenius(self, start: int, stop: int) -> float:
        """Σ_ij A_ij² over the rows start:stop, in float64."""
        total = 0.0
        for first, last in self._tiles(start, stop):
            total += float(torch.linalg.vector_norm(self.tile(first, last), dtype=torch.float64)) ** 2
        return total / float(self.n_total) ** 2


class DenseOperator:
    """A stored block of a normalized Gram matrix, with the operator's interface."""

    def __init__(self, matrix: torch.Tensor):
        self.matrix = matrix
        self.size = matrix.shape[0]
        self.dtype = matrix.dtype
        self.device = matrix.device

    def matmul(self, v: torch.Tensor) -> torch.Tensor:
        return self.matrix @ v.to(self.matrix.dtype)

    def dense(self) -> torch.Tensor:
        return self.matrix

    def trace(self) -> float:
        return float(self.matrix.diagonal().sum(dtype=torch.float64))

    def squared_frobenius(self) -> float:
        return float(squared_norm64(self.matrix))


class RowShardedKernel:
    """A ``JointKernel`` whose rows are split across the ranks: each rank
    computes the tiles of its own rows of every product A·V and the row
    blocks are gathered, so each rank does 1/P of the work and keeps at
    most 1/P of the tiles. The features are on every rank (N×D); only the
    N×N kernel is split. Every rank must call every method, in the same
    order: they are collectives.
    """

    def __init__(self, kernel, keep_bytes: int = 0):
        rank, ranks = _ranks.world()
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
        _ranks.collective(lambda: dist.all_gather(parts, mine), "multiplying by a row-split kernel")
        return torch.cat([part[: b - a] for part, (a, b) in zip(parts, self.bounds)])

    def trace(self) -> float:
        return self.kernel.trace()

    def squared_frobenius(self) -> float:
        """Σ A_ij² in float64: each rank's rows, summed across ranks."""
        total = torch.tensor([self.kernel.rows_squared_frobenius(*self.rows)], dtype=torch.float64,
                             device=self.device)
        _ranks.collective(lambda: dist.all_reduce(total), "summing a row-split kernel's squares")
        return float(total)
