"""Token-level measures of every layer of a sequence model, streamed over
prompts (DESIGN.md, "Token-level measures for transformers").

``token_profile`` runs batches of prompts (with their attention masks)
through a model, takes every layer's hidden states, computes the
token-level measures of ``pyfastent.token_measures`` on each batch (all
prompts and layers of a batch in one batched eigensolve) and keeps only
per-prompt numbers and each prompt's mean-pooled states: 1000 prompts × 13
layers × 256 tokens × 768 in float64 would be 11 GB; their pooled states
are 80 MB. The result is a tidy table per layer and measure with the mean
and standard error over prompts.
"""
from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pyfastent import _checks, token_measures
from pyfastent._progress import progress_bar
from pyfastent.nn.capture import call_model, model_mode, run_hooked, select_layers
from pyfastent.nn.inputs import Probe, parameter_dtype_device, to_model
from pyfastent.nn.sequence import block_layers
from pyfastent.nn.table import atomic_write, read_csv, write_csv

MEASURES = ("prompt_entropy", "effective_rank", "token_logdet", "dataset_entropy")
COLUMNS = ("layer", "name", "measure", "normalization", "units", "mean", "stderr", "n")


@dataclass
class TokenProfile:
    """What ``token_profile`` measured.

    Attributes:
        rows: dicts with ``layer`` (depth: 0 is the embedding output),
            ``name`` (``hidden_states[k]``, or the hooked module),
            ``measure``, ``normalization`` (``None`` where none applies),
            ``units`` (``"bits"``/``"nats"``, ``"normalized"``, ``"rank"``),
            ``mean``, ``stderr`` (over prompts; ``None`` for the dataset
            entropy, one number, and for one prompt) and ``n`` (the prompts).
        metadata: the model, the settings and where the states came from.
        per_prompt: (measure, normalization) -> float64 [L, N] values per
            layer and prompt (not written to files).
    """

    rows: list = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    per_prompt: dict = field(default_factory=dict)

    def values(self, measure: str, normalization: str = "raw") -> list:
        """The rows of one measure (and normalization), by depth."""
        wanted = None if measure in ("effective_rank", "token_logdet") else normalization
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


