"""Features whose kernel is a variable's: what estimators read instead of its
N×N Gram matrix when they never store it (the randomized method's
``pyfastent.ops.operators.JointKernel``)."""
from __future__ import annotations

import torch

from pyfastent import _checks
from pyfastent.samples import Observations
from pyfastent.widths import WidthRule


def kernel_features(obs: Observations, kernel: str, rule: WidthRule, name: str) -> tuple[torch.Tensor, str, tuple]:
    """Features whose kernel is the variable's, for estimators that never
    store its N×N Gram matrix (``pyfastent.ops.operators.JointKernel``).

    Returns:
        (features, kind, sigmas): for ``"rbf"``, the centred samples divided
        by their width, K_ij = exp(−½‖f_i − f_j‖²) ((N, C, D) channels:
        each channel divided by its own σ_c and concatenated, the Hadamard
        product of the channel kernels); for ``"linear"``, the samples
        divided by their norms, K_ij = f_i·f_j. Float32 unless the data is
        float64 (or must be, to keep squared distances finite).
    """
    values = obs.values
    dtype = _checks.overflow_safe_dtype(name, values.reshape(obs.n, -1), centred=kernel != "linear")
    x = values.to(dtype)
    if kernel == "linear":
        flat = x.reshape(obs.n, -1)
        norms = torch.linalg.vector_norm(flat, dim=1, keepdim=True)
        if not bool((norms > 0).all()):
            bad = int((norms <= 0).sum())
            raise ValueError(f"{name} has {bad} samples with K_ii <= 0 (all-zero rows under the linear kernel); "
                             "the normalized Gram matrix is undefined for them")
        return flat / norms, "linear", ()
    channels = [x[:, c] for c in range(x.shape[1])] if x.dim() == 3 else [x]
    parts, sigmas = [], []
    for ch in channels:
        centred = ch - ch.mean(dim=0, keepdim=True)
        sigma = rule.of_samples(centred.detach(), name)
        sigmas.append(sigma)
        parts.append(centred / sigma)
    return torch.cat(parts, dim=1), "rbf", tuple(sigmas)
