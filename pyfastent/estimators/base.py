"""The estimator abstraction: variables in, joint entropy out.

Every measure (MI, CMI, TC, DTC, PID, TE) is arithmetic on joint entropies
and is written once in ``pyfastent.measures``; an estimator family only says
how to prepare a variable and how to turn prepared variables into their joint
entropy.
"""
from __future__ import annotations

import abc
import contextlib
import contextvars
import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from pyfastent import _checks, reuse
from pyfastent._warnings import SaturationWarning, warn_once_per_call_site
from pyfastent.estimate import Estimate, scale
from pyfastent.ops.deferred import Pending, SpectralBatch
from pyfastent.ops import reduction as reductions
from pyfastent.ops.reduction import Needs, Reduction

# A joint entropy is saturated when its effective number of states exp(S)
# reaches this fraction of N: the spectrum (or the distribution) is spread
# nearly evenly over the N samples, as for an identity Gram matrix. Within
# 1% of log N would miss the failure it is meant to flag (independent 2-D
# Gaussians, N = 400, kNN widths: joint at 98.7% of log N, 3.9 bits of "MI").
SATURATION = 0.9
from pyfastent.samples import Rows, observe_rows
from pyfastent.variable import Variable, as_variable


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

    Preparing a variable is two steps, so that several estimators can share
    the expensive part: ``needs`` says which products of the variable's
    rows the estimator reads (``pyfastent.ops.reduction.Needs``), the rows
    are reduced once to the union of every reader's needs, and
    ``prepare_reduced`` turns that ``Reduction`` into the estimator's
    payload. Joint entropies whose spectra are needed are deferred into a
    ``SpectralBatch`` (``defer_joint_entropy``) and solved together.

    Subclasses implement ``needs``, ``_prepare``, ``_permute`` and one of
    ``_joint_nats`` (computed at once) or ``_defer_joint_nats``.
    """

    def __init__(self, base: float):
        self._ln_base = _checks.log_base(base)
        self.base = base

    @property
    def units(self) -> str:
        """``"bits"``, ``"nats"`` or ``"log base b"``: the units of every value this estimator returns."""
        return {2.0: "bits", math.e: "nats"}.get(float(self.base), f"log base {float(self.base):g}")

    @property
    def note(self) -> str | None:
        """A convention a reader of this estimator's numbers should know
        (written into sweep and tracker metadata), or ``None``."""
        return None

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

        What was prepared, and the variable's own entropy once computed,
        is kept for the next call with the same, unchanged data and an
        estimator of the same options (``reuse_options``), whichever
        object: ``mutual_information(x, t)`` for every layer t builds X's
        Gram matrix and solves H(X) once (``pyfastent.reuse`` says how
        tensors and arrays are recognized; ``pyfastent.settings.reuse``
        bounds or turns it off). Data that requires grad is detached and
        never kept: estimates are plain numbers (the differentiable
        functions are ``pyfastent.ops``).
        """
        if isinstance(x, Prepared):
            if x.estimator is not self:
                raise ValueError(f"{name} was prepared by another estimator ({x.estimator!r}); prepare it with {self!r}")
            return x
        var = as_variable(x)
        found = reuse.TABLE.lookup(self._reuse_key(var), var.data)
        if found.entry is not None:
            return Prepared(self, found.entry.n, found.entry.payload, name, found.entry.memo)  # its entropy too
        start = time.perf_counter()
        # Estimates are numbers: no autograd graph is built behind them (it would only hold memory).
        rows = observe_rows(var, [_checks.as_tensor(name, var.data).detach()], name)
        prepared = self.prepare_rows(var, rows, name)
        # Not the Prepared itself, which refers back to this estimator: that cycle would keep N×N
        # payloads alive until the garbage collector happened to run.
        reuse.TABLE.keep(found, var.data, prepared.n, prepared.payload, prepared._memo, time.perf_counter() - start)
        return prepared

    def reuse_options(self):
        """Every option that decides what this estimator prepares and the
        entropies it computes, hashable (equal options: equal payloads),
        or ``None`` where prepared variables must not be reused across
        calls (the default for estimators that do not say)."""
        return None

    def _reuse_key(self, var: Variable):
        options = self.reuse_options()
        if options is None:
            return None
        key = (options, var.kernel, var.sigma, var.channels)
        try:
            hash(key)
        except TypeError:  # an option that is not hashable (a custom width rule with state): no reuse
            return None
        return key

    @abc.abstractmethod
    def needs(self, var: Variable, rows: Rows, partners: Sequence[Prepared] | None = None) -> Needs:
        """What this estimator reads of a variable's rows.

        Args:
            var: the variable's options (kernel, width, channels).
            rows: its samples (their count, shape and dtype decide).
            partners: the prepared variables it will be joined with, when
                known (a layer's X and Y in a sweep): products with them
                can then replace keeping its columns. ``None``: any joint.
        """

    def prepare_rows(self, var: Variable, rows: Rows, name: str, partners=None) -> Prepared:
        """Reduce ``rows`` to what this estimator reads and prepare them."""
        return self.prepare_reduced(var, reductions.reduce_rows(rows, self.needs(var, rows, partners)), name)

    def prepare_reduced(self, var: Variable, reduction: Reduction, name: str) -> Prepared:
        """The prepared variable from a reduction that holds at least what
        ``needs`` asked for (it may hold more, for other estimators)."""
        return Prepared(self, reduction.n, self._prepare(var, reduction, name), name)

    def entropy(self, *variables) -> float:
        """Joint entropy of the given variables, in units of ``base``.

        Args:
            *variables: one or more (N, ...) tensors/arrays, ``Variable`` objects or
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
        then measures the sample count, not the data (inside
        ``saturation_report`` the cases are collected instead).
        """
        batch = SpectralBatch()
        pending = self.defer_joint_entropy(prepared, batch)
        batch.solve()
        return pending.value

    def defer_joint_entropy(self, prepared: Sequence[Prepared], batch: SpectralBatch) -> Pending:
        """``joint_entropy``, with any spectrum it needs added to ``batch``:
        the value is known once the batch is solved."""
        prepared = list(prepared)
        _checks.same_sample_count((p.name, p.n) for p in prepared)
        if len(prepared) == 1 and "entropy" in prepared[0]._memo:
            return Pending.done(prepared[0]._memo["entropy"])
        payloads = [p.payload for p in prepared]
        # What finishing needs, taken now: a pending value must not keep the payloads (N×N
        # matrices) alive while its batch waits, e.g. through 200 permutations of a test.
        names, n = tuple(p.name for p in prepared), prepared[0].n
        memo = prepared[0]._memo if len(prepared) == 1 else None
        advice = self._saturation_advice(payloads)
        return self._defer_joint_nats(payloads, batch).then(lambda nats: self._finish(nats, names, n, memo, advice))

    def _finish(self, nats, names: tuple, n: int, memo: dict | None, advice: str | None):
        nats = nats if isinstance(nats, Estimate) else float(nats)
        if advice and nats >= math.log(SATURATION * n):
            _report_saturation(self, names, n, nats, advice)
        value = scale(nats, 1.0 / self._ln_base)
        if memo is not None:
            memo["entropy"] = value
        return value

    def _defer_joint_nats(self, payloads: list, batch: SpectralBatch) -> Pending:
        """Joint entropy in nats, deferred; estimators without spectra
        compute it at once."""
        return Pending.done(self._joint_nats(payloads))

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
    def _prepare(self, var: Variable, reduction: Reduction, name: str) -> object:
        """The payload of one variable, from its reduction."""

    def _joint_nats(self, payloads: list) -> float:
        """Joint entropy in nats of prepared payloads (same N, at least one):
        a float, or an ``Estimate`` for randomized methods. Estimators that
        defer spectra override ``_defer_joint_nats`` instead."""
        raise NotImplementedError(f"{type(self).__name__} implements neither _joint_nats nor _defer_joint_nats")