def token_profile(model: nn.Module, prompts, tokenizer=None, measures=MEASURES, alpha: float = 1.0,
                  base: float = 2, normalizations=("raw",), batch_size: int = 16, max_length: int | None = None,
                  exclude_special: bool = False, ridge: float = token_measures.LLM_CHECK_RIDGE, layers=None,
                  progress: bool | None = None, train_mode: bool = False) -> TokenProfile:
    """Token-level measures of every layer over a set of prompts.

    Per prompt and layer: ``prompt_entropy`` (Skean et al., ICML 2025),
    ``effective_rank`` (Diff-eRank, Wei et al., NeurIPS 2024) and
    ``token_logdet`` (LLM-Check, Sriramanan et al., NeurIPS 2024), averaged
    over prompts with their standard errors; per layer
    ``dataset_entropy`` across the prompts' mean-pooled states. Definitions
    in ``pyfastent.token_measures``.

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
        measures: names from ``MEASURES``.
        alpha: the order α of the entropies (the effective rank is α = 1).
        base: logarithm base of raw entropies and log-determinants (2: bits).
        normalizations: of the entropies, from
            ``pyfastent.token_measures.NORMALIZATIONS``.
        batch_size: prompts per forward pass.
        max_length: truncate tokenized strings to this many tokens.
        exclude_special: leave special tokens ([CLS], [SEP], BOS, ...) out
            of every measure (the tokenizer's ``special_tokens_mask``).
        ridge: ``token_logdet``'s regularization.
        layers: ``None``: the model's ``hidden_states`` (a Hugging Face
            model: the embedding output and every block's output, as that
            paper's code takes them); for other models the embedding output
            and every block's output by hooks (``pyfastent.nn.sequence``).
            Or layer names to hook (see ``pyfastent.nn.capture``), each
            giving ``[B, T, D]``.
        progress: a progress bar over prompts (``None``: only on a terminal).

    Returns:
        ``TokenProfile``.
    """
    if isinstance(measures, str):
        measures = (measures,)
    measures = tuple(_checks.choice("measures", m, MEASURES) for m in measures)
    if not measures:
        raise ValueError("measures is empty")
    normalizations = (normalizations,) if isinstance(normalizations, str) else tuple(normalizations)
    for norm in normalizations:
        _checks.choice("normalizations", norm, token_measures.NORMALIZATIONS)
    if not normalizations:
        raise ValueError("normalizations is empty")
    alpha, ln_base = _checks.alpha_order(alpha), _checks.log_base(base)
    ridge = _checks.positive_number("ridge", ridge)
    batches, total = _prompt_batches(prompts, tokenizer, _checks.positive_int("batch_size", batch_size), max_length,
                                     exclude_special)
    states = _StateSource(model, layers)
    sums = _Sums()
    pooled: list = []
    count = 0
    bar = progress_bar(total, "token profile", progress, unit="prompt")
    try:
        with model_mode(model, train_mode):
            for inputs, special in batches:
                hidden = states(inputs)
                mask = inputs.get("attention_mask") if isinstance(inputs, dict) else None
                x, real, _ = token_measures.checked_states(hidden, mask, special)  # [L, b, T, D], [b, T]
                _measure_batch(x, real, measures, alpha, ln_base, normalizations, ridge, sums)
                if "dataset_entropy" in measures:
                    pooled.append(token_measures.mean_states(x, real))  # [L, b, D]
                count += real.shape[0]
                bar.update(real.shape[0])
    finally:
        bar.close()
    per_prompt = sums.tensors()
    if pooled:
        together = torch.cat(pooled, dim=1)  # [L, N, D]
        spectra = token_measures.TokenSpectra.of(together[:, None], torch.ones(1, together.shape[1], dtype=torch.bool))
        nats = spectra.nats(alpha)
        for norm in normalizations:
            per_prompt[("dataset_entropy", norm)] = spectra.normalized(nats, norm, ln_base)  # [L, 1]
    units = {2.0: "bits", math.e: "nats"}.get(float(base), f"log{float(base):g}")
    rows = [_row(k, states.names[k], measure, norm, units, values, count)
            for (measure, norm), values in per_prompt.items() for k in range(values.shape[0])]
    order = {norm: i for i, norm in enumerate((None,) + normalizations)}
    rows.sort(key=lambda r: (MEASURES.index(r["measure"]), order[r["normalization"]], r["layer"]))
    metadata = {"model": type(model).__name__, "prompts": count, "states": states.where, "alpha": alpha,
                "base": float(base), "units": units, "normalizations": list(normalizations),
                "measures": list(measures), "batch_size": batch_size, "max_length": max_length,
                "exclude_special": exclude_special, "ridge": ridge,
                "dataset_pooling": "mean of each prompt's raw states over its real tokens"}
    return TokenProfile(rows, metadata, per_prompt)


def _row(layer: int, name: str, measure: str, norm: str, units: str, values: torch.Tensor, prompts: int) -> dict:
    """One table row from a layer's values over prompts (or the one dataset value)."""
    v = values[layer]
    n = v.shape[0]
    stderr = float(v.std(correction=1) / math.sqrt(n)) if n > 1 else None
    unit = {"effective_rank": "rank"}.get(measure, units if norm in (None, "raw") else "normalized")
    return {"layer": layer, "name": name, "measure": measure, "normalization": norm, "units": unit,
            "mean": float(v.mean()), "stderr": stderr, "n": prompts}


def _measure_batch(x, real, measures, alpha, ln_base, normalizations, ridge, sums: "_Sums") -> None:
    """The per-prompt measures of one batch, into ``sums``."""
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


class _Sums:
    """Per-prompt values of each (measure, normalization), batch by batch."""

    def __init__(self):
        self.parts: dict = {}

    def add(self, key: tuple, values: torch.Tensor) -> None:
        self.parts.setdefault(key, []).append(values)

    def tensors(self) -> dict:
        return {key: torch.cat(parts, dim=1) for key, parts in self.parts.items()}


