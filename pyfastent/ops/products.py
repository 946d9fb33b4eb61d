"""The column-block products behind a reduction (``ops/reduction.py``): a
variable's centred inner products, their standardized copy and its centred
columns, accumulated over blocks of columns so that no float64 copy of the
rows is ever made. By torch (CUDA, autograd, small products) or by the BLAS
behind NumPy on the CPU, where ``a @ a.T`` of one buffer is ``syrk`` (one
triangle computed, then mirrored).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from pyfastent._memory import ensure_square_fits
from pyfastent.ops import threads
from pyfastent.samples import Rows

# Columns are converted, centred and multiplied in blocks of about this many bytes.
BLOCK_BYTES = 1 << 26

# Below this many multiply-adds a product is not worth a pool of threads.
BLAS_WORK = 1 << 27


@dataclass(frozen=True)
class Wanted:
    """Which products a reduction builds."""
    gram: bool  # centred inner products (and the row-mean terms)
    standardized: bool  # inner products of standardized columns
    columns: bool  # the centred columns, float64

    @property
    def any(self) -> bool:
        return self.gram or self.standardized or self.columns


@dataclass(frozen=True)
class ColumnStatistics:
    """Column means and ranges max − min, both float64 [d]."""
    mean: torch.Tensor
    ranges: torch.Tensor


@dataclass(frozen=True)
class Products:
    """What one pass over the column blocks built; ``None`` where not wanted."""
    gram: torch.Tensor | None  # [N, N] centred inner products, in the product dtype
    offset: torch.Tensor | None  # [N] float64, each centred row · the column means
    standardized: torch.Tensor | None  # [N, N] float64, inner products of standardized columns
    columns: torch.Tensor | None  # [N, d] float64, the centred columns
    statistics: ColumnStatistics | None = None  # taken on the way when no mean was given


def blocks(rows: Rows, dtype: torch.dtype, workers: int = 1) -> list:
    """Column ranges of about ``BLOCK_BYTES`` in ``dtype`` at N rows, and at
    least two per worker when the columns allow blocks of 256 or more;
    whole channels for per-channel rows, so that a channel never straddles two."""
    d, n = rows.width, rows.n
    itemsize = torch.empty((), dtype=dtype).element_size()
    if rows.channels is not None:
        per_channel = d // rows.channels
        step = per_channel * max(1, BLOCK_BYTES // max(1, n * per_channel * itemsize))
    else:
        step = _flat_step(n, d, itemsize, workers)
    return [(s, min(s + step, d)) for s in range(0, d, step)]


def _flat_step(n: int, d: int, itemsize: int, workers: int) -> int:
    step = max(1, BLOCK_BYTES // max(1, n * itemsize))
    return min(step, max(256, -(-d // (2 * workers))))


def widest_block_bytes(n: int, d: int, workers: int) -> int:
    """Bytes of the widest float64 column block ``blocks`` cuts from N rows
    of d flat features (at most ``BLOCK_BYTES``)."""
    return n * 8 * min(d, max(_flat_step(n, d, 8, workers), 1))


def on_blas(rows: Rows, work: int) -> bool:
    """Whether the products go to the BLAS behind NumPy (CPU, no autograd, big enough)."""
    return rows.device.type == "cpu" and not any(p.requires_grad for p in rows.parts) and work >= BLAS_WORK


def guard_products(rows: Rows, want: Wanted, column_blocks: list, dtype: torch.dtype, blas: bool) -> None:
    """MemoryError before work unless, per worker, its sums, one block's
    product (BLAS path) and its block of centred columns (and their
    standardized copy) fit."""
    if want.gram or want.standardized:
        n = rows.n
        workers = threads.workers() if blas else 1
        products = want.gram + want.standardized
        block = max(b - a for a, b in column_blocks) / n * (1 + want.standardized)
        copies = workers * (products * (1 + blas) + block)
        ensure_square_fits(n, dtype, rows.device, copies, f"the Gram matrix of {rows.name}")


def torch_products(rows: Rows, column_blocks: list, mean: torch.Tensor, scale, dtype: torch.dtype,
                   want: Wanted) -> Products:
    """The products by torch: on CUDA, under autograd (differentiable), and
    for small products on the CPU. ``mean`` [d] float64; ``scale`` [d] the
    inverse standard deviations, read only for the standardized product."""
    n, d, device = rows.n, rows.width, rows.device
    gram = torch.zeros(n, n, dtype=dtype, device=device) if want.gram else None
    offset = torch.zeros(n, dtype=torch.float64, device=device) if want.gram else None
    sgram = torch.zeros(n, n, dtype=torch.float64, device=device) if want.standardized else None
    columns = torch.empty(n, d, dtype=torch.float64, device=device) if want.columns else None
    for start, stop in column_blocks:
        block = rows.block(start, stop).to(dtype) - mean[start:stop].to(dtype)  # [N, c], centred
        if gram is not None:
            gram = gram + block @ block.T if block.requires_grad else gram.addmm_(block, block.T)
            offset = offset + (block @ mean[start:stop].to(dtype)).double()
        if sgram is not None:
            standardized = block.to(torch.float64) * scale[start:stop]
            sgram.addmm_(standardized, standardized.T)
        if columns is not None:
            columns[:, start:stop] = block
    return Products(gram, offset, sgram, columns)


def blas_products(rows: Rows, column_blocks: list, mean, scale, dtype: torch.dtype, want: Wanted) -> Products:
    """The same products by NumPy on the CPU. The column blocks are dealt to
    ``threads.workers()`` threads, each running single-threaded BLAS into its
    own accumulators, summed at the end (``pyfastent.ops.threads`` says why).
    With ``mean=None`` each worker also takes its blocks' column means and
    ranges, so the rows are read once (``Products.statistics``)."""
    n, d = rows.n, rows.width
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    parts = [p.reshape(p.shape[0], -1).numpy() for p in rows.parts]
    stats = mean is None
    mean_np = np.empty(d) if stats else mean.numpy()
    ranges_np = np.empty(d) if stats else None
    scale_np = scale.numpy() if scale is not None else None
    columns = torch.empty(n, d, dtype=torch.float64) if want.columns else None
    columns_np = columns.numpy() if columns is not None else None
    widest = max(stop - start for start, stop in column_blocks)

    def work(mine: list):
        gram = np.zeros((n, n), np_dtype) if want.gram else None
        offset = np.zeros(n, np_dtype) if want.gram else None
        sgram = np.zeros((n, n)) if want.standardized else None
        product = np.empty((n, n), np_dtype) if want.gram else None
        sproduct = np.empty((n, n)) if want.standardized else None
        buffer = np.empty((n, widest), np_dtype)
        for start, stop in mine:
            block = buffer[:, : stop - start]
            if stats:  # disjoint slices per block: no two threads write the same element
                sums = functools.reduce(np.add, [p[:, start:stop].sum(axis=0, dtype=np.float64) for p in parts])
                mean_np[start:stop] = sums / n
                lo = functools.reduce(np.minimum, [p[:, start:stop].min(axis=0) for p in parts])
                hi = functools.reduce(np.maximum, [p[:, start:stop].max(axis=0) for p in parts])
                ranges_np[start:stop] = hi.astype(np.float64) - lo
            first = 0
            for part in parts:  # centred, converted, concatenated in one pass
                np.subtract(part[:, start:stop], mean_np[start:stop], out=block[first:first + part.shape[0]])
                first += part.shape[0]
            if gram is not None:
                np.matmul(block, block.T, out=product)
                gram += product
                offset += block @ mean_np[start:stop].astype(np_dtype)
            if sgram is not None:
                standardized = block.astype(np.float64) * scale_np[start:stop]
                np.matmul(standardized, standardized.T, out=sproduct)
                sgram += sproduct
            if columns_np is not None:
                columns_np[:, start:stop] = block
        return gram, offset, sgram

    count = threads.workers()
    with threads.side_by_side(count) as pool:
        results = list(pool.map(work, [column_blocks[i::count] for i in range(count)]))
    gram = offset = sgram = None
    if want.gram:
        gram = torch.from_numpy(functools.reduce(np.add, [r[0] for r in results]))
        offset = torch.from_numpy(functools.reduce(np.add, [r[1] for r in results]).astype(np.float64))
    if want.standardized:
        sgram = torch.from_numpy(functools.reduce(np.add, [r[2] for r in results]))
    statistics = ColumnStatistics(torch.from_numpy(mean_np), torch.from_numpy(ranges_np)) if stats else None
    return Products(gram, offset, sgram, columns, statistics)
