"""Sequence models (transformers) in the layer helpers: their repeated
blocks, the embedding output, and the pooling of token states into one
vector per sequence (DESIGN.md, "Token-level measures for transformers").

A *block list* is a ``ModuleList`` of two or more modules of one class that
have sub-modules of their own: the encoder or decoder layers of every
Hugging Face transformer (``encoder.layer``, ``h``, ``layers``, ...). Lists
nested inside another block list (the experts of a mixture-of-experts
block) are not block lists themselves. A model with block lists is measured
at the same points by every helper (``capture``, ``layer_sweep``,
``InformationPlane``, ``token_profile``, the command line): the embedding
output (the input of its first block, named ``"<first block>:input"``),
every block's output, in order, and the final norm's output where the model
has one (GPT-2's ``ln_f``, Llama's ``norm``): Hugging Face's
``hidden_states`` are the first two kinds, except that their last entry is
taken after the final norm.

A block's output is ``[B, T, D]``: T tokens per sequence. The variable of a
sweep or tracker is one vector per sequence; ``pooling`` says how it is
made from the tokens:

- ``"mean"``: the mean over the sequence's real tokens, those where the
  batch's ``attention_mask`` (a ``[B, T]`` entry of the model's keyword
  inputs) is 1; every token when the inputs carry no mask of that shape
  (a ViT's patches and class token);
- ``"first"``: the first real token (BERT's and ViT's ``[CLS]``; under
  left padding the first position the mask marks real);
- ``"last"``: the last real token (what a decoder's next-token prediction
  reads), whichever side the padding is on;
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
RESIDUAL_STREAM = "consecutive blocks (the residual stream), then the final norm"
NORMS = (nn.LayerNorm, nn.GroupNorm, getattr(nn, "RMSNorm", nn.LayerNorm))


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
    input (the embedding output), every block's output, then the final
    norm's output where the model has one (``final_norm``); ``[]`` when the
    model has no block list."""
    lists = block_lists(model)
    if not lists:
        return []
    modules = dict(model.named_modules())
    names = [f"{name}.{index}" for name in lists for index in range(len(modules[name]))]
    norm = final_norm(model, lists[-1])
    return [names[0] + INPUT_SUFFIX] + names + ([norm] if norm else [])


def final_norm(model: nn.Module, blocks: str) -> str | None:
    """The name of the normalization applied to the last block's output
    (GPT-2's ``ln_f``, Llama's ``norm``, ViT's ``layernorm``): the first
    module registered after the block list ``blocks`` in the modules that
    enclose it, when that module is a normalization layer; else ``None``
    (BERT, whose encoder output is not normalized again)."""
    path = blocks.split(".")
    modules = dict(model.named_modules())
    for depth in range(len(path) - 1, -1, -1):
        parent = ".".join(path[:depth])
        children = list(modules[parent].named_children()) if parent else list(model.named_children())
        names = [name for name, _ in children]
        after = children[names.index(path[depth]) + 1:]
        if after:
            name, module = after[0]
            is_norm = isinstance(module, NORMS) or type(module).__name__.endswith("Norm")
            return (f"{parent}.{name}" if parent else name) if is_norm else None
    return None


def point_descriptions(model: nn.Module, names: list) -> dict:
    """What each default point of a model with block lists is, in words,
    for metadata and tables (other names are described as modules)."""
    lists = block_lists(model)
    norm = final_norm(model, lists[-1]) if lists else None
    out = {}
    for name in names:
        if name.endswith(INPUT_SUFFIX) and lists and name.removesuffix(INPUT_SUFFIX) == f"{lists[0]}.0":
            out[name] = "the embedding output (the first block's input)"
        elif name == norm:
            out[name] = "the final norm's output (the model's last_hidden_state)"
        elif any(name.startswith(f"{blocks}.") and name[len(blocks) + 1:].isdigit() for blocks in lists):
            out[name] = f"the output of block {name.rsplit('.', 1)[1]}"
        else:
            out[name] = f"the {'input' if name.endswith(INPUT_SUFFIX) else 'output'} of module " \
                        f"{name.removesuffix(INPUT_SUFFIX)!r}"
    return out


def residual_pairs(model: nn.Module, order: list) -> list | None:
    """Consecutive pairs of ``order`` when every name in it is a default
    point of the same block list (the first block's input, the blocks, the
    final norm), in order; else ``None``."""
    lists = block_lists(model)
    modules = dict(model.named_modules())
    for name in lists:
        chain = [f"{name}.{index}" for index in range(len(modules[name]))]
        norm = final_norm(model, name)
        chain = [chain[0] + INPUT_SUFFIX] + chain + ([norm] if norm else [])
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
    if mask is None:
        return {"mean": lambda: out.mean(1), "first": lambda: out[:, 0], "last": lambda: out[:, -1]}[how]()
    counts = mask.sum(1)
    if bool((counts == 0).any()):
        raise ValueError(f"attention_mask: sequence {int(torch.nonzero(counts == 0)[0])} of a batch has no real "
                         "tokens to pool")
    rows = torch.arange(batch, device=out.device)
    if how == "first":  # the first position whose mask is 1, whichever side the padding is on
        return out[rows, torch.argmax(mask.to(torch.int8), dim=1)]
    if how == "last":
        return out[rows, tokens - 1 - torch.argmax(mask.flip(1).to(torch.int8), dim=1)]
    weights = mask.to(out.dtype)[:, :, None]  # [B, T, 1]
    return (out * weights).sum(1) / counts.to(out.dtype)[:, None]
