"""The metric functions of "Layer by Layer" (Skean et al., ICML 2025; code:
OFSkean/information_flow, ``experiments/utils/misc``), on pyfastent.

Replace ``from utils.misc.metric_utils import compute_entropy,
entropy_normalization, compute_lidar, compute_dime, compute_infonce,
compute_curvature`` (and ``model_dataloader_utils.normalize``) with
``from pyfastent.compat.information_flow import ...``: the same signatures,
return types and numbers (checked against values that code computed,
``tests/fixtures/representation_values.json``: 161 value lists, to 1e-9;
its float32 LiDAR to 1e-5). Each function's docstring says what that code
does that a user would not expect, and the one place where these differ
(NaN where that code returns NaN is never returned).

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
from pyfastent.view_measures import LIDAR_DELTA, contrastive_loss

__all__ = ["compute_curvature", "compute_dime", "compute_entropy", "compute_infonce", "compute_lidar",
           "entropy_normalization", "normalize"]


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
        hidden_states: [L, N, D], each layer's rows already through ``normalize``.
        alpha: the order α.
        normalizations: names from ``entropy_normalization``.

    Returns:
        dict: normalization -> list of L floats.
    """
    h = _checks.as_tensor("hidden_states", hidden_states)
    if h.dim() != 3:
        raise ValueError(f"hidden_states must be [L, N, D], got shape {tuple(h.shape)}")
    alpha = _checks.alpha_order(alpha)
    _check_normalizations(normalizations)
    _, n, d = h.shape
    h = h.detach().to(torch.float64)
    kernel = (h.transpose(1, 2) @ h if n > d else h @ h.transpose(1, 2)).clamp_(min=0)
    if alpha == 2.0:  # repitl's shortcut: Σ K² / dim(K)²
        nats = [-math.log(float((k * k).sum()) / k.shape[0] ** 2) for k in kernel]
    else:
        (eig,) = symmetric_eigenvalues([kernel])
        nats = [_repitl_entropy(e, alpha) for e in eig]
    return {norm: [entropy_normalization(x, norm, n, d) for x in nats] for norm in normalizations}


def compute_lidar(hidden_states, alpha=1, normalizations=["maxEntropy"]):  # noqa: B006 - that code's signature
    """Per layer, repitl's ``matrixAlphaEntropy`` of that code's LDA matrix
    (``compute_LDA_matrix``) of [L, NUM_SAMPLES, NUM_AUG, D] pooled views,
    normalized with N = NUM_SAMPLES.

    As that code: S_b and S_w (δ = 1e-4) accumulate in torch's default
    dtype, float32 unless changed (so do both eigendecompositions and M,
    within 1.75e-6 of float64 on the fixtures), and α = 2 is Σ M² / D²
    (M is not trace-normalized there: up to 6.7 nats from
    −ln(‖M‖²_F / (tr M)²)). ``pyfastent.lidar`` is float64 and trace-normalized.

    Returns:
        dict: normalization -> list of L floats.
    """
    h = _layered("hidden_states", hidden_states, 4)
    alpha = _checks.alpha_order(alpha)
    _check_normalizations(normalizations)
    layers, n, views, d = h.shape
    dtype = torch.get_default_dtype()
    nats = []
    for layer in h.detach().to(torch.float64):
        centres = layer.mean(1)  # [n, D]
        mean = layer.reshape(-1, d).mean(0)
        between = torch.zeros((d, d), dtype=dtype)
        for c in centres - mean:
            between += torch.outer(c, c)
        between /= n
        within = torch.zeros((d, d), dtype=dtype)
        for sample, centre in zip(layer, centres):
            for view in sample - centre:
                within += torch.outer(view, view)
        within = within / (n * views) + LIDAR_DELTA * torch.eye(d, dtype=dtype)
        w, u = torch.linalg.eigh(within)
        root = u @ torch.diag(w ** -0.5) @ u.T
        lda = root @ between @ root
        if alpha == 2.0:
            nats.append(-math.log(float((lda * lda).sum()) / d ** 2))
        else:
            nats.append(_repitl_entropy(torch.linalg.eigvalsh(lda), alpha))
    return {norm: [entropy_normalization(x, norm, n, d) for x in nats] for norm in normalizations}


