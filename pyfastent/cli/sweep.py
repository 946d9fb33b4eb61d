"""``pyfastent sweep``: every layer of the user's model on their data, alone or
under torchrun. ``nn`` and ``torch.distributed`` are imported when it runs
(``pyfastent.cli`` says why)."""
from __future__ import annotations

import contextlib
import datetime
import os

import torch

from pyfastent import Discrete, LogDet, Renyi
from pyfastent._text import text_table
from pyfastent.cli.checks import UsageError, check_inputs, load_arrays, load_model, positive, writable_file

ESTIMATORS = {"renyi": Renyi, "logdet": LogDet, "discrete": Discrete}  # LogDet: β = 100·d of X


def _estimator(name: str, method: str):
    return Renyi(method=method) if name == "renyi" else ESTIMATORS[name]()


def launched_ranks() -> int:
    """How many processes torchrun started (WORLD_SIZE), 1 without it."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise UsageError(f"WORLD_SIZE must be an integer, got {os.environ['WORLD_SIZE']!r}") from None


@contextlib.contextmanager
def process_group(backend: str | None, timeout: float):
    """The torch.distributed process group of a torchrun launch (none
    otherwise, or when the caller already has one); yields the device
    each rank computes on (its GPU under nccl, else None)."""
    import torch.distributed as dist

    if launched_ranks() <= 1 or dist.is_initialized():
        yield None
        return
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    device = None
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise UsageError("--backend nccl needs CUDA, and torch sees no CUDA device here; use --backend gloo")
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    try:
        yield device
    finally:
        dist.destroy_process_group()


def run_sweep(args) -> int:
    positive("--timeout", args.timeout, float)
    with process_group(args.backend, args.timeout) as device:
        return _sweep(args, device)


def _sweep(args, device) -> int:
    from pyfastent import distributed
    from pyfastent.nn import layer_sweep, select_layers

    names = [e.strip() for e in args.estimators.split(",") if e.strip()]
    unknown = [e for e in names if e not in ESTIMATORS]
    if unknown or not names:
        raise UsageError(f"--estimators must be from {', '.join(ESTIMATORS)}, got {args.estimators!r}")
    out = writable_file("--out", args.out)
    x, y = load_arrays(args.data)
    torch.manual_seed(args.seed)
    model = load_model(args.model, args.weights, args.debug)
    if device is not None:
        model.to(device)
    layers = [n.strip() for n in args.layers.split(",") if n.strip()] if args.layers else None
    select_layers(model, layers)  # unknown names are an error now, not after the forward pass
    if args.batch_size is not None:
        positive("--batch-size", args.batch_size)
    budget = memory_budget(args.memory_budget)
    check_inputs(model, x)

    result = layer_sweep(model, torch.from_numpy(x), torch.from_numpy(y),
                         estimators=[_estimator(n, args.method) for n in names], layers=layers, channels=args.channels,
                         progress=False if args.no_progress else None, batch_size=args.batch_size,
                         memory_budget=budget, pooling=args.pooling)
    written = result.to_csv(out)  # by rank 0 under torchrun
    if not distributed.is_root():
        return 0
    columns = {"layer": "layer", "estimator": "estimator", "units": "units", "h_t": "H(T)", "i_xt": "I(X;T)",
               "i_ty": "I(T;Y)"}
    if any("i_xt_se" in r for r in result.rows):
        columns.update({"i_xt_se": "± I(X;T)", "i_ty_se": "± I(T;Y)"})
    print(text_table(result.rows, columns))
    for v in result.dpi_violations:
        print(f"DPI violation ({v['estimator']}): {v['quantity']} rises from {v['earlier']} to {v['later']} by "
              f"{v['size']:.4g} {result.units[v['estimator']]}")
    print(f"DPI pairs from the {result.dpi_method}; X is {result.metadata['x']}")
    for label, about in result.metadata["estimators"].items():
        if about["note"]:
            print(f"{label}: H(X) = {about['h_x']:.4g}, H(Y) = {about['h_y']:.4g} {about['units']} "
                  f"(plug-in H(Y) = {result.metadata['label_entropy_bits']:.4g} bits); {about['note']}")
    if result.skipped:
        print(f"skipped (output not batch-first): {', '.join(result.skipped)}")
    ranks = distributed.world()[1]
    print(f"wrote {written}" + (f" ({ranks} processes)" if ranks > 1 else ""))
    return 0


def memory_budget(text: str | None):
    """--memory-budget as pyfastent.nn.planner.resolve_budget takes it; a bad value is a one-line error."""
    from pyfastent.nn.planner import resolve_budget

    if text is None:
        return None
    try:
        return resolve_budget(text, torch.device("cpu"))
    except ValueError:
        raise UsageError(f"--memory-budget must be a size such as 4GB or 512MiB, got {text!r}") from None
