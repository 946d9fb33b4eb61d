"""Values of randomized estimators, with their standard error.

A randomized entropy (``Renyi(method="lanczos")``) is an ``Estimate``: a
float that also carries the deviations of its per-probe estimates. Every
estimate of one estimator draws the same probes (its seed), so the
deviations of the terms of a mutual information line up probe by probe,
and the error of the combination (common random numbers: errors shared by
H(X,T) and H(X) cancel) is read off the combined deviations, to first order.
"""
from __future__ import annotations

import math

import torch


class Estimate(float):
    """A float estimated from random probes.

    Attributes:
        deviations: float64 tensor [probes]: each probe's deviation from the
            estimate (mean 0), linearized through the entropy formula.
        stderr: the standard error, √(Σ d² / (s (s − 1))) over the s probes.
    """

    deviations: torch.Tensor

    def __new__(cls, value: float, deviations: torch.Tensor):
        obj = super().__new__(cls, value)
        obj.deviations = deviations.detach().to("cpu", torch.float64)
        return obj

    @property
    def stderr(self) -> float:
        s = self.deviations.numel()
        return math.sqrt(float((self.deviations**2).sum()) / (s * (s - 1)))

    def __repr__(self):
        return f"{float(self)!r} (± {self.stderr:.2g})"

    def __reduce__(self):
        return Estimate, (float(self), self.deviations)


def combine(terms) -> float:
    """Σ c·v over (c, v) pairs; an ``Estimate`` if any v is one, its
    deviations combined probe by probe."""
    terms = list(terms)
    value = sum(c * float(v) for c, v in terms)
    random = [(c, v) for c, v in terms if isinstance(v, Estimate)]
    if not random:
        return value
    deviations = sum(c * v.deviations for c, v in random)
    return Estimate(value, deviations)


def scale(value, factor: float):
    """``value · factor``, keeping an ``Estimate`` one."""
    return combine([(factor, value)])
