"""Built-in data: scikit-learn's bundled 8×8 handwritten digits (1797 real
images, shipped with scikit-learn, no download), split once with a seed."""
from __future__ import annotations

from typing import NamedTuple

import torch


class Split(NamedTuple):
    """Images (N, 1, 8, 8) float32 in [0, 1] and labels (N,) int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def to(self, device) -> "Split":
        """The same split on ``device``."""
        return Split(*(t.to(device) for t in self))


def digits(seed: int = 0, test_fraction: float = 0.25) -> Split:
    """The digits data set, shuffled with ``seed`` and split into train/test.

    Needs scikit-learn (``pip install "pyfastent[demo]"``).
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction!r}")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError('the digits data needs scikit-learn: pip install "pyfastent[demo]"') from None
    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # pixel values are 0..16
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = round(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return Split(x[train], y[train], x[test], y[test])
