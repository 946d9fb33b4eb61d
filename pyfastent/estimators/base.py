"""The estimator abstraction: variables in, joint entropy out.

Every measure (MI, CMI, TC, DTC, PID, TE) is arithmetic on joint entropies
and is written once in ``pyfastent.measures``; an estimator family only says
how to prepare a variable and how to turn prepared variables into their joint
entropy.
"""
from __future__ import annotations

import abc
import math
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Sequence

import torch

from pyfastent import _checks
from pyfastent._warnings import SaturationWarning, warn_once_per_call_site
from pyfastent.estimate import Estimate, scale

# A joint entropy is saturated when its effective number of states exp(S)
# reaches this fraction of N: the spectrum (or the distribution) is spread
# nearly evenly over the N samples, as for an identity Gram matrix. Within
# 1% of log N would miss the failure it is meant to flag (independent 2-D
# Gaussians, N = 400, kNN widths: joint at 98.7% of log N, 3.9 bits of "MI").
SATURATION = 0.9
from pyfastent.variable import Observations, Variable, as_variable, observe


@dataclass(eq=False)
class Prepared:
    """A variable turned into what its estimator needs, computed once.

    Pass it to any measure in place of the raw variable: the expensive part
    (a Gram matrix, centred features) is then reused, not rebuilt.

    Attributes:
        estimator: the estimator that made it (only it may use it).
        n: number of samples N.
        payload: the estimator's object (see each estimator).
        name: the argument name it was prepared under, used in errors.

    Its own entropy is kept once computed, so a variable reused in many
    measures (X in every layer's I(X;T)) is never decomposed twice.
    """

    estimator: "Estimator"
    n: int
    payload: object
    name: str
    _memo: dict = field(default_factory=dict, repr=False)  # {"entropy": value}, shared by renamed copies


