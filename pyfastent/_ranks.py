"""Ranks of a ``torch.distributed`` process group: who this process is, and
the collectives that carry any rank's failure to every rank.

It sits below ``pyfastent.ops`` (which splits kernels across ranks and
shares the eigensolver plan) and below ``pyfastent.distributed`` (which
schedules sweeps): it imports nothing of pyfastent. Without an initialized
group of two or more ranks every function is the one-process identity.
"""
from __future__ import annotations

from typing import Callable

import torch.distributed as dist


class RankFailed(RuntimeError):
    """Another rank raised while this one waited for it at a collective."""


def world() -> tuple[int, int]:
    """(rank, number of ranks) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def active() -> bool:
    """Whether a process group of two or more ranks is initialized."""
    return world()[1] > 1


def is_root() -> bool:
    """Rank 0, or the only process: the one that writes files and prints."""
    return world()[0] == 0


def gather(local: Callable[[], object], what: str) -> list:
    """Run ``local()`` on every rank and return all ranks' results, by rank.

    Any rank's exception becomes every rank's: the failing rank re-raises
    its own, the others raise ``RankFailed`` naming the rank and the error.
    Without a process group this is ``[local()]``.
    """
    if not active():
        return [local()]
    failure = None
    try:
        mine = ("ok", local())
    except Exception as exc:  # noqa: BLE001 - reported to every rank, then re-raised here
        failure = exc
        mine = ("error", _describe(exc))
    everyone: list = [None] * dist.get_world_size()
    collective(lambda: dist.all_gather_object(everyone, mine), what)
    if failure is not None:
        raise failure
    for rank, (status, value) in enumerate(everyone):
        if status == "error":
            raise RankFailed(f"rank {rank} failed while {what}: {value}")
    return [value for _, value in everyone]


def from_root(local: Callable[[], object], what: str):
    """``local()`` run on rank 0 only; its result (or its error) on every rank."""
    if not active():
        return local()
    if is_root():
        try:
            message = ["ok", local()]
        except Exception as exc:  # noqa: BLE001 - reported to every rank, then re-raised here
            report = [["error", _describe(exc)]]
            collective(lambda: dist.broadcast_object_list(report, src=0), what)
            raise
    else:
        message = None
    box = [message]
    collective(lambda: dist.broadcast_object_list(box, src=0), what)
    status, value = box[0]
    if status == "error":
        raise RankFailed(f"rank 0 failed while {what}: {value}")
    return value


def collective(call: Callable[[], None], what: str) -> None:
    """A collective; a rank that died or timed out becomes ``RankFailed``."""
    try:
        call()
    except RankFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - gloo and nccl raise RuntimeError subclasses of their own
        raise RankFailed(f"lost contact with another rank while {what}: {_describe(exc, kind=False)}") from exc


def _describe(exc: Exception, kind: bool = True) -> str:
    """An exception on one line, as other ranks are told of it."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if kind else text
