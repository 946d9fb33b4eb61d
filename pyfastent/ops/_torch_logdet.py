"""log det of SPD matrices by Cholesky, for the LogDet estimator."""
from __future__ import annotations

import torch


def logdet_spd(m: torch.Tensor, what: str) -> torch.Tensor:
    """log det M for symmetric positive definite M: [..., n, n] -> [...].

    log det M = 2 Σ log diag(L) with M = L Lᵀ. A matrix that is not positive
    definite is a ValueError naming ``what`` (for I + βC it cannot happen
    with finite input, so it means the input overflowed).
    """
    chol, info = torch.linalg.cholesky_ex(m)
    if bool((info != 0).any()):
        raise ValueError(
            f"{what} is not positive definite (Cholesky failed); the input values are too large "
            "for this dtype, or beta is too large"
        )
    return 2.0 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
