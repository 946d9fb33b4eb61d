"""The package imports and works without the native extension or a GPU."""
import json
import os
import subprocess
import sys

import pytest
import torch

import pyfastent as pf
from pyfastent import _native

INFO_KEYS = {"backend", "reason", "requested", "extension", "extension_version", "cuda_runtime",
             "cuda_driver", "devices", "cuda_ops", "auto_kernels", "torch", "torch_cuda", "eigensolver"}


def run_python(code, **env):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **env}, check=True)
    return out.stdout


@pytest.mark.slow  # a fresh interpreter
def test_import_and_estimate_without_native_extension():
    code = (
        "import sys, json; sys.modules['pyfastent._C'] = None\n"
        "import torch, pyfastent as pf\n"
        "h = pf.Renyi(alpha=1).entropy(torch.arange(8) % 4)\n"
        "print(json.dumps({'h': h, **pf.backend_info()}))"
    )
    info = json.loads(run_python(code))
    assert info["h"] == pytest.approx(2.0, abs=1e-12)
    assert info["extension"] is False
    assert info["backend"] == "torch"
    assert "not built or not importable" in info["reason"]


@pytest.mark.slow  # a fresh interpreter
def test_backend_can_be_forced_to_torch():
    info = json.loads(run_python("import json, pyfastent; print(json.dumps(pyfastent.backend_info()))",
                                 PYFASTENT_BACKEND="torch"))
    assert info["backend"] == "torch" and info["requested"] == "torch"
    assert "forced" in info["reason"]


def test_backend_info_reports_everything():
    info = pf.backend_info()
    assert set(info) == INFO_KEYS
    assert info["backend"] in ("torch", "cuda")
    assert isinstance(info["reason"], str) and info["reason"]


def test_extension_present_when_required():
    if os.environ.get("PYFASTENT_REQUIRE_EXTENSION") == "1":
        assert _native._C is not None, f"pyfastent imported from {pf.__file__} without _C"


@pytest.mark.skipif(_native._C is None, reason="native extension not built")
def test_native_plumbing():
    c = _native._C
    assert c.__version__ == pf.__version__
    assert c.runtime_version() >= 11000
    assert c.device_count() == _native.device_count() >= 0
    with pytest.raises(RuntimeError, match=r"^set_device: cuda"):
        c.set_device(c.device_count())  # one past the last device
    info = pf.backend_info()
    assert info["cuda_runtime"].count(".") == 1
    assert len(info["devices"]) == c.device_count()


@pytest.mark.slow  # a fresh interpreter
def test_unknown_backend_variable_warns_and_falls_back_to_auto():
    code = "import warnings, json; warnings.simplefilter('error')\ntry:\n import pyfastent\nexcept RuntimeWarning as w:\n print(w)"
    out = run_python(code, PYFASTENT_BACKEND="cuda")
    assert "is not 'auto' or 'torch'" in out


@pytest.mark.slow  # a fresh interpreter
def test_import_does_not_touch_the_cuda_driver():
    # A stub extension records device queries: importing pyfastent and
    # estimating on CPU tensors must not make one (fork-safe DataLoaders).
    code = (
        "import sys, types, json\n"
        "calls = []\n"
        "stub = types.ModuleType('pyfastent._C')\n"
        "stub.device_count = lambda: calls.append('device_count') or 0\n"
        "sys.modules['pyfastent._C'] = stub\n"
        "import torch, pyfastent as pf\n"
        "at_import = list(calls)\n"
        "pf.mutual_information(torch.randn(20, 3), torch.arange(20) % 2)\n"
        "on_cpu = list(calls)\n"
        "pf._native.device_count(); pf._native.device_count()\n"
        "print(json.dumps([at_import, on_cpu, calls]))"
    )
    at_import, on_cpu, after = json.loads(run_python(code))
    assert at_import == [] and on_cpu == []
    assert after == ["device_count"]  # queried once, then remembered


def test_use_backend_holds_for_its_own_thread_only():
    import threading

    entered, release = threading.Event(), threading.Event()

    def hold_cuda():
        with pf.use_backend("cuda"):
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold_cuda)
    holder.start()
    try:
        assert entered.wait(10)
        x = torch.randn(30, 4, dtype=torch.float64)
        # On this thread "auto" still means auto: CPU tensors take the torch path.
        assert pf.mutual_information(x, x[:, :2]) > 0
        assert _native.resolve_backend("auto", [x], "gram") == "torch"
    finally:
        release.set()
        holder.join()


def test_nested_use_backend_restores_the_outer_choice():
    x = torch.zeros(2)
    with pf.use_backend("torch"):
        with pf.use_backend("cuda"):
            assert _native._override.get() == "cuda"
        assert _native._override.get() == "torch"
        assert _native.resolve_backend("auto", [x], "gram") == "torch"
    assert _native._override.get() is None


@pytest.mark.slow  # a fresh interpreter
def test_import_and_token_measures_without_transformers():
    code = (
        "import sys, json; sys.modules['transformers'] = None\n"
        "import torch, pyfastent as pf, pyfastent.nn as pnn, pyfastent.cli\n"
        "h = pf.prompt_entropy(torch.randn(2, 5, 4, dtype=torch.float64))\n"
        "layers = pnn.select_layers(torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(8, 2), 2,"
        " enable_nested_tensor=False))\n"
        "print(json.dumps({'shape': list(h.shape), 'layers': layers}))"
    )
    out = json.loads(run_python(code))
    assert out["shape"] == [2]
    assert out["layers"] == ["layers.0:input", "layers.0", "layers.1"]
