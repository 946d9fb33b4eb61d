"""Token-level measures of every layer of a sequence model, streamed over
prompts (DESIGN.md, "Token-level measures for transformers").

``token_profile`` runs batches of prompts (with their attention masks)
through a model, takes every layer's hidden states by hooks at the points
every helper measures (``pyfastent.nn.sequence``), computes the
token-level measures of ``pyfastent.token_measures`` on each batch (all
prompts and layers of a batch in one batched eigensolve) and keeps only
per-prompt numbers and each prompt's mean-pooled states: 1000 prompts × 13
layers × 256 tokens × 768 in float64 would be 11 GB; their pooled states
are 80 MB. The result is a tidy table per layer and measure with the mean
and standard error over prompts.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from pyfastent import _checks, token_measures, view_measures
from pyfastent._progress import progress_bar
from pyfastent.nn.hooks import model_mode, run_hooked, select_layers
from pyfastent.nn.inputs import parameter_dtype_device, takes_positions, to_model, with_positions
from pyfastent.nn.prompts import model_positions, prompt_batches, view_sets
from pyfastent.nn.sequence import block_layers, point_descriptions
from pyfastent.nn.table import atomic_write, read_csv, write_csv

MEASURES = ("prompt_entropy", "effective_rank", "token_logdet", "curvature", "dataset_entropy")
VIEW_MEASURES = ("dime", "lidar", "infonce")  # need views of each prompt
ALL_MEASURES = MEASURES + VIEW_MEASURES
UNNORMALIZED = ("effective_rank", "token_logdet", "curvature", "infonce")  # not entropies: one row per layer
COLUMNS = ("layer", "name", "measure", "normalization", "units", "mean", "stderr", "n")


@dataclass
class TokenProfile:
    """What ``token_profile`` measured.

    Attributes:
        rows: dicts with ``layer`` (depth: 0 is the embedding output),
            ``name`` (the hooked point: ``metadata["points"]`` says what
            it is), ``measure``, ``normalization`` (``None`` where none
            applies), ``units`` (``"bits"``/``"nats"``, ``"normalized"``,
            ``"rank"``, ``"radians"``), ``mean``, ``stderr`` (over prompts;
            ``None`` for the per-layer measures, dataset entropy and the
            view measures, and for one prompt) and ``n`` (the prompts; for
            the curvature, those with enough tokens).
        metadata: the model, the settings and the points measured.
        per_prompt: (measure, normalization) -> float64 [L, N] values per
            layer and prompt (curvature: [L, M], the measured prompts; not
            written to files).
    """

    rows: list = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    per_prompt: dict = field(default_factory=dict)

    def values(self, measure: str, normalization: str = "raw") -> list:
        """The rows of one measure (and normalization), by depth."""
        wanted = None if measure in UNNORMALIZED else normalization
        return sorted((r for r in self.rows if r["measure"] == measure and r["normalization"] == wanted),
                      key=lambda r: r["layer"])

    def save(self, path) -> Path:
        """Write the rows as CSV (``.csv``, with ``<name>.meta.json``
        beside it) or JSON lines (``.jsonl``: a metadata line, then one
        line per row), each file atomically; returns the path."""
        path = Path(path)
        if path.suffix == ".csv":
            write_csv(path, list(COLUMNS), self.rows, self.metadata)
        elif path.suffix == ".jsonl":
            lines = [json.dumps({"metadata": self.metadata})] + [json.dumps(r) for r in self.rows]
            atomic_write(path, "\n".join(lines) + "\n")
        else:
            raise ValueError(f"path must end in .csv or .jsonl, got {str(path)!r}")
        return path

    @classmethod
    def load(cls, path) -> "TokenProfile":
        """Read a profile written by ``save``."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"path {str(path)!r} is not a file")
        if path.suffix == ".csv":
            metadata, rows = read_csv(path, COLUMNS)
            return cls(rows, metadata)
        if path.suffix != ".jsonl":
            raise ValueError(f"path must end in .csv or .jsonl, got {str(path)!r}")
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if not lines or "metadata" not in lines[0]:
            raise ValueError(f"path {str(path)!r} is not a token profile (no metadata line)")
        return cls(lines[1:], lines[0]["metadata"])


