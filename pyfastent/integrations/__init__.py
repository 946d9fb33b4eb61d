"""Where researchers already work: loggers and training frameworks.

Sinks (``InformationPlane(..., sinks=[...])``, see
``pyfastent.nn.sinks``): ``TensorBoardSink``, ``WandbSink``,
``MLflowSink``. Callbacks: ``pyfastent.integrations.lightning`` and
``pyfastent.integrations.transformers``. Each imports its logger or
framework only when used; without it, an ``ImportError`` names the extra
to install (``pip install "pyfastent[tensorboard]"``, ``[wandb]``,
``[mlflow]``, ``[lightning]``, ``[transformers]``).
"""
from __future__ import annotations

import importlib

from pyfastent.integrations.keys import Keys, key_part
from pyfastent.nn.sinks import SinkWarning

_SINKS = {"TensorBoardSink": "tensorboard", "WandbSink": "wandb", "MLflowSink": "mlflow"}

__all__ = ["Keys", "key_part", "SinkWarning", *_SINKS]


def __getattr__(name: str):
    if name in _SINKS:
        return getattr(importlib.import_module(f"pyfastent.integrations.{_SINKS[name]}"), name)
    raise AttributeError(f"module 'pyfastent.integrations' has no attribute {name!r}")
