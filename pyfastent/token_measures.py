"""Token-level measures of sequence models: the tokens of one prompt as the
samples of a variable (DESIGN.md, "Token-level measures for transformers").

Skean et al., "Layer by Layer: Uncovering Hidden Representations in
Language Models" (ICML 2025), measure every layer of a language model by
the matrix-based entropy of each prompt's tokens ("prompt entropy") and of
the mean-pooled prompts ("dataset entropy"); Diff-eRank (Wei et al.,
NeurIPS 2024) uses the effective rank exp(S₁); LLM-Check (Sriramanan et
al., NeurIPS 2024) the log-determinant of the tokens' covariance; the
curvature of the token trajectory is Hosseini & Fedorenko's (NeurIPS 2023).
Measures of several views of each prompt (DiME, LiDAR, InfoNCE) are in
``pyfastent.view_measures``.

States are ``[B, T, D]`` (B sequences of up to T tokens) or ``[L, B, T, D]``
(L layers at once), or a list of L ``[B, T, D]`` tensors (a Hugging Face
``hidden_states`` tuple); ``mask`` is ``[B, T]`` with 1 for real tokens
(``attention_mask``), ``exclude`` an optional ``[B, T]`` mask of tokens to
leave out (special tokens). Every sequence and layer of a call is solved in
one batch of eigenproblems, sequences of similar length padded together
(zero rows add only zero eigenvalues, which change nothing).

Normalizations (``normalization=``), as in that paper's code, with natural
logarithms of the counts and the entropy in nats: ``"raw"`` (the entropy in
units of ``base``), ``"logN"`` (÷ ln n), ``"logD"`` (÷ ln D), ``"maxEntropy"``
(÷ ln min(n, D)) and ``"logNlogD"`` (÷ ln n · ln D), n the rows measured
(tokens, or sequences).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from pyfastent import _checks
from pyfastent.ops import spectrum_renyi_nats
from pyfastent.ops.eigen import symmetric_eigenvalues
from pyfastent.ops.logdet import spd_logdet
from pyfastent.ops.tokens import feature_centred, kernel_dtype, length_buckets, token_kernels

NORMALIZATIONS = ("raw", "logN", "logD", "maxEntropy", "logNlogD")
LLM_CHECK_RIDGE = 1e-3  # Sriramanan et al. (2024), the regularization of their hidden score


def prompt_entropy(states, mask=None, alpha: float = 1.0, base: float = 2, normalization: str = "raw",
                   exclude=None) -> torch.Tensor:
    """Matrix-based Rényi α-entropy of each sequence's real tokens.

    For each sequence (and layer): Z = its real tokens' states, centred over
    those tokens, each row divided by its L2 norm; the eigenvalues of the
    linear kernel Z·Zᵀ (or, when there are more tokens than dimensions,
    Zᵀ·Z, which has the same nonzero ones) divided by their sum, the exact
    trace; S_α = log Σλ^α / (1 − α) (α = 1: −Σλ log λ). A sequence whose
    centred tokens are all zero (one real token, or identical ones) has
    entropy 0: one distinct state. A token equal to its sequence's mean has
    no direction and adds nothing.

    Args:
        states: [B, T, D], [L, B, T, D] or a list of L [B, T, D].
        mask: [B, T], 1 (or True) for real tokens; ``None``: all are real.
        alpha: the order α > 0.
        base: logarithm base of ``"raw"`` values (2: bits).
        normalization: one of ``NORMALIZATIONS``.
        exclude: [B, T], 1 for tokens to leave out (e.g. special tokens).

    Returns:
        float64 [B] (or [L, B]).
    """
    alpha, ln_base = _checks.alpha_order(alpha), _checks.log_base(base)
    _checks.choice("normalization", normalization, NORMALIZATIONS)
    x, real, layered = checked_states(states, mask, exclude)
    spectra = TokenSpectra.of(x, real)
    out = spectra.normalized(spectra.nats(alpha), normalization, ln_base)
    return out if layered else out[0]


def effective_rank(states, mask=None, exclude=None) -> torch.Tensor:
    """exp(S₁) of each sequence's tokens, S₁ the von Neumann entropy in nats
    of ``prompt_entropy`` (Roy & Vetterli 2007; Diff-eRank, Wei et al.,
    NeurIPS 2024): between 1 and min(n, D). Shapes as ``prompt_entropy``."""
    return torch.exp(prompt_entropy(states, mask, alpha=1.0, base=math.e, exclude=exclude))


def dataset_entropy(states, mask=None, alpha: float = 1.0, base: float = 2, normalization: str = "raw",
                    exclude=None) -> torch.Tensor:
    """Matrix-based Rényi α-entropy across sequences of their mean-pooled
    states: each sequence's raw states averaged over its real tokens, the B
    vectors centred across sequences, each divided by its L2 norm, then the
    same linear-kernel entropy as ``prompt_entropy`` (n = B).

    Returns:
        a float64 scalar tensor (or [L] for layered states).
    """
    x, real, layered = checked_states(states, mask, exclude)
    out = prompt_entropy(mean_states(x, real)[:, None], None, alpha, base, normalization)[:, 0]
    return out if layered else out[0]


def token_logdet(states, mask=None, ridge: float = LLM_CHECK_RIDGE, base: float = 2, exclude=None) -> torch.Tensor:
    """LLM-Check's hidden score (Sriramanan et al., NeurIPS 2024) of each
    sequence: (1/n) log det(Z̃·Z̃ᵀ + ridge·I_n), Z̃ the n real tokens' states,
    each token centred over its own D features (their J_d), ridge = 1e-3
    as in that paper; the mean log eigenvalue of the regularized token Gram
    matrix, in units of ``base``. Shapes as ``prompt_entropy``.
    """
    ridge, ln_base = _checks.positive_number("ridge", ridge), _checks.log_base(base)
    x, real, layered = checked_states(states, mask, exclude)
    out = logdets(x, real, ridge) / ln_base
    return out if layered else out[0]


def logdets(x: torch.Tensor, real: torch.Tensor, ridge: float) -> torch.Tensor:
    """``token_logdet`` in nats of checked states [L, B, T, D] and real
    tokens [B, T]: [L, B] float64."""
    counts = real.sum(1)
    out = torch.empty(x.shape[0], x.shape[1], dtype=torch.float64)
    for members, size in length_buckets(counts):
        gram = token_kernels(x, real, members, size, feature_centred, tokens_side=True)  # [L·b, size, size]
        gram.diagonal(dim1=-2, dim2=-1).add_(ridge)  # padded rows: ridge·I, log det (size − n)·log ridge
        logdet = spd_logdet(gram, what="the regularized token Gram matrix").reshape(x.shape[0], len(members))
        n = counts[members].double()
        out[:, members] = (logdet - (size - n) * math.log(ridge)) / n
    return out


class Curvature(NamedTuple):
    """What ``curvature`` measured.

    Attributes:
        mean: float64 [L] (a scalar for unlayered states): the mean over the
            measured prompts, radians.
        per_prompt: float64 [L, M]: each measured prompt's mean angle.
        prompts: long [M]: which prompts were measured (those with at least
            k + 2 real tokens).
        left_out: how many prompts had too few tokens.
    """

    mean: torch.Tensor
    per_prompt: torch.Tensor
    prompts: torch.Tensor
    left_out: int


def curvature(states, mask=None, k: int = 1, exclude=None) -> Curvature:
    """Mean curvature of each prompt's token trajectory (Hosseini &
    Fedorenko, NeurIPS 2023): with v_t = x_{t+1} − x_t the steps between
    consecutive real tokens' raw states, the mean over t of the angle
    arccos(v_t·v_{t+k} / (‖v_t‖‖v_{t+k}‖)) in radians, the cosine clamped
    to [−1, 1] (a straight trajectory has curvature 0, a reversal π),
    computed as 2·atan2(‖u − w‖, ‖u + w‖) of the unit steps u, w: the same
    angle, without arccos's loss of precision near 0 and π.
    Steps of length 0 (a repeated state) have no direction and are left
    out of the angles they enter (a prompt of one repeated state has
    curvature 0). Prompts with fewer than k + 2 real tokens
    (no pair of steps k apart) are left out and counted.

    Skean et al.'s ``compute_curvature`` measures the angle between the
    centred, unit-normalized *states* i and i + k instead, and returns NaN
    for a repeated state (``pyfastent.compat.information_flow`` reproduces it).

    Args:
        states: [B, T, D], [L, B, T, D] or a list of L [B, T, D].
        mask, exclude: as ``prompt_entropy``.
        k: the step lag ≥ 1.

    Returns:
        ``Curvature``; a ValueError when no prompt has k + 2 real tokens.
    """
    k = _checks.positive_int("k", k)
    x, real, layered = checked_states(states, mask, exclude)
    counts = real.sum(1)
    prompts = torch.nonzero(counts >= k + 2).flatten()
    if prompts.numel() == 0:
        raise ValueError(f"k: no prompt has the k + 2 = {k + 2} real tokens that one angle needs "
                         f"(the longest has {int(counts.max())})")
    out = torch.empty(x.shape[0], prompts.numel(), dtype=torch.float64)
    for j, b in enumerate(prompts.tolist()):
        steps = torch.diff(x[:, b, real[b]].to(torch.float64), dim=1)  # [L, n − 1, D]
        length = torch.linalg.vector_norm(steps, dim=-1, keepdim=True)  # [L, n − 1, 1]
        unit = steps / torch.where(length > 0, length, 1.0)
        first, later = unit[:, :-k], unit[:, k:]
        both = (length[:, :-k, 0] > 0) & (length[:, k:, 0] > 0)
        angles = 2 * torch.atan2(torch.linalg.vector_norm(first - later, dim=-1),
                                 torch.linalg.vector_norm(first + later, dim=-1))
        used = both.sum(1)
        out[:, j] = torch.where(used > 0, (angles * both).sum(1) / used.clamp(min=1), 0.0)
    mean = out.mean(1)
    return Curvature(mean if layered else mean[0], out, prompts, int(counts.shape[0] - prompts.numel()))


# ---- internals -------------------------------------------------------------------------


def mean_states(x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Each sequence's raw states averaged over its real tokens: [L, B, D]
    float64, one layer at a time (no [L, B, T, D] temporary)."""
    weights = real.to(torch.float64)[:, None, :] / real.sum(1)[:, None, None]  # [B, 1, T]
    return torch.stack([(weights @ layer.to(torch.float64))[:, 0] for layer in x])


