"""The memory guards count what each N×N allocation really peaks at.

Every site that builds N×N matrices calls ``ensure_square_fits`` with the
matrices it is about to hold. A child process records each guard call with
its resident memory at that moment; the largest "resident + claimed" must
cover the measured peak (VmHWM) of the whole computation, else a job that
passes the guards can still be killed for memory, and must not exceed it by
much, else work that fits is refused. The child fixes glibc's mmap
threshold, so freed N×N blocks leave the resident set at once.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pyfastent import _memory

pytestmark = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's peak-RSS reset")

N = 3000
CHILD = r"""
import importlib, json, sys, warnings
from pathlib import Path
import torch
import pyfastent as pf
from pyfastent import _memory

warnings.simplefilter("ignore")
def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024

claims = []
real = _memory.ensure_square_fits
def recording(n, dtype, device, copies, what):
    real(n, dtype, device, copies, what)
    claims.append(status("VmRSS:") + copies * n * n * torch.empty((), dtype=dtype).element_size())
for name in ("pyfastent.ops.gram", "pyfastent.ops.kernels", "pyfastent.ops._torch_spectrum",
             "pyfastent.ops.reduction", "pyfastent.ops.eigen", "pyfastent.estimators.logdet"):
    setattr(importlib.import_module(name), "ensure_square_fits", recording)

N = int(sys.argv[1])
g = torch.Generator().manual_seed(0)
X = torch.randn(N, 30, generator=g)
LAYER = torch.randn(N, 4, 5, 5, generator=g)
WIDE = torch.randn(N, 3500, generator=g, dtype=torch.float64)
Y = torch.randint(0, 10, (N,), generator=g)
CASES = {
    "renyi knn entropy": lambda: pf.Renyi().entropy(X),
    "renyi mi with labels": lambda: pf.mutual_information(X, Y),
    "renyi alignment": lambda: pf.Renyi(sigma="alignment", labels=Y).entropy(X),
    "renyi channels": lambda: pf.Renyi().entropy(pf.Variable(LAYER, channels=True)),
    "renyi linear float64": lambda: pf.Renyi(kernel="linear").entropy(X.double()),
    "renyi alpha 2": lambda: pf.mutual_information(X, LAYER, estimator=pf.Renyi(alpha=2)),
    "logdet sylvester mi": lambda: pf.mutual_information(WIDE, WIDE[:, :700], estimator=pf.LogDet(beta=10.0)),
    "logdet columns": lambda: pf.mutual_information(X, LAYER.flatten(1)[:, :50], estimator=pf.LogDet(beta=10.0)),
    "alpha2 entropies": lambda: pf.ops.alpha2_entropies(X, Y, 2.0),
}
import ctypes
trim = ctypes.CDLL("libc.so.6").malloc_trim
results = {}
pf.Renyi().entropy(X[:300])  # the first loads of the LAPACK libraries (tens of MB, not N²) before any case
for case, work in CASES.items():
    claims.clear()
    trim(0)  # freed memory back to the system: a case must not run in what an earlier one left resident
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    base = status("VmRSS:")
    work()
    results[case] = {"base": base, "claimed": max(claims, default=None), "peak": status("VmHWM:")}
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def measured():
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(N)], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout)


CASE_NAMES = ["renyi knn entropy", "renyi mi with labels", "renyi alignment", "renyi channels", "renyi linear float64",
              "renyi alpha 2", "logdet sylvester mi", "logdet columns", "alpha2 entropies"]


@pytest.mark.slow  # peaks measured in subprocesses
@pytest.mark.parametrize("case", CASE_NAMES)
def test_guards_cover_the_measured_peak(measured, case):
    m = measured[case]
    assert m["claimed"] is not None, "no guard was asked"
    square, slack = N * N * 4, 8 * 2**20  # N² float32 (36 MB); allocator and interpreter noise
    claimed, peak = m["claimed"] - m["base"], m["peak"] - m["base"]
    assert claimed + slack >= peak, f"guards claim {claimed / square:.2f} N² float32, the peak was {peak / square:.2f}"
    assert claimed <= 1.5 * peak + slack, f"guards claim {claimed / square:.2f} N² float32, the peak was {peak / square:.2f}"


def test_available_memory_reads_memavailable_and_the_cgroup(monkeypatch, tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 100 kB\nMemFree: 10 kB\nMemAvailable: 60 kB\n")
    real_path = _memory.Path

    def fake_path(name):
        mapping = {"/proc/meminfo": meminfo, "/sys/fs/cgroup/memory.max": tmp_path / "max",
                   "/sys/fs/cgroup/memory.current": tmp_path / "current"}
        return real_path(mapping.get(name, tmp_path / "absent"))

    monkeypatch.setattr(_memory, "Path", fake_path)
    cpu = torch.device("cpu")
    assert _memory.available_bytes(cpu) == 60 * 1024  # MemAvailable, not MemFree
    (tmp_path / "max").write_text("50000\n")
    (tmp_path / "current").write_text("20000\n")
    assert _memory.available_bytes(cpu) == 30000  # the cgroup's headroom is smaller
    (tmp_path / "max").write_text("max\n")
    assert _memory.available_bytes(cpu) == 60 * 1024
    assert math.isfinite(_memory.available_bytes(cpu))
