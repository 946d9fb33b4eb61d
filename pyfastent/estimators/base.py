"""The estimator abstraction: variables in, joint entropy out.

Every measure (MI, CMI, TC, DTC, PID, TE) is arithmetic on joint entropies
and is written once in ``pyfastent.measures``; an estimator family only says
how to prepare a variable and how to turn prepared variables into their joint
entropy.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Sequence

from pyfastent import _checks
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
        """Joint entropy of prepared variables, in units of ``base``."""
        _checks.same_sample_count((p.name, p.n) for p in prepared)
        if len(prepared) == 1 and prepared[0]._entropy is not None:
            return prepared[0]._entropy
        value = float(self._joint_nats([p.payload for p in prepared])) / self._ln_base
        if len(prepared) == 1:
            prepared[0]._entropy = value
        return value

    @abc.abstractmethod
    def _prepare(self, var: Variable, obs: Observations, name: str) -> object:
        """The payload for one checked variable."""

    @abc.abstractmethod
    def _joint_nats(self, payloads: list) -> float:
        """Joint entropy in nats of prepared payloads (same N, at least one)."""
