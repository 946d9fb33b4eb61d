"""One measured run of bench_sweep.py, in a process of its own so that its
peak resident memory is its own: a layer sweep, or a training epoch and an
information-plane step, or the token benchmark's prompt entropies, with the
pyfastent of a given source tree (this checkout, or an older commit's
worktree). Prints one JSON object.

Usage: ``python _sweep_child.py --tree DIR --job sweep|tracker|tokens [--model NAME] --n N [--budget SIZE]``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def use_tree(tree: Path) -> None:
    """Import pyfastent from ``tree``, whatever is installed (an editable
    install's import hook included)."""
    sys.meta_path[:] = [f for f in sys.meta_path if "ScikitBuild" not in type(f).__name__]
    sys.path.insert(0, str(tree))


def models_module():
    """The models of this checkout (older commits have no ResNet-18), loaded by path."""
    spec = importlib.util.spec_from_file_location("bench_models", HERE.parent / "pyfastent" / "models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(name: str):
    models = models_module()
    import torch

    torch.manual_seed(0)
    if name == "resnet18-cifar":
        return models.resnet18(stem="cifar"), 32
    if name == "resnet18-imagenet":
        return models.resnet18(stem="imagenet"), 224
    if name == "vgg16-quarter":
        return models.vgg16_bn(width=0.25), 32
    raise SystemExit(f"unknown model {name}")


def images(n: int, size: int, seed: int):
    """Class-structured random images: a random template per class (10 classes) plus noise."""
    import torch

    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    templates = torch.rand(10, 3, size, size, generator=g)
    return templates[y] + 0.5 * torch.rand(n, 3, size, size, generator=g), y


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def sweep(args) -> dict:
    from pyfastent.nn import layer_sweep

    net, size = build(args.model)
    net.eval()
    x, y = images(args.n, size, seed=0)
    start = time.perf_counter()
    budget = {"memory_budget": args.budget} if args.budget else {}
    result = layer_sweep(net, x, y, progress=args.progress, **budget)
    seconds = time.perf_counter() - start
    rows = [{k: (float(v) if isinstance(v, float) else v) for k, v in r.items()} for r in result.rows]
    meta = getattr(result, "metadata", {})
    return {"seconds": seconds, "peak_gib": peak_gib(), "rows": rows, "passes": meta.get("probe_passes"),
            "passes_reason": meta.get("passes_reason"), "sliced_layers": meta.get("sliced_layers"),
            "batch_size": meta.get("batch_size")}


def tracker(args) -> dict:
    import torch

    from pyfastent.nn import InformationPlane

    net, size = build(args.model)
    x, y = images(1500, size, seed=1)
    probe_x, probe_y = images(args.n, size, seed=2)
    # pyfastent.nn.train.train_classifier's defaults: Adam (lr 1e-3), batches of 32.
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    plane = InformationPlane(net, probe_x, probe_y, progress=False)

    def epoch():
        net.train()
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
        for b in range(0, len(y), 32):
            idx = order[b:b + 32]
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()

    timings = {"epoch_s": [], "step_s": []}
    for _ in range(2):
        start = time.perf_counter()
        epoch()
        timings["epoch_s"].append(time.perf_counter() - start)
        start = time.perf_counter()
        plane.step()
        timings["step_s"].append(time.perf_counter() - start)
    rows = [{k: r[k] for k in ("step", "layer", "estimator", "quantity", "value")} for r in plane.rows]
    return {**timings, "peak_gib": peak_gib(), "rows": rows, "step_parts_s": step_parts(net, probe_x, plane)}


def tokens(args) -> dict:
    """``pf.prompt_entropy`` over the token benchmark's batches (``args.n``
    prompts), one call per batch; the faster of two runs, and the values."""
    import math

    import pyfastent as pf
    from _token_workload import batches

    work = batches(args.n)
    times, values = [], None
    for _ in range(2):
        start = time.perf_counter()
        values = [pf.prompt_entropy(states, mask, base=math.e) for states, mask in work]
        times.append(time.perf_counter() - start)
    flat = [float(v) for t in values for v in t.flatten()]
    return {"seconds": min(times), "peak_gib": peak_gib(), "values": flat}


# Where a tracker step's time goes: the functions of the current tree that do each part (cumulative
# seconds under cProfile, which adds a little to each call), and the model's forward pass timed alone.
PARTS = {"reductions (Gram and covariance products)": ("ops/reduction.py", "reduce_rows"),
         "spectra (eigenvalues)": ("ops/eigen.py", "symmetric_eigenvalues"),
         "log-determinants (Cholesky)": ("ops/logdet.py", "spd_logdet")}


def step_parts(net, probe_x, plane) -> dict | None:
    """Seconds of one more step by part, or None for a tree without these functions (the baseline)."""
    import cProfile
    import pstats

    import torch

    if importlib.util.find_spec("pyfastent.ops.reduction") is None:
        return None
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.runcall(plane.step)
    parts = {"step (profiled)": time.perf_counter() - start}
    stats = pstats.Stats(profile).stats  # (file, line, name) -> (calls, primitive, tottime, cumtime, callers)
    for part, (file, name) in PARTS.items():
        parts[part] = sum(v[3] for k, v in stats.items() if k[0].endswith(file) and k[2] == name)
    net.eval()
    with torch.no_grad():
        start = time.perf_counter()
        net(probe_x)  # one pass, as the step runs it when the probe set fits the memory budget
        parts["model forward alone"] = time.perf_counter() - start
    return parts


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", required=True)
    parser.add_argument("--job", choices=("sweep", "tracker", "tokens"), required=True)
    parser.add_argument("--model", default="resnet18-cifar")
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--budget", default=None, help="the sweep's memory_budget (default: none given)")
    parser.add_argument("--progress", action="store_true", help="the sweep's progress bar, on stderr")
    args = parser.parse_args()
    use_tree(Path(args.tree))
    import warnings

    warnings.simplefilter("ignore")
    out = {"sweep": sweep, "tracker": tracker, "tokens": tokens}[args.job](args)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