class Estimator(abc.ABC):
    """Base class of the estimator families.

    Subclasses implement ``_prepare`` and ``_joint_nats``.
    """

    def __init__(self, base: float):
        self._ln_base = _checks.log_base(base)
        self.base = base
        self._recent: OrderedDict = OrderedDict()  # see prepare()

    @property
    def units(self) -> str:
        """``"bits"``, ``"nats"`` or ``"log base b"``: the units of every value this estimator returns."""
        return {2.0: "bits", math.e: "nats"}.get(float(self.base), f"log base {float(self.base):g}")

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """A short, stable name for tables and plots, e.g. ``renyi(a=1.01,knn10)``;
        the repr holds every option."""

    def prepare(self, x, name: str = "x") -> Prepared:
        """Prepare one variable once for reuse in many joint entropies.

        Args:
            x: (N, ...) tensor or array, a ``Variable``, or a ``Prepared``
                made by this estimator (returned unchanged).
            name: argument name used in error messages.

        The estimator remembers the last ``RECENT`` torch tensors it
        prepared, by identity and version counter: passing the same,
        unchanged tensor again (``mutual_information(x, t)`` for every
        layer t) reuses its Gram matrix and entropy. An in-place change
        bumps the version and is seen; NumPy arrays, whose changes torch
        cannot see, and tensors that require grad are never remembered.
        Data that requires grad is detached: estimates are plain numbers
        (the differentiable functions are ``pyfastent.ops``).
        """
        if isinstance(x, Prepared):
            if x.estimator is not self:
                raise ValueError(f"{name} was prepared by another estimator ({x.estimator!r}); prepare it with {self!r}")
            return x
        var = as_variable(x)
        key = _recent_key(var)
        if key is not None:
            hit = self._recent.get(key)
            if hit is not None and hit[0]() is var.data:
                self._recent.move_to_end(key)
                return replace(hit[1], name=name)  # the payload and its entropy are shared
        obs = observe(var, name)
        # Estimates are numbers: no autograd graph is built behind them (it would only hold memory).
        obs = Observations(obs.values.detach(), obs.discrete)
        prepared = Prepared(self, obs.n, self._prepare(var, obs, name), name)
        if key is not None:
            self._recent[key] = (weakref.ref(var.data), prepared)
            while len(self._recent) > RECENT:
                self._recent.popitem(last=False)
        return prepared

    def entropy(self, *variables) -> float:
        """Joint entropy of the given variables, in units of ``base``.

        Args:
            *variables: one or more (N, ...) tensors/arrays, ``Variable``s or
                ``Prepared`` values, all with the same N.
        """
        if not variables:
            raise ValueError("variables: entropy needs at least one variable")
        names = ["x"] if len(variables) == 1 else [f"variables[{i}]" for i in range(len(variables))]
        return self.joint_entropy([self.prepare(v, n) for v, n in zip(variables, names)])

    def joint_entropy(self, prepared: Sequence[Prepared]) -> float:
        """Joint entropy of prepared variables, in units of ``base``.

        Estimators bounded by log N (``Renyi``, ``Discrete``) emit a
        ``SaturationWarning``, once per call site, when the value reaches
        log N + log 0.9 (an effective number of states exp(S) ≥ 0.9·N): it
        then measures the sample count, not the data.
        """
        _checks.same_sample_count((p.name, p.n) for p in prepared)
        if len(prepared) == 1 and "entropy" in prepared[0]._memo:
            return prepared[0]._memo["entropy"]
        payloads = [p.payload for p in prepared]
        nats = self._joint_nats(payloads)
        nats = nats if isinstance(nats, Estimate) else float(nats)
        n = prepared[0].n
        if nats >= math.log(SATURATION * n):
            advice = self._saturation_advice(payloads)
            if advice:
                names = ", ".join(p.name for p in prepared[:6]) + (
                    f", … ({len(prepared)} variables)" if len(prepared) > 6 else "")
                warn_once_per_call_site(
                    f"the {self.label} entropy of ({names}) is {nats / self._ln_base:.4g} {self.units}, at its "
                    f"ceiling log N = {math.log(n) / self._ln_base:.4g} (N = {n}; effective number of states "
                    f"{math.exp(nats):.0f}): it, and any mutual information built from it, "
                    f"measures N rather than the data. {advice}", SaturationWarning)
        value = scale(nats, 1.0 / self._ln_base)
        if len(prepared) == 1:
            prepared[0]._memo["entropy"] = value
        return value

    def dpi_slack(self, value: float) -> float:
        """How far a later layer's MI may exceed an earlier one's before the
        data processing inequality counts as broken: the round-off of two
        estimates of equal value near ``value``, in this estimator's units."""
        return 1e-12 * max(1.0, abs(value))

    def _saturation_advice(self, payloads: list) -> str | None:
        """What to do when a joint entropy of these payloads nears log N;
        ``None`` for estimators not bounded by log N (no warning)."""
        return None

    def permuted(self, prepared: Prepared, index: torch.Tensor) -> Prepared:
        """The prepared variable with its samples reordered by ``index`` ([N]
        int64, a permutation), without preparing anything again: a Gram matrix
        is permuted, not rebuilt. Its own entropy, which a permutation does
        not change, is shared with the original."""
        return Prepared(self, prepared.n, self._permute(prepared.payload, index), prepared.name, prepared._memo)

    @abc.abstractmethod
    def _permute(self, payload: object, index: torch.Tensor) -> object:
        """The payload of the samples reordered by ``index``."""

    @abc.abstractmethod
    def _prepare(self, var: Variable, obs: Observations, name: str) -> object:
        """The payload for one checked variable."""

    @abc.abstractmethod
    def _joint_nats(self, payloads: list) -> float:
        """Joint entropy in nats of prepared payloads (same N, at least one):
        a float, or an ``Estimate`` for randomized methods."""


def _base_suffix(base) -> str:
    """``""`` for bits, ``",nats"`` for base e, else ``",base=b"``: the part of a label naming the units."""
    if float(base) == 2.0:
        return ""
    return ",nats" if abs(float(base) - math.e) < 1e-12 else f",base={float(base):g}"


RECENT = 3  # prepared tensors an estimator remembers: X, Y and the current layer


def _recent_key(var: Variable):
    """What identifies an unchanged torch tensor with its options, or ``None``."""
    data = var.data
    if not isinstance(data, torch.Tensor) or data.requires_grad or data.layout != torch.strided:
        return None
    return (id(data), data._version, data.data_ptr(), tuple(data.shape), data.stride(), data.dtype, data.device,
            var.kernel, id(var.sigma), var.channels)