def checked_states(states, mask, exclude):
    """(states [L, B, T, D] on the CPU in their floating dtype, real [B, T]
    bool, whether layered) after checks; every sequence has a real token."""
    if isinstance(states, (list, tuple)):
        if not states:
            raise ValueError("states is an empty list of layers")
        layers = [_checks.as_tensor(f"states[{i}]", s) for i, s in enumerate(states)]
        shapes = {tuple(layer.shape) for layer in layers}
        if len(shapes) > 1:
            raise ValueError(f"states: the layers must have one shape [B, T, D], got {sorted(shapes)}")
        x = torch.stack(layers)
        layered = True
    else:
        x = _checks.as_tensor("states", states)
        if x.dim() not in (3, 4):
            raise ValueError(f"states must be [B, T, D] or [L, B, T, D], got shape {tuple(x.shape)}")
        layered = x.dim() == 4
        x = x if layered else x[None]
    if x.dim() != 4 or 0 in x.shape:
        raise ValueError(f"states must be [B, T, D] or [L, B, T, D] with no empty axis, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"states must be floating point hidden states, got {x.dtype}")
    if not _checks.all_finite(x):
        raise ValueError("states contains non-finite values (NaN or inf)")
    b, t = x.shape[1], x.shape[2]
    real = torch.ones(b, t, dtype=torch.bool)
    for name, m, keep in (("mask", mask, True), ("exclude", exclude, False)):
        if m is None:
            continue
        m = _checks.as_tensor(name, m)
        if tuple(m.shape) != (b, t):
            raise ValueError(f"{name} must have shape (B, T) = {(b, t)}, got {tuple(m.shape)}")
        if not (m.dtype == torch.bool or not m.is_floating_point() or bool(((m == 0) | (m == 1)).all())):
            raise ValueError(f"{name} must hold 0 and 1 (or booleans)")
        m = m.cpu().bool()
        real = real & m if keep else real & ~m
    empty = real.sum(1) == 0
    if bool(empty.any()):
        raise ValueError(f"mask: sequence {int(torch.nonzero(empty)[0])} has no real tokens"
                         + (" left after exclude" if exclude is not None else ""))
    return x.detach().cpu(), real, layered


class TokenSpectra:
    """The spectra of every sequence's (and layer's) token kernel: the
    eigenvalues of the linear kernel of its centred unit rows, solved once
    (one batched eigenproblem per bucket of lengths), from which entropies
    of any order are read."""

    def __init__(self, parts: list, counts: torch.Tensor, layers: int, dim: int, built: torch.dtype):
        self.parts = parts  # (sequence indices, eigenvalues [L, b, k])
        self.counts = counts  # [B] real tokens per sequence
        self.layers, self.dim = layers, dim
        self.built = built  # the dtype the kernels were computed in: its round-off eigenvalues are zero

    @classmethod
    def of(cls, x: torch.Tensor, real: torch.Tensor) -> "TokenSpectra":
        """From checked states [L, B, T, D] and real tokens [B, T]."""
        layers, _, _, dim = x.shape
        counts = real.sum(1)
        stacks, where = [], []
        for members, size in length_buckets(counts):
            stacks.append(token_kernels(x, real, members, size))  # [L·b, k, k]
            where.append(members)
        parts = [(members, eig.reshape(layers, len(members), -1))
                 for members, eig in zip(where, symmetric_eigenvalues(stacks))]
        return cls(parts, counts, layers, dim, kernel_dtype(x.dtype))

    def nats(self, alpha: float) -> torch.Tensor:
        """S_α in nats, [L, B]. A sequence whose centred rows are all zero
        has one distinct state: entropy 0."""
        out = torch.zeros(self.layers, self.counts.shape[0], dtype=torch.float64)
        for members, eig in self.parts:
            empty = eig.amax(-1) <= 0
            nats = spectrum_renyi_nats(torch.where(empty[..., None], torch.ones_like(eig), eig), alpha, self.built)
            out[:, members] = torch.where(empty, torch.zeros_like(nats), nats)
        return out

    def normalized(self, nats: torch.Tensor, normalization: str, ln_base: float) -> torch.Tensor:
        """Entropies [L, B] in nats as ``normalization`` asks (see the
        module docstring); a sequence of one row has entropy 0, normalized to 0."""
        return normalized(nats, self.counts, self.dim, normalization, ln_base)


def normalized(nats: torch.Tensor, counts: torch.Tensor, dim: int, normalization: str, ln_base: float):
    """Entropies [L, B] in nats of sequences of ``counts`` [B] rows of
    ``dim`` numbers, normalized (see the module docstring); a denominator
    of 0 (one row) gives 0, the entropy of one row."""
    if normalization == "raw":
        return nats / ln_base
    if dim < 2 and normalization != "logN":
        raise ValueError(f"normalization={normalization!r} divides by ln D, which is 0 for D = {dim}")
    ln_n = torch.log(counts.to(torch.float64))[None, :].expand_as(nats)
    ln_d = math.log(dim)
    denominator = {"logN": ln_n, "logD": torch.full_like(nats, ln_d), "maxEntropy": torch.clamp(ln_n, max=ln_d),
                   "logNlogD": ln_n * ln_d}[normalization]
    return torch.where(denominator > 0, nats / torch.where(denominator > 0, denominator, torch.ones_like(nats)),
                       torch.zeros_like(nats))
