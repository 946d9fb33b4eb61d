"""Gram matrices of sequences' tokens, one per sequence and layer, built
side by side on single-threaded BLAS and zero-padded into stacks of
similar length (``length_buckets``), for the token-level measures
(``pyfastent.token_measures``): the per-sequence builder beside the other
Gram builders of ``ops``."""
from __future__ import annotations

import numpy as np
import torch

from pyfastent.ops import threads

# Sequences whose lengths round up to the same multiple of this are padded together.
BUCKET = 8


def centred_unit(z: np.ndarray) -> np.ndarray:
    """Rows [n, D] centred over the n rows and scaled to unit norm, in
    their precision (float32 at least: float32 states lose nothing they
    had, NumPy sums pairwise, and their entropies stay within 1e-4 bits of
    float64 ones; benchmarks/bench_tokens.py checks it). A row at the mean
    has no direction and stays zero."""
    z = z - z.mean(0)
    norms = np.sqrt(np.einsum("ij,ij->i", z, z))
    z /= np.where(norms > 0, norms, 1)[:, None]
    return z


def feature_centred(z: np.ndarray) -> np.ndarray:
    """Rows [n, D] in float64, each centred over its own D features (LLM-Check's
    J_d): the ridge of 1e-3 is below float32 round-off of their Gram matrix."""
    z = z.astype(np.float64)
    return z - z.mean(1, keepdims=True)


def token_kernels(x: torch.Tensor, real: torch.Tensor, members: torch.Tensor, size: int, prepare=centred_unit,
             tokens_side: bool = False) -> torch.Tensor:
    """The linear kernels of real rows through ``prepare`` (default: centred unit
    rows) of the sequences ``members``, every layer: float64 [L·b, k, k]
    (layer-major), k = size on the tokens side, or D when size > D and not
    ``tokens_side`` (the features side, Zᵀ·Z, with the same nonzero
    eigenvalues); rows and columns past a sequence's tokens are zero,
    adding zero eigenvalues. One sequence and layer per BLAS call (a
    symmetric product: one triangle), side by side on single-threaded BLAS
    (``pyfastent.ops.threads``)."""
    layers, dim = x.shape[0], x.shape[-1]
    features = size > dim and not tokens_side
    side = dim if features else size
    data = x.to(kernel_dtype(x.dtype)).numpy()
    out = np.zeros((layers * len(members), side, side))
    rows = [torch.nonzero(real[b]).flatten().numpy() for b in members.tolist()]
    jobs = [(layer, j, b) for j, b in enumerate(members.tolist()) for layer in range(layers)]

    def fill(chunk):
        for layer, j, b in chunk:
            index = rows[j]
            contiguous = index[-1] + 1 - index[0] == len(index)  # one run of real tokens: a view
            z = prepare(data[layer, b, index[0]:index[-1] + 1] if contiguous else data[layer, b, index])
            kernel = z.T @ z if features else z @ z.T
            out[layer * len(members) + j, :kernel.shape[0], :kernel.shape[1]] = kernel

    count = threads.workers()
    with threads.side_by_side(count) as pool:
        list(pool.map(fill, [jobs[i::count] for i in range(count)]))
    return torch.from_numpy(out)


def kernel_dtype(states: torch.dtype) -> torch.dtype:
    """The dtype token kernels are computed in: float64 for float64 states,
    else float32 (half-precision states are widened first)."""
    return torch.float64 if states == torch.float64 else torch.float32


def length_buckets(counts: torch.Tensor):
    """(sequence indices, padded size) of sequences whose token counts round
    up to the same multiple of ``BUCKET``."""
    sizes = (counts + BUCKET - 1) // BUCKET * BUCKET
    for size in torch.unique(sizes).tolist():
        yield torch.nonzero(sizes == size).flatten(), int(size)
