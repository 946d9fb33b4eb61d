"""Layer activations of any ``nn.Module`` over a probe set: one streamed
pass (``pyfastent.nn.stream``) whose sink keeps every selected layer's rows."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from pyfastent._memory import format_bytes
from pyfastent.nn import planner, stream
from pyfastent.nn.hooks import model_mode, named_layers, select_layers
from pyfastent.nn.inputs import Probe
from pyfastent.nn.sequence import resolve_pooling


def capture(model: nn.Module, inputs, layers=None, batch_size: int | None = None, train_mode: bool = False,
            memory_budget=None, pooling: str = "none") -> "OrderedDict[str, torch.Tensor]":
    """Activations of the chosen layers over a probe set.

    Args:
        model: any ``nn.Module``; it runs in eval mode (``train_mode=True``:
            in its own mode), and afterwards every submodule has its own
            mode back.
        inputs: a tensor or array (N, ...), a dict of them (keyword inputs,
            e.g. a tokenizer's output), or a re-iterable of batches (see
            ``pyfastent.nn.inputs``). Floating inputs are converted to the
            model's dtype and device; integer ones only moved.
        layers: see ``select_layers``; explicitly named layers must exist
            and must run, else a ValueError names them.
        batch_size: run a tensor or dict ``inputs`` this many samples at a
            time; ``None``: all at once.
        memory_budget: bytes (or a string such as ``"4GB"``) the captured
            activations may take; ``None``: ``DEFAULT_BUDGET`` of what the
            device has free. More is a ``MemoryError`` before the pass.
        pooling: ``"none"`` (the default): outputs as the layer produced
            them; ``"mean"``, ``"first"``, ``"last"`` or ``"auto"``: each
            ``[B, T, D]`` output pooled over its tokens, the mask taken from
            the inputs' ``attention_mask`` (``pyfastent.nn.sequence``), as
            ``layer_sweep`` measures it. Batches padded to different lengths
            need a pooling.

    Returns:
        Ordered mapping of layer name to a copy of its outputs (pooled as
        asked; on the model's device), all batches concatenated, in the
        order the layers ran. Default layers whose output does not have the
        batch as its first dimension (position embeddings) are left out.
    """
    names = select_layers(model, layers)
    probe = Probe(inputs, batch_size=batch_size, name="inputs")
    pooling = resolve_pooling(model, pooling)
    with model_mode(model, train_mode):
        found = stream.learn_layers(model, probe, names, named_layers(layers), pooling)
        budget = planner.resolve_budget(memory_budget, found.device)
        if probe.n is not None:
            need = probe.n * sum(layer.sample_bytes for layer in found.layers)
            if need > budget:
                raise MemoryError(f"the captured activations would take {format_bytes(need)}, above the memory "
                                  f"budget of {format_bytes(budget)}; capture fewer layers (layers=) or use "
                                  "layer_sweep, which keeps only N×N numbers per layer")
        keep: dict = {}
        stream.run_pass(model, probe, found, [layer.name for layer in found.layers], stream.PassState(), keep)
    return OrderedDict((k, v[0] if len(v) == 1 else torch.cat(v)) for k, v in keep.items())
