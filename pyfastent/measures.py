"""Information measures as arithmetic on joint entropies, for any estimator.

Each function prepares every variable once (a Gram matrix, centred features,
codes) and memoizes the joint entropies it needs, so nothing is computed
twice within a call. Pass ``estimator.prepare(x)`` instead of ``x`` to reuse
a variable across calls (a layer sweep against the same X and Y).

Arguments named x, y, z, target or the items of sources/variables are one
variable, or a list/tuple of variables taken jointly. Results are in the
estimator's ``base`` (bits by default). Formulas: DESIGN.md section 3.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pyfastent import _checks
from pyfastent.estimate import combine
from pyfastent.estimators import Estimator, Prepared, Renyi
from pyfastent.ops.deferred import Pending, SpectralBatch
from pyfastent.variable import Variable, as_variable

_ATOMS = (torch.Tensor, np.ndarray, Variable, Prepared)


def _is_group(arg) -> bool:
    return isinstance(arg, (list, tuple)) and len(arg) > 0 and all(isinstance(a, _ATOMS) for a in arg)


def chosen_estimator(estimator) -> Estimator:
    """``estimator``, checked; ``Renyi()`` for ``None``."""
    if estimator is None:
        return Renyi()
    if not isinstance(estimator, Estimator):
        raise ValueError(f"estimator must be a pyfastent estimator (Renyi, LogDet, Discrete), got {estimator!r}")
    return estimator


class JointEntropies:
    """Joint entropies of named groups of variables, each computed once,
    with every spectrum they need solved in one batch.

    ``request(*names)`` plans a joint entropy (its spectrum goes to
    ``batch``); after ``batch.solve()``, ``h(*names)`` reads it (a name set
    that was not requested is computed then, in a batch of its own).

    Args:
        estimator: the estimator (``None``: ``Renyi()``).
        groups: name -> variable, ``Prepared``, or a list of them taken jointly.
        batch: the ``SpectralBatch`` to defer into; ``None`` for one of its own.
        known: tuple of names -> ``Pending`` entropy already planned into
            ``batch`` (by another ``JointEntropies`` of the same variables,
            via ``pending``): a sweep plans H(X) once for all its layers.
    """

    def __init__(self, estimator, groups: dict, batch: SpectralBatch | None = None, known: dict | None = None):
        self.estimator = chosen_estimator(estimator)
        self.batch = batch if batch is not None else SpectralBatch()
        self._groups = {}
        counts = []
        for name, arg in groups.items():
            items = [(a, f"{name}[{i}]") for i, a in enumerate(arg)] if _is_group(arg) else [(arg, name)]
            self._groups[name] = [self.estimator.prepare(a, n) for a, n in items]
            counts.extend((n, p.n) for (_, n), p in zip(items, self._groups[name]))
        _checks.same_sample_count(counts)
        self._memo: dict = {frozenset(names): pending for names, pending in (known or {}).items()}

    def seal(self) -> None:
        """No more requests: the prepared variables are released (the
        pending entropies keep what their spectra need), so many planned
        measures can wait for one solve without holding their inputs."""
        self._groups = None

    def request(self, *names: str) -> None:
        key = frozenset(names)
        if key not in self._memo:
            if self._groups is None:
                raise RuntimeError(f"joint entropy of {sorted(key)} requested after planning was sealed")
            self._memo[key] = self.estimator.defer_joint_entropy(
                [p for n in sorted(key) for p in self._groups[n]], self.batch)

    def pending(self, *names: str) -> Pending:
        """The planned (requested if need be) entropy of ``names``, unsolved."""
        self.request(*names)
        return self._memo[frozenset(names)]

    def __call__(self, *names: str) -> float:
        key = frozenset(names)
        if key not in self._memo:
            self.request(*names)
            self.batch.solve()
        return self._memo[key].value

    def mi(self, a: str, b: str) -> float:
        return combine([(1, self(a)), (1, self(b)), (-1, self(a, b))])


def _evaluate(estimator, groups: dict, recipe, batch: SpectralBatch | None = None):
    """``recipe(h)`` requests its joint entropies and returns the function
    that combines them: all its spectra are solved in one batch. With a
    ``batch`` given, the combining function is returned unsolved (a
    permutation test solves many at once)."""
    h = JointEntropies(estimator, groups, batch)
    finish = recipe(h)
    if batch is not None:
        h.seal()
        return finish
    h.batch.solve()
    return finish()


def _mi_recipe(h: JointEntropies):
    for names in (("x",), ("y",), ("x", "y")):
        h.request(*names)
    return lambda: h.mi("x", "y")


def mutual_information(x, y, estimator=None) -> float:
    """I(X;Y) = H(X) + H(Y) − H(X,Y).

    Args:
        x, y: (N, ...) variables (tensors, arrays, ``Variable``, ``Prepared``)
            or lists of them taken jointly.
        estimator: ``Renyi()`` (the default), ``LogDet(...)`` or ``Discrete()``.

    Returns:
        float, in the estimator's base (bits by default). Not clipped: a
        negative value is reported as is. Round-off alone gives at most
        ~1e-9 bits; matrix-based Rényi MI at α = 2 or 3 can be truly
        negative (−0.011 bits for independent 1-D samples and labels,
        N = 100): that is the estimator's bias, not an error. I(X;X) = H(X) holds for
        delta kernels (and Discrete); for RBF kernels the joint of X with
        itself has the narrower width σ/√2, so I(X;X) < H(X).
    """
    return _evaluate(estimator, {"x": x, "y": y}, _mi_recipe)


def _cmi_recipe(h: JointEntropies):
    for names in (("x", "z"), ("y", "z"), ("x", "y", "z"), ("z",)):
        h.request(*names)
    return lambda: combine([(1, h("x", "z")), (1, h("y", "z")), (-1, h("x", "y", "z")), (-1, h("z"))])


def conditional_mutual_information(x, y, z, estimator=None) -> float:
    """I(X;Y|Z) = H(X,Z) + H(Y,Z) − H(X,Y,Z) − H(Z), in the estimator's base."""
    return _evaluate(estimator, {"x": x, "y": y, "z": z}, _cmi_recipe)


