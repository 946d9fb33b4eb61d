"""Measures of several views of each prompt (augmentations, paraphrases):
how well a layer keeps a prompt's views together and apart from other
prompts' (Skean et al., "Layer by Layer", ICML 2025, section 3).

Every view is given as token states, ``[B, T, D]``, ``[L, B, T, D]`` or a
list of L ``[B, T, D]`` (B prompts, the same prompts in the same order in
every view), with its own ``[B, T]`` mask; each view of a prompt is
represented by the mean of its real tokens' raw states (as
``dataset_entropy`` pools them). Every layer of a call is measured.

- ``dime``: matrix-based mutual information of two views against random
  re-pairings (DiME);
- ``lidar``: the α-entropy of the LDA matrix of the views (LiDAR, Thilak et
  al., ICLR 2024);
- ``infonce``: the contrastive loss of two views (InfoNCE, van den Oord et
  al. 2018, as SimCLR computes it).

``pyfastent.compat.information_flow`` reproduces that paper's code, whose
conventions differ (its docstrings say where).
"""
from __future__ import annotations

import math
import warnings

import torch

from pyfastent import _checks
from pyfastent._warnings import SaturationWarning
from pyfastent.estimators import Renyi
from pyfastent.measures import mutual_information
from pyfastent.ops import spectrum_renyi_nats
from pyfastent.ops.eigen import symmetric_eigenvalues
from pyfastent.significance import permutation_test
from pyfastent.ops.tokens import centred_unit
from pyfastent.token_measures import NORMALIZATIONS, checked_states, mean_states, normalized

LIDAR_DELTA = 1e-4  # the ridge of the within-class scatter in Thilak et al. (2024) and Skean et al.'s code
INFONCE_TEMPERATURE = 0.1  # Skean et al.'s evaluation (mteb-harness.py)


def dime(view_a, view_b, mask_a=None, mask_b=None, alpha: float = 1.0, base: float = 2,
         normalization: str = "raw", permutations: int = 10, seed: int = 0) -> torch.Tensor:
    """DiME (Skean et al., 2025): how much more two views of the same
    sequences agree than views of random pairs of sequences,
    E_P[S_α(A ∘ P·B·Pᵀ)] − S_α(A ∘ B), A and B the linear kernels of the two
    views' pooled states, centred across sequences with unit rows, and P
    random permutations of the sequences (``permutations`` of them, drawn
    with ``seed``, the same for every layer). Always on the sequences'
    side: that paper's code switches to D × D covariances when B > D,
    where re-pairing the views cannot change the value.

    Args:
        view_a, view_b: the two views' states, shaped alike.
        mask_a, mask_b: their masks.
        alpha, base, normalization: as ``prompt_entropy`` (n = B).

    Returns:
        a float64 scalar tensor (or [L]).
    """
    _checks.choice("normalization", normalization, NORMALIZATIONS)
    permutations = _checks.positive_int("permutations", permutations)
    (a, b), layered = _pooled_views([view_a, view_b], [mask_a, mask_b], ("view_a", "view_b"))
    a = torch.stack([torch.from_numpy(centred_unit(layer.numpy())) for layer in a])
    b = torch.stack([torch.from_numpy(centred_unit(layer.numpy())) for layer in b])
    est = Renyi(alpha=alpha, kernel="linear", base=math.e)
    out = []
    for layer_a, layer_b in zip(a, b):
        with warnings.catch_warnings():
            # Joints near log B are what DiME compares, not a sign of too few sequences.
            warnings.simplefilter("ignore", SaturationWarning)
            test = permutation_test(mutual_information, layer_a, layer_b, estimator=est,
                                    n_permutations=permutations, seed=seed)
        out.append(test.value - test.null_mean)
    value = _normalized(torch.tensor(out, dtype=torch.float64), a.shape[1], a.shape[-1], normalization, base)
    return value if layered else value[0]


