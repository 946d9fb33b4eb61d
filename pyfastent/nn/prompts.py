"""Prompts as a language model takes them, for ``token_profile`` and the
``pyfastent tokens`` command: strings tokenized in batches, or tokenized
batches; the views of each prompt (augmentations, paraphrases) for the
measures that compare them; the model's longest input; and a built-in,
seeded text augmentation."""
from __future__ import annotations

import copy
import random
import string
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from pyfastent import _checks
from pyfastent.nn.inputs import Probe

# Neighbours on a QWERTY keyboard, for typos.
KEYBOARD = {c: n for row in ("qwertyuiop", "asdfghjkl", "zxcvbnm")
            for i, c in enumerate(row) for n in [row[max(0, i - 1):i] + row[i + 1:i + 2]]}


def model_positions(model: nn.Module) -> int | None:
    """The longest input a Hugging Face model's configuration allows, if it says."""
    return config_positions(getattr(model, "config", None))


def config_positions(config) -> int | None:
    """The longest input a Hugging Face configuration allows, if it says."""
    for key in ("max_position_embeddings", "n_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def is_text(prompts) -> bool:
    return isinstance(prompts, (list, tuple)) and bool(prompts) and all(isinstance(p, str) for p in prompts)


def prompt_batches(prompts, tokenizer, batch_size: int, max_length, exclude_special: bool):
    """(an iterable of (model inputs, special-token mask or None), the number of prompts or None)."""
    if is_text(prompts):
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


def view_sets(views, prompts) -> list:
    """The views as V prompt sets, each of the same kind as ``prompts`` and
    holding the N prompts in order.

    ``views`` is, for string prompts, a list with one group of V ≥ 2
    strings per prompt (V the same for all) or a callable
    ``views(prompt) -> list of V strings`` (``augmentations`` makes one);
    for tokenized prompts, a list of V tokenized prompt sets.
    """
    if callable(views):
        if not is_text(prompts):
            raise ValueError("views: a callable makes views of string prompts; for tokenized prompts pass a list "
                             "of V tokenized views")
        views = [views(p) for p in prompts]
    if not isinstance(views, (list, tuple)) or not views:
        raise ValueError("views must be a non-empty list (or a callable making the views of a string prompt)")
    if is_text(prompts):
        if len(views) != len(prompts):
            raise ValueError(f"views has {len(views)} groups but there are {len(prompts)} prompts: one group of "
                             "views per prompt")
        sizes = {len(g) if isinstance(g, (list, tuple)) and all(isinstance(v, str) for v in g) else -1
                 for g in views}
        if -1 in sizes or len(sizes) != 1 or min(sizes) < 2:
            raise ValueError("views: every group must be a list of the same number (at least 2) of strings")
        return [[group[v] for group in views] for v in range(sizes.pop())]
    if len(views) < 2:
        raise ValueError("views must hold at least 2 tokenized views of the prompts")
    return list(views)


def augmentations(n_views: int = 2, seed: int = 0, edits: int = 1):
    """A callable making ``n_views`` views of a string prompt by random
    edits, as Skean et al.'s augmentations do (their code splits words,
    inserts random characters and makes keyboard typos): each view applies
    ``edits`` of them at random places. Seeded per prompt, so a prompt's
    views are the same in every run. This is pyfastent's own augmentation,
    not a copy of theirs."""
    n_views = _checks.positive_int("n_views", n_views)
    edits = _checks.positive_int("edits", edits)
    if n_views < 2:
        raise ValueError(f"n_views must be at least 2, got {n_views}")

    def views(prompt: str) -> list:
        rng = random.Random(f"{seed}:{prompt}")
        return [_edited(prompt, rng, edits) for _ in range(n_views)]

    return views


def _edited(text: str, rng: random.Random, edits: int) -> str:
    for _ in range(edits):
        if not text:
            return rng.choice(string.ascii_lowercase)
        where = rng.randrange(len(text))
        kind = rng.choice(("split", "insert", "typo"))
        if kind == "split" and text[where].isalpha() and 0 < where:
            text = text[:where] + " " + text[where:]
        elif kind == "typo" and text[where].lower() in KEYBOARD:
            text = text[:where] + rng.choice(KEYBOARD[text[where].lower()]) + text[where + 1:]
        else:
            text = text[:where] + rng.choice(string.ascii_lowercase) + text[where:]
    return text


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
