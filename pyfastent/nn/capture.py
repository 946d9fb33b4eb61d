"""Layer activations of any ``nn.Module`` through forward hooks."""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Callable

import torch
from torch import nn

from pyfastent.nn.sequence import INPUT_SUFFIX, block_layers, resolve_pooling

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
    from pyfastent._memory import format_bytes
    from pyfastent.nn import stream
    from pyfastent.nn.inputs import Probe

    names = select_layers(model, layers)
    probe = Probe(inputs, batch_size=batch_size, name="inputs")
    pooling = resolve_pooling(model, pooling)
    parts: "OrderedDict[str, list]" = OrderedDict()
    with model_mode(model, train_mode):
        found = stream.learn_layers(model, probe, names, _named(layers), pooling)
        budget = stream.resolve_budget(memory_budget, found.device)
        if probe.n is not None:
            need = probe.n * sum(layer.sample_bytes for layer in found.layers)
            if need > budget:
                raise MemoryError(f"the captured activations would take {format_bytes(need)}, above the memory "
                                  f"budget of {format_bytes(budget)}; capture fewer layers (layers=) or use "
                                  "layer_sweep, which keeps only N×N numbers per layer")
        shapes = {layer.name: tuple(layer.shape) for layer in found.layers}
        for index, batch in enumerate(probe.batches()):
            inputs_b = found.convert(batch.inputs)

            def keep(name, out):
                if name not in shapes:
                    return
                out = found.pool(out, inputs_b)
                if tuple(out.shape[1:]) != shapes[name]:
                    raise ValueError(f"layer {name!r} outputs samples of shape {tuple(out.shape[1:])} in batch "
                                     f"{index} but {shapes[name]} in the first; sequences padded to other lengths "
                                     "need pooling='mean' (or 'first', 'last')")
                parts.setdefault(name, []).append(out.clone())

            run_hooked(model, inputs_b, found.modules, keep, _named(layers))
    return OrderedDict((k, v[0] if len(v) == 1 else torch.cat(v)) for k, v in parts.items())


def _named(layers) -> tuple:
    if isinstance(layers, str):
        return (layers,)
    if isinstance(layers, (list, tuple)):
        return tuple(item for item in layers if isinstance(item, str))
    return ()
