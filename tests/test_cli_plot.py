"""The command line and the plots, as a user meets them."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import pyfastent.nn as pnn
import pyfastent.plot as plot
from pyfastent.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    from matplotlib.image import imread

    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    assert image[..., :3].std() > 0.05  # not a blank canvas


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--epochs", "2", "--out", str(out), "--no-progress"]) == 0
    return out


def test_demo_writes_every_file(demo_dir):
    names = {p.name for p in demo_dir.iterdir()}
    assert names == {"information_plane.csv", "information_plane.jsonl", "information_plane.png", "layer_curves.png",
                     "te_plane.png", "report.md"}
    for png in demo_dir.glob("*.png"):
        assert_png(png)
    table = pnn.InformationPlane.load(demo_dir / "information_plane.csv")
    assert {r["epoch"] for r in table.rows} == {1, 2}
    assert {"i_xt", "i_ty", "h_t", "sigma", "te_x", "te_y", "te_in_mean"} <= {r["quantity"] for r in table.rows}
    assert "![information_plane](information_plane.png)" in (demo_dir / "report.md").read_text()


def test_demo_is_reproducible_with_a_seed(demo_dir, tmp_path):
    assert main(["demo", "--epochs", "2", "--out", str(tmp_path), "--no-progress"]) == 0
    first = pnn.InformationPlane.load(demo_dir / "information_plane.jsonl").rows
    assert pnn.InformationPlane.load(tmp_path / "information_plane.jsonl").rows == first


def test_plots_from_a_loaded_table(demo_dir, tmp_path):
    table = pnn.InformationPlane.load(demo_dir / "information_plane.jsonl")
    for draw in (plot.information_plane, plot.layer_curves, plot.te_plane):
        assert_png(draw(table, tmp_path / f"{draw.__name__}.png"))
    with pytest.raises(ValueError, match=r"^table_or_tracker must be"):
        plot.information_plane([1, 2], tmp_path / "x.png")


def write_model(tmp_path):
    (tmp_path / "mymodel.py").write_text(textwrap.dedent("""
        import torch
        def build():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
        not_a_model = 3
    """))
    g = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=g.standard_normal((50, 4)).astype(np.float32), y=g.integers(0, 3, 50))


def run_cli(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "pyfastent", *args], capture_output=True, text=True, cwd=tmp_path)


def test_sweep_command(tmp_path):
    write_model(tmp_path)
    done = run_cli(tmp_path, "sweep", "--model", "mymodel:build", "--data", "data.npz", "--layers", "0,1",
                   "--estimators", "renyi", "--out", "s.csv")
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "layer,estimator,h_t,i_xt,i_ty" and len(lines) == 3


@pytest.mark.parametrize("args,message", [
    (["sweep", "--model", "mymodel:build", "--data", "missing.npz"], "--data 'missing.npz' does not exist"),
    (["sweep", "--model", "nosuchmodule:build", "--data", "data.npz"], "cannot import module 'nosuchmodule'"),
    (["sweep", "--model", "mymodel:not_a_model", "--data", "data.npz"], "has no callable 'not_a_model'"),
    (["sweep", "--model", "mymodel", "--data", "data.npz"], "--model must look like module:factory"),
    (["sweep", "--model", "mymodel:build", "--data", "data.npz", "--layers", "fc9"], "no module named 'fc9'"),
    (["sweep", "--model", "mymodel:build", "--data", "data.npz", "--estimators", "knn"], "--estimators must be"),
    (["demo", "--epochs", "1", "--out", "data.npz"], "--out 'data.npz' exists and is not a directory"),
])
def test_bad_command_lines_end_in_one_line(tmp_path, args, message):
    write_model(tmp_path)
    done = run_cli(tmp_path, *args)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert message in lines[0]


def test_info_command(tmp_path):
    done = run_cli(tmp_path, "info")
    assert done.returncode == 0
    assert done.stdout.splitlines()[0].split()[0] == "backend"
