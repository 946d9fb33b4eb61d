"""The Hugging Face Trainer callback (issue 28 part 2): a tiny model with
dict inputs trained by the real Trainer on the CPU; each step appended to
``state.log_history`` and written through a sink equals a tracker run by
hand on the checkpoint of that epoch."""
import pytest
import torch
from torch import nn

import pyfastent as pf
import pyfastent.nn as pnn
from pyfastent.integrations import Keys

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
safetensors = pytest.importorskip("safetensors.torch")

from pyfastent.integrations.callback_core import CallbackWarning  # noqa: E402
from pyfastent.integrations.transformers import InformationPlaneCallback  # noqa: E402

from logged import Kept  # noqa: E402

ESTIMATORS = (pf.Renyi(sigma=1.0), pf.LogDet(beta=10.0))


class Tiny(nn.Module):
    """Keyword inputs and a dict output with the loss, as the Trainer expects."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(5, 8), nn.Tanh())
        self.head = nn.Linear(8, 2)

    def forward(self, features, labels=None):
        logits = self.head(self.body(features))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


def data():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(96, 5, generator=g)
    return x, (x[:, 0] + x[:, 1] > 0).long()


class Rows(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"features": self.x[i], "labels": self.y[i]}


def train(tmp_path, callback, epochs=2):
    x, y = data()
    args = transformers.TrainingArguments(output_dir=str(tmp_path), num_train_epochs=epochs,
                                          per_device_train_batch_size=16, per_device_eval_batch_size=48,
                                          eval_strategy="epoch", save_strategy="epoch", logging_strategy="no",
                                          report_to=[], use_cpu=True, disable_tqdm=True, learning_rate=0.05)
    trainer = transformers.Trainer(model=Tiny(), args=args, train_dataset=Rows(x, y), eval_dataset=Rows(x, y),
                                   callbacks=[callback])
    trainer.train()
    return trainer


def test_each_evaluation_is_logged_as_a_tracker_measures_its_checkpoint(tmp_path):
    x, y = data()
    kept = Kept()
    callback = InformationPlaneCallback({"features": x[:64]}, y[:64], estimators=ESTIMATORS, sinks=[kept],
                                        x_variable=x[:64],
                                        progress=False)
    trainer = train(tmp_path, callback)
    ours = [h for h in trainer.state.log_history if any(k.startswith("infoplane/") for k in h)]
    assert [h["epoch"] for h in ours] == [1.0, 2.0]
    assert [step for step, _ in kept.rows] == [0, 1] and kept.closed
    keys = Keys()
    checkpoints = sorted(tmp_path.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert [h["step"] for h in ours] == [int(p.name.split("-")[1]) for p in checkpoints]
    for logged, checkpoint in zip(ours, checkpoints):
        model = Tiny()
        model.load_state_dict(safetensors.load_file(checkpoint / "model.safetensors"))
        tracker = pnn.InformationPlane(model, {"features": x[:64]}, y[:64], estimators=ESTIMATORS,
                                       x_variable=x[:64], progress=False)
        tracker.step()
        want = {keys.row(r): r["value"] for r in tracker.rows}
        assert {k for k in logged if k.startswith("infoplane/")} == set(want)
        for key, value in want.items():
            assert logged[key] == pytest.approx(value, rel=1e-9, abs=1e-12)


def test_a_later_failure_warns_and_training_goes_on(tmp_path, monkeypatch):
    x, y = data()
    callback = InformationPlaneCallback({"features": x[:64]}, y[:64], on="epoch", estimators=ESTIMATORS,
                                        x_variable=x[:64],
                                        progress=False)
    calls = {"n": 0}
    real = pnn.InformationPlane.step

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise MemoryError("no room for the probe")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pnn.InformationPlane, "step", flaky)
    with pytest.warns(CallbackWarning, match="not measured at epoch 2.0.*no room for the probe"):
        trainer = train(tmp_path, callback, epochs=3)
    assert trainer.state.epoch == 3.0
    assert sorted({r["epoch"] for r in callback.tracker.rows}) == [1.0, 3.0]


def test_a_probe_the_model_cannot_take_warns_and_training_goes_on(tmp_path):
    x, y = data()
    callback = InformationPlaneCallback({"features": x[:64, :3]}, y[:64], estimators=ESTIMATORS,  # 3 of 5 features
                                        x_variable=x[:64], progress=False)
    with pytest.warns(CallbackWarning, match="not measured at epoch 1.0"):
        trainer = train(tmp_path, callback)
    assert trainer.state.epoch == 2.0 and not callback.tracker.rows
    assert not any(k.startswith("infoplane/") for h in trainer.state.log_history for k in h)


def test_on_and_every_are_checked():
    with pytest.raises(ValueError, match="on must be"):
        InformationPlaneCallback(torch.zeros(4, 2), torch.zeros(4).long(), on="step")
    with pytest.raises(ValueError, match="every"):
        InformationPlaneCallback(torch.zeros(4, 2), torch.zeros(4).long(), every=0)
