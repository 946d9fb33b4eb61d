"""pyfastent on torch.distributed: two processes with the gloo backend on
the CPU, spawned from here, must give every number one process gives; a
rank that fails or dies must end every rank, never hang them."""
import datetime
import math
import os
import pickle
import socket
import subprocess
import sys
import time
import traceback
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

import pyfastent as pf
import pyfastent.nn as pnn
from pyfastent.ops import operators
from pyfastent.ops.spectral import LanczosConfig

pytestmark = [pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                 reason="torch.distributed with gloo is not available"),
              pytest.mark.slow]  # several processes

RANKS = 2
LIMIT = 120.0  # seconds a spawned job may take before the test calls it a hang
SMALL_TILES = 64 * 600  # tiles of 64 rows at N = 600: the split kernel's rows span several tiles
CONFIG = LanczosConfig(probes=4, steps=10, block=16, depth=2, extra=1)  # exact below 192 samples


def model():
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(1, 3, 3, padding=1), act1=nn.ReLU(), pool=nn.MaxPool2d(2), flat=nn.Flatten(),
        fc=nn.Linear(12, 8), act2=nn.Tanh(), out=nn.Linear(8, 3)))


def probe():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(90, 1, 4, 4, generator=g)
    y = (x.mean((1, 2, 3)) > 0.5).long() + (x[:, 0, 0, 0] > 0.5).long()
    return x, y


def large(n=600):
    g = torch.Generator().manual_seed(4)
    labels = torch.arange(n) % 3
    x = torch.randn(n, 5, generator=g) + labels[:, None].float()
    return x, labels


def train_a_little(net, x, y, seed):
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    net.train()
    for b in range(0, len(y), 10):
        idx = order[b:b + 10]
        loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def split_estimates():
    """Row-split randomized entropies (collectives) next to nothing else."""
    x, labels = large()
    est = pf.Renyi(method="lanczos", lanczos=CONFIG, distributed=True)
    est2 = pf.Renyi(alpha=2.0, method="lanczos", lanczos=CONFIG, distributed=True)
    return {"h": est.entropy(x), "mi": pf.mutual_information(x, labels, estimator=est),
            "h2": est2.entropy(x), "mi2": pf.mutual_information(x, labels, estimator=est2)}


def plane_steps(log):
    x, y = probe()
    net = model()
    tracker = pnn.InformationPlane(net, x, y, sigma_smoothing=0.9, log=log,
                                   transfer_entropy=pnn.LayerTE(window=60, floor_permutations=3))
    for step in range(2):
        train_a_little(net, x, y, seed=step)  # the same on every rank: the models stay identical
        tracker.step(epoch=step, loss=float(step))
    tracker.close()
    return tracker.rows


def sweeps():
    """Everything that should give one process's numbers."""
    x, y = probe()
    net = model()
    out = {"sweep": pnn.layer_sweep(net, x, y).rows,
           "channels": pnn.layer_sweep(net, x, y, channels=True).rows,
           "mixed": pnn.layer_sweep(net, x, y, estimators=(
               pf.Renyi(), pf.Renyi(method="lanczos", lanczos=CONFIG, distributed=True), pf.LogDet(beta=1.0)),
               layers=["act1", "act2"]).rows,
           # mini-batches, and a budget that puts the layers into several passes on every rank
           "streamed": pnn.layer_sweep(net, x, y, batch_size=17, memory_budget=1_250_000).rows}
    if dist.is_initialized():
        out["ddp"] = pnn.layer_sweep(nn.parallel.DistributedDataParallel(net), x, y).rows
    return out


# ---- scenarios run by each rank ------------------------------------------------------

def prepared_layers() -> int:
    """How many (layer, estimator) pairs this process prepares in one default sweep."""
    from pyfastent.estimators.base import Estimator

    names = []
    original = Estimator.prepare_reduced

    def counting(self, var, reduction, name):
        names.append(name)
        return original(self, var, reduction, name)

    Estimator.prepare_reduced = counting
    try:
        pnn.layer_sweep(model(), *probe())
    finally:
        Estimator.prepare_reduced = original
    return sum(n not in ("x", "y") for n in names)


def scenario_numbers(rank, tmp):
    operators._TILE_ELEMENTS = SMALL_TILES
    return {**sweeps(), "split": split_estimates(), "plane": plane_steps(tmp / "plane.jsonl"),
            "log_written": (tmp / "plane.jsonl").exists(), "prepared": prepared_layers()}