class _StateSource:
    """Every layer's hidden states [B, T, D] for a batch of model inputs:
    the model's own ``hidden_states`` (Hugging Face), or hooks."""

    def __init__(self, model: nn.Module, layers):
        self.model = model
        self.dtype, self.device = parameter_dtype_device(model)
        config = getattr(model, "config", None)
        self.native = layers is None and hasattr(config, "output_hidden_states")
        if self.native:
            self.hooked, self.names, self.where = [], None, "the model's hidden_states (output_hidden_states=True)"
            return
        self.hooked = select_layers(model, layers) if layers is not None else block_layers(model)
        if not self.hooked:
            raise ValueError(f"model: {type(model).__name__} has no hidden_states output and no repeated blocks; "
                             "name the layers to hook (layers=)")
        self.names = list(self.hooked)
        self.where = "forward hooks on " + ", ".join(self.hooked)

    def __call__(self, inputs: dict) -> list:
        inputs = to_model(inputs, self.dtype, self.device)
        if self.native:
            with torch.no_grad():
                out = call_model(self.model, {**inputs, "output_hidden_states": True})
            hidden = out.get("hidden_states") if isinstance(out, Mapping) else getattr(out, "hidden_states", None)
            if not hidden:
                raise ValueError(f"model: {type(self.model).__name__} returned no hidden_states; name the layers to "
                                 "hook (layers=)")
            if self.names is None:
                self.names = [f"hidden_states[{k}]" for k in range(len(hidden))]
            return list(hidden)
        got: dict = {}
        run_hooked(self.model, inputs, self.hooked, lambda name, t: got.setdefault(name, t.clone()),
                   tuple(self.hooked))
        return [got[name] for name in self.hooked]


def _prompt_batches(prompts, tokenizer, batch_size: int, max_length, exclude_special: bool):
    """(an iterable of (model inputs, special-token mask or None), the number of prompts or None)."""
    if max_length is not None:
        max_length = _checks.positive_int("max_length", max_length)
    if isinstance(prompts, (list, tuple)) and prompts and all(isinstance(p, str) for p in prompts):
        if tokenizer is None:
            raise ValueError("prompts are strings: pass the model's tokenizer (tokenizer=)")
        return _tokenized(list(prompts), _padding_tokenizer(tokenizer), batch_size, max_length, exclude_special), \
            len(prompts)
    if isinstance(prompts, (list, tuple)) and not prompts:
        raise ValueError("prompts is empty")
    loader = not isinstance(prompts, (Mapping, torch.Tensor, np.ndarray))
    probe = Probe(prompts, batch_size=None if loader else batch_size, name="prompts")

    def batches():
        for batch in probe.batches():
            inputs = batch.inputs if isinstance(batch.inputs, dict) else {"input_ids": batch.inputs}
            inputs = dict(inputs)
            special = inputs.pop("special_tokens_mask", None)
            if exclude_special and special is None:
                raise ValueError("exclude_special: the prompts carry no special_tokens_mask (tokenize with "
                                 "return_special_tokens_mask=True, or pass strings and the tokenizer)")
            yield inputs, special if exclude_special else None

    return batches(), probe.n


def _padding_tokenizer(tokenizer):
    """The tokenizer, or a copy that pads with its end-of-text token when it has no padding token."""
    if getattr(tokenizer, "pad_token", None) is not None:
        return tokenizer
    eos = getattr(tokenizer, "eos_token", None)
    if eos is None:
        raise ValueError("tokenizer has neither a padding token nor an end-of-text token to pad with; set "
                         "tokenizer.pad_token")
    padded = copy.copy(tokenizer)
    padded.pad_token = eos
    return padded


def _tokenized(prompts: list, tokenizer, batch_size: int, max_length, exclude_special: bool):
    for start in range(0, len(prompts), batch_size):
        encoded = tokenizer(prompts[start:start + batch_size], padding=True, truncation=max_length is not None,
                            max_length=max_length, return_tensors="pt", return_special_tokens_mask=exclude_special)
        inputs = dict(encoded)
        special = inputs.pop("special_tokens_mask", None)
        yield inputs, special
