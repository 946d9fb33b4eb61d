"""Permutation tests: how likely an estimate is when the dependence it
measures is destroyed (the null distribution), for any estimator.

Matrix-based MI, PID atoms and transfer entropy are biased upwards at finite
N (the TE plane's values are ~1e-3 bits): an estimate means little without
its null. The null permutes the samples of one argument (the y of an MI, the
target of a PID) or, for transfer entropy, shuffles the source series in
time (in blocks, to keep its own autocorrelation), as IDTxl and JIDT do.
For pyfastent's measures, every variable is prepared once and each
permutation reorders a prepared Gram matrix instead of rebuilding it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from pyfastent import _checks
from pyfastent.measures import (
    _cmi_recipe,
    _evaluate,
    _is_group,
    _mi_recipe,
    _pid_recipe,
    chosen_estimator,
    conditional_mutual_information,
    mutual_information,
    pid,
    te_embedding,
    transfer_entropy,
)
from pyfastent.ops.deferred import SpectralBatch


def _pid_plan(target, sources):
    groups = {f"sources[{i}]": s for i, s in enumerate(sources)}
    return {"target": target, **groups}, _pid_recipe(list(groups))


# measure -> the argument permuted by default, the statistic of its result,
# and its plan: its arguments as named groups, and the recipe of its joints.
_DEFAULTS = {
    mutual_information: (1, float, lambda x, y: ({"x": x, "y": y}, _mi_recipe)),
    conditional_mutual_information: (1, float, lambda x, y, z: ({"x": x, "y": y, "z": z}, _cmi_recipe)),
    pid: (0, lambda r: float(r.mutual_information), _pid_plan),
}


@dataclass(frozen=True)
class PermutationResult:
    """The estimate, and where it falls in its null distribution.

    Attributes:
        value: the statistic on the data.
        p_value: (1 + #{null ≥ value}) / (1 + n_permutations), one-sided,
            never 0.
        null_mean, null_std: mean and standard deviation of the null; the
            mean is the estimator's bias under independence (a noise floor).
        null: float64 [n_permutations], the statistic under each permutation.
        permuted: which argument was permuted (or shuffled in time).
    """

    value: float
    p_value: float
    null_mean: float
    null_std: float
    null: torch.Tensor = field(repr=False)
    permuted: str = ""


def permutation_test(measure, *args, n_permutations: int = 200, seed: int = 0, argument: int | None = None,
                     block: int = 1, statistic=None, **kwargs) -> PermutationResult:
    """Permutation test of ``measure(*args, **kwargs)``.

    Args:
        measure: ``pf.mutual_information``, ``pf.conditional_mutual_information``,
            ``pf.pid``, ``pf.transfer_entropy``, or any callable returning a
            number (its argument is then permuted as a tensor along axis 0).
        *args: the positional arguments of ``measure``.
        **kwargs: its keyword arguments (``estimator=`` included).
        n_permutations: size of the null sample.
        seed: seed of the permutations.
        argument: index in ``args`` of the argument to permute; default:
            y for (conditional) MI, the target for PID, the source for
            transfer entropy (shuffled in time), 0 for other callables.
        block: permute blocks of this many consecutive samples (time series
            keep their autocorrelation within blocks).
        statistic: maps the measure's result to the tested number; default:
            the value itself (for PID: I(target; all sources); pass e.g.
            ``lambda r: r.synergy``).

    Returns:
        ``PermutationResult`` (in the measure's units).
    """
    n_permutations = _checks.positive_int("n_permutations", n_permutations)
    block = _checks.positive_int("block", block)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    generator = torch.Generator().manual_seed(seed)
    if measure is transfer_entropy:
        return _transfer_entropy_test(args, kwargs, n_permutations, block, generator, statistic)
    if measure in _DEFAULTS:
        default_argument, default_statistic, _ = _DEFAULTS[measure]
        return _prepared_test(measure, args, kwargs, default_argument if argument is None else argument,
                              statistic or default_statistic, n_permutations, block, generator)
    if not callable(measure):
        raise ValueError(f"measure must be a callable, got {measure!r}")
    return _generic_test(measure, args, kwargs, 0 if argument is None else argument, statistic or float,
                         n_permutations, block, generator)


def _permutation(n: int, block: int, generator: torch.Generator) -> torch.Tensor:
    """A random order of n samples that moves blocks of ``block`` consecutive ones."""
    if block == 1:
        return torch.randperm(n, generator=generator)
    starts = torch.arange(0, n, block)
    order = starts[torch.randperm(len(starts), generator=generator)]
    return torch.cat([torch.arange(s, min(s + block, n)) for s in order.tolist()])


def _result(value: float, null: list, name: str) -> PermutationResult:
    null_t = torch.tensor(null, dtype=torch.float64)
    p = (1 + int((null_t >= value).sum())) / (1 + len(null))
    std = float(null_t.std()) if len(null) > 1 else 0.0
    return PermutationResult(float(value), p, float(null_t.mean()), std, null_t, name)


def _check_argument(argument: int, args: tuple) -> int:
    if isinstance(argument, bool) or not isinstance(argument, int) or not 0 <= argument < len(args):
        raise ValueError(f"argument must index one of the {len(args)} positional arguments, got {argument!r}")
    return argument


def _prepared_test(measure, args, kwargs, argument, statistic, n_permutations, block, generator):
    argument = _check_argument(argument, args)
    est = chosen_estimator(kwargs.get("estimator"))
    kwargs = {**kwargs, "estimator": est}

    def prepare(arg, name):
        if isinstance(arg, (list, tuple)) and not _is_group(arg) and measure is pid:
            return [prepare(a, f"{name}[{i}]") for i, a in enumerate(arg)]  # pid's list of sources
        if _is_group(arg):
            return [est.prepare(a, f"{name}[{i}]") for i, a in enumerate(arg)]
        return est.prepare(arg, name)

    prepared = [prepare(a, f"args[{i}]") for i, a in enumerate(args)]
    extra = set(kwargs) - {"estimator"}
    if extra:
        raise ValueError(f"{measure.__name__} takes no keyword arguments {sorted(extra)}")
    plan = _DEFAULTS[measure][2]
    value = statistic(measure(*prepared, **kwargs))
    moving = prepared[argument]
    n = (moving[0] if isinstance(moving, list) else moving).n

    def permute(p, index):
        return [permute(q, index) for q in p] if isinstance(p, list) else est.permuted(p, index)

    # Every permutation's joints are planned into one batch, which solves
    # what it holds whenever that reaches a quarter of the free memory.
    batch = SpectralBatch(max_bytes="available")
    finishes = []
    for _ in range(n_permutations):
        shuffled = list(prepared)
        shuffled[argument] = permute(moving, _permutation(n, block, generator))
        finishes.append(_evaluate(est, *plan(*shuffled), batch=batch))
    batch.solve()
    return _result(value, [statistic(f()) for f in finishes], f"args[{argument}]")


def _transfer_entropy_test(args, kwargs, n_permutations, block, generator, statistic):
    """TE_{S→T} = I(T_{t+1}; S_past | T_past) with the source past shuffled in time."""
    if len(args) != 2:
        raise ValueError(f"transfer_entropy takes source and target, got {len(args)} positional arguments")
    options = {k: kwargs.pop(k) for k in ("k", "l", "lag") if k in kwargs}
    future, source_past, target_past = te_embedding(*args, **options)
    result = _prepared_test(conditional_mutual_information, (future, source_past, target_past), kwargs, 1,
                            statistic or float, n_permutations, block, generator)
    return replace(result, permuted="source past (shuffled in time)")


def _generic_test(measure, args, kwargs, argument, statistic, n_permutations, block, generator):
    argument = _check_argument(argument, args)
    data = _checks.as_tensor(f"args[{argument}]", args[argument])
    value = statistic(measure(*args, **kwargs))
    null = []
    for _ in range(n_permutations):
        shuffled = list(args)
        shuffled[argument] = data.index_select(0, _permutation(data.shape[0], block, generator).to(data.device))
        null.append(statistic(measure(*shuffled, **kwargs)))
    return _result(value, null, f"args[{argument}]")
