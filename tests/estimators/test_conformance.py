"""One conformance suite over every estimator family (as scikit-learn's
``parametrize_with_checks``): each family in ``FAMILIES`` passes the same
checks of what any entropy estimator must satisfy, on data it is meant for.
A new family (a new ``Estimator`` subclass) fails
``test_every_family_is_checked`` until it is added here."""
import math
from dataclasses import dataclass
from typing import Callable

import pytest
import torch

import pyfastent as pf
from pyfastent.estimators.base import Estimator


def gaussian(g, n, d):
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def symbols(g, n, d):
    """One column of 4 symbols: plug-in estimates need N well above the number of joint states."""
    return torch.randint(0, 4, (n, 1), generator=g)


def noisy_copy(x, g):
    """A variable that depends on x strongly but not deterministically."""
    if x.is_floating_point():
        return x + 0.3 * torch.randn(x.shape, generator=g, dtype=x.dtype)
    flip = torch.rand(x.shape, generator=g) < 0.2
    return torch.where(flip, torch.randint(0, 4, x.shape, generator=g), x)


def rotation(g, d):
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q


@dataclass(frozen=True)
class Family:
    """An estimator family and the data and invariances it promises.

    Attributes:
        make: a fresh estimator.
        sample: ``f(generator, n, d)``: samples it is meant for.
        invariances: (name, ``f(x, generator) -> x'``) maps of X that leave
            H(X) and I(X;Y) unchanged for this family.
        coarsen: a deterministic map of Y for the DPI check: I(X; f(Y)) ≤ I(X; Y).
    """

    name: str
    make: Callable
    sample: Callable
    invariances: tuple
    coarsen: Callable


CONTINUOUS_RBF = (("translation", lambda x, g: x + 3.0), ("rotation", lambda x, g: x @ rotation(g, x.shape[1])))
FAMILIES = [
    # Rényi on continuous data: an RBF kernel; on discrete data it takes the delta kernel (plug-in).
    Family("renyi-rbf-a1.01", lambda: pf.Renyi(alpha=1.01, sigma=3.0), gaussian, CONTINUOUS_RBF,
           lambda y: torch.div(y, 2, rounding_mode="floor") if not y.is_floating_point() else None),
    Family("renyi-rbf-a2", lambda: pf.Renyi(alpha=2.0, sigma=3.0), gaussian, CONTINUOUS_RBF, lambda y: None),
    Family("renyi-delta-a1", lambda: pf.Renyi(alpha=1.0), symbols,
           (("relabelling", lambda x, g: 3 - x),), lambda y: torch.div(y, 2, rounding_mode="floor")),
    Family("logdet-cov", lambda: pf.LogDet(beta=1.0), gaussian,
           (("translation", lambda x, g: x + 3.0),), lambda y: y[:, :1]),
    Family("logdet-correlation", lambda: pf.LogDet(beta=1.0, mode="correlation"), gaussian,
           (("translation", lambda x, g: x - 2.0), ("column scaling", lambda x, g: x * torch.tensor([0.5, 3.0, 7.0]))),
           lambda y: y[:, :1]),
    Family("discrete", pf.Discrete, symbols, (("relabelling", lambda x, g: 3 - x),),
           lambda y: torch.div(y, 2, rounding_mode="floor")),
]
N, D = 300, 3


def pair(family, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = family.sample(g, N, D)
    return x, noisy_copy(x, g), g


def close(a, b, scale=1.0):
    return abs(a - b) <= 1e-8 * max(1.0, abs(scale))


def all_subclasses(cls):
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub} | all_subclasses(sub)
    return out


def test_every_family_is_checked():
    checked = {type(f.make()) for f in FAMILIES}
    public = {c for c in all_subclasses(Estimator) if c.__module__.startswith("pyfastent.")}
    assert public <= checked, f"estimator families without conformance checks: {public - checked}"


@pytest.fixture(params=FAMILIES, ids=lambda f: f.name)
def family(request):
    return request.param


def test_entropy_is_non_negative_and_finite(family):
    x, y, _ = pair(family)
    est = family.make()
    for v in (x, y, [x, y]):
        h = est.entropy(*v) if isinstance(v, list) else est.entropy(v)
        assert math.isfinite(h) and h >= -1e-9


