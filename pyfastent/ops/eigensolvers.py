"""The eigenvalues-only drivers the eigensolver plan (``pyfastent.ops.eigen``)
chooses among: torch's ``eigvalsh`` (one call, a stack batched), and NumPy's
and SciPy's LAPACK run side by side on single-threaded BLAS calls; and the
padded stacks small matrices are solved in."""
from __future__ import annotations

import math

import numpy as np
import torch

from pyfastent import settings
from pyfastent.ops import threads


def size_class(n: int) -> int:
    """The power of two at or above n: matrices of one class cost alike."""
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def _float64_numpy(m: torch.Tensor) -> np.ndarray:
    """A float64 NumPy view of m (no copy for a contiguous float64 CPU tensor)."""
    return m.detach().to(torch.float64).contiguous().numpy()


def torch_solve(matrices: list) -> list:
    if len(matrices) > 1 and all(m.dim() == 2 for m in matrices) and len({m.shape for m in matrices}) == 1:
        return list(torch.linalg.eigvalsh(torch.stack([m.to(torch.float64) for m in matrices])))
    return [torch.linalg.eigvalsh(m.to(torch.float64)) for m in matrices]


def _numpy_one(m: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.linalg.eigvalsh(_float64_numpy(m), UPLO="L"))  # a stack in one call


def _scipy_one(driver: str):
    def solve(m: torch.Tensor) -> torch.Tensor:
        import scipy.linalg

        if m.dim() == 3:
            return torch.stack([solve(one) for one in m])
        values = scipy.linalg.eigh(_float64_numpy(m), eigvals_only=True, driver=driver, lower=True,
                                   check_finite=False)
        return torch.from_numpy(values)

    return solve


def side_by_side(solve_one):
    """``solve_one`` on the matrices side by side, a stack cut into as many
    pieces as there are threads."""
    def solve(matrices: list) -> list:
        count = threads.workers()
        pieces, shape = [], []
        for m in matrices:
            parts = list(torch.chunk(m, min(count, m.shape[0]))) if m.dim() == 3 else [m]
            pieces += parts
            shape.append(len(parts))
        if len(pieces) == 1:
            with threads.side_by_side(1):  # one BLAS thread: no pool left spinning
                solved = [solve_one(pieces[0])]
        else:
            with threads.side_by_side(count) as pool:
                solved = list(pool.map(solve_one, pieces))
        out, first = [], 0
        for k in shape:
            out.append(solved[first] if k == 1 else torch.cat(solved[first:first + k]))
            first += k
        return out

    return solve


def available_drivers() -> tuple:
    """The drivers this process can use (SciPy's only when it is installed)."""
    try:
        import scipy.linalg  # noqa: F401

        return settings.EIGENSOLVERS
    except ImportError:
        return ("torch", "numpy")


SOLVERS = {"torch": torch_solve, "numpy": side_by_side(_numpy_one), "scipy-evd": side_by_side(_scipy_one("evd")),
            "scipy-evr": side_by_side(_scipy_one("evr"))}


def padded(matrices: list) -> list:
    """Eigenvalues of small matrices [n_i, n_i] in one torch call per size
    class: each padded to the class's largest n with c·I below every
    spectrum (c = −2·max‖A_i‖_F − 1, so its eigenvalues come first and
    are dropped), stacked. One call for many small matrices (class blocks
    of a joint with many labels) instead of one each."""
    out: list = [None] * len(matrices)
    groups: dict = {}
    for i, m in enumerate(matrices):
        groups.setdefault(size_class(m.shape[-1]), []).append(i)
    for indices in groups.values():
        if len(indices) == 1:
            out[indices[0]] = torch_solve([matrices[indices[0]]])[0]
            continue
        ms = [matrices[i].to(torch.float64) for i in indices]
        side = max(m.shape[-1] for m in ms)
        c = -2.0 * max(float(torch.linalg.matrix_norm(m)) for m in ms) - 1.0
        stack = torch.zeros(len(ms), side, side, dtype=torch.float64)
        stack.diagonal(dim1=-2, dim2=-1).fill_(c)
        for k, m in enumerate(ms):
            n = m.shape[-1]
            stack[k, :n, :n] = m
        values = torch.linalg.eigvalsh(stack)
        for k, i in enumerate(indices):
            out[i] = values[k, side - ms[k].shape[-1]:].clone()
    return out