def _base_suffix(base) -> str:
    """``""`` for bits, ``",nats"`` for base e, else ``",base=b"``: the part of a label naming the units."""
    if float(base) == 2.0:
        return ""
    return ",nats" if abs(float(base) - math.e) < 1e-12 else f",base={float(base):g}"


# Where saturated joints go while a ``saturation_report`` is open: a list of
# records, or None for a warning per call site.
_saturation_sink: contextvars.ContextVar = contextvars.ContextVar("pyfastent_saturation", default=None)


@contextlib.contextmanager
def saturation_report():
    """Collect saturated joint entropies instead of warning about each:
    yields a list that receives one dict per saturated joint (``estimator``
    label, ``variables`` (their names), ``units``, ``value`` and ``ceiling``
    = log N in those units, ``advice``). Sweeps use it to name
    every saturated layer in one warning and a column."""
    records: list = []
    token = _saturation_sink.set(records)
    try:
        yield records
    finally:
        _saturation_sink.reset(token)


def _report_saturation(est: Estimator, variables: tuple, n: int, nats: float, advice: str) -> None:
    records = _saturation_sink.get()
    if records is not None:
        records.append({"estimator": est.label, "variables": variables, "units": est.units,
                        "value": nats / est._ln_base, "ceiling": math.log(n) / est._ln_base, "advice": advice})
        return
    names = ", ".join(variables[:6]) + (f", … ({len(variables)} variables)" if len(variables) > 6 else "")
    warn_once_per_call_site(
        f"the {est.label} entropy of ({names}) is {nats / est._ln_base:.4g} {est.units}, at its "
        f"ceiling log N = {math.log(n) / est._ln_base:.4g} (N = {n}; effective number of states "
        f"{math.exp(nats):.0f}): it, and any mutual information built from it, "
        f"measures N rather than the data. {advice}", SaturationWarning)
