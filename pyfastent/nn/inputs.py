"""The probe set as the model sees it (DESIGN.md, "Inputs and batches").

One rule for every helper that runs a model (``capture``, ``layer_sweep``,
``InformationPlane``, the command line):

- ``x`` is a tensor or array of N samples; a dict (or Hugging Face
  ``BatchEncoding``) of such tensors, passed to the model as keyword
  arguments; or a re-iterable of batches (a ``DataLoader``), each batch a
  tensor, a dict, an ``(inputs, labels)`` pair, or a one-element sequence
  of inputs (what a ``TensorDataset`` of inputs alone yields). Labels come from ``y=`` or
  from those pairs, never from inside a dict (a ``labels`` key goes to the
  model, as Hugging Face models expect).
- Floating inputs are converted to the model's parameter dtype and device;
  integer and bool inputs (token ids, masks) keep their dtype and are only
  moved to the device.
- Keyword inputs of a left-padded batch (an ``attention_mask`` with a pad
  before a real token) get ``position_ids`` from the mask when the model
  takes them and the user gave none (``with_positions``), so that every
  prompt has the states it has alone.
"""
from __future__ import annotations

import inspect
import copy
import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pyfastent import _checks


@dataclass
class Batch:
    """One mini-batch as the loader or the slicing gave it.

    Attributes:
        inputs: a tensor, or a dict of keyword arguments, unconverted.
        labels: [b] labels, or ``None``.
        size: b, the samples in it.
    """

    inputs: object
    labels: torch.Tensor | None
    size: int

    def take(self, count: int) -> "Batch":
        """Its first ``count`` samples."""
        labels = self.labels[:count] if self.labels is not None else None
        return Batch(_take(self.inputs, 0, count), labels, min(count, self.size))

    def tensors(self) -> list:
        """Its input tensors (one, or a dict's)."""
        if isinstance(self.inputs, torch.Tensor):
            return [self.inputs]
        return [v for v in self.inputs.values() if isinstance(v, torch.Tensor)]

    def sample_bytes(self) -> int:
        """Bytes of one sample of the inputs."""
        return sum(t.numel() * t.element_size() for t in self.tensors()) // max(self.size, 1)

    def sample_width(self) -> int:
        """Numbers in one sample of the inputs."""
        return sum(t.numel() for t in self.tensors()) // max(self.size, 1)