def token_profile(model: nn.Module, prompts, tokenizer=None, measures=None, alpha: float = 1.0,
                  base: float = 2, normalizations=("raw",), batch_size: int = 16, max_length: int | None = None,
                  exclude_special: bool = False, ridge: float = token_measures.LLM_CHECK_RIDGE, layers=None,
                  progress: bool | None = None, train_mode: bool = False, views=None,
                  curvature_k: int = 1) -> TokenProfile:
    """Token-level measures of every layer over a set of prompts.

    Per prompt and layer: ``prompt_entropy`` (Skean et al., ICML 2025),
    ``effective_rank`` (Diff-eRank, Wei et al., NeurIPS 2024),
    ``token_logdet`` (LLM-Check, Sriramanan et al., NeurIPS 2024) and
    ``curvature`` (Hosseini & Fedorenko, NeurIPS 2023), averaged over
    prompts with their standard errors; per layer ``dataset_entropy``
    across the prompts' mean-pooled states, and, with ``views``, ``dime``,
    ``lidar`` and ``infonce`` of the prompts' views. Definitions in
    ``pyfastent.token_measures`` and ``pyfastent.view_measures``.

    The layers are the points every helper measures (``pyfastent.nn.sequence``):
    the embedding output, every block's output and the final norm's output
    where the model has one, each under its module's name; row ``layer``
    is its depth (0: the embedding output) and ``metadata["points"]`` says
    what each name is. A left-padded batch gets ``position_ids`` from its
    mask when the model takes them (``pyfastent.nn.inputs.with_positions``),
    so every prompt has the states it has alone.

    Args:
        model: a sequence model (a Hugging Face model, or any module with
            repeated blocks). It runs in eval mode under ``no_grad``
            (``train_mode=True``: in its own mode); every submodule has its
            own mode back afterwards.
        prompts: a list of strings (with ``tokenizer``); a dict or
            ``BatchEncoding`` of ``input_ids`` [N, T] and ``attention_mask``;
            a tensor of token ids [N, T]; or a re-iterable of such batches
            (an unshuffled DataLoader). A ``special_tokens_mask`` entry of
            a dict is taken out before the model sees it.
        tokenizer: a Hugging Face tokenizer, for a list of strings. One
            without a padding token (GPT-2's) pads with its end-of-text
            token, on a copy: padded positions are masked out.
        measures: names from ``MEASURES`` and, with ``views``,
            ``VIEW_MEASURES``; ``None``: all that apply.
        alpha: the order α of the entropies (the effective rank is α = 1).
        base: logarithm base of raw entropies and log-determinants (2: bits).
        normalizations: of the entropies, from
            ``pyfastent.token_measures.NORMALIZATIONS``.
        batch_size: prompts per forward pass.
        max_length: truncate tokenized strings to this many tokens; ``None``:
            the model's maximum positions when its configuration says.
            Above them, or prompts with more real tokens, is a ValueError.
        exclude_special: leave special tokens ([CLS], [SEP], BOS, ...) out
            of every measure (the tokenizer's ``special_tokens_mask``).
        ridge: ``token_logdet``'s regularization.
        layers: ``None``: the default points (above); or layer names to
            hook (see ``pyfastent.nn.hooks.select_layers``), each giving ``[B, T, D]``.
        progress: a progress bar over prompts (``None``: only on a terminal).
        views: several views of each prompt (``pyfastent.nn.prompts.view_sets``):
            for strings a list of V-string groups, one per prompt, or a
            callable such as ``pyfastent.nn.prompts.augmentations(2)``; for
            tokenized prompts a list of V tokenized sets. DiME and InfoNCE
            compare the first two views, LiDAR all.
        curvature_k: the step lag k of ``curvature``.

    Returns:
        ``TokenProfile``.
    """
    measures = _chosen(measures, views is not None)
    normalizations = (normalizations,) if isinstance(normalizations, str) else tuple(normalizations)
    for norm in normalizations:
        _checks.choice("normalizations", norm, token_measures.NORMALIZATIONS)
    if not normalizations:
        raise ValueError("normalizations is empty")
    alpha, ln_base = _checks.alpha_order(alpha), _checks.log_base(base)
    ridge = _checks.positive_number("ridge", ridge)
    curvature_k = _checks.positive_int("curvature_k", curvature_k)
    batch_size = _checks.positive_int("batch_size", batch_size)
    positions = model_positions(model)
    if max_length is not None:
        max_length = _checks.positive_int("max_length", max_length)
        if positions is not None and max_length > positions:
            raise ValueError(f"max_length {max_length} is above the {positions} positions the model's configuration "
                             "allows")
    states = _StateSource(model, layers, positions)
    sets = view_sets(views, prompts) if views is not None else []
    batches, total = prompt_batches(prompts, tokenizer, batch_size, max_length or positions, exclude_special)
    sums = _Sums()
    pooled: list = []
    count, left_out = 0, 0
    bar = progress_bar(None if total is None else total * (1 + len(sets)), "token profile", progress, unit="prompt")
    try:
        with model_mode(model, train_mode):
            for inputs, special in batches:
                x, real = states(inputs, special)  # [L, b, T, D], [b, T]
                left_out += _measure_batch(x, real, measures, alpha, ln_base, normalizations, ridge, curvature_k,
                                           sums)
                if "dataset_entropy" in measures:
                    pooled.append(token_measures.mean_states(x, real))  # [L, b, D]
                count += real.shape[0]
                bar.update(real.shape[0])
            view_states = [_pooled_states(states, view, tokenizer, batch_size, max_length or positions,
                                          exclude_special, bar) for view in sets]
    finally:
        bar.close()
    per_prompt = sums.tensors()
    per_layer = {}
    if pooled:
        per_layer.update(_dataset_entropy(torch.cat(pooled, dim=1), alpha, ln_base, normalizations))
    per_layer.update(_view_values(view_states, count, measures, alpha, base, normalizations))
    units = {2.0: "bits", math.e: "nats"}.get(float(base), f"log{float(base):g}")
    rows = [_row(k, states.names[k], measure, norm, units, values, values.shape[1])
            for (measure, norm), values in per_prompt.items() for k in range(values.shape[0])]
    rows += [_row(k, states.names[k], measure, norm, units, values, count)
             for (measure, norm), values in per_layer.items() for k in range(values.shape[0])]
    order = {norm: i for i, norm in enumerate((None,) + normalizations)}
    rows.sort(key=lambda r: (ALL_MEASURES.index(r["measure"]), order[r["normalization"]], r["layer"]))
    metadata = {"model": type(model).__name__, "prompts": count, "points": point_descriptions(model, states.names),
                "alpha": alpha, "base": float(base), "units": units, "normalizations": list(normalizations),
                "measures": list(measures), "batch_size": batch_size, "max_length": max_length or positions,
                "exclude_special": exclude_special, "ridge": ridge, "views": len(sets),
                "curvature_k": curvature_k, "curvature_left_out": left_out,
                "position_ids": "built from the attention mask for left-padded batches" if states.positions
                else "the model's own",
                "dataset_pooling": "mean of each prompt's raw states over its real tokens"}
    return TokenProfile(rows, metadata, per_prompt)


