"""Hooks on any ``nn.Module``: which layers (``select_layers``), the model's
modes while measuring (``model_mode``), what a module's output or input
stands for (``hidden_state``, ``input_state``), and one hooked forward pass
(``run_hooked``). Every helper that runs a model stands on this room."""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Callable

import torch
from torch import nn

from pyfastent.nn.sequence import INPUT_SUFFIX, block_layers

# Leaf modules that do not change the representation: skipped by default.
PASSIVE = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Flatten, nn.Unflatten, nn.Identity)


def select_layers(model: nn.Module, layers=None) -> list[str]:
    """Names of the modules chosen by ``layers``, in registration order.

    Args:
        layers: ``None`` (the defaults: for a model with repeated blocks,
            a transformer, the embedding output and every block's output,
            see ``pyfastent.nn.sequence``; for any other model every leaf
            module except dropout, flatten and identity), a list of module
            names and/or module types, one type or tuple of types, or a
            predicate ``f(name, module) -> bool``. A name may end in
            ``":input"`` to take that module's input (its first tensor
            argument) instead of its output.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    modules = OrderedDict((name, m) for name, m in model.named_modules() if name)
    if layers is None:
        return block_layers(model) or [n for n, m in modules.items()
                                       if not list(m.children()) and not isinstance(m, PASSIVE)]
    if isinstance(layers, type) or (isinstance(layers, tuple) and layers and all(isinstance(t, type) for t in layers)):
        return [n for n, m in modules.items() if isinstance(m, layers)]
    if callable(layers):
        return [n for n, m in modules.items() if layers(n, m)]
    if isinstance(layers, str):
        layers = [layers]
    names, types = [], []
    for item in layers:
        if isinstance(item, str):
            if item.removesuffix(INPUT_SUFFIX) not in modules:
                close = ", ".join(list(modules)[:12])
                raise ValueError(f"layers: the model has no module named {item!r} (modules: {close}...)")
            names.append(item)
        elif isinstance(item, type):
            types.append(item)
        else:
            raise ValueError(f"layers entries must be module names or types, got {item!r}")
    typed = [n for n, m in modules.items() if types and isinstance(m, tuple(types))]
    return [k for n in modules for k in (n + INPUT_SUFFIX, n) if k in names or k in typed]


@contextlib.contextmanager
def model_mode(model: nn.Module, train_mode: bool = False):
    """Run the block with the model in eval mode, then give every submodule
    its own mode back, exceptions included: a frozen BatchNorm inside a
    training model stays frozen. With ``train_mode=True`` the modules keep
    their modes, and the buffers that forward passes in train mode update
    (batch-norm running statistics) are restored afterwards: measuring
    leaves the model as it was either way."""
    modes = [(m, m.training) for m in model.modules()]
    saved = {k: b.clone() for k, b in model.named_buffers()} if train_mode else {}
    if not train_mode:
        model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
        buffers = dict(model.named_buffers())
        with torch.no_grad():
            for k, value in saved.items():
                buffers[k].copy_(value)


class StopPass(Exception):
    """Raised from a hook to end a forward pass once the last layer it is
    run for has fired (the rest of the network is not needed)."""


def hidden_state(output) -> torch.Tensor | None:
    """The tensor a module's output stands for: itself; the first tensor of
    a tuple or list; ``last_hidden_state`` (else the first tensor) of a
    dict-like output such as a Hugging Face ``ModelOutput``; ``None`` if none."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        if isinstance(output.get("last_hidden_state"), torch.Tensor):
            return output["last_hidden_state"]
        return next((v for v in output.values() if isinstance(v, torch.Tensor)), None)
    if isinstance(output, (tuple, list)):
        return next((o for o in output if isinstance(o, torch.Tensor)), None)
    return None


def input_state(args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The tensor a module's input stands for: its first tensor argument,
    else its ``hidden_states`` keyword, else its first tensor keyword."""
    first = next((a for a in args if isinstance(a, torch.Tensor)), None)
    if first is not None:
        return first
    if isinstance(kwargs.get("hidden_states"), torch.Tensor):
        return kwargs["hidden_states"]
    return next((v for v in kwargs.values() if isinstance(v, torch.Tensor)), None)


def hook_layer(modules: dict, name: str, record: Callable[[object], None]):
    """Register ``record(value)`` on the layer ``name``: a forward hook
    giving the module's output, or, for ``"<module>:input"``, a pre-hook
    giving its input (``input_state``, wrapped in a tuple so that
    ``hidden_state`` reads it like an output). Returns the handle."""
    if name.endswith(INPUT_SUFFIX):
        return modules[name.removesuffix(INPUT_SUFFIX)].register_forward_pre_hook(
            lambda module, args, kwargs: record((input_state(args, kwargs),)), with_kwargs=True)
    return modules[name].register_forward_hook(lambda module, args, output: record(output))


def call_model(model: nn.Module, inputs):
    """``model(**inputs)`` for a dict, ``model(inputs)`` otherwise."""
    return model(**inputs) if isinstance(inputs, dict) else model(inputs)


def run_hooked(model: nn.Module, inputs, names: list[str], sink: Callable[[str, torch.Tensor], None],
               required: tuple = (), last: str | None = None) -> list[str]:
    """One forward pass under ``no_grad``; ``sink(name, output)`` gets each
    selected module's output (its ``hidden_state``, detached) as soon as it
    is computed. It is the tensor the module produced: a later in-place op
    (``ReLU(inplace=True)`` after a batch norm, a residual ``+=``) changes
    it after the sink returns, so a sink that keeps it must copy it.

    A module called k > 1 times reports its outputs as ``name``,
    ``name#2``, …, ``name#k``. With ``last`` set, the pass ends once that
    one has fired. Hooks are removed even when the forward pass raises.
    Returns the names in the order they fired; a name in ``required`` that
    never fired is a ValueError naming it.
    """
    fired: list[str] = []
    calls: dict[str, int] = {}

    def hook_for(name):
        def hook(output):
            out = hidden_state(output)
            if out is None:
                raise ValueError(f"layer {name!r} returned {type(output).__name__}, which holds no tensor")
            calls[name] = calls.get(name, 0) + 1
            key = name if calls[name] == 1 else f"{name}#{calls[name]}"
            fired.append(key)
            sink(key, out.detach())
            if key == last:
                raise StopPass

        return hook

    modules = dict(model.named_modules())
    handles = [hook_layer(modules, n, hook_for(n)) for n in names]
    try:
        with torch.no_grad():
            call_model(model, inputs)
    except StopPass:
        pass
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in required if n not in calls]
    if missing and last is None:
        raise ValueError(f"layers: {', '.join(map(repr, missing))} did not run during the forward pass")
    return fired


def named_layers(layers) -> tuple:
    """The names given explicitly in ``layers`` (those must exist and run)."""
    if isinstance(layers, str):
        return (layers,)
    if isinstance(layers, (list, tuple)):
        return tuple(item for item in layers if isinstance(item, str))
    return ()
