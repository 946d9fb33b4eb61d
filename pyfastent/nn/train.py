"""A plain classifier training loop that calls back after every epoch: what
``pyfastent demo`` and the paper reproductions train their networks with."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pyfastent import _checks
from pyfastent._progress import progress_bar


@dataclass(frozen=True)
class EpochStats:
    """One epoch: mean training loss, and accuracies on the training and test split."""

    epoch: int
    loss: float
    train_accuracy: float
    test_accuracy: float

    @property
    def gap(self) -> float:
        """train − test accuracy: how much the network has overfitted."""
        return self.train_accuracy - self.test_accuracy


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of x classified as y, in eval mode under ``no_grad`` (the mode is restored)."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            return float((net(x).argmax(1) == y).double().mean())
    finally:
        net.train(was_training)


def train_classifier(net: nn.Module, split, epochs: int, batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
                     on_epoch=None, progress: bool | None = None, optimizer: str = "adam") -> list:
    """Train ``net`` with cross-entropy on ``split`` (``pyfastent.data.Split``).

    Args:
        epochs, batch_size, lr: the schedule; batches in a seeded random order.
        seed: seed of the batch order.
        on_epoch: ``f(stats: EpochStats)`` after each epoch (e.g. a tracker's step).
        progress: a bar over the epochs (``None``: only on a terminal).
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9).

    Returns:
        the ``EpochStats`` of every epoch.
    """
    epochs = _checks.positive_int("epochs", epochs)
    batch_size = _checks.positive_int("batch_size", batch_size)
    lr = _checks.positive_number("lr", lr)
    _checks.choice("optimizer", optimizer, ("adam", "sgd"))
    opt = (torch.optim.Adam(net.parameters(), lr=lr) if optimizer == "adam"
           else torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9))
    order = torch.Generator().manual_seed(seed)
    history = []
    bar = progress_bar(epochs, "training", progress, unit="epoch")
    try:
        for epoch in range(1, epochs + 1):
            net.train()
            total = 0.0
            perm = torch.randperm(len(split.y_train), generator=order)
            for start in range(0, len(perm), batch_size):
                idx = perm[start:start + batch_size]
                loss = nn.functional.cross_entropy(net(split.x_train[idx]), split.y_train[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            stats = EpochStats(epoch, total / len(perm), accuracy(net, split.x_train, split.y_train),
                               accuracy(net, split.x_test, split.y_test))
            history.append(stats)
            if on_epoch is not None:
                on_epoch(stats)
            bar.update(1)
            bar.set_postfix(loss=f"{stats.loss:.3f}", acc=f"{stats.test_accuracy:.3f}")
    finally:
        bar.close()
    return history