def _chosen(measures, with_views: bool) -> tuple:
    if measures is None:
        return ALL_MEASURES if with_views else MEASURES
    if isinstance(measures, str):
        measures = (measures,)
    measures = tuple(_checks.choice("measures", m, ALL_MEASURES) for m in measures)
    if not measures:
        raise ValueError("measures is empty")
    needing = [m for m in measures if m in VIEW_MEASURES]
    if needing and not with_views:
        raise ValueError(f"measures {', '.join(needing)} compare several views of each prompt: pass views=")
    return measures


def _row(layer: int, name: str, measure: str, norm: str, units: str, values: torch.Tensor, prompts: int) -> dict:
    """One table row from a layer's values over prompts (or the one per-layer value)."""
    v = values[layer]
    n = v.shape[0]
    stderr = float(v.std(correction=1) / math.sqrt(n)) if n > 1 else None
    unit = {"effective_rank": "rank", "curvature": "radians", "infonce": "nats"}.get(
        measure, units if norm in (None, "raw") else "normalized")
    return {"layer": layer, "name": name, "measure": measure, "normalization": norm, "units": unit,
            "mean": float(v.mean()), "stderr": stderr, "n": prompts}


def _measure_batch(x, real, measures, alpha, ln_base, normalizations, ridge, k, sums: "_Sums") -> int:
    """The per-prompt measures of one batch, into ``sums``; returns how
    many prompts were too short for the curvature."""
    if "prompt_entropy" in measures or "effective_rank" in measures:
        spectra = token_measures.TokenSpectra.of(x, real)
        if "prompt_entropy" in measures:
            nats = spectra.nats(alpha)
            for norm in normalizations:
                sums.add(("prompt_entropy", norm), spectra.normalized(nats, norm, ln_base))
        if "effective_rank" in measures:
            sums.add(("effective_rank", None), torch.exp(spectra.nats(1.0)))
    if "token_logdet" in measures:
        sums.add(("token_logdet", None), token_measures.logdets(x, real, ridge) / ln_base)
    if "curvature" not in measures:
        return 0
    if int(real.sum(1).max()) < k + 2:
        return real.shape[0]
    bent = token_measures.curvature(x, real, k)
    sums.add(("curvature", None), bent.per_prompt)
    return bent.left_out


