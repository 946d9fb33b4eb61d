"""The command line and the plots, as a user meets them."""
import csv
import importlib.util
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

import pyfastent as pf
import pyfastent.nn as pnn
import pyfastent.plot as plot
from pyfastent.cli import main

pytestmark = pytest.mark.slow  # the command line in subprocesses and the demo's training

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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pf.SaturationWarning)  # two epochs: the output layer is still a blur
        assert main(["demo", "--epochs", "2", "--out", str(out), "--no-progress"]) == 0
    return out


def test_demo_writes_every_file(demo_dir):
    names = {p.name for p in demo_dir.iterdir()}
    assert names == {"information_plane.csv", "information_plane.meta.json", "information_plane.jsonl",
                     "information_plane.png", "layer_curves.png", "te_plane.png", "report.md"}
    for png in demo_dir.glob("*.png"):
        assert_png(png)
    table = pnn.InformationPlane.load(demo_dir / "information_plane.csv")
    assert {r["epoch"] for r in table.rows} == {1, 2}
    assert {"i_xt", "i_ty", "h_t", "sigma", "te_x", "te_y", "te_in_mean", "te_x_floor", "te_y_floor"} <= {
        r["quantity"] for r in table.rows}
    assert table.rows == pnn.InformationPlane.load(demo_dir / "information_plane.jsonl").rows
    assert "![information_plane](information_plane.png)" in (demo_dir / "report.md").read_text()


def test_demo_is_reproducible_with_a_seed(demo_dir, tmp_path):
    assert main(["demo", "--epochs", "2", "--out", str(tmp_path), "--no-progress"]) == 0
    first = pnn.InformationPlane.load(demo_dir / "information_plane.jsonl").rows
    again = pnn.InformationPlane.load(tmp_path / "information_plane.jsonl").rows
    # The same numbers up to round-off: while the eigensolver plan is measured, the same matrix
    # may go to another LAPACK driver (pyfastent.ops.eigen); drivers agree far below 1e-10 bits.
    assert [{k: v for k, v in r.items() if k != "value"} for r in again] == [
        {k: v for k, v in r.items() if k != "value"} for r in first]
    for a, b in zip(again, first):
        assert a["value"] == pytest.approx(b["value"], abs=1e-10, rel=1e-12)


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
        def wider():
            torch.manual_seed(1)
            return torch.nn.Sequential(torch.nn.Linear(4, 9), torch.nn.Tanh(), torch.nn.Linear(9, 5), torch.nn.Tanh())
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
    assert lines[0] == "layer,estimator,units,h_t,i_xt,i_ty,saturated" and len(lines) == 3
    first = next(csv.DictReader(lines))
    assert (first["layer"], first["estimator"], first["units"]) == ("0", "renyi(a=1.01,knn10)", "bits")
    assert "I(X;T)" in done.stdout and "bits" in done.stdout


def test_similarity_command_writes_the_map_of_two_models(tmp_path):
    write_model(tmp_path)
    np.savez(tmp_path / "unlabelled.npz", x=np.load(tmp_path / "data.npz")["x"])  # y is not needed
    done = run_cli(tmp_path, "similarity", "--model", "mymodel:build", "--other", "mymodel:wider", "--data",
                   "unlabelled.npz", "--debiased", "--out", "maps")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((tmp_path / "maps" / "similarity.csv").read_text().splitlines()))
    assert {(r["layer"], r["other_layer"]) for r in rows} == {(a, b) for a in "012" for b in "0123"}
    spec = importlib.util.spec_from_file_location("similarity_models", tmp_path / "mymodel.py")
    mymodel = importlib.util.module_from_spec(spec)  # by path: the in-process tests import their own mymodel
    spec.loader.exec_module(mymodel)
    x = torch.from_numpy(np.load(tmp_path / "unlabelled.npz")["x"])
    a, b = pnn.capture(mymodel.build(), x), pnn.capture(mymodel.wider(), x)
    for r in rows:
        assert float(r["value"]) == pytest.approx(pf.cka(a[r["layer"]], b[r["other_layer"]], debiased=True),
                                                  abs=1e-5)  # float32 layers
    assert_png(tmp_path / "maps" / "similarity.png")
    assert "cka map: 3 x 4 layers on N = 50" in done.stdout


