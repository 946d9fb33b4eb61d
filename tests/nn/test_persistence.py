"""Tracker logs and table files: nothing measured is lost, nothing is
silently altered (DESIGN.md section 4)."""
import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import pyfastent as pf
import pyfastent.nn as pnn
from pyfastent.nn.table import PlaneTable


def small_run(log=None, resume=False, every=1):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(60, 4, generator=g), torch.randint(0, 3, (60,), generator=g)
    tracker = pnn.InformationPlane(net, x, y, estimators=(pf.Renyi(sigma=1.0), pf.LogDet(beta=5.0)), every=every,
                                   sigma_smoothing=0.5, log=log, resume=resume, progress=False)
    return net, x, y, tracker


def test_each_step_is_on_disk_when_step_returns(tmp_path):
    log = tmp_path / "run.jsonl"
    net, x, y, tracker = small_run(log)
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["metadata"]["probe_size"] == 60
    for epoch in range(3):
        tracker.step(epoch=epoch, loss=torch.tensor(1.5 - epoch))
        assert len(log.read_text().splitlines()) == 2 + epoch
    assert pnn.InformationPlane.load(log).rows == tracker.rows
    assert {r["loss"] for r in tracker.rows} == {1.5, 0.5, -0.5}


def test_torn_last_line_is_dropped_with_a_warning(tmp_path):
    log = tmp_path / "run.jsonl"
    _, _, _, tracker = small_run(log)
    tracker.step(epoch=0)
    tracker.step(epoch=1)
    whole = log.read_text()
    log.write_text(whole + whole.splitlines()[-1][:40])  # a step cut off mid-write
    with pytest.warns(RuntimeWarning, match="torn last line"):
        table = pnn.InformationPlane.load(log)
    assert table.rows == tracker.rows
    log.write_text(whole.replace('"rows": [', '"rows": [}', 1))  # damage in the middle: not silently skipped
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        pnn.InformationPlane.load(log)


RUN = textwrap.dedent("""
    import sys, time, torch
    from torch import nn
    import pyfastent as pf, pyfastent.nn as pnn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(60, 4, generator=g), torch.randint(0, 3, (60,), generator=g)
    tracker = pnn.InformationPlane(net, x, y, estimators=(pf.Renyi(sigma=1.0),), log=sys.argv[1],
                                   resume=True, progress=False)
    epoch = 0
    while True:
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        loss = nn.functional.cross_entropy(net(x), y); opt.zero_grad(); loss.backward(); opt.step()
        tracker.step(epoch=epoch, loss=loss)
        epoch += 1
""")


@pytest.mark.slow  # a subprocess killed mid-run
def test_sigkill_loses_at_most_the_step_in_flight(tmp_path):
    log = tmp_path / "run.jsonl"
    child = subprocess.Popen([sys.executable, "-c", RUN, str(log)], stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or log.read_text().count("\n") < 6):
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert log.read_text().count("\n") >= 6, child.stderr.read().decode()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the kill may or may not land mid-line
        rows = pnn.InformationPlane.load(log).rows
    steps = sorted({r["step"] for r in rows})
    assert steps == list(range(len(steps))) and len(steps) >= 5
    per_step = {s: [r for r in rows if r["step"] == s] for s in steps}
    assert len({len(v) for v in per_step.values()}) == 1  # every step kept is whole


def test_resume_continues_steps_and_smoothed_widths(tmp_path):
    log = tmp_path / "run.jsonl"
    _, _, _, first = small_run(log)
    for epoch in range(2):
        first.step(epoch=epoch)
    with pytest.raises(ValueError, match="already exists: pass resume=True"):
        small_run(log)
    _, _, _, second = small_run(log, resume=True)
    assert second.rows == first.rows
    second.step(epoch=2)
    _, _, _, straight = small_run(tmp_path / "straight.jsonl")
    for epoch in range(3):
        straight.step(epoch=epoch)
    assert second.rows == straight.rows  # as if it had never stopped
    assert pnn.InformationPlane.load(log).rows == straight.rows
    # A log of other settings is not continued.
    net = nn.Sequential(nn.Linear(4, 3))
    x, y = torch.randn(60, 4), torch.randint(0, 3, (60,))
    with pytest.raises(ValueError, match="belongs to another run"):
        pnn.InformationPlane(net, x, y, estimators=(pf.Renyi(sigma=1.0), pf.LogDet(beta=5.0)), log=log, resume=True)


def test_failed_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    _, _, _, tracker = small_run()
    tracker.step(epoch=0)
    path = tracker.save(tmp_path / "plane.jsonl")
    before = path.read_text()
    tracker.step(epoch=1)

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match=r"cannot save '.*plane.jsonl': No space left on device; the previous file"):
        tracker.save(path)
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plane.jsonl"]  # no temporary left behind