def _dataset_entropy(together: torch.Tensor, alpha, ln_base, normalizations) -> dict:
    """Per layer [L, 1] dataset entropies of pooled states [L, N, D]."""
    spectra = token_measures.TokenSpectra.of(together[:, None], torch.ones(1, together.shape[1], dtype=torch.bool))
    nats = spectra.nats(alpha)
    return {("dataset_entropy", norm): spectra.normalized(nats, norm, ln_base) for norm in normalizations}


def _view_values(views: list, count: int, measures, alpha, base, normalizations) -> dict:
    """Per layer [L, 1] DiME, LiDAR and InfoNCE of the views' pooled states [L, N, D]."""
    if not views:
        return {}
    if any(v.shape[1] != count for v in views):
        raise ValueError(f"views: every view must hold the {count} prompts, got {[v.shape[1] for v in views]}")
    states = [v[:, :, None] for v in views]  # one pooled "token" per prompt: [L, N, 1, D]
    out = {}
    for norm in normalizations:
        if "dime" in measures:
            out[("dime", norm)] = view_measures.dime(states[0], states[1], alpha=alpha, base=base,
                                                     normalization=norm)[:, None]
        if "lidar" in measures:
            out[("lidar", norm)] = view_measures.lidar(states, alpha=alpha, base=base, normalization=norm)[:, None]
    if "infonce" in measures:
        out[("infonce", None)] = view_measures.infonce(states[0], states[1])[:, None]
    return out


def _pooled_states(states: "_StateSource", prompts, tokenizer, batch_size, max_length, exclude_special, bar):
    """One view's prompts, each its real tokens' mean state: [L, N, D] float64."""
    batches, _ = prompt_batches(prompts, tokenizer, batch_size, max_length, exclude_special)
    parts = []
    for inputs, special in batches:
        x, real = states(inputs, special)
        parts.append(token_measures.mean_states(x, real))
        bar.update(real.shape[0])
    if not parts:
        raise ValueError("views: a view holds no prompts")
    return torch.cat(parts, dim=1)


class _Sums:
    """Per-prompt values of each (measure, normalization), batch by batch."""

    def __init__(self):
        self.parts: dict = {}

    def add(self, key: tuple, values: torch.Tensor) -> None:
        self.parts.setdefault(key, []).append(values)

    def tensors(self) -> dict:
        return {key: torch.cat(parts, dim=1) for key, parts in self.parts.items()}


class _StateSource:
    """Every layer's hidden states [B, T, D] for a batch of model inputs,
    taken by hooks at the model's default points (or ``layers``)."""

    def __init__(self, model: nn.Module, layers, positions: int | None):
        self.model = model
        self.dtype, self.device = parameter_dtype_device(model)
        self.names = select_layers(model, layers) if layers is not None else block_layers(model)
        if not self.names:
            raise ValueError(f"model: {type(model).__name__} has no repeated blocks whose outputs are its layers; "
                             "name the layers to hook (layers=)")
        self.positions = takes_positions(model)
        self.limit = positions

    def __call__(self, inputs: dict, special) -> tuple:
        """(states [L, b, T, D], real tokens [b, T]) of one batch, checked."""
        mask = inputs.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.dim() == 2:
            longest = int(mask.sum(1).max())
        else:
            longest = next(v.shape[1] for v in inputs.values() if isinstance(v, torch.Tensor) and v.dim() >= 2)
        if self.limit is not None and longest > self.limit:
            raise ValueError(f"prompts: a prompt has {longest} tokens, above the {self.limit} positions the model's "
                             "configuration allows; truncate it (max_length=)")
        inputs = to_model(inputs, self.dtype, self.device)
        inputs = with_positions(inputs) if self.positions else inputs
        got: dict = {}
        run_hooked(self.model, inputs, self.names, lambda name, t: got.setdefault(name, t.clone()),
                   tuple(self.names))
        hidden = [got[name] for name in self.names]
        x, real, _ = token_measures.checked_states(hidden, mask, special)
        return x, real
