"""pyfastent.settings: process-wide choices as context managers; explicit
arguments win, blocks nest and restore, each thread has its own."""
import threading

import pytest
import torch
from torch import nn

import pyfastent as pf
import pyfastent.nn as pnn
from pyfastent import settings
from pyfastent._progress import progress_bar
from pyfastent.nn.planner import resolve_budget
from pyfastent.ops import eigen, threads


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def test_memory_budget_applies_inside_the_block_and_arguments_win():
    net, x = small_net(), torch.randn(64, 6)
    with settings.memory_budget("1KB"):
        assert resolve_budget(None, torch.device("cpu")) == 1000
        with pytest.raises(MemoryError):
            pnn.capture(net, x)
        assert len(pnn.capture(net, x, memory_budget="1GB")) == 3  # the argument wins
        with settings.memory_budget("2 KiB"):
            assert resolve_budget(None, torch.device("cpu")) == 2048
        assert resolve_budget(None, torch.device("cpu")) == 1000  # the outer block again
    assert resolve_budget(None, torch.device("cpu")) > 10**6  # the default: a share of what is free
    assert settings.memory_budget.get() is None


def test_progress_setting_turns_bars_on_and_off_unless_told():
    with settings.progress(True):
        assert not progress_bar(3, "x").disable
        assert progress_bar(3, "x", enabled=False).disable
    with settings.progress(False):
        assert progress_bar(3, "x").disable
        assert not progress_bar(3, "x", enabled=True).disable


def test_eigensolver_setting_forces_the_driver(monkeypatch):
    monkeypatch.delenv("PYFASTENT_EIGENSOLVER", raising=False)
    assert eigen.forced_driver() is None
    monkeypatch.setenv("PYFASTENT_EIGENSOLVER", "torch")
    with settings.eigensolver("numpy"):
        assert eigen.forced_driver() == "numpy"  # the setting wins over the environment
        a = pf.gram(torch.randn(70, 3, dtype=torch.float64), sigma=1.0)
        reference = torch.linalg.eigvalsh(a)
        torch.testing.assert_close(eigen.eigenvalues(a), reference, rtol=0, atol=1e-12)
    assert eigen.forced_driver() == "torch"


def test_threads_setting_sets_the_side_by_side_workers():
    default = threads.workers()
    with settings.threads(1):
        assert threads.workers() == 1
    assert threads.workers() == default


def test_each_thread_has_its_own_settings():
    seen = {}
    entered, release = threading.Event(), threading.Event()

    def other():
        with settings.memory_budget("5MB"):
            entered.set()
            release.wait(5)
            seen["other"] = settings.memory_budget.get()

    worker = threading.Thread(target=other)
    worker.start()
    entered.wait(5)
    seen["main"] = settings.memory_budget.get()
    release.set()
    worker.join(5)
    assert seen == {"main": None, "other": 5_000_000}


@pytest.mark.parametrize("setting, value, name", [
    (settings.memory_budget, "lots", "memory_budget"),
    (settings.memory_budget, -3, "memory_budget"),
    (settings.progress, "yes", "progress"),
    (settings.eigensolver, "lapack", "eigensolver"),
    (settings.threads, 0, "threads"),
])
def test_bad_values_are_value_errors_naming_the_setting(setting, value, name):
    with pytest.raises(ValueError, match=name):
        with setting(value):
            pass
    assert setting.get() is None


def test_settings_are_on_the_package():
    assert pf.settings is settings
    assert "memory_budget" in repr(settings.memory_budget)
