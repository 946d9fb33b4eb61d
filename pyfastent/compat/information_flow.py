"""The entropy functions of "Layer by Layer" (Skean et al., ICML 2025; code:
OFSkean/information_flow, ``experiments/utils/misc``), on pyfastent.

Replace ``from utils.misc.metric_utils import compute_entropy,
entropy_normalization`` (and ``model_dataloader_utils.normalize``) with
``from pyfastent.compat.information_flow import ...``: the same signatures,
return types and numbers (checked against values that code computed,
``tests/fixtures/representation_values.json``, to 1e-9), with the spectra of
all layers solved in one batch.

That code's conventions, reproduced here, differ from pyfastent's own
token-level measures (``pyfastent.prompt_entropy``, ``dataset_entropy``):
- it clamps the Gram matrix (or, with more tokens than dimensions, the
  D × D matrix) at 0 elementwise before the spectrum, so its matrix is not
  the linear kernel of the tokens any more (nor always positive
  semidefinite: negative eigenvalues are then dropped);
- at α = 2 it takes repitl's shortcut Σ K² / dim(K)², which assumes
  trace K = dim K: true for unit-norm tokens on the token side, not on the
  D × D side nor for mean-pooled vectors (prompt 2 of the fixture: 3.0306
  nats where −ln(‖K‖²_F / (tr K)²) is 3.8623);
- its dataset entropy pools the token-centred, normalized states (the
  output of ``normalize``), where ``dataset_entropy`` pools the raw states
  and normalizes the pooled vectors.
Where that code would divide by zero (a row equal to its mean in
``normalize``), these functions raise a ValueError instead of returning NaN.
"""
from __future__ import annotations

import math

import torch

from pyfastent import _checks
from pyfastent.ops.eigen import symmetric_eigenvalues
from pyfastent.token_measures import NORMALIZATIONS

__all__ = ["compute_entropy", "entropy_normalization", "normalize"]


def normalize(R):
    """R [N, D] with its rows centred (over the N rows) and each divided by
    its L2 norm: a new tensor (``model_dataloader_utils.normalize``)."""
    r = _checks.as_tensor("R", R)
    if r.dim() != 2:
        raise ValueError(f"R must be a matrix [N, D], got shape {tuple(r.shape)}")
    with torch.no_grad():
        r = r - r.mean(dim=0)
        norms = torch.linalg.vector_norm(r, dim=1, keepdim=True)
        if not bool((norms > 0).all()):
            raise ValueError(f"R: row {int(torch.nonzero(norms.flatten() <= 0)[0])} equals the mean of the rows; "
                             "its normalized row is undefined (that code returns NaN)")
        return r / norms


def entropy_normalization(entropy, normalization, N, D):
    """``entropy`` (nats) divided as ``normalization`` says: ``"maxEntropy"``
    (ln min(N, D)), ``"logN"``, ``"logD"``, ``"logNlogD"`` (ln N · ln D) or
    ``"raw"``; natural logarithms."""
    _checks.choice("normalization", normalization, NORMALIZATIONS)
    if normalization == "maxEntropy":
        return entropy / min(math.log(N), math.log(D))
    if normalization == "logN":
        return entropy / math.log(N)
    if normalization == "logD":
        return entropy / math.log(D)
    if normalization == "logNlogD":
        return entropy / (math.log(N) * math.log(D))
    return entropy


def compute_entropy(hidden_states, alpha=1, normalizations=["maxEntropy"]):  # noqa: B006 - that code's signature
    """Per layer, repitl's ``matrixAlphaEntropy`` of max(H·Hᵀ, 0) (or of
    max(Hᵀ·H, 0) when N > D), normalized each way asked.

    Args:
        hidden_states: [L, N, D], each layer's rows already ``normalize``d.
        alpha: the order α.
        normalizations: names from ``entropy_normalization``.

    Returns:
        dict: normalization -> list of L floats.
    """
    h = _checks.as_tensor("hidden_states", hidden_states)
    if h.dim() != 3:
        raise ValueError(f"hidden_states must be [L, N, D], got shape {tuple(h.shape)}")
    alpha = _checks.alpha_order(alpha)
    for norm in normalizations:
        _checks.choice("normalizations", norm, NORMALIZATIONS)
    _, n, d = h.shape
    h = h.detach().to(torch.float64)
    kernel = (h.transpose(1, 2) @ h if n > d else h @ h.transpose(1, 2)).clamp_(min=0)
    if alpha == 2.0:  # repitl's shortcut: Σ K² / dim(K)²
        nats = [-math.log(float((k * k).sum()) / k.shape[0] ** 2) for k in kernel]
    else:
        (eig,) = symmetric_eigenvalues([kernel])
        nats = [_repitl_entropy(e, alpha) for e in eig]
    return {norm: [entropy_normalization(x, norm, n, d) for x in nats] for norm in normalizations}


def _repitl_entropy(eig: torch.Tensor, alpha: float) -> float:
    """repitl's entropy of a spectrum: the positive eigenvalues, divided by their sum."""
    lam = eig[eig > 0]
    lam = lam / lam.sum()
    if alpha == 1.0:
        return float(-(lam * lam.log()).sum())
    return float(torch.log((lam**alpha).sum()) / (1.0 - alpha))
