"""What the integration tests share: a tracked run with the worst names the
tracker produces, and an independent reader of W&B's offline run files."""
import json
import struct
from pathlib import Path

import torch
from torch import nn

import pyfastent as pf
import pyfastent.nn as pnn


class WorstNames(nn.Module):
    """Layers ``act`` and ``act#2`` (one module called twice) beside a layer
    named ``act_2``: the same key once characters outside MLflow's are replaced."""

    def __init__(self):
        super().__init__()
        self.inp, self.act, self.mid, self.act_2, self.out = (nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8),
                                                                nn.Tanh(), nn.Linear(8, 3))

    def forward(self, x):
        return self.out(self.act_2(self.act(self.mid(self.act(self.inp(x))))))


def probe():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(48, 6, generator=g, dtype=torch.float64)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()


def track(sinks, steps=3, log=None, **options):
    """A tracker over a few SGD steps of ``WorstNames``; returns it closed."""
    torch.manual_seed(0)
    net = WorstNames().double()
    x, y = probe()
    tracker = pnn.InformationPlane(net, x, y, estimators=(pf.Renyi(), pf.LogDet(beta=10.0)), sinks=sinks,
                                   similarity=pnn.LayerSimilarity(), log=log, progress=False, **options)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    for epoch in range(steps):
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        tracker.step(epoch=epoch, loss=loss)
    tracker.close()
    return tracker


class Kept:
    """A sink that keeps what it is given."""

    def __init__(self):
        self.metadata, self.rows, self.matrices, self.closed = None, [], [], False

    def write_metadata(self, metadata):
        self.metadata = metadata

    def write_rows(self, rows, step):
        self.rows.append((step, rows))

    def write_matrix(self, name, matrix, row_labels, column_labels, step):
        self.matrices.append((name, step, matrix, row_labels, column_labels))

    def close(self):
        self.closed = True


def scalar_rows(tracker) -> list:
    return [r for r in tracker.rows if r["quantity"] != "similarity"]


def wandb_records(path: Path):
    """The protobuf records of a ``.wandb`` file (LevelDB's log format: 32 KiB
    blocks of chunks with a 7-byte header of CRC, length and type, after a
    7-byte file header ``:W&B``, magic and version)."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        room = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if room >= 7 else (0, 0, 0)
        if kind == 0:  # the padding of a block's tail
            pos += room
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        parts = chunk if kind in (1, 2) else parts + chunk  # FULL or FIRST start a record
        if kind in (1, 4):  # FULL or LAST end one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            yield record


def _items(items) -> dict:
    return {(item.key or "/".join(item.nested_key)): json.loads(item.value_json) for item in items}


def wandb_history(run_dir: Path) -> list:
    """The history rows ({key: value}, with ``_step``) of an offline run."""
    (path,) = run_dir.glob("run-*.wandb")
    return [_items(r.history.item) for r in wandb_records(path) if r.WhichOneof("record_type") == "history"]


def wandb_config(run_dir: Path) -> dict:
    """The config of an offline run, its updates applied in order."""
    (path,) = run_dir.glob("run-*.wandb")
    config: dict = {}
    for r in wandb_records(path):
        if r.WhichOneof("record_type") == "config":
            config.update(_items(r.config.update))
    return config