def compute_dime(hidden_states, alpha=1, normalizations=["maxEntropy"]):  # noqa: B006 - that code's signature
    """Per layer, repitl's ``doe`` of two views [L, NUM_SAMPLES, 2, D]: the
    mean over 10 permutations P of H_α(Kx ∘ P·Ky·Pᵀ) − H_α(Kx ∘ Ky), with
    Kx = XᵀX and Ky = YᵀY (D × D) when NUM_SAMPLES > D, else X·Xᵀ and Y·Yᵀ;
    normalized with N = NUM_SAMPLES.

    As that code: the permutations are ``torch.randperm`` on torch's global
    generator (10 per layer, layer 0 first: seed it to repeat a value); α = 2
    is Σ K² / dim(K)² of the unnormalized Hadamard product; in the D × D
    branch the value cannot see how the views are paired (re-pairing them
    changes it by round-off only). ``pyfastent.dime`` always compares the
    prompts' side, with its own seeded generator.

    Returns:
        dict: normalization -> list of L floats.
    """
    h = _layered("hidden_states", hidden_states, 4)
    alpha = _checks.alpha_order(alpha)
    _check_normalizations(normalizations)
    layers, n, views, d = h.shape
    if views != 2:
        raise ValueError(f"hidden_states must hold 2 views per sample (NUM_AUG = 2), got {views}")
    nats = []
    for layer in h.detach().to(torch.float64):
        x, y = layer[:, 0], layer[:, 1]
        kx, ky = (x.T @ x, y.T @ y) if n > d else (x @ x.T, y @ y.T)
        draws = [torch.randperm(kx.shape[0]) for _ in range(10)]
        joint = [kx * ky[p][:, p] for p in draws] + [kx * ky]
        if alpha == 2.0:
            values = [-math.log(float((k * k).sum()) / k.shape[0] ** 2) for k in joint]
        else:
            values = [_repitl_entropy(e, alpha) for e in symmetric_eigenvalues([torch.stack(joint)])[0]]
        nats.append(sum(values[:-1]) / 10 - values[-1])
    return {norm: [entropy_normalization(x, norm, n, d) for x in nats] for norm in normalizations}


def compute_infonce(hidden_states, temperature=0.1):
    """Per layer, that code's InfoNCE loss (nats) of two views
    [L, NUM_SAMPLES, 2, D] on the raw pooled vectors (no L2
    normalization): −mean_i ln(pos_i / (pos_i + neg_i)) over the 2N rows.

    Computed in log-sum-exp form: equal where that code's exp(z·z/τ) is
    finite, and a number where it overflows to NaN. ``pyfastent.infonce``
    normalizes the vectors first, as SimCLR does.

    Returns:
        dict: ``{"raw": list of L floats}``.
    """
    h = _layered("hidden_states", hidden_states, 4)
    temperature = _checks.positive_number("temperature", temperature)
    if h.shape[2] != 2:
        raise ValueError(f"hidden_states must hold 2 views per sample (NUM_AUG = 2), got {h.shape[2]}")
    z = torch.cat([h[:, :, 0], h[:, :, 1]], dim=1).detach().to(torch.float64)  # [L, 2N, D]
    return {"raw": contrastive_loss(z, temperature).tolist()}


def compute_curvature(hidden_states, k=1):
    """Per layer, that code's curvature of one prompt [L, n_tokens, D]
    (rows already through ``normalize``): the mean over i of arccos(h_i · h_{i+k}),
    the angle between the normalized *states* i and i + k, not between the
    steps of the trajectory; 0 when n_tokens ≤ k.

    One difference: where a rounded h_i · h_{i+k} exceeds 1 (a repeated or
    parallel state), that code returns NaN; this clamps the cosine to 1
    and counts the angle as 0. ``pyfastent.curvature`` measures the angles
    between steps (Hosseini & Fedorenko 2023).

    Returns:
        dict: ``{"raw": radians per layer, "logD": radians / ln D}``.
    """
    h = _layered("hidden_states", hidden_states, 3)
    k = _checks.positive_int("k", k)
    _, n, d = h.shape
    h = h.detach().to(torch.float64)
    if n <= k:
        raw = [0] * h.shape[0]
    else:
        cosine = (h[:, :-k] * h[:, k:]).sum(-1).clamp(max=1.0)
        raw = torch.arccos(cosine).mean(1).tolist()
    return {"raw": raw, "logD": [r / math.log(d) for r in raw]}


def _layered(name: str, value, dims: int) -> torch.Tensor:
    h = _checks.as_tensor(name, value)
    if h.dim() != dims:
        shape = "[L, NUM_SAMPLES, NUM_AUG, D]" if dims == 4 else "[L, n_tokens, D]"
        raise ValueError(f"{name} must be {shape}, got shape {tuple(h.shape)}")
    return h


def _check_normalizations(normalizations) -> None:
    for norm in normalizations:
        _checks.choice("normalizations", norm, NORMALIZATIONS)


def _repitl_entropy(eig: torch.Tensor, alpha: float) -> float:
    """repitl's entropy of a spectrum: the positive eigenvalues, divided by their sum."""
    lam = eig[eig > 0]
    lam = lam / lam.sum()
    if alpha == 1.0:
        return float(-(lam * lam.log()).sum())
    return float(torch.log((lam**alpha).sum()) / (1.0 - alpha))