def _variables(variables, name: str) -> dict:
    if not isinstance(variables, (list, tuple)) or len(variables) < 2:
        raise ValueError(f"{name} must be a list of at least 2 variables, got {type(variables).__name__}")
    return {f"{name}[{i}]": v for i, v in enumerate(variables)}


def total_correlation(variables, estimator=None) -> float:
    """TC = Σ_i H(X_i) − H(X_1, …, X_k) (Watanabe), in the estimator's base.

    Args:
        variables: a list of k ≥ 2 variables with the same N.
    """
    groups = _variables(variables, "variables")

    def recipe(h):
        for n in groups:
            h.request(n)
        h.request(*groups)
        return lambda: combine([(1, h(n)) for n in groups] + [(-1, h(*groups))])

    return _evaluate(estimator, groups, recipe)


def dual_total_correlation(variables, estimator=None) -> float:
    """DTC = Σ_i H(all but X_i) − (k−1)·H(X_1, …, X_k) (Han), in the estimator's base.

    Args:
        variables: a list of k ≥ 2 variables with the same N.
    """
    groups = _variables(variables, "variables")
    names = list(groups)

    def recipe(h):
        for n in names:
            h.request(*[m for m in names if m != n])
        h.request(*names)
        return lambda: combine([(1, h(*[m for m in names if m != n])) for n in names] + [(1 - len(names), h(*names))])

    return _evaluate(estimator, groups, recipe)


@dataclass(frozen=True)
class PIDResult:
    """Partial information decomposition of I(X; T_1..T_k), DESIGN.md 3.4.

    Attributes:
        redundancy: min_i I(X;T_i) (minimum-mutual-information redundancy).
        unique: I(X;T_i) − redundancy, one per source.
        synergy: I(X;T_1..T_k) − max_i I(X;T_i).
        mutual_information: I(X;T_1..T_k).
        source_information: I(X;T_i), one per source.
        tradeoff: (redundancy − synergy) / I(X;T_1..T_k) (Yu et al. 2020).
        nonredundant: (I(X;T_1..T_k) − redundancy) / I(X;T_1..T_k).

    When I(X;T_1..T_k) = 0 there is nothing to decompose: both ratios are 0.
    """

    redundancy: float
    unique: tuple
    synergy: float
    mutual_information: float
    source_information: tuple
    tradeoff: float
    nonredundant: float