def test_save_into_a_folder_that_refuses_writes_names_the_path(tmp_path, monkeypatch):
    import tempfile

    _, _, _, tracker = small_run()
    tracker.step()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # a read-only folder (root ignores chmod)
    with pytest.raises(OSError, match=r"cannot save '.*plane(.meta.json|.csv)': Permission denied"):
        tracker.save(tmp_path / "plane.csv")
    assert list(tmp_path.iterdir()) == []


def test_csv_reads_with_plain_csv_and_pandas_and_round_trips(tmp_path):
    _, _, _, tracker = small_run()
    for epoch in range(2):
        tracker.step(epoch=epoch, loss=np.float32(0.25 + epoch), accuracy=torch.tensor(0.5), phase="train",
                     batches=3 + epoch)
    path = tracker.save(tmp_path / "plane.csv")
    text = path.read_text()
    assert text.splitlines()[0] == "step,epoch,layer,estimator,quantity,value,accuracy,batches,loss,phase"
    rows = list(csv.DictReader(text.splitlines()))
    assert len(rows) == len(tracker.rows)
    assert float(rows[0]["value"]) == tracker.rows[0]["value"]  # repr: not one bit lost
    back = pnn.InformationPlane.load(path)
    assert back.rows == tracker.rows and back.metadata == tracker.table.metadata
    assert all(isinstance(r["batches"], float) for r in back.rows)  # numbers load back as floats
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_csv(path)
    assert list(frame.columns) == text.splitlines()[0].split(",") and len(frame) == len(tracker.rows)
    assert tracker.table.to_pandas().shape == frame.shape


def test_csv_save_builds_the_column_list_once(tmp_path, monkeypatch):
    table = PlaneTable({"model": "m"}, [{"step": i // 4, "epoch": None, "layer": "l", "estimator": "e",
                                          "quantity": "q", "value": float(i)} for i in range(8000)])
    calls = []
    original = PlaneTable.columns.fget
    monkeypatch.setattr(PlaneTable, "columns", property(lambda self: calls.append(1) or original(self)))
    table.save(tmp_path / "big.csv")
    assert len(calls) == 1  # once per save, not once per row (8000 rows took 10.8 s that way)


def test_metrics_are_numbers_or_strings_under_new_names():
    _, _, _, tracker = small_run()
    with pytest.raises(ValueError, match="metrics: 'value' is a column of the table"):
        tracker.step(value=1.0)
    with pytest.raises(ValueError, match=r"metrics: loss must be a number, got a tensor of shape \(2,\)"):
        tracker.step(loss=torch.ones(2))
    with pytest.raises(ValueError, match="metrics: extra must be a number or a string, got list"):
        tracker.step(extra=[1])
    tracker.step(epoch=torch.tensor(4), loss=torch.tensor(2.5, requires_grad=True) * 1)
    assert {r["epoch"] for r in tracker.rows} == {4} and {r["loss"] for r in tracker.rows} == {2.5}


def test_labels_are_short_and_reprs_are_in_the_metadata():
    _, _, _, tracker = small_run()
    tracker.step()
    assert {r["estimator"] for r in tracker.rows} == {"renyi(a=1.01,s=1)", "logdet(b=5,cov)"}
    assert tracker.table.metadata["estimator_reprs"]["logdet(b=5,cov)"] == repr(tracker.estimators[1])



def test_state_dict_continues_a_tracker_as_if_never_stopped():
    """A tracker rebuilt from ``state_dict`` (as a checkpoint restores it)
    measures the same steps, numbers and smoothed widths as one that ran on."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(60, 4, generator=g), torch.randint(0, 3, (60,), generator=g)
    opt = torch.optim.SGD(net.parameters(), lr=0.2)

    def make(every=2):
        return pnn.InformationPlane(net, x, y, estimators=(pf.Renyi(),), every=every, sigma_smoothing=0.5,
                                    progress=False)

    def train():
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    whole = make()
    for epoch in range(3):  # measures steps 0 and 2
        train()
        whole.step(epoch=epoch)
    state = whole.state_dict()
    restored = make()
    restored.load_state_dict(state)
    assert restored.rows == whole.rows and restored.passes == whole.passes
    for epoch in (3, 4):
        train()
        assert whole.step(epoch=epoch) == restored.step(epoch=epoch) == (epoch == 4)
    assert restored.rows == whole.rows
    assert max(r["step"] for r in restored.rows if r["quantity"] == "sigma") == 4
    with pytest.raises(ValueError, match="state belongs to another tracker.*every"):
        make(every=3).load_state_dict(state)
    with pytest.raises(ValueError, match="state must be a dict"):
        make().load_state_dict({"rows": []})
