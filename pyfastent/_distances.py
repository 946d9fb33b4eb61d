"""Pairwise squared distances of samples, from the samples or from their
inner products: what kernels and width rules read, below both (``widths``
and ``ops``)."""
from __future__ import annotations

import torch


def squared_distances(x: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances of the rows of x: [N, D] -> [N, N].

    Rows are centred first: distances do not change, and the expansion
    ‖a‖² + ‖b‖² − 2a·b then loses far fewer digits to cancellation. One
    N×N matrix is allocated; the expansion is applied to it in place.
    """
    x = x - x.mean(dim=0, keepdim=True)
    return distance_rows(x, (x * x).sum(dim=1), 0, x.shape[0])


def distance_rows(x: torch.Tensor, norms: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """‖x_i − x_j‖² for the rows i in start:stop against every row j of x:
    [stop − start, N], from the squared norms [N] of the rows; x should be
    centred. One matrix of that size is allocated."""
    d = torch.addmm(norms[None, :], x[start:stop], x.T, alpha=-2.0)  # the column norms ride on the product
    d.add_(norms[start:stop, None]).clamp_(min=0.0)  # round-off can make tiny distances negative
    d.diagonal(offset=start).fill_(0.0)  # each sample's own distance
    return d


def distances_from_gram(g: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """‖x_i − x_j‖² = g_ii + g_jj − 2·g_ij from inner products g [N, N],
    clamped at 0 with a zero diagonal: the expansion ``distance_rows`` uses
    on centred rows. In place of g when ``dtype`` is g's (or ``None``);
    otherwise a new [N, N] tensor of ``dtype``, computed in g's precision a
    block of rows at a time."""
    diag = g.diagonal().clone()
    if dtype is None or dtype == g.dtype:
        g.mul_(-2.0).add_(diag[:, None]).add_(diag[None, :]).clamp_(min=0.0)
        g.diagonal().fill_(0.0)
        return g
    n = g.shape[0]
    out = torch.empty(n, n, dtype=dtype, device=g.device)
    rows = max(16, (1 << 22) // max(n, 1))
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        block = (g[start:stop] * -2.0).add_(diag[start:stop, None]).add_(diag[None, :]).clamp_(min=0.0)
        out[start:stop] = block
    out.diagonal().fill_(0.0)
    return out