def test_mutual_information_is_symmetric(family):
    x, y, _ = pair(family)
    est = family.make()
    a, b = pf.mutual_information(x, y, estimator=est), pf.mutual_information(y, x, estimator=est)
    assert close(a, b, a)


def test_invariant_to_the_order_of_samples(family):
    x, y, g = pair(family)
    est = family.make()
    order = torch.randperm(N, generator=g)
    assert close(est.entropy(x), est.entropy(x[order]), est.entropy(x))
    mi = pf.mutual_information(x, y, estimator=est)
    assert close(mi, pf.mutual_information(x[order], y[order], estimator=est), mi)


def test_invariant_to_what_the_family_says(family):
    x, y, g = pair(family)
    est = family.make()
    h, mi = est.entropy(x), pf.mutual_information(x, y, estimator=est)
    for name, transform in family.invariances:
        moved = transform(x, g)
        assert abs(est.entropy(moved) - h) <= 1e-7 * max(1, abs(h)), name
        assert abs(pf.mutual_information(moved, y, estimator=est) - mi) <= 1e-7 * max(1, abs(mi)), name


def test_independent_variables_share_far_less_than_dependent_ones(family):
    x, y, g = pair(family)
    est = family.make()
    independent = family.sample(torch.Generator().manual_seed(99), N, D)
    dependent = pf.mutual_information(x, y, estimator=est)
    alone = pf.mutual_information(x, independent, estimator=est)
    assert dependent > 0.1
    assert abs(alone) < 0.1 * dependent


def test_chain_rule(family):
    """I(X; Y, Z) = I(X; Z) + I(X; Y | Z), every term by the same estimator."""
    x, y, g = pair(family)
    z = noisy_copy(y, g)
    est = family.make()
    joint = pf.mutual_information(x, [y, z], estimator=est)
    parts = pf.mutual_information(x, z, estimator=est) + pf.conditional_mutual_information(x, y, z, estimator=est)
    assert close(joint, parts, joint)


def test_data_processing_under_a_deterministic_map(family):
    x, y, _ = pair(family)
    coarse = family.coarsen(y)
    if coarse is None:
        pytest.skip(f"{family.name}: matrix-based Rényi MI of RBF kernels has no DPI guarantee for maps of Y; "
                    "it is checked on discrete data (renyi-delta) and on layer chains (test_nn_capture)")
    est = family.make()
    assert pf.mutual_information(x, coarse, estimator=est) <= pf.mutual_information(x, y, estimator=est) + 1e-9


def test_two_variable_tc_and_dtc_equal_mi(family):
    x, y, _ = pair(family)
    est = family.make()
    mi = pf.mutual_information(x, y, estimator=est)
    assert close(pf.total_correlation([x, y], estimator=est), mi, mi)
    assert close(pf.dual_total_correlation([x, y], estimator=est), mi, mi)


def test_pid_atoms_add_up_to_the_joint_mi(family):
    x, t1, g = pair(family)
    t2 = noisy_copy(x, g)
    r = pf.pid(x, [t1, t2], estimator=family.make())
    assert close(r.synergy + r.redundancy + sum(r.unique), r.mutual_information, r.mutual_information)
    assert close(r.mutual_information, pf.mutual_information(x, [t1, t2], estimator=family.make()),
                 r.mutual_information)
    assert close(r.source_information[0], pf.mutual_information(x, t1, estimator=family.make()),
                 r.mutual_information)


def test_symmetric_with_labels_of_another_dtype(family):
    """Discrete labels beside float64 data, in either order (labels first once cut the data to float32)."""
    x, _, g = pair(family)
    labels = (x[:, 0] > 0).long() if x.is_floating_point() else x % 2
    est = family.make()
    a, b = pf.mutual_information(labels, x, estimator=est), pf.mutual_information(x, labels, estimator=est)
    assert close(a, b, a)


@pytest.mark.parametrize("bad", ["nan", "mismatched", "one sample"])
def test_bad_input_is_a_value_error(family, bad):
    x, y, _ = pair(family)
    est = family.make()
    if bad == "nan":
        if not x.is_floating_point():
            x = x.double()
        x = x.clone()
        x[3, 0] = math.nan
        args = (x, y)
    elif bad == "mismatched":
        args = (x, y[:-1])
    else:
        args = (x[:1], y[:1])
    with pytest.raises(ValueError):
        pf.mutual_information(*args, estimator=est)
