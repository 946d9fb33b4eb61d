"""Sinks (issue 28): every logged value read back from the real loggers'
own files (TensorBoard's event files, a W&B offline run, an MLflow sqlite
store) equals the tracker's table; the key rule against MLflow's."""
import json
import posixpath
import re
import sys
import warnings

import pytest
import torch

import pyfastent.nn as pnn
from pyfastent.integrations import Keys, SinkWarning, key_part

from logged import Kept, scalar_rows, track, wandb_config, wandb_history

WORST = ["conv1#2", "act_2", "I(X;T)", "renyi(a=1.01,knn10)", "logdet(b=6400,covariance)", "cka(linear,debiased)",
         "model.layers.0.self_attn", "embedding output", "a/b", "..", ".", "", "α=1", "x" * 3 + "//", "-"]


def mlflow_allows(key: str) -> bool:
    """MLflow's metric-name rule, written from its docs: ``[/\\w.\\- :]``
    and a normalized path (no empty, ``.`` or ``..`` segment, no leading ``/``)."""
    norm = posixpath.normpath(key)
    return bool(re.fullmatch(r"[/\w.\- :]+", key)) and norm == key and not norm.startswith(("..", "/"))


@pytest.mark.parametrize("name, part", [("conv1#2", "conv1_2"), ("renyi(a=1.01,knn10)", "renyi_a_1.01_knn10"),
                                        ("I(X;T)", "I_X_T"), ("layer1.0.conv1", "layer1.0.conv1"),
                                        ("embedding output", "embedding_output"), ("a/b", "a_b"), ("..", "_"),
                                        ("", "_"), ("α=1", "1"), ("-", "-")])
def test_key_part_follows_the_documented_rule(name, part):
    assert key_part(name) == part


def test_keys_of_the_worst_names_are_valid_for_mlflow_and_distinct():
    keys = Keys()
    made = [keys.row({"estimator": e, "layer": layer, "quantity": q}) for e in WORST for layer in WORST
            for q in ("i_xt", "h_t")]
    made += [keys.matrix(name) for name in WORST]
    assert len(set(made)) == len(made)
    assert all(mlflow_allows(k) for k in made), [k for k in made if not mlflow_allows(k)]
    assert keys.row({"estimator": "renyi(a=1.01,knn10)", "layer": "conv1#2", "quantity": "i_xt"}) == \
        "infoplane/renyi_a_1.01_knn10/conv1_2/i_xt"  # the same name, the same key
    pytest.importorskip("mlflow")
    from mlflow.utils.validation import _validate_metric_name

    for k in made:
        _validate_metric_name(k)


def test_a_later_name_meeting_an_earlier_key_gets_a_suffix():
    keys = Keys()
    first = keys.row({"estimator": "e", "layer": "act#2", "quantity": "h_t"})
    second = keys.row({"estimator": "e", "layer": "act_2", "quantity": "h_t"})
    assert (first, second) == ("infoplane/e/act_2/h_t", "infoplane/e/act_2/h_t_2")


def expected_by_key(tracker, keys) -> dict:
    """{key: {step: value}} of the tracker's scalar rows."""
    out: dict = {}
    for r in scalar_rows(tracker):
        out.setdefault(keys.row(r), {})[r["step"]] = r["value"]
    return out