class Probe:
    """The probe samples: N of them, in batches, the same every time.

    Args:
        x: a tensor or array (N, ...), a dict of them, or a re-iterable of
            batches (see the module docstring).
        y: (N,) integer labels, or ``None`` (then ``(inputs, labels)``
            batches may carry them).
        batch_size: split a tensor or dict ``x`` into batches of this many
            samples; ``None``: one batch. Batches of an iterable are its own.
        name, label_name: the arguments' names, for errors.
    """

    def __init__(self, x, y=None, batch_size: int | None = None, name: str = "x", label_name: str = "y"):
        self.name, self.label_name = name, label_name
        self.batch_size = None if batch_size is None else _checks.positive_int("batch_size", batch_size)
        if isinstance(x, Mapping):
            self.kind = "dict"
            self.data = _as_dict(name, x)
            self.n = _dict_length(name, self.data)
        elif isinstance(x, (torch.Tensor, np.ndarray)) or hasattr(x, "__dlpack__"):
            self.kind = "tensor"
            self.data = _checks.as_tensor(name, x)
            if self.data.dim() == 0:
                raise ValueError(f"{name} must have a sample dimension (shape (N, ...)), got a scalar")
            self.n = self.data.shape[0]
        elif isinstance(x, Iterable) and not isinstance(x, (str, bytes)):
            self.kind = "batches"
            self.data = x
            self.n = _loader_length(x)
            if batch_size is not None:
                raise ValueError(f"batch_size applies to a tensor or dict {name}; a loader makes its own batches")
        else:
            raise ValueError(f"{name} must be a tensor or array of samples, a dict of them, or an iterable of "
                             f"batches (a DataLoader), got {type(x).__name__}")
        self.labels = None if y is None else _checks.labels(label_name, y)
        if self.labels is not None and self.n is not None and self.labels.shape[0] != self.n:
            raise ValueError(f"{label_name} has {self.labels.shape[0]} samples but {name} has {self.n}")
        self._started = None  # a one-shot iterator, once its first batch was taken: (first batch, the rest)

    def with_batch_size(self, batch_size: int | None) -> "Probe":
        """The same tensor or dict samples in batches of ``batch_size``
        (a loader's batches are its own: returned as it is)."""
        if self.kind == "batches" or batch_size == self.batch_size:
            return self
        other = copy.copy(self)
        other.batch_size = batch_size
        return other

    @property
    def one_shot(self) -> bool:
        """Whether the batches can be iterated only once (an iterator)."""
        return self.kind == "batches" and iter(self.data) is self.data

    @property
    def shuffles(self) -> bool:
        """Whether a DataLoader draws its batches in a new random order each pass."""
        sampler = getattr(self.data, "sampler", None)
        return self.kind == "batches" and isinstance(sampler, torch.utils.data.RandomSampler)

    def first_batch(self) -> Batch:
        """The first batch (kept for the next ``batches()`` of a one-shot iterator)."""
        if self.one_shot:
            if self._started is None:
                items = iter(self.data)
                try:
                    first = next(items)
                except StopIteration:
                    raise ValueError(f"{self.name} yielded no batches") from None
                self._started = (first, items)
            return self._batch(self._started[0], 0)
        for batch in self.batches():
            return batch
        raise ValueError(f"{self.name} yielded no batches")

    def batches(self) -> Iterator[Batch]:
        """The batches in order; every call starts from the first (a
        one-shot iterator can be walked once, after ``first_batch``)."""
        if self.kind != "batches":
            step = self.n if self.batch_size is None else self.batch_size
            for start in range(0, self.n, step):
                stop = min(start + step, self.n)
                labels = self.labels[start:stop] if self.labels is not None else None
                yield Batch(_take(self.data, start, stop), labels, stop - start)
            return
        seen = 0
        items = self.data
        if self._started is not None:
            first, rest = self._started
            self._started = (first, iter(()))  # walked once
            items = itertools.chain([first], rest)
        for i, item in enumerate(items):
            batch = self._batch(item, i)
            if self.labels is not None:
                if seen + batch.size > self.labels.shape[0]:
                    raise ValueError(f"{self.label_name} has {self.labels.shape[0]} samples but {self.name} has more")
                batch.labels = self.labels[seen:seen + batch.size]
            seen += batch.size
            yield batch
        if self.labels is not None and seen != self.labels.shape[0]:
            raise ValueError(f"{self.label_name} has {self.labels.shape[0]} samples but {self.name} has {seen}")

    def _batch(self, item, index: int) -> Batch:
        labels = None
        if isinstance(item, (tuple, list)) and len(item) == 1:  # a TensorDataset of inputs alone
            item = item[0]
        elif isinstance(item, (tuple, list)):
            if len(item) != 2:
                raise ValueError(f"{self.name}: batch {index} is a sequence of {len(item)} items; a batch is a "
                                 "tensor, a dict, or an (inputs, labels) pair")
            item, labels = item
            if self.labels is not None:
                raise ValueError(f"{self.name}: batch {index} carries labels and {self.label_name} was given too; "
                                 "give them once")
            labels = _checks.as_tensor(f"the labels of batch {index}", labels)
        if isinstance(item, Mapping):
            inputs = _as_dict(f"{self.name} (batch {index})", item)
            size = _dict_length(f"{self.name} (batch {index})", inputs)
        else:
            inputs = _checks.as_tensor(f"{self.name} (batch {index})", item)
            if inputs.dim() == 0:
                raise ValueError(f"{self.name}: batch {index} is a scalar, not a batch of samples")
            size = inputs.shape[0]
        if labels is not None and labels.reshape(-1).shape[0] != size:
            raise ValueError(f"{self.name}: batch {index} has {size} samples but {labels.numel()} labels")
        return Batch(inputs, labels.reshape(-1) if labels is not None else None, size)


