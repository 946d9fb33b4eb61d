"""The estimator abstraction: variables in, joint entropy out.

Every measure (MI, CMI, TC, DTC, PID, TE) is arithmetic on joint entropies
and is written once in ``pyfastent.measures``; an estimator family only says
how to prepare a variable and how to turn prepared variables into their joint
entropy.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Sequence

from pyfastent import _checks
from pyfastent._warnings import SaturationWarning, warn_once_per_call_site

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
    _entropy: float | None = field(default=None, repr=False)


class Estimator(abc.ABC):
    """Base class of the estimator families.

    Subclasses implement ``_prepare`` and ``_joint_nats``.
    """

    def __init__(self, base: float):
        self._ln_base = _checks.log_base(base)
        self.base = base

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
        """
        if isinstance(x, Prepared):
            if x.estimator is not self:
                raise ValueError(f"{name} was prepared by another estimator ({x.estimator!r}); prepare it with {self!r}")
            return x
        var = as_variable(x)
        obs = observe(var, name)
        return Prepared(self, obs.n, self._prepare(var, obs, name), name)

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
        if len(prepared) == 1 and prepared[0]._entropy is not None:
            return prepared[0]._entropy
        payloads = [p.payload for p in prepared]
        nats = float(self._joint_nats(payloads))
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
        value = nats / self._ln_base
        if len(prepared) == 1:
            prepared[0]._entropy = value
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

    @abc.abstractmethod
    def _prepare(self, var: Variable, obs: Observations, name: str) -> object:
        """The payload for one checked variable."""

    @abc.abstractmethod
    def _joint_nats(self, payloads: list) -> float:
        """Joint entropy in nats of prepared payloads (same N, at least one)."""


def _base_suffix(base) -> str:
    """``""`` for bits, ``",nats"`` for base e, else ``",base=b"``: the part of a label naming the units."""
    if float(base) == 2.0:
        return ""
    return ",nats" if abs(float(base) - math.e) < 1e-12 else f",base={float(base):g}"
