"""Reference models and the built-in data."""
import pytest
import torch

import pyfastent.data as data
import pyfastent.models as models
import pyfastent.nn as pnn


def test_mlp_layout():
    net = models.mlp()
    widths = [m.out_features for m in net if isinstance(m, torch.nn.Linear)]
    assert widths == [1024, 20, 20, 20, 10]
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    small = models.mlp(width=0.1, in_features=64, activation="tanh")
    assert [m.out_features for m in small if isinstance(m, torch.nn.Linear)] == [102, 2, 2, 2, 10]


def test_mnist_cnn_on_mnist_and_digits_sizes():
    assert models.mnist_cnn()(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    net = models.mnist_cnn(in_size=8, width=2)
    assert net.conv1.out_channels == 8 and net.conv2.out_channels == 16
    assert net(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ValueError, match=r"^in_size must be a positive multiple of 4"):
        models.mnist_cnn(in_size=10)


def test_vgg16_bn_layout():
    full = models.vgg16_bn()
    convs = [m for m in full if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in full) == 13
    small = models.vgg16_bn(width=0.25).eval()
    assert small(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert len(pnn.capture(small, torch.rand(2, 3, 32, 32), layers=torch.nn.Conv2d)) == 13
    with pytest.raises(ValueError, match=r"^width must be a positive"):
        models.vgg16_bn(width=0)


def test_digits_split_is_fixed_by_the_seed():
    a, b, c = data.digits(seed=0), data.digits(seed=0), data.digits(seed=1)
    assert a.x_train.shape == (1348, 1, 8, 8) and a.x_test.shape == (449, 1, 8, 8)
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert float(a.x_train.min()) == 0.0 and float(a.x_train.max()) == 1.0
    assert torch.equal(a.y_test, b.y_test) and not torch.equal(a.y_test, c.y_test)
    assert sorted(torch.cat([a.y_train, a.y_test]).bincount().tolist()) == sorted(
        torch.cat([c.y_train, c.y_test]).bincount().tolist())


@pytest.mark.slow  # training
def test_train_classifier_learns_digits_and_reports_each_epoch():
    from pyfastent.nn.train import accuracy, train_classifier

    split = data.digits(seed=1).to("cpu")
    torch.manual_seed(0)
    net = models.mlp(in_features=64)
    seen = []
    history = train_classifier(net, split, 3, seed=1, on_epoch=seen.append, progress=False)
    assert [s.epoch for s in history] == [1, 2, 3] and seen == history
    last = history[-1]
    assert last.test_accuracy > 0.5  # ten classes: chance is 0.1
    assert last.gap == pytest.approx(last.train_accuracy - last.test_accuracy)
    net.eval()
    # accuracy() is independent of the mode it finds, and restores it.
    assert accuracy(net, split.x_test, split.y_test) == pytest.approx(last.test_accuracy) and not net.training
    expected = float((net(split.x_test).argmax(1) == split.y_test).double().mean())
    assert last.test_accuracy == pytest.approx(expected)


@pytest.mark.parametrize("kwargs, name", [({"epochs": 0}, "epochs"), ({"epochs": 1, "batch_size": 0}, "batch_size"),
                                          ({"epochs": 1, "lr": -1.0}, "lr"),
                                          ({"epochs": 1, "optimizer": "lbfgs"}, "optimizer")])
def test_train_classifier_bad_arguments(kwargs, name):
    from pyfastent.nn.train import train_classifier

    with pytest.raises(ValueError, match=name):
        train_classifier(models.mlp(width=0.25, in_features=64), data.digits(), **kwargs)