def _as_dict(name: str, mapping: Mapping) -> dict:
    out = {}
    for key, value in mapping.items():
        if isinstance(value, (torch.Tensor, np.ndarray)) or hasattr(value, "__dlpack__"):
            value = _checks.as_tensor(f"{name}[{key!r}]", value)
        out[key] = value
    return out


def _dict_length(name: str, data: dict) -> int:
    lengths = {k: v.shape[0] for k, v in data.items() if isinstance(v, torch.Tensor) and v.dim() > 0}
    if not lengths:
        raise ValueError(f"{name} is a dict without tensors of samples")
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{name}: its tensors disagree on the number of samples: {lengths}")
    return next(iter(lengths.values()))


def _take(data, start: int, stop: int):
    """Samples start:stop of a tensor or of each sample tensor of a dict."""
    if isinstance(data, dict):
        return {k: v[start:stop] if isinstance(v, torch.Tensor) and v.dim() > 0 else v for k, v in data.items()}
    return data[start:stop]


def _loader_length(loader) -> int | None:
    """Samples a DataLoader yields, when its dataset has a length and it
    keeps every sample; ``None`` when they can only be counted."""
    dataset = getattr(loader, "dataset", None)
    if not isinstance(loader, torch.utils.data.DataLoader) or dataset is None or getattr(loader, "drop_last", True):
        return None
    try:
        return len(dataset)
    except TypeError:
        return None


def parameter_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    """The dtype and device of the model's first floating parameter (or
    buffer); the default dtype on the CPU for a model without any."""
    reference = next((p for p in list(model.parameters()) + list(model.buffers()) if p.is_floating_point()), None)
    if reference is None:
        return torch.get_default_dtype(), torch.device("cpu")
    return reference.dtype, reference.device


def to_model(inputs, dtype: torch.dtype, device: torch.device):
    """Inputs as the model takes them: floating tensors in ``dtype`` on
    ``device``; integer and bool tensors (token ids, masks) moved only;
    other values of a dict untouched."""
    if isinstance(inputs, dict):
        return {k: to_model(v, dtype, device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    if inputs.is_floating_point():
        return inputs.to(device=device, dtype=dtype)
    return inputs.to(device=device)


def takes_positions(model: nn.Module) -> bool:
    """Whether the model's forward takes ``position_ids`` (Hugging Face
    models with absolute or rotary positions)."""
    try:
        return "position_ids" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def with_positions(inputs):
    """Keyword inputs with ``position_ids`` built from a left-padded
    ``attention_mask`` [B, T], as Hugging Face's generation builds them
    (the real tokens of every sequence at positions 0, 1, ...; pads at 1),
    when the inputs have none: without them a left-padded sequence's tokens
    sit at shifted absolute positions and its states change. Other inputs
    (no mask, no left padding, positions given) are returned unchanged."""
    if not isinstance(inputs, dict) or "position_ids" in inputs:
        return inputs
    mask = inputs.get("attention_mask")
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.shape[1] < 2:
        return inputs
    real = mask != 0
    if not bool((~real[:, :-1] & real[:, 1:]).any()):  # no pad before a real token: not left-padded
        return inputs
    positions = real.long().cumsum(-1) - 1
    return {**inputs, "position_ids": positions.masked_fill(~real, 1)}


def fingerprint(batch: Batch) -> tuple:
    """What identifies a batch's values: shapes, dtypes and two sums of each
    tensor (a plain and a position-weighted one, in float64), so that a
    second pass can check it sees the same batches in the same order."""
    out = []
    for t in batch.tensors():
        flat = t.detach().reshape(-1).to(torch.float64)
        weights = torch.arange(flat.numel(), device=flat.device, dtype=torch.float64).remainder_(1021).add_(1)
        out.append((tuple(t.shape), str(t.dtype), float(flat.sum()), float(flat @ weights)))
    return tuple(out)
