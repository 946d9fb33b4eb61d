"""The tensor-kernels reproduction's width procedure (Wickstrøm et al.):
σ per layer and mini-batch by label alignment or kNN, smoothed across
epochs with the per-iteration momentum carried over, every quantity the
mean over the mini-batches; checked against a float64 computation by hand."""
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from pyfastent.reproduce.tensor_kernels import BatchPlanes, epoch_momentum

ALPHA = 1.01


def test_epoch_momentum_is_the_iteration_average_run_over_the_epoch():
    beta, n, previous, target = 0.9, 43, 2.0, 7.0
    sigma = previous
    for _ in range(n):  # the paper's update, once per iteration, with σ* held
        sigma = beta * sigma + (1 - beta) * target
    m = epoch_momentum(beta, n)
    assert m * previous + (1 - m) * target == pytest.approx(sigma, rel=1e-12)
    assert epoch_momentum(0.5, 1) == 0.5


@pytest.mark.parametrize("beta, iterations, name", [(1.0, 3, "beta"), (-0.1, 3, "beta"), (0.9, 0, "iterations")])
def test_epoch_momentum_rejects_bad_input(beta, iterations, name):
    with pytest.raises(ValueError, match=f"^{name} must be"):
        epoch_momentum(beta, iterations)


def _entropy(k):
    """Rényi α-entropy in bits of the trace-normalized kernel k (float64 numpy)."""
    lam = np.clip(np.linalg.eigvalsh(k / np.trace(k)), 0, None)
    return math.log2(np.sum(lam ** ALPHA)) / (1 - ALPHA)


def _sq(x):
    x = x.reshape(len(x), -1)
    return np.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)


def _alignment_sigma(sq, labels):
    distances = np.sqrt(sq[sq > 0])
    median = np.sort(distances)[(len(distances) - 1) // 2]  # the lower median over distinct pairs
    same = (labels[:, None] == labels[None, :]).astype(float)
    best, best_score = None, -np.inf
    for factor in np.logspace(np.log10(0.05), np.log10(5.0), 60):
        k = np.exp(-sq / (2 * (factor * median) ** 2))
        score = np.sum(k * same) / (np.linalg.norm(k) * np.linalg.norm(same))
        if score > best_score:
            best, best_score = factor * median, score
    return best


def _knn_sigma(sq, k=10):
    nearest = np.sort(sq, axis=1)[:, 1:k + 1]  # each row's own zero first
    return float(np.mean(np.sqrt(nearest)))


def test_batch_planes_follow_the_procedure_by_hand():
    """Two mini-batches of 24, two steps with other weights between them, σ
    smoothed with momentum 0.3: every H(T), I(X;T), I(T;Y) and σ of the
    mean table is the mean over the batches of a computation by hand, and
    the highest batch entropy is the largest by hand."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(48, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (48,), generator=g)
    x[:, 0] += 2.0 * y  # class structure for the alignment to find
    net = nn.Sequential(OrderedDict([("fc", nn.Linear(5, 7)), ("act", nn.Tanh()), ("out", nn.Linear(7, 3))]))
    net = net.double()
    momentum, batch = 0.3, 24
    planes = BatchPlanes(net, x, y, batch, momentum)
    weights = []
    for step in range(2):
        weights.append({k: v.clone() for k, v in net.state_dict().items()})
        planes.step(epoch=step + 1)
        with torch.no_grad():
            net.fc.weight.mul_(1.7).add_(0.3)

    expected = {}  # (step, layer, rule, quantity) -> per-batch values
    highest = {}
    for b in range(2):
        xb, yb = x[b * batch:(b + 1) * batch].numpy(), y[b * batch:(b + 1) * batch].numpy()
        sq_x = _sq(xb)
        k_y = (yb[:, None] == yb[None, :]).astype(float)
        previous = {}
        for step, state in enumerate(weights):
            net.load_state_dict(state)
            with torch.no_grad():
                fc = net.fc(torch.from_numpy(xb))
                outputs = {"fc": fc, "act": torch.tanh(fc), "out": net.out(torch.tanh(fc))}
            for rule, width in (("knn10", _knn_sigma), ("alignment", lambda sq: _alignment_sigma(sq, yb))):
                k_x = np.exp(-sq_x / (2 * width(sq_x) ** 2))  # X is fixed: smoothing leaves its σ*
                for layer, t in outputs.items():
                    sq_t = _sq(t.numpy())
                    sigma = width(sq_t)
                    if (rule, layer) in previous:
                        sigma = momentum * previous[(rule, layer)] + (1 - momentum) * sigma
                    previous[(rule, layer)] = sigma
                    k_t = np.exp(-sq_t / (2 * sigma ** 2))
                    h_t = _entropy(k_t)
                    values = {"sigma": sigma, "h_t": h_t,
                              "i_xt": _entropy(k_x) + h_t - _entropy(k_x * k_t),
                              "i_ty": h_t + _entropy(k_y) - _entropy(k_t * k_y)}
                    for quantity, value in values.items():
                        expected.setdefault((step, layer, rule, quantity), []).append(value)
                    highest[(rule, layer)] = max(highest.get((rule, layer), -np.inf), h_t)

    table = planes.mean_table()
    assert table.metadata["estimation_batches"] == 2
    checked = 0
    for r in table.rows:
        rule = "alignment" if "alignment" in r["estimator"] else "knn10"
        hand = expected[(r["step"], r["layer"], rule, r["quantity"])]
        assert r["value"] == pytest.approx(np.mean(hand), abs=1e-8), r
        checked += 1
    assert checked == len(expected)
    for est in table.metadata["estimators"]:
        rule = "alignment" if "alignment" in est else "knn10"
        for layer in ("fc", "act", "out"):
            assert planes.highest_entropy(est, layer) == pytest.approx(highest[(rule, layer)], abs=1e-8)


def test_batch_planes_need_whole_batches():
    net = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="not a multiple of batch=4"):
        BatchPlanes(net, torch.randn(10, 2), torch.arange(10) % 2, 4, None)
