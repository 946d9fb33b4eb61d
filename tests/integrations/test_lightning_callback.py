"""The Lightning callback (issue 28 part 2): a tiny model trained with the
real Trainer on the CPU; what its logger received equals a tracker run by
hand on the checkpoint of each epoch; resuming from a checkpoint goes on
with the same steps; the probe passes leave modes and gradients alone."""
import csv

import pytest
import torch
from torch import nn

import pyfastent as pf
import pyfastent.nn as pnn
from pyfastent.integrations import Keys

pl = pytest.importorskip("lightning.pytorch")

from pyfastent.integrations.lightning import InformationPlaneCallback  # noqa: E402

ESTIMATORS = (pf.Renyi(sigma=1.0), pf.LogDet(beta=10.0))


def data():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(96, 5, generator=g)
    return x, (x[:, 0] + x[:, 1] > 0).long()


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def loaders():
    x, y = data()
    ds = torch.utils.data.TensorDataset(x, y)
    return torch.utils.data.DataLoader(ds, batch_size=16), torch.utils.data.DataLoader(ds, batch_size=48)


def fit(tmp_path, epochs, callback, ckpt_path=None):
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, default_root_dir=tmp_path,
                         logger=pl.loggers.CSVLogger(tmp_path, name="logs", version=0 if ckpt_path is None else 1),
                         callbacks=[callback, pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1,
                                                                           filename="{epoch}")],
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=2)
    train, val = loaders()
    trainer.fit(Tiny(), train, val, ckpt_path=ckpt_path)
    return trainer


def logged_by_epoch(path) -> dict:
    """{epoch: {key: value}} from the CSV logger's metrics file."""
    out: dict = {}
    with open(path) as fh:
        for row in csv.DictReader(fh):
            values = {k: float(v) for k, v in row.items() if k.startswith("infoplane/") and v != ""}
            if values:
                out.setdefault(int(row["epoch"]), {}).update(values)
    return out


def by_hand(checkpoint) -> list:
    """A tracker's one step on the weights of ``checkpoint``."""
    module = Tiny()
    module.load_state_dict(torch.load(checkpoint, weights_only=False)["state_dict"])
    x, y = data()
    tracker = pnn.InformationPlane(module, x[:64], y[:64], estimators=ESTIMATORS, progress=False)
    tracker.step()
    return tracker.rows


def test_logged_values_equal_a_tracker_on_each_checkpoint(tmp_path):
    x, y = data()
    callback = InformationPlaneCallback(x[:64], y[:64], estimators=ESTIMATORS, progress=False)
    fit(tmp_path, 3, callback)
    logged = logged_by_epoch(tmp_path / "logs" / "version_0" / "metrics.csv")
    assert sorted(logged) == [0, 1, 2]  # the sanity check measured nothing
    assert sorted({r["step"] for r in callback.tracker.rows}) == [0, 1, 2]
    keys = Keys()
    for epoch in range(3):
        rows = by_hand(tmp_path / "ckpt" / f"epoch={epoch}.ckpt")
        want = {keys.row(r): r["value"] for r in rows}
        assert logged[epoch].keys() == want.keys()
        for key, value in want.items():
            assert logged[epoch][key] == pytest.approx(value, rel=1e-6, abs=1e-7)  # Lightning logs float32


def test_fit_resumed_from_a_checkpoint_continues_the_tracker(tmp_path):
    x, y = data()
    whole = InformationPlaneCallback(x[:64], y[:64], estimators=ESTIMATORS, progress=False)
    fit(tmp_path, 3, whole)
    resumed = InformationPlaneCallback(x[:64], y[:64], estimators=ESTIMATORS, progress=False)
    fit(tmp_path / "again", 3, resumed, ckpt_path=tmp_path / "ckpt" / "epoch=1.ckpt")
    assert [r["step"] for r in resumed.tracker.rows] == [r["step"] for r in whole.tracker.rows]
    for a, b in zip(resumed.tracker.rows, whole.tracker.rows):
        assert (a["layer"], a["estimator"], a["quantity"], a["epoch"]) == \
            (b["layer"], b["estimator"], b["quantity"], b["epoch"])
        assert a["value"] == pytest.approx(b["value"], rel=1e-9, abs=1e-12)


def test_train_epoch_steps_leave_modes_and_gradients_alone():
    x, y = data()
    callback = InformationPlaneCallback(x[:64], y[:64], on="train", estimators=ESTIMATORS, progress=False)
    module = Tiny()
    module.train()
    module.net[1].eval()  # a frozen submodule stays frozen
    nn.functional.cross_entropy(module(x), y).backward()
    grads = [p.grad.clone() for p in module.parameters()]

    class Trainer:  # what the hook reads of a Trainer
        current_epoch, is_global_zero, sanity_checking = 0, False, False

    callback.on_train_epoch_end(Trainer(), module)
    assert callback.tracker.rows
    assert module.training and not module.net[1].training
    assert all(torch.equal(p.grad, g) for p, g in zip(module.parameters(), grads))


def test_on_and_every_are_checked():
    with pytest.raises(ValueError, match="on must be"):
        InformationPlaneCallback(torch.zeros(4, 2), torch.zeros(4).long(), on="test")
    with pytest.raises(ValueError, match="every"):
        InformationPlaneCallback(torch.zeros(4, 2), torch.zeros(4).long(), every=0)
