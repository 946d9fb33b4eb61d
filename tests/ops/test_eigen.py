"""The eigensolver plan: every driver right, the fastest kept per machine, the
cache file robust, thread limits restored, batches equal single solves."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_info

import pyfastent as pf
from pyfastent.ops import deferred, eigen, eigensolvers


@pytest.fixture
def plan(tmp_path, monkeypatch):
    """A fresh plan with its own cache folder."""
    monkeypatch.setenv("PYFASTENT_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("PYFASTENT_EIGENSOLVER", raising=False)
    eigen.PLAN.reset()
    yield eigen.PLAN
    eigen.PLAN.reset()


def known_spectrum(n, seed=0):
    """A symmetric matrix Q·diag(λ)·Qᵀ with its eigenvalues λ (ascending), in float64."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    lam = torch.sort(torch.rand(n, generator=g, dtype=torch.float64) ** 3).values
    return (q * lam) @ q.T, lam


@pytest.mark.parametrize("driver", eigen.available_drivers())
def test_every_driver_gives_the_known_spectrum(driver):
    for n in (70, 150, 300):
        a, lam = known_spectrum(n)
        (got,) = eigensolvers.SOLVERS[driver]([a])
        assert got.dtype == torch.float64
        assert torch.allclose(got, lam, rtol=0, atol=1e-12 * float(lam.max()))
        # Only the lower triangle is read.
        garbage = a.clone()
        garbage.triu_(1).add_(torch.tril(a))
        (upper_ignored,) = eigensolvers.SOLVERS[driver]([garbage.tril().clone() + a.tril(-1).T])
        assert torch.allclose(upper_ignored, lam, rtol=0, atol=1e-12 * float(lam.max()))


@pytest.mark.parametrize("driver", eigen.available_drivers())
def test_a_forced_driver_is_used(driver, plan, monkeypatch):
    monkeypatch.setenv("PYFASTENT_EIGENSOLVER", driver)
    used = []
    for name, solve in list(eigensolvers.SOLVERS.items()):
        monkeypatch.setitem(eigensolvers.SOLVERS, name, lambda ms, name=name, solve=solve: used.append(name) or solve(ms))
    a, lam = known_spectrum(100)
    (got,) = eigen.symmetric_eigenvalues([a])
    assert used == [driver] and torch.allclose(got, lam, atol=1e-12)
    assert pf.backend_info()["eigensolver"]["source"] == f"forced by PYFASTENT_EIGENSOLVER={driver}"
    monkeypatch.setenv("PYFASTENT_EIGENSOLVER", "lapack")
    with pytest.raises(ValueError, match=r"^PYFASTENT_EIGENSOLVER must be one of"):
        eigen.symmetric_eigenvalues([a])


def test_small_and_cuda_matrices_go_to_torch(plan, monkeypatch):
    used = []
    for name, solve in list(eigensolvers.SOLVERS.items()):
        monkeypatch.setitem(eigensolvers.SOLVERS, name, lambda ms, name=name: used.append(name))
    a, lam = known_spectrum(40)
    (got,) = eigen.symmetric_eigenvalues([a])
    assert used == [] and torch.allclose(got, lam, atol=1e-12)


def test_the_plan_measures_on_real_work_and_decides(plan):
    matrices = [known_spectrum(200, seed=i)[0] for i in range(40)]
    for a in matrices:  # each solve is real work; the class n <= 256 is measured as it goes
        eigen.symmetric_eigenvalues([a])
    described = plan.describe()
    assert "256/1" in described["classes"], described  # one matrix at a time: that batch kind's entry
    chosen = described["classes"]["256/1"]
    assert chosen["driver"] == min(chosen["median_s"], key=chosen["median_s"].get)
    saved = json.loads((Path(described["file"])).read_text())
    assert saved["decided"]["256/1"] == chosen["driver"] and saved["key"] == eigen.machine_key()
    eigen.PLAN.reset()  # another process on this machine: loaded, not measured again
    assert eigen.PLAN.driver_for(256) == chosen["driver"]
    assert eigen.PLAN.driver_for(256, count=20) is None  # many at once is measured on its own
    assert eigen.PLAN.describe()["source"].startswith("loaded from")


def test_a_noisy_first_timing_does_not_decide():
    drivers = ("torch", "numpy")
    assert eigen._winner({"torch": [1.0, 1.0], "numpy": [2.0, 2.0]}, drivers) is None  # too few
    assert eigen._winner({"torch": [1.0, 1.0, 1.0], "numpy": [1.05, 1.0, 1.1]}, drivers) is None  # too close
    assert eigen._winner({"torch": [1.0, 1.0, 1.0], "numpy": [2.0, 0.1, 2.0]}, drivers) == "torch"  # median
    assert eigen._winner({"torch": [1.0] * 6, "numpy": [1.02] * 6}, drivers) == "torch"  # close, but six each


@pytest.mark.parametrize("content", ["{not json", json.dumps({"version": 2, "key": "another machine",
                                                               "decided": {"256/1": "numpy"}}),
                                     json.dumps({"version": 1, "key": eigen.machine_key(), "decided": {"256": "numpy"}}), "[]"])
def test_corrupt_or_foreign_plans_are_measured_again(plan, tmp_path, content):
    (tmp_path / "eigen-plan.json").write_text(content)
    assert plan.driver_for(256) is None  # measuring, not an error and not the foreign choice
    a, lam = known_spectrum(200)
    assert torch.allclose(eigen.symmetric_eigenvalues([a])[0], lam, atol=1e-12)
    assert "measured in this process" in plan.describe()["source"]


def test_a_stale_plan_of_other_library_versions_is_measured_again(plan, tmp_path):
    key = eigen.machine_key()
    key["libraries"]["torch"] = "0.0.1"
    (tmp_path / "eigen-plan.json").write_text(json.dumps({"version": 2, "key": key, "decided": {"256/1": "numpy"}}))
    assert plan.driver_for(256) is None


