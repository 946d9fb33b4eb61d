"""Memory budgets for tests of streamed sweeps, found rather than computed:
the planner's overheads are estimates the tests need not copy."""


def smallest_budget(run, high: int = 1 << 36) -> int:
    """The smallest ``memory_budget`` (bytes, within 2%) for which ``run(budget)``
    does not raise ``MemoryError``, by bisection on a log scale."""
    low = 1
    while high > 1.02 * low:
        mid = int((low * high) ** 0.5)
        try:
            run(mid)
            high = mid
        except MemoryError:
            low = mid
    return high
