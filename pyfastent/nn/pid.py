"""PID among the feature maps of a conv layer (Yu, Wickstrøm, Jenssen &
Príncipe, TNNLS 2020): how redundancy and synergy about the labels grow with
the number of feature maps considered."""
from __future__ import annotations

from pyfastent import _checks
from pyfastent.estimators import Renyi
from pyfastent.measures import pid


def feature_map_pid(activation, labels, estimator=None, counts=None, groups=None) -> list:
    """PID of the labels over the first k feature maps (or groups), for each k.

    Args:
        activation: (N, C, ...) output of a conv layer.
        labels: (N,) integer labels, the target.
        estimator: default ``Renyi()``; each map (or group) is prepared once
            and reused for every k.
        counts: the k to evaluate (each ≥ 2); default 2, 3, …, number of sources.
        groups: optional list of channel-index lists; each group of maps is
            one source (their joint). Default: every map its own source.

    Returns:
        dicts with ``k``, ``mutual_information`` (I(Y; first k sources)),
        ``redundancy``, ``synergy``, ``unique_sum``, ``tradeoff`` and
        ``nonredundant``, in the estimator's base.
    """
    est = estimator if estimator is not None else Renyi()
    act = _checks.as_tensor("activation", activation)
    if act.dim() < 2:
        raise ValueError(f"activation must have shape (N, C, ...), got {tuple(act.shape)}")
    channels = act.shape[1]
    groups = [[c] for c in range(channels)] if groups is None else [list(g) for g in groups]
    for g in groups:
        if not g or not all(isinstance(c, int) and 0 <= c < channels for c in g):
            raise ValueError(f"groups must hold non-empty lists of channel indices below {channels}, got {g!r}")
    counts = list(range(2, len(groups) + 1)) if counts is None else list(counts)
    if not counts or any(not isinstance(k, int) or k < 2 or k > len(groups) for k in counts):
        raise ValueError(f"counts must hold integers between 2 and {len(groups)} (the number of sources), got {counts!r}")
    target = est.prepare(_checks.labels("labels", labels), "labels")
    sources = [est.prepare(act[:, g].reshape(act.shape[0], -1), f"groups[{i}]") for i, g in enumerate(groups)]
    rows = []
    for k in counts:
        r = pid(target, sources[:k], estimator=est)
        rows.append({"k": k, "mutual_information": r.mutual_information, "redundancy": r.redundancy,
                     "synergy": r.synergy, "unique_sum": sum(r.unique), "tradeoff": r.tradeoff,
                     "nonredundant": r.nonredundant})
    return rows
