"""Sequence models (transformers) in the layer helpers: their repeated
blocks, the embedding output, and the pooling of token states into one
vector per sequence (DESIGN.md, "Token-level measures for transformers").

A *block list* is a ``ModuleList`` of two or more modules of one class that
have sub-modules of their own: the encoder or decoder layers of every
Hugging Face transformer (``encoder.layer``, ``h``, ``layers``, ...). Lists
nested inside another block list (the experts of a mixture-of-experts
block) are not block lists themselves. A model with block lists is measured
at the embedding output (the input of its first block, named
``"<first block>:input"``) and at every block's output, in order.

A block's output is ``[B, T, D]``: T tokens per sequence. The variable of a
sweep or tracker is one vector per sequence; ``pooling`` says how it is
made from the tokens:

- ``"mean"``: the mean over the sequence's real tokens, those where the
  batch's ``attention_mask`` (a ``[B, T]`` entry of the model's keyword
  inputs) is 1; every token when the inputs carry no mask of that shape
  (a ViT's patches and class token);
- ``"first"``: the first token (BERT's and ViT's ``[CLS]``);
- ``"last"``: the last real token (what a decoder's next-token prediction reads);
- ``"none"``: all T·D numbers (needs the same T in every batch);
- ``"auto"`` (the default): ``"mean"`` for a model with block lists,
  ``"none"`` otherwise. Only three-dimensional outputs are pooled; a conv
  map stays as it is.
"""
from __future__ import annotations

import torch
from torch import nn

from pyfastent import _checks

POOLINGS = ("auto", "mean", "first", "last", "none")
INPUT_SUFFIX = ":input"  # "<module>:input" names a module's input instead of its output
RESIDUAL_STREAM = "consecutive blocks (the residual stream)"


def block_lists(model: nn.Module) -> list[str]:
    """Names of the model's block lists, outermost only, in registration order."""
    found: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) < 2:
            continue
        kinds = {type(child) for child in module}
        if len(kinds) != 1 or not all(list(child.children()) for child in module):
            continue
        if any(name.startswith(outer + ".") for outer in found):
            continue
        found.append(name)
    return found


def block_layers(model: nn.Module) -> list[str]:
    """The default layers of a model with block lists: the first block's
    input (the embedding output), then every block's output; ``[]`` when
    the model has none."""
    lists = block_lists(model)
    if not lists:
        return []
    modules = dict(model.named_modules())
    names = [f"{name}.{index}" for name in lists for index in range(len(modules[name]))]
    return [names[0] + INPUT_SUFFIX] + names


def residual_pairs(model: nn.Module, order: list) -> list | None:
    """Consecutive pairs of ``order`` when every name in it is a block (or
    the first block's input) of the same block list, in order; else ``None``."""
    lists = block_lists(model)
    modules = dict(model.named_modules())
    for name in lists:
        chain = [f"{name}.{index}" for index in range(len(modules[name]))]
        chain = [chain[0] + INPUT_SUFFIX] + chain
        positions = [chain.index(n) if n in chain else -1 for n in order]
        if len(order) > 1 and -1 not in positions and positions == sorted(positions):
            return list(zip(order[:-1], order[1:]))
    return None


def resolve_pooling(model: nn.Module, pooling: str) -> str:
    """``pooling`` with ``"auto"`` decided for this model (see the module docstring)."""
    _checks.choice("pooling", pooling, POOLINGS)
    if pooling != "auto":
        return pooling
    return "mean" if block_lists(model) else "none"


def token_mask(inputs, batch: int, tokens: int) -> torch.Tensor | None:
    """The ``[B, T]`` attention mask of a batch's keyword inputs, as bool,
    when it has the shape of a ``[B, T, D]`` output; else ``None``."""
    if not isinstance(inputs, dict):
        return None
    mask = inputs.get("attention_mask")
    if isinstance(mask, torch.Tensor) and tuple(mask.shape) == (batch, tokens):
        return mask.bool()
    return None


def pool(out: torch.Tensor, inputs, how: str) -> torch.Tensor:
    """One vector per sequence of a ``[B, T, D]`` output, pooled ``how``
    (``"mean"``, ``"first"``, ``"last"``); other outputs, and ``"none"``,
    unchanged. ``inputs`` are the batch's model inputs (for the mask)."""
    if how == "none" or out.dim() != 3:
        return out
    batch, tokens, _ = out.shape
    mask = token_mask(inputs, batch, tokens)
    if how == "first":
        return out[:, 0]
    if mask is None:
        return out.mean(1) if how == "mean" else out[:, -1]
    counts = mask.sum(1)
    if bool((counts == 0).any()):
        raise ValueError(f"attention_mask: sequence {int(torch.nonzero(counts == 0)[0])} of a batch has no real "
                         "tokens to pool")
    if how == "last":  # the last position whose mask is 1, whichever side the padding is on
        last = tokens - 1 - torch.argmax(mask.flip(1).to(torch.int8), dim=1)
        return out[torch.arange(batch, device=out.device), last]
    weights = mask.to(out.dtype)[:, :, None]  # [B, T, 1]
    return (out * weights).sum(1) / counts.to(out.dtype)[:, None]