def test_tensorboard_event_files_hold_every_value(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("matplotlib")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from pyfastent.integrations import TensorBoardSink

    sink = TensorBoardSink(tmp_path / "tb", figure_every=2)
    tracker = track([sink])
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    expected = expected_by_key(tracker, sink.keys)
    assert set(acc.Tags()["scalars"]) == set(expected)
    assert {"act", "act#2", "act_2"} <= {r["layer"] for r in tracker.rows}
    for key, by_step in expected.items():
        logged = {e.step: e.value for e in acc.Scalars(key)}
        assert logged.keys() == by_step.keys()
        for step, value in by_step.items():
            assert logged[step] == pytest.approx(value, rel=1e-6, abs=1e-7)  # TensorBoard keeps float32
    assert [e.step for e in acc.Images("infoplane/plane")] == [0, 2]
    assert [e.step for e in acc.Images("similarity/cka_linear")] == [0, 1, 2]
    (text,) = acc.Tensors("infoplane/metadata/text_summary")
    meta = json.loads(text.tensor_proto.string_val[0].decode().replace("\n    ", "\n"))
    assert meta["layers"] == tracker.table.metadata["layers"] and meta["probe_size"] == 48


def test_tensorboard_sink_leaves_a_given_writer_open(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    from pyfastent.integrations import TensorBoardSink

    writer = SummaryWriter(str(tmp_path))
    track([TensorBoardSink(writer, figure_every=None)], steps=1)
    writer.add_scalar("mine", 1.0, 0)  # still open
    writer.close()


def test_wandb_offline_run_holds_every_value(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    from pyfastent.integrations import WandbSink

    run = wandb.init(dir=str(tmp_path), project="pyfastent-test")
    sink = WandbSink(figure_every=2)
    tracker = track([sink])
    run.finish()
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    history = wandb_history(run_dir)
    logged: dict = {}
    for row in history:
        for key, value in row.items():
            logged.setdefault(key, {})[row["_step"]] = value
    expected = expected_by_key(tracker, sink.keys)
    for key, by_step in expected.items():
        assert logged[key] == pytest.approx(by_step, rel=1e-12, abs=1e-12)
    assert logged["infoplane/plane/_type"] == {0: "image-file", 2: "image-file"}  # W&B flattens media to keys
    table = json.loads((run_dir / "files" / logged["infoplane/rows/path"][2]).read_text())
    assert len(table["data"]) == len(scalar_rows(tracker))
    for row, want in zip(table["data"], scalar_rows(tracker)):
        assert dict(zip(table["columns"], row)) == {c: want.get(c) for c in table["columns"]}
    assert sorted(logged["similarity/cka_linear/heatmap/_type"]) == [0, 1, 2]
    cells = json.loads((run_dir / "files" / logged["similarity/cka_linear/path"][2]).read_text())
    want = tracker.similarity_map(2)
    assert [r[0] for r in cells["data"]] == want.layers and cells["columns"][1:] == want.other_layers
    assert torch.allclose(torch.tensor([r[1:] for r in cells["data"]], dtype=torch.float64), want.matrix, rtol=1e-12)
    meta = wandb_config(run_dir)["pyfastent"]
    assert meta["layers"] == tracker.table.metadata["layers"] and meta["probe_size"] == 48


def test_wandb_step_metric_logs_the_step_as_a_value():
    """With ``step_metric`` the tracker's step is a logged value on W&B's own
    axis (``define_metric``), never ``step=``, which W&B drops when the run's
    counter is ahead. A recording run: what W&B does with the calls is the
    offline test's above."""
    pytest.importorskip("wandb")
    from pyfastent.integrations import WandbSink

    class Run:
        def __init__(self):
            self.logged, self.defined, self.config = [], [], {}

        def log(self, values, step=None):
            assert step is None
            self.logged.append(values)

        def define_metric(self, name, step_metric=None):
            self.defined.append((name, step_metric))

    run = Run()
    sink = WandbSink(run, figure_every=None, step_metric="infoplane/step")
    tracker = track([sink], steps=2)
    assert run.defined == [("infoplane/step", None), ("infoplane/*", "infoplane/step"),
                           ("similarity/*", "infoplane/step")]
    rows = [values for values in run.logged if not any(k.startswith("similarity/") for k in values)]
    assert [values["infoplane/step"] for values in rows] == [0, 1]
    for values, step in zip(rows, (0, 1)):
        want = {sink.keys.row(r): r["value"] for r in scalar_rows(tracker) if r["step"] == step}
        assert {k: v for k, v in values.items() if k != "infoplane/step"} == want


def test_mlflow_sqlite_store_holds_every_value(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    pytest.importorskip("matplotlib")
    from pyfastent.integrations import MLflowSink

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    try:
        experiment = mlflow.create_experiment("pyfastent", artifact_location=(tmp_path / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment) as run:
            sink = MLflowSink(figure_every=2)
            tracker = track([sink])
        client = mlflow.MlflowClient()
        expected = expected_by_key(tracker, sink.keys)
        assert set(client.get_run(run.info.run_id).data.metrics) == set(expected)
        for key, by_step in expected.items():
            logged = {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
            assert logged == pytest.approx(by_step, rel=1e-12, abs=1e-12)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "infoplane")}
        assert artifacts == {"infoplane/metadata.json", "infoplane/plane_step000000.png",
                             "infoplane/plane_step000002.png"}
        cells = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/similarity/cka_linear/step000001.json")
        want = tracker.similarity_map(1)
        assert cells["rows"] == want.layers and cells["columns"] == want.other_layers
        assert torch.allclose(torch.tensor(cells["matrix"], dtype=torch.float64), want.matrix, rtol=1e-12)
    finally:
        mlflow.set_tracking_uri(None)


class Broken:
    def __init__(self):
        self.calls = 0

    def write_metadata(self, metadata):
        pass

    def write_rows(self, rows, step):
        self.calls += 1
        raise ConnectionError("the logging server is down")

    def write_matrix(self, name, matrix, row_labels, column_labels, step):
        pass


def test_a_failing_sink_warns_once_and_loses_no_step(tmp_path):
    broken, kept = Broken(), Kept()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = track([broken, kept], log=tmp_path / "plane.jsonl")
    said = [w for w in caught if issubclass(w.category, SinkWarning)]
    assert len(said) == 1 and "the logging server is down" in str(said[0].message)
    assert broken.calls == 3  # tried every step, reported once
    assert pnn.InformationPlane.load(tmp_path / "plane.jsonl").rows == tracker.rows
    assert kept.metadata == tracker.table.metadata and kept.closed
    assert [step for step, _ in kept.rows] == [0, 1, 2]
    assert [r for _, rows in kept.rows for r in rows] == scalar_rows(tracker)
    for name, step, matrix, rows, cols in kept.matrices:
        want = tracker.similarity_map(step)
        assert name == "cka(linear)" and rows == want.layers and cols == want.other_layers
        assert torch.equal(matrix, want.matrix)


@pytest.mark.parametrize("sinks, said", [("tb", "list of sinks"), ([object()], "object has no write_metadata")])
def test_sinks_argument_is_checked(sinks, said):
    with pytest.raises(ValueError, match=f"sinks.*{said}"):
        track(sinks, steps=0)


@pytest.mark.parametrize("module, sink, extra", [("wandb", "WandbSink", "wandb"), ("mlflow", "MLflowSink", "mlflow"),
                                                 ("torch.utils.tensorboard", "TensorBoardSink", "tensorboard")])
def test_a_missing_logger_names_its_extra(monkeypatch, tmp_path, module, sink, extra):
    import pyfastent.integrations as integrations

    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    cls = getattr(integrations, sink)
    with pytest.raises(ImportError, match=re.escape(f'pip install "pyfastent[{extra}]"')):
        cls(tmp_path) if sink == "TensorBoardSink" else cls()


def test_a_logger_without_an_active_run_is_refused(monkeypatch):
    wandb = pytest.importorskip("wandb")
    mlflow = pytest.importorskip("mlflow")
    from pyfastent.integrations import MLflowSink, WandbSink

    monkeypatch.setattr(wandb, "run", None)
    with pytest.raises(ValueError, match="run: no active W&B run"):
        WandbSink()
    assert mlflow.active_run() is None
    with pytest.raises(ValueError, match="run: no active MLflow run"):
        MLflowSink()


@pytest.mark.parametrize("module, missing, extra", [
    ("pyfastent.integrations.lightning", ("lightning", "lightning.pytorch", "pytorch_lightning"), "lightning"),
    ("pyfastent.integrations.transformers", ("transformers",), "transformers")])
def test_a_missing_framework_names_its_extra(monkeypatch, module, missing, extra):
    import importlib

    monkeypatch.delitem(sys.modules, module, raising=False)
    for name in missing:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=re.escape(f'pip install "pyfastent[{extra}]"')):
        importlib.import_module(module)