def test_an_unwritable_cache_keeps_the_plan_in_memory(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("PYFASTENT_CACHE_DIR", str(blocker / "cache"))  # below a file: cannot be made
    eigen.PLAN.reset()
    try:
        for i in range(40):
            eigen.symmetric_eigenvalues([known_spectrum(100, seed=i)[0]])
        assert "128/1" in eigen.PLAN.describe()["classes"]
    finally:
        eigen.PLAN.reset()


WRITER = """
import sys
from pyfastent.ops import eigen
for i in range(300):
    eigen.PLAN._record((1 << (6 + i % 6), "1"), ("torch", "numpy")[i % 2], 0.001 * (1 + i % 7))
"""


@pytest.mark.slow  # two processes
def test_two_processes_writing_the_plan_leave_a_valid_file(tmp_path):
    env = {**__import__("os").environ, "PYFASTENT_CACHE_DIR": str(tmp_path)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER], env=env) for _ in range(2)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    data = json.loads((tmp_path / "eigen-plan.json").read_text())
    assert data["key"] == eigen.machine_key() and len(data["samples"]) == 6
    assert not list(tmp_path.glob(".eigen-plan-*"))  # no temporary file left behind


def test_thread_limits_are_restored_after_an_exception_in_a_solve(plan, monkeypatch):
    before = {i["filepath"]: i["num_threads"] for i in threadpool_info()}

    def failing(m):
        raise RuntimeError("LAPACK failed")

    monkeypatch.setitem(eigensolvers.SOLVERS, "numpy", eigensolvers.side_by_side(failing))
    monkeypatch.setenv("PYFASTENT_EIGENSOLVER", "numpy")
    with pytest.raises(RuntimeError, match="LAPACK failed"):
        eigen.symmetric_eigenvalues([known_spectrum(100, seed=i)[0] for i in range(3)])
    assert {i["filepath"]: i["num_threads"] for i in threadpool_info()} == before


@pytest.mark.parametrize("driver", eigen.available_drivers())
def test_batched_and_single_solves_give_identical_entropies(driver, monkeypatch):
    monkeypatch.setenv("PYFASTENT_EIGENSOLVER", driver)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 5, generator=g, dtype=torch.float64)
    layers = [torch.tanh(x @ torch.randn(5, 20, generator=g, dtype=torch.float64)) for _ in range(4)]
    y = torch.randint(0, 3, (300,), generator=g)
    est = pf.Renyi()
    single = [pf.mutual_information(t, y, estimator=est) for t in layers]
    pf.clear_reuse()  # the entropies below are solved again, in one batch
    px, py = est.prepare(x), est.prepare(y)
    batch = deferred.SpectralBatch()
    plans = [pf.measures.JointEntropies(est, {"x": px, "y": py, "t": est.prepare(t, "t")}, batch) for t in layers]
    for h in plans:
        for names in (("t",), ("y",), ("t", "y")):
            h.request(*names)
    batch.solve()
    assert batch.solved_matrices > len(layers)  # one solve, every layer's spectra and class blocks in it
    assert [h.mi("t", "y") for h in plans] == single


def test_results_do_not_depend_on_the_driver(monkeypatch):
    g = torch.Generator().manual_seed(0)  # the README's example
    x = torch.randn(1000, 20, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    t = torch.tanh(x @ torch.randn(20, 64, generator=g))
    values = {}
    for driver in eigen.available_drivers():
        monkeypatch.setenv("PYFASTENT_EIGENSOLVER", driver)  # a forced driver: nothing reused from another
        est = pf.Renyi(alpha=1.01)
        values[driver] = (pf.mutual_information(x, t, estimator=est), pf.mutual_information(t, y, estimator=est))
    first = next(iter(values.values()))
    for driver, got in values.items():
        assert got == pytest.approx(first, abs=1e-10), driver



def test_many_small_matrices_are_solved_in_one_padded_stack(monkeypatch):
    calls = []
    eigvalsh = torch.linalg.eigvalsh
    monkeypatch.setattr(torch.linalg, "eigvalsh", lambda m: calls.append(tuple(m.shape)) or eigvalsh(m))
    sizes = [3, 17, 30, 31, 5, 5, 60]  # classes 4, 32, 64 (60 < SMALLEST_CLASS rows)
    pairs = [known_spectrum(n, seed=n + i) for i, n in enumerate(sizes)]
    got = eigen.symmetric_eigenvalues([a - 0.5 * torch.eye(a.shape[0], dtype=a.dtype) for a, _ in pairs])
    for (a, lam), values in zip(pairs, got):  # shifted by −0.5: negative eigenvalues are kept too
        assert values.shape == lam.shape
        assert torch.allclose(values, lam - 0.5, rtol=0, atol=1e-12)
    # Per size class one call: 17, 30 and 31 rows in one stack of 31, the two of 5 in one, 3 and 60 alone.
    assert sorted(calls) == [(2, 5, 5), (3, 3), (3, 31, 31), (60, 60)]


def test_each_batch_kind_is_measured_at_its_own_shape(plan):
    for i in range(12):  # one at a time, then twelve at once: two entries of the class n <= 128
        eigen.symmetric_eigenvalues([known_spectrum(100, seed=i)[0]])
    for _ in range(8):
        eigen.symmetric_eigenvalues([known_spectrum(100, seed=i)[0] for i in range(12)])
    entries = set(plan.describe()["classes"]) | set(plan.describe()["measuring"])
    assert {"128/1", "128/many"} <= entries
    assert eigen.batch_kind(1) == "1" and eigen.batch_kind(2) == "few" and eigen.batch_kind(100) == "many"
