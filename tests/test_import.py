"""The package imports and works without the native extension or a GPU."""
import json
import os
import subprocess
import sys

import pytest

import pyfastent as pf
from pyfastent import _native

INFO_KEYS = {"backend", "reason", "requested", "extension", "extension_version", "cuda_runtime",
             "cuda_driver", "devices", "cuda_ops", "torch", "torch_cuda"}


def run_python(code, **env):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **env}, check=True)
    return out.stdout


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
    assert c.device_count() == _native.DEVICE_COUNT >= 0
    with pytest.raises(RuntimeError, match=r"^set_device: cuda"):
        c.set_device(c.device_count())  # one past the last device
    info = pf.backend_info()
    assert info["cuda_runtime"].count(".") == 1
    assert len(info["devices"]) == c.device_count()


def test_unknown_backend_variable_warns_and_falls_back_to_auto():
    code = "import warnings, json; warnings.simplefilter('error')\ntry:\n import pyfastent\nexcept RuntimeWarning as w:\n print(w)"
    out = run_python(code, PYFASTENT_BACKEND="cuda")
    assert "is not 'auto' or 'torch'" in out
