"""Hooks that record the training samples a model sees, for layer transfer
entropy (``InformationPlane(transfer_entropy=...)``).

They sit on the user's model during the user's own training loop, so they
must never make it fail (DESIGN.md, "Our hooks never fail the user's
model"): each forward call is recorded whole or not at all. The values of a
call are buffered while the hooks fire and added to the series when the
model's forward returns; a call whose inputs or outputs cannot be read
(no tensor, token ids of a model without an embedding layer to stand for
them, widths that change between batches) is left out of the series with
one ``HookWarning`` per reason, and the model's output is untouched.

The input series is the tracker's variable X: the embedding output when X
is that layer (token ids and keyword inputs of a transformer), else each
call's input tensor. ``[B, T, D]`` outputs are pooled as the tracker pools
them, with the call's own ``attention_mask``.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Callable

import torch
from torch import nn

from pyfastent._warnings import HookWarning
from pyfastent.nn import sequence
from pyfastent.nn.hooks import hidden_state, hook_layer
from pyfastent.nn.transfer import INPUT, TrainingSeries



class TrainingRecorder:
    """Forward hooks feeding ``series`` with every training call's input
    and layer outputs (one row per sample), while ``active()`` is true.

    Args:
        net: the model (unwrapped from DDP).
        names: the layers to record (``select_layers`` names).
        series: where complete calls go.
        pooling: how ``[B, T, D]`` outputs become one row per sample
            (``pyfastent.nn.sequence``; ``"auto"`` decided for ``net``).
        active: whether a call is a training sample (the model in training
            mode, and not a probe pass of the tracker itself).
        x_layer: the layer whose output is X (the tracker's X when it is the
            embedding output), or ``None``: X is each call's input tensor
            (its first positional tensor, else its first tensor argument).
    """

    def __init__(self, net: nn.Module, names: list, series: TrainingSeries, pooling: str,
                 active: Callable[[], bool], x_layer: str | None):
        self.net, self.names, self.series = net, list(names), series
        self.pooling = sequence.resolve_pooling(net, pooling)
        self.active, self.x_layer = active, x_layer
        self.warned: set = set()
        self.pending: dict | None = None  # this call's rows so far; None: not recording it
        self.inputs: dict = {}
        modules = dict(net.named_modules())
        extra = [x_layer] if x_layer is not None and x_layer not in self.names else []
        self.handles = [net.register_forward_pre_hook(self._begin, with_kwargs=True)]
        self.handles += [hook_layer(modules, n, self._recorder(n)) for n in self.names + extra]
        self.handles.append(net.register_forward_hook(self._commit))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _begin(self, module, args, kwargs):
        self.pending = None
        if not self.active():
            return
        self.inputs = _named_arguments(self.net, args, kwargs)
        self.pending = {}
        if self.x_layer is not None:
            return
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if first is None:
            first = next((v for v in self.inputs.values() if isinstance(v, torch.Tensor)), None)
        if first is None or first.dim() < 1:
            self._skip("it has no tensor input of samples to record as X")
            return
        self.pending[INPUT] = _row_copy(first)

    def _recorder(self, name: str):
        def record(output):
            if self.pending is None or name in self.pending:  # not recorded, or a reused module's later call
                return
            try:
                out = hidden_state(output)
                if out is None:
                    raise ValueError(f"layer {name!r} returned {type(output).__name__}, which holds no tensor")
                self.pending[name] = _row_copy(sequence.pool(out, self.inputs, self.pooling))
            except (ValueError, RuntimeError, IndexError) as exc:
                self._skip(str(exc))
        return record

    def _commit(self, module, args, output):
        pending, self.pending = self.pending, None
        if pending is None:
            return
        if self.x_layer is not None:
            if self.x_layer not in pending:
                self._skip(f"the embedding output {self.x_layer!r} that stands for X did not run")
                return
            pending[INPUT] = pending.pop(self.x_layer) if self.x_layer not in self.names else pending[self.x_layer]
        order = [INPUT] + [n for n in self.names if n != self.x_layer]
        missing = [n for n in order if n not in pending]
        rows = {n: pending[n] for n in order if n in pending}
        sizes = {t.shape[0] for t in rows.values()}
        if missing or len(sizes) != 1:
            self._skip(f"layers {', '.join(map(repr, missing))} did not run" if missing
                       else f"its layers gave different sample counts {sorted(sizes)}")
            return
        changed = [n for n, t in rows.items() if not self.series.accepts(n, t)]
        if changed:
            self._skip(f"the samples of {', '.join(map(repr, changed))} have another width than in earlier calls "
                       "(sequences of another length: pass pooling='mean' to the tracker)")
            return
        for name, rows_of in rows.items():
            self.series.add(name, rows_of)

    def _skip(self, reason: str) -> None:
        self.pending = None
        if reason not in self.warned:
            self.warned.add(reason)
            warnings.warn(f"layer transfer entropy: a training call of {type(self.net).__name__} was not recorded: "
                          f"{reason}. Its samples are left out of the TE series; the model ran unchanged.",
                          HookWarning, stacklevel=2)


def _named_arguments(net: nn.Module, args: tuple, kwargs: dict) -> dict:
    """The call's arguments by name (positional ones bound to the forward's
    signature), so that an ``attention_mask`` is found however it was passed."""
    try:
        signature = inspect.signature(net.forward)
        bound = signature.bind_partial(*args, **kwargs).arguments
    except (TypeError, ValueError):
        return dict(kwargs)
    named = {}
    for key, value in bound.items():
        if signature.parameters[key].kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        else:
            named[key] = value
    return named


def _row_copy(out: torch.Tensor) -> torch.Tensor:
    """[B, n] float32 on the CPU, a copy (in-place ops later in the forward
    pass must not change it)."""
    if out.dim() < 1:
        raise ValueError(f"an output of shape {tuple(out.shape)} has no sample dimension")
    return out.detach().reshape(out.shape[0], -1).to("cpu", torch.float32, copy=True)