@pytest.mark.parametrize("args,message", [
    (["similarity", "--model", "mymodel:build", "--other", "mymodel:nope", "--data", "data.npz"],
     "--other: 'mymodel' has no callable 'nope'"),
    (["similarity", "--model", "mymodel:build", "--data", "data.npz", "--measure", "mi", "--permutations", "5"],
     "--permutations is for --measure cka, hsic or mknn"),
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


def cli(capsys, *args):
    """main() in this process: (exit code, stdout, stderr)."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def user_files(tmp_path, monkeypatch):
    write_model(tmp_path)
    (tmp_path / "mymodel.py").write_text((tmp_path / "mymodel.py").read_text() + textwrap.dedent("""
        def needs_args(width):
            return build()
        def broken():
            raise RuntimeError("weights not found on this cluster")
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("mymodel", None)
    yield tmp_path
    sys.modules.pop("mymodel", None)


def save_data(path, x, y):
    np.savez(path, x=x, y=y)
    return str(path)


GOOD_Y = np.arange(50) % 3


@pytest.mark.parametrize("x,y,message", [
    (np.zeros((50, 5), np.float32), GOOD_Y, "does not fit the model"),
    (np.zeros(50, np.float32), GOOD_Y, r"x must have shape \(N, features...\)"),
    (np.zeros((0, 4), np.float32), np.zeros(0, int), "x needs at least 2 samples"),
    (np.float32(3.0), GOOD_Y, r"x must have shape \(N, features...\)"),
    (np.array([["a"] * 4] * 50), GOOD_Y, "x must hold real numbers"),
    (np.zeros((50, 4), np.complex64), GOOD_Y, "x must hold real numbers"),
    (np.zeros((50, 4), np.float32), GOOD_Y.astype(float), "y must be integer class labels"),
    (np.zeros((50, 4), np.float32), np.eye(3)[GOOD_Y].astype(int), r"one-hot\? pass y.argmax\(1\)"),
    (np.full((50, 4), np.nan, np.float32), GOOD_Y, "x contains 200 non-finite values"),
])
def test_bad_data_ends_in_one_line(capsys, user_files, x, y, message):
    data = save_data(user_files / "bad.npz", x, y)
    code, _, err = cli(capsys, "sweep", "--model", "mymodel:build", "--data", data)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_floating_data_is_converted_to_the_models_dtype(capsys, user_files, dtype):
    g = np.random.default_rng(0)
    data = save_data(user_files / "d.npz", (g.standard_normal((50, 4)) * 3).astype(dtype), GOOD_Y)
    code, out, err = cli(capsys, "sweep", "--model", "mymodel:build", "--data", data, "--estimators", "renyi",
                         "--no-progress", "--out", "s.csv")
    assert code == 0, err
    assert "wrote s.csv" in out


def test_integer_data_reaches_the_model_unconverted(capsys, user_files):
    (user_files / "embed.py").write_text(textwrap.dedent("""
        import torch
        def build():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(), torch.nn.Linear(12, 3))
    """))
    ids = np.random.default_rng(0).integers(0, 10, (50, 3))
    data = save_data(user_files / "ids.npz", ids, GOOD_Y)
    code, out, err = cli(capsys, "sweep", "--model", "embed:build", "--data", data, "--estimators", "renyi",
                         "--no-progress", "--out", "s.csv")  # token ids: an embedding needs them as integers
    assert code == 0, err
    code, _, err = cli(capsys, "sweep", "--model", "mymodel:build", "--data", data, "--no-progress")
    assert code == 2 and "integer inputs reach the model unconverted" in err


def test_bad_files_end_in_one_line(capsys, user_files):
    np.save(user_files / "x.npy", np.zeros((50, 4)))
    (user_files / "empty.npz").write_bytes(b"")
    good = (user_files / "data.npz").read_bytes()
    (user_files / "cut.npz").write_bytes(good[: len(good) // 2])
    (user_files / "weights.pt").write_text("not torch")
    cases = [
        (["--data", "x.npy"], "holds a single array (.npy)"),
        (["--data", "empty.npz"], "is empty"),
        (["--data", "cut.npz"], "is not a readable .npz file"),
        (["--data", "data.npz", "--weights", "weights.pt"], "is not a state_dict saved with torch.save"),
        (["--data", "data.npz", "--model", "mymodel:needs_args"], "needs_args() raised TypeError"),
        (["--data", "data.npz", "--model", "mymodel:broken"], "broken() raised RuntimeError: weights not found"),
        (["--data", "data.npz", "--out", "."], "--out '.' is a directory"),
    ]
    for extra, message in cases:
        args = ["sweep", "--model", "mymodel:build", *extra]
        if "--model" in extra:
            args = ["sweep", *extra]
        code, _, err = cli(capsys, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1, (extra, err)
        assert message in err, (extra, err)


def test_debug_shows_the_factory_traceback(capsys, user_files):
    code, _, err = cli(capsys, "sweep", "--debug", "--model", "mymodel:broken", "--data", "data.npz")
    assert code == 2 and "Traceback" in err and "weights not found" in err.splitlines()[-1]


def test_out_that_cannot_be_written_is_refused_before_the_model_is_imported(capsys, user_files, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "TemporaryFile", lambda **kw: (_ for _ in ()).throw(PermissionError(13, "denied")))
    code, _, err = cli(capsys, "sweep", "--model", "mymodel:build", "--data", "data.npz", "--out", "sub/s.csv")
    assert code == 2 and "--out 'sub/s.csv' cannot be written" in err
    assert "mymodel" not in sys.modules
    code, _, err = cli(capsys, "demo", "--out", "out")
    assert code == 2 and "--out 'out' cannot be written" in err


@pytest.mark.parametrize("args,message", [(["--batch-size", "-5"], "--batch-size must be a positive integer"),
                                          (["--epochs", "0"], "--epochs must be a positive integer"),
                                          (["--lr", "0"], "--lr must be a positive number")])
def test_demo_flags_are_checked_first(capsys, tmp_path, args, message):
    code, _, err = cli(capsys, "demo", "--out", str(tmp_path / "o"), *args)
    assert code == 2 and message in err and not (tmp_path / "o").exists()


def test_sweep_seed_and_weights(capsys, user_files):
    torch = pytest.importorskip("torch")
    import mymodel

    net = mymodel.build()
    with torch.no_grad():
        net[0].weight.mul_(3.0)
    torch.save(net.state_dict(), user_files / "w.pt")
    outputs = []
    for extra in ([], ["--weights", "w.pt"], ["--weights", "w.pt", "--seed", "5"]):
        code, _, err = cli(capsys, "sweep", "--model", "mymodel:build", "--data", "data.npz", "--layers", "0",
                           "--estimators", "logdet", "--no-progress", "--out", "s.csv", *extra)
        assert code == 0, err
        outputs.append((user_files / "s.csv").read_text())
    assert outputs[0] != outputs[1]  # the weights were loaded
    assert outputs[1] == outputs[2]  # and they, not the seed, decide the model
    (user_files / "other.pt").write_bytes((user_files / "w.pt").read_bytes())
    torch.save({"nope": torch.zeros(1)}, user_files / "other.pt")
    code, _, err = cli(capsys, "sweep", "--model", "mymodel:build", "--data", "data.npz", "--weights", "other.pt")
    assert code == 2 and "does not fit the model" in err


def test_unknown_flag_prints_the_subcommands_usage(tmp_path):
    done = run_cli(tmp_path, "sweep", "--modle", "x")
    assert done.returncode == 2 and "usage: pyfastent sweep" in done.stderr and "Traceback" not in done.stderr


def test_version_and_a_closed_pipe(tmp_path):
    assert run_cli(tmp_path, "--version").stdout.strip() == f"pyfastent {pf.__version__}"
    done = subprocess.run(f"{sys.executable} -m pyfastent info | head -n 1", shell=True, capture_output=True,
                          text=True, cwd=tmp_path)
    assert done.stdout.startswith("backend") and "Traceback" not in done.stderr and "Broken" not in done.stderr


def test_submodules_load_on_first_use_only(tmp_path):
    code = ("import sys, pyfastent; before = {m for m in ('pyfastent.nn', 'pyfastent.plot', 'matplotlib', 'sklearn') "
            "if m in sys.modules}; pyfastent.nn.capture; pyfastent.models.mlp; pyfastent.plot; pyfastent.data.digits;"
            " print(sorted(before), 'pyfastent.nn' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[] True"


def drawn_figure(monkeypatch, draw, table, path):
    from matplotlib.figure import Figure

    figures = []
    original = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: figures.append(self) or original(self, *a, **k))
    draw(table, path)
    return figures[0]


def test_pictures_tell_layers_apart_and_carry_their_references(demo_dir, tmp_path, monkeypatch):
    table = pnn.InformationPlane.load(demo_dir / "information_plane.jsonl")
    fig = drawn_figure(monkeypatch, plot.information_plane, table, tmp_path / "ip.png")
    renyi, logdet = fig.axes[:2]
    colours = {line.get_label(): line.get_color() for line in renyi.get_lines() if not line.get_label().startswith("_")}
    assert list(colours) == table.metadata["layers"] and len(set(map(str, colours.values()))) == len(colours)
    h_y = table.metadata["label_entropy_bits"]
    assert any(list(line.get_ydata()) == [h_y, h_y] for line in logdet.get_lines())  # the H(Y) reference
    assert any("not\nbounded by the label entropy" in t.get_text() for t in logdet.texts)  # LogDet I(T;Y) > H(Y)
    assert not any("bounded" in t.get_text() for t in renyi.texts)
    assert fig.legends and not renyi.get_legend()  # the legend is outside the data
    curves = drawn_figure(monkeypatch, plot.layer_curves, table, tmp_path / "lc.png")
    assert all(float(t).is_integer() for t in curves.axes[0].get_xticks())
    te = drawn_figure(monkeypatch, plot.te_plane, table, tmp_path / "te.png")
    floor = [r["value"] for r in table.values("te_x_floor")]
    assert any(abs(line.get_xdata()[0] - max(floor)) < 1e-15 for line in te.axes[0].get_lines()
               if len(line.get_xdata()) == 2)  # the largest shuffled TE is drawn