def pid(target, sources, estimator=None) -> PIDResult:
    """Partial information decomposition of what sources carry about a target.

    Minimum-mutual-information redundancy, as used for feature maps by Yu,
    Wickstrøm, Jenssen & Príncipe (TNNLS 2020). For k = 2,
    synergy + redundancy + Σ unique = I(X;T_1,T_2).

    Args:
        target: the variable X (e.g. class labels).
        sources: a list of k ≥ 2 variables T_i (each may be a list of
            variables taken jointly, e.g. a group of feature maps).
        estimator: any estimator; ``Renyi()`` by default.

    Returns:
        ``PIDResult`` in the estimator's base.
    """
    source_groups = _variables(sources, "sources")
    return _evaluate(estimator, {"target": target, **source_groups}, _pid_recipe(list(source_groups)))


def _pid_recipe(names: list):
    def recipe(h: JointEntropies):
        for group in [("target",)] + [(n,) for n in names] + [("target", n) for n in names] + [tuple(names),
                                                                                               ("target", *names)]:
            h.request(*group)
        return lambda: _pid_result(h, names)

    return recipe


def _pid_result(h: JointEntropies, names: list) -> PIDResult:
    each = tuple(h.mi("target", n) for n in names)
    joint = combine([(1, h("target")), (1, h(*names)), (-1, h("target", *names))])
    redundancy = min(each)
    synergy = combine([(1, joint), (-1, max(each))])
    ratio = (lambda v: v / joint) if joint != 0 else (lambda v: 0.0)
    return PIDResult(
        redundancy=redundancy,
        unique=tuple(combine([(1, i), (-1, redundancy)]) for i in each),
        synergy=synergy,
        mutual_information=joint,
        source_information=each,
        tradeoff=ratio(redundancy - synergy),
        nonredundant=ratio(joint - redundancy),
    )


def transfer_entropy(source, target, estimator=None, k: int = 1, l: int = 1, lag: int = 1) -> float:
    """Transfer entropy TE_{S→T} = I(T_{t+1}; S^{(l)}_{t+1−lag} | T^{(k)}_t).

    Schreiber (2000), with JIDT's history and delay conventions: the target
    history is T_t, …, T_{t−k+1}; the source history is S_{t+1−lag}, …,
    S_{t+2−lag−l}. Every admissible t is one sample. With the ``Discrete``
    estimator this is the plug-in TE of Moldovan, Cataron & Andonie; with
    ``Renyi`` or ``LogDet`` it is computed on continuous values directly.

    Args:
        source, target: time-major series of shape (T,) or (T, n) (n
            channels observed together); ``Variable`` objects carry their options
            to the embedded histories. Integer/bool series are discrete.
        estimator: any estimator; ``Renyi()`` by default.
        k: target history length ≥ 1.
        l: source history length ≥ 1.
        lag: source-target delay ≥ 1.

    Returns:
        float, in the estimator's base.
    """
    future, source_past, target_past = te_embedding(source, target, k, l, lag)
    return conditional_mutual_information(future, source_past, target_past, estimator)


def te_embedding(source, target, k: int = 1, l: int = 1, lag: int = 1) -> tuple:
    """The samples of transfer entropy: (T_{t+1}, S^{(l)}_{t+1−lag}, T^{(k)}_t)
    for every admissible t, as variables carrying the series' options, so
    that TE_{S→T} = I(future; source past | target past)."""
    k, l, lag = (_checks.positive_int(n, v) for n, v in (("k", k), ("l", l), ("lag", lag)))
    src, tgt = as_variable(source), as_variable(target)
    s = _series("source", src.data)
    t = _series("target", tgt.data)
    if s.shape[0] != t.shape[0]:
        raise ValueError(f"target has {t.shape[0]} time steps but source has {s.shape[0]}")
    start = max(k - 1, lag + l - 2)
    count = t.shape[0] - 1 - start
    if count < 2:
        raise ValueError(
            f"source and target are too short: {t.shape[0]} steps leave {max(count, 0)} samples "
            f"for k={k}, l={l}, lag={lag}; need at least 2"
        )
    future = t[start + 1 : start + 1 + count]  # [count, n_t]
    target_past = torch.cat([t[start - i : start - i + count] for i in range(k)], dim=1)
    first = start + 1 - lag
    source_past = torch.cat([s[first - j : first - j + count] for j in range(l)], dim=1)
    return tgt.with_data(future), src.with_data(source_past), tgt.with_data(target_past)


def _series(name: str, data) -> torch.Tensor:
    series = _checks.samples(name, _checks.as_tensor(name, data))
    if series.dim() > 2:
        raise ValueError(f"{name} must have shape (T,) or (T, n), got {tuple(series.shape)}")
    return series.reshape(series.shape[0], -1)