def scenario_bad_input_on_one_rank(rank, tmp):
    x, y = probe()
    if rank == 1:
        x = x.clone()
        x[0, 0, 0, 0] = float("nan")
    return pnn.layer_sweep(model(), x, y)


def scenario_other_probe_on_one_rank(rank, tmp):
    x, y = probe()
    return pnn.layer_sweep(model(), x[: 60 + 10 * rank], y[: 60 + 10 * rank])


def scenario_rank_dies(rank, tmp):
    if rank == 1:
        os._exit(3)
    x, y = probe()
    return pnn.layer_sweep(model(), x, y)


def scenario_rank_stalls(rank, tmp):
    started = time.monotonic()
    if rank == 1:
        time.sleep(8)
    x, y = probe()
    try:
        return pnn.layer_sweep(model(), x, y)
    finally:
        (tmp / f"waited{rank}").write_text(str(time.monotonic() - started))


def _worker(rank, scenario, port, tmp, timeout):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=RANKS, timeout=datetime.timedelta(seconds=timeout))
    try:
        outcome = ("ok", globals()[scenario](rank, Path(tmp)))
    except BaseException as exc:  # noqa: BLE001 - the parent inspects it
        outcome = ("error", type(exc).__name__, str(exc), traceback.format_exc())
    with open(Path(tmp) / f"rank{rank}.pkl", "wb") as f:
        pickle.dump(outcome, f)
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(scenario, tmp_path, timeout=60.0):
    """Run ``scenario`` on two ranks; returns each rank's outcome (None: it
    wrote none). Fails the test when the job outlives ``LIMIT``."""
    import torch.multiprocessing as mp

    start = time.monotonic()
    context = mp.start_processes(_worker, args=(scenario, free_port(), str(tmp_path), timeout), nprocs=RANKS,
                                 join=False, start_method="spawn")
    try:  # not context.join(), which would stop the other ranks as soon as one exits
        while any(p.is_alive() for p in context.processes):
            assert time.monotonic() - start < LIMIT, f"{scenario}: the ranks hang"
            time.sleep(0.1)
    finally:
        for p in context.processes:
            if p.is_alive():
                p.kill()
    outcomes = []
    for rank in range(RANKS):
        path = tmp_path / f"rank{rank}.pkl"
        outcomes.append(pickle.loads(path.read_bytes()) if path.exists() else None)
    return outcomes, time.monotonic() - start


def _same(a, b, path="", exact=True):
    """Every number equal at every nesting level: floats to round-off (1e-12
    relative; BLAS may round differently with the buffers' memory alignment),
    or, for exact=False, within 1e-6 relative."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _same(a[k], b[k], f"{path}.{k}", exact)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (u, v) in enumerate(zip(a, b)):
            _same(u, v, f"{path}[{i}]", exact)
    elif isinstance(a, float):
        tol = 1e-12 if exact else 1e-6
        assert math.isclose(a, b, rel_tol=tol, abs_tol=tol * 1e-3), (path, a, b)
    else:
        assert a == b, (path, a, b)


@pytest.fixture
def one_thread():
    """The ranks run one thread each; so does the single-process reference,
    since BLAS and LAPACK results may change in the last bit with the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("numbers")
    outcomes, _ = spawn("scenario_numbers", tmp)
    for rank, outcome in enumerate(outcomes):
        assert outcome is not None and outcome[0] == "ok", f"rank {rank}: {outcome}"
    return [o[1] for o in outcomes], tmp


@pytest.mark.filterwarnings("ignore::pyfastent.SaturationWarning")  # per-channel kNN widths on 90 samples
def test_sweeps_give_one_process_numbers_on_every_rank(two_ranks, one_thread):
    results, _ = two_ranks
    alone = sweeps()
    for rank, result in enumerate(results):
        for key in ("sweep", "channels", "mixed", "streamed"):
            _same(result[key], alone[key], f"rank {rank} {key}")
        _same(result["ddp"], alone["sweep"], f"rank {rank} ddp")  # DDP-wrapped: the same names and numbers


def test_each_rank_prepares_its_share_of_the_layers(two_ranks):
    results, _ = two_ranks
    shares = [r["prepared"] for r in results]
    assert sum(shares) == prepared_layers() and min(shares) > 0