def lidar(views, masks=None, alpha: float = 1.0, base: float = 2, normalization: str = "raw",
          delta: float = LIDAR_DELTA) -> torch.Tensor:
    """LiDAR (Thilak et al., "LiDAR: Sensing Linear Probing Performance in
    Joint Embedding SSL Architectures", ICLR 2024) as an α-entropy: each
    prompt is a class whose samples are its V views. With μ_i the mean of
    prompt i's views and μ their mean, the between-class scatter
    S_b = Σ_i (μ_i − μ)(μ_i − μ)ᵀ / B, the within-class scatter
    S_w = Σ_ij (x_ij − μ_i)(x_ij − μ_i)ᵀ / (B·V) + δ·I, and the LDA matrix
    M = S_w^{−½} S_b S_w^{−½}; the value is S_α(M / tr M), computed in
    float64 from the nonzero eigenvalues of M (those of W Wᵀ and WᵀW,
    W = L⁻¹·[μ_i − μ]ᵀ/√B, L the Cholesky factor of S_w, whichever side is
    smaller). exp of the α = 1 value in nats is Thilak et al.'s LiDAR (an
    effective rank). Skean et al.'s code builds S_b and S_w in float32 and
    takes α = 2 as Σ M² / D², which is not trace-normalized (off by up to
    6.7 nats); ``pyfastent.compat.information_flow.compute_lidar`` does that.

    Args:
        views: a list of V ≥ 2 views' states, shaped alike.
        masks: ``None`` or a list of V masks (entries may be ``None``).
        alpha, base, normalization: as ``prompt_entropy`` (n = B prompts).
        delta: the ridge δ > 0 of S_w (1e-4, as both papers).

    Returns:
        a float64 scalar tensor (or [L]).
    """
    alpha = _checks.alpha_order(alpha)
    _checks.choice("normalization", normalization, NORMALIZATIONS)
    delta = _checks.positive_number("delta", delta)
    if not isinstance(views, (list, tuple)) or len(views) < 2:
        raise ValueError("views must be a list of at least 2 views' states (the views of each prompt)")
    masks = [None] * len(views) if masks is None else list(masks)
    if len(masks) != len(views):
        raise ValueError(f"masks has {len(masks)} entries but views {len(views)}")
    pooled, layered = _pooled_views(views, masks, tuple(f"views[{i}]" for i in range(len(views))))
    x = torch.stack(pooled, dim=2)  # [L, B, V, D] float64
    count, nviews, dim = x.shape[1], x.shape[2], x.shape[3]
    if count < 2:
        raise ValueError(f"views: LiDAR needs at least 2 prompts (classes), got {count}")
    centres = x.mean(2)  # [L, B, D]
    between = (centres - centres.mean(1, keepdim=True)) / math.sqrt(count)  # [L, B, D]
    spread = (x - centres[:, :, None]).reshape(x.shape[0], count * nviews, dim)
    within = spread.mT @ spread / (count * nviews) + delta * torch.eye(dim, dtype=torch.float64)  # [L, D, D]
    factor = torch.linalg.cholesky(within)
    w = torch.linalg.solve_triangular(factor, between.mT, upper=False)  # [L, D, B]
    kernel = w.mT @ w if count <= dim else w @ w.mT  # [L, min(B, D), min(B, D)]
    (eig,) = symmetric_eigenvalues([kernel])
    empty = eig.amax(-1) <= 0  # every prompt's views have one mean: no spread between classes
    nats = torch.where(empty, 0.0, spectrum_renyi_nats(torch.where(empty[:, None], 1.0, eig), alpha))
    value = _normalized(nats, count, dim, normalization, base)
    return value if layered else value[0]


def infonce(view_a, view_b, mask_a=None, mask_b=None, temperature: float = INFONCE_TEMPERATURE) -> torch.Tensor:
    """The InfoNCE loss of two views, in nats, as SimCLR computes it (Chen
    et al., ICML 2020; van den Oord et al. 2018): the pooled views are
    L2-normalized, s_ij = z_i·z_j / τ over the 2B rows [A; B], and the loss
    is the mean over rows of −log(exp(s_i,pos) / Σ_{j≠i} exp(s_ij)), pos
    the other view of the same prompt (log-sum-exp: no overflow). Lower
    means the views agree more; ln(2B − 1) − loss is a lower bound on the
    mutual information between the views. Skean et al.'s code uses the raw
    pooled vectors, unnormalized (``pyfastent.compat.information_flow``).

    Args:
        view_a, view_b: the two views' states, shaped alike.
        mask_a, mask_b: their masks.
        temperature: τ > 0 (0.1, as that paper's evaluation).

    Returns:
        a float64 scalar tensor (or [L]).
    """
    temperature = _checks.positive_number("temperature", temperature)
    (a, b), layered = _pooled_views([view_a, view_b], [mask_a, mask_b], ("view_a", "view_b"))
    z = torch.cat([a, b], dim=1)  # [L, 2B, D]
    norms = torch.linalg.vector_norm(z, dim=-1, keepdim=True)
    if bool((norms == 0).any()):
        raise ValueError("view_a, view_b: a pooled view is the zero vector, which has no direction to compare")
    value = contrastive_loss(z / norms, temperature)
    return value if layered else value[0]


def contrastive_loss(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """The InfoNCE loss in nats of rows [L, 2B, D], view A's B rows first
    and B's after, taken as they are: [L] float64."""
    rows = z.shape[1]
    half = rows // 2
    scores = z @ z.mT / temperature  # [L, 2B, 2B]
    scores.diagonal(dim1=-2, dim2=-1).fill_(-math.inf)  # a row is not its own negative
    partner = (torch.arange(rows) + half) % rows
    positive = scores[:, torch.arange(rows), partner]  # [L, 2B]
    return (torch.logsumexp(scores, dim=-1) - positive).mean(-1)


def _pooled_views(views: list, masks: list, names: tuple):
    """The views' pooled states, a list of float64 [L, B, D] of one shape,
    and whether they were layered."""
    out, layered = [], None
    for states, mask, name in zip(views, masks, names):
        try:
            x, real, layered = checked_states(states, mask, None)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        out.append(mean_states(x, real))
        if out[-1].shape != out[0].shape:
            raise ValueError(f"{name} has shape {tuple(out[-1].shape)} after pooling but {names[0]} "
                             f"{tuple(out[0].shape)}: every view needs the same prompts, layers and width")
    return out, layered


def _normalized(nats: torch.Tensor, count: int, dim: int, normalization: str, base: float) -> torch.Tensor:
    """Values [L] in nats of ``count`` prompts of ``dim`` numbers, normalized."""
    n = torch.full((1,), count, dtype=torch.float64)
    return normalized(nats[:, None], n, dim, normalization, _checks.log_base(base))[:, 0]
