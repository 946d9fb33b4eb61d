"""Layer activations of any ``nn.Module`` through forward hooks."""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

# Leaf modules that do not change the representation: skipped by default.
PASSIVE = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Flatten, nn.Unflatten, nn.Identity)


def select_layers(model: nn.Module, layers=None) -> list[str]:
    """Names of the modules chosen by ``layers``, in registration order.

    Args:
        layers: ``None`` (every leaf module except dropout, flatten and
            identity), a list of module names and/or module types, one
            type or tuple of types, or a predicate ``f(name, module) -> bool``.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    modules = OrderedDict((name, m) for name, m in model.named_modules() if name)
    if layers is None:
        return [n for n, m in modules.items() if not list(m.children()) and not isinstance(m, PASSIVE)]
    if isinstance(layers, type) or (isinstance(layers, tuple) and layers and all(isinstance(t, type) for t in layers)):
        return [n for n, m in modules.items() if isinstance(m, layers)]
    if callable(layers):
        return [n for n, m in modules.items() if layers(n, m)]
    if isinstance(layers, str):
        layers = [layers]
    names, types = [], []
    for item in layers:
        if isinstance(item, str):
            if item not in modules:
                close = ", ".join(list(modules)[:12])
                raise ValueError(f"layers: the model has no module named {item!r} (modules: {close}...)")
            names.append(item)
        elif isinstance(item, type):
            types.append(item)
        else:
            raise ValueError(f"layers entries must be module names or types, got {item!r}")
    typed = [n for n, m in modules.items() if types and isinstance(m, tuple(types))]
    return [n for n in modules if n in names or n in typed]


def run_hooked(model: nn.Module, inputs, names: list[str], sink: Callable[[str, torch.Tensor], None],
               required: tuple = ()) -> list[str]:
    """One forward pass under ``no_grad``; ``sink(name, activation)`` gets
    a copy of each selected module's output as soon as it is computed: a
    later in-place op (``ReLU(inplace=True)`` after a batch norm, a residual
    ``+=``) changes the module's output tensor, never what was recorded.

    A module called k > 1 times reports its outputs as ``name``,
    ``name#2``, …, ``name#k``. Tuple outputs report their first tensor.
    Hooks are removed even when the forward pass raises. Returns the names
    in the order they fired; a name in ``required`` that never fired is a
    ValueError naming it.
    """
    fired: list[str] = []
    calls: dict[str, int] = {}

    def hook_for(name):
        def hook(module, args, output):
            out = output
            if isinstance(out, (tuple, list)):
                out = next((o for o in out if isinstance(o, torch.Tensor)), None)
            if not isinstance(out, torch.Tensor):
                raise ValueError(f"layer {name!r} returned {type(output).__name__}, not a tensor")
            calls[name] = calls.get(name, 0) + 1
            key = name if calls[name] == 1 else f"{name}#{calls[name]}"
            fired.append(key)
            sink(key, out.detach().clone())

        return hook

    modules = dict(model.named_modules())
    handles = [modules[n].register_forward_hook(hook_for(n)) for n in names]
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in required if n not in calls]
    if missing:
        raise ValueError(f"layers: {', '.join(map(repr, missing))} did not run during the forward pass")
    return fired


def capture(model: nn.Module, inputs, layers=None) -> "OrderedDict[str, torch.Tensor]":
    """Activations of the chosen layers for one forward pass.

    Args:
        model: any ``nn.Module``; its train/eval mode is left as it is.
        inputs: the batch passed to ``model(inputs)``.
        layers: see ``select_layers``; explicitly named layers must exist
            and must run, else a ValueError names them.

    Returns:
        Ordered mapping of layer name to a copy of its output as the layer
        produced it (on the model's device), in the order the layers ran.
    """
    names = select_layers(model, layers)
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    run_hooked(model, inputs, names, out.__setitem__, required=_named(layers))
    return out


def _named(layers) -> tuple:
    if isinstance(layers, str):
        return (layers,)
    if isinstance(layers, (list, tuple)):
        return tuple(item for item in layers if isinstance(item, str))
    return ()