def test_split_kernels_give_one_process_estimates(two_ranks, monkeypatch, one_thread):
    results, _ = two_ranks
    monkeypatch.setattr(operators, "_TILE_ELEMENTS", SMALL_TILES)
    x, labels = large()
    est = pf.Renyi(method="lanczos", lanczos=CONFIG)
    est2 = pf.Renyi(alpha=2.0, method="lanczos", lanczos=CONFIG)
    alone = {"h": est.entropy(x), "mi": pf.mutual_information(x, labels, estimator=est),
             "h2": est2.entropy(x), "mi2": pf.mutual_information(x, labels, estimator=est2)}
    assert isinstance(alone["h"], pf.Estimate)  # the randomized path ran, not the exact one
    for rank, result in enumerate(results):
        # The same tiles and probes; only the order of the α = 2 sums differs.
        _same({k: float(v) for k, v in result["split"].items()}, {k: float(v) for k, v in alone.items()},
              f"rank {rank} split", exact=False)
    exact = pf.Renyi(alpha=2.0, method="exact").entropy(x)
    assert float(results[0]["split"]["h2"]) == pytest.approx(exact, abs=1e-6)  # α = 2: exact up to float32 round-off


def test_tracker_steps_match_and_only_rank_0_writes_the_log(two_ranks, tmp_path, one_thread):
    results, tmp = two_ranks
    alone = plane_steps(tmp_path / "alone.jsonl")
    for rank, result in enumerate(results):
        _same(result["plane"], alone, f"rank {rank} plane")  # transfer entropy: rank 0's samples, shared
    assert results[0]["log_written"]
    logged = pnn.InformationPlane.load(tmp / "plane.jsonl")
    _same(logged.rows, alone, "log")


def test_a_failing_rank_fails_every_rank(tmp_path):
    (first, second), _ = spawn("scenario_bad_input_on_one_rank", tmp_path)
    assert second[:2] == ("error", "ValueError") and "non-finite" in second[2]
    assert first[:2] == ("error", "RankFailed") and "rank 1 failed" in first[2] and "non-finite" in first[2]


def test_ranks_that_disagree_on_the_probe_are_stopped(tmp_path):
    outcomes, _ = spawn("scenario_other_probe_on_one_rank", tmp_path)
    for outcome in outcomes:
        assert outcome[:2] == ("error", "ValueError") and "same model and probe" in outcome[2]


def test_a_rank_that_dies_does_not_hang_the_others(tmp_path):
    (first, second), seconds = spawn("scenario_rank_dies", tmp_path, timeout=10.0)
    assert second is None  # it exited without a word
    assert first is not None and first[:2] == ("error", "RankFailed") and "lost contact" in first[2], first
    assert seconds < LIMIT


def test_a_rank_that_stalls_times_the_others_out(tmp_path):
    (first, second), _ = spawn("scenario_rank_stalls", tmp_path, timeout=3.0)
    assert first[:2] == ("error", "RankFailed") and "lost contact" in first[2], first
    assert float((tmp_path / "waited0").read_text()) < 7  # the timeout, not the stalled rank, ended the wait
    assert second[0] == "error"  # it finds rank 0 gone when it comes back


# ---- the command under torchrun ---------------------------------------------------------

FACTORY = '''
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 6), nn.ReLU(),
                         nn.Linear(6, 3))
'''


def read_csv(path):
    """The table's rows, numbers as floats."""
    import csv

    def value(text):
        try:
            return float(text)
        except ValueError:
            return text

    with open(path, newline="") as f:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_torchrun_sweep_writes_the_single_process_table(tmp_path):
    import numpy as np

    (tmp_path / "netdef.py").write_text(FACTORY)
    x, y = probe()
    np.savez(tmp_path / "probe.npz", x=x.numpy(), y=y.numpy())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tmp_path)}
    common = ["sweep", "--model", "netdef:build", "--data", "probe.npz", "--no-progress"]
    alone = subprocess.run([sys.executable, "-m", "pyfastent", *common, "--out", "alone.csv"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=LIMIT)
    assert alone.returncode == 0, alone.stderr
    launched = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                               "--master-port", str(free_port()), "-m", "pyfastent", *common, "--out", "two.csv",
                               "--backend", "gloo"], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=LIMIT)
    assert launched.returncode == 0, launched.stderr
    _same(read_csv(tmp_path / "two.csv"), read_csv(tmp_path / "alone.csv"))
    assert launched.stdout.count("wrote ") == 1 and "(2 processes)" in launched.stdout  # rank 0 alone prints
    assert launched.stdout.replace(" (2 processes)", "").replace("two.csv", "alone.csv") == alone.stdout


def test_torchrun_other_commands_are_refused(tmp_path):
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0"}
    done = subprocess.run([sys.executable, "-m", "pyfastent", "demo", "--out", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=LIMIT)
    assert done.returncode == 2 and "only `pyfastent sweep` runs under torchrun" in done.stderr
