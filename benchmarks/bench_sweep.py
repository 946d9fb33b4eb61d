"""Layer-sweep and tracker cost, side by side with an older commit.

On the CPU (default), each run in a process of its own (``_sweep_child.py``)
so that its peak resident memory (``ru_maxrss``) is its own:

1. ``layer_sweep`` with the default estimators (Rényi and LogDet) of a
   ResNet-18 (``pyfastent.models.resnet18``) on class-structured random
   images: the 32×32 variant (59 layers) at N = 1000 and 2000, the 224×224
   one (60 layers) at N = 1000; and of VGG-16-BN at width 1/4 (47 layers)
   on 512 samples. Wall time and peak memory.
2. One ``InformationPlane.step()`` on the 32×32 ResNet-18 with 500 probe
   samples (default estimators, no transfer entropy) against one training
   epoch over 1500 samples (``pyfastent.nn.train.train_classifier``'s
   defaults: Adam, batches of 32), each timed twice, the faster kept; then
   one more step under cProfile, split into the reductions, the spectra and
   the log-determinants, and the model's forward pass timed alone.
3. The same with the older commit (``--baseline``, default 66ed91d: the
   main branch before the per-layer reduction and streamed passes) from a
   git worktree, for the runs it survives (at N = 2000 and at 224×224 it ran
   out of memory on this machine kind), and the largest differences of the
   values: Rényi in bits, LogDet relative.
4. The demo's tracker step against its training epoch, in this process.

Correctness first: the sweep's values for a few layers must equal direct
estimator calls on captured activations. Every child uses one fresh
eigensolver plan (``PYFASTENT_CACHE_DIR``), measured by the first runs.

With ``--device cuda`` (the GPU issue): VGG-16-BN at width 1 on 1000 probe
samples on the GPU, once with the CUDA kernels (``use_backend("cuda")``)
and once with the torch path, same numbers within 1e-4 bits, and the time
ratio.

With ``--only tracker`` (or ``sweep``): those runs alone, without the
baseline, written as ``bench_sweep_tracker_cpu`` (``bench_sweep_sweep_cpu``).
With ``--scale``: only the 224×224 ResNet-18 under memory budgets (see
``scale``), written as ``bench_sweep_scale_cpu``; its baseline defaults to
320d7e5, the commit before layers were held in slices.

Writes JSON and Markdown to ``benchmarks/results/`` (or ``--out``). Usage:
``python benchmarks/bench_sweep.py [--device cuda] [--scale] [--only JOB] [--out DIR] [--baseline REV]``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import pyfastent as pf
from pyfastent import data, models
from pyfastent.nn import InformationPlane, LayerTE, capture, default_estimators, layer_sweep
from _record import RESULTS, environment, median_seconds, write

HERE = Path(__file__).resolve().parent
# The 224×224 ResNet-18 under memory budgets (--scale): (N, memory_budget)
SCALE = [(400, None), (400, "3GB"), (1000, "3GB"), (2000, "6GB")]
# (job, model, N, also with the baseline)
RUNS = [("sweep", "resnet18-cifar", 1000, True), ("sweep", "resnet18-cifar", 2000, False),
        ("sweep", "resnet18-imagenet", 1000, False), ("sweep", "vgg16-quarter", 512, True),
        ("tracker", "resnet18-cifar", 500, True)]


def vgg_probe(n: int, width: float = 0.25, seed: int = 0, device: str = "cpu"):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = models.vgg16_bn(width=width).eval().to(device)
    x = torch.rand(n, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (n,), generator=g).to(device)
    return net, x, y


def check_sweep(net, x, y, estimators):
    result = layer_sweep(net, x, y, estimators=estimators)
    acts = capture(net, x)
    checked = 0
    for row in result.rows:
        if row["layer"] not in ("conv1_1", "relu3_2", "fc1", "out"):
            continue
        est = next(e for e in estimators if e.label == row["estimator"])
        t = acts[row["layer"]]
        direct = (est.entropy(t), pf.mutual_information(x, t, estimator=est), pf.mutual_information(t, y, estimator=est))
        for got, want in zip((row["h_t"], row["i_xt"], row["i_ty"]), direct):
            if abs(got - want) > 1e-6:
                raise SystemExit(f"sweep disagrees with direct calls at {row['layer']}: {got} vs {want}")
        checked += 1
    return result, checked


def demo_epoch(net, opt, split, order):
    net.train()
    perm = torch.randperm(len(split.y_train), generator=order)
    for b in range(0, len(perm), 32):
        idx = perm[b : b + 32]
        loss = torch.nn.functional.cross_entropy(net(split.x_train[idx]), split.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def tracker_overhead(repeats: int):
    split = data.digits(seed=0)
    torch.manual_seed(0)
    net = models.mnist_cnn(in_size=8)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    order = torch.Generator().manual_seed(0)
    epoch = median_seconds(lambda: demo_epoch(net, opt, split, order), repeats)
    tracker = InformationPlane(net, split.x_test, split.y_test, sigma_smoothing=0.9, transfer_entropy=LayerTE(window=1000))
    hooked_epoch = median_seconds(lambda: demo_epoch(net, opt, split, order), repeats)

    def measure():
        demo_epoch(net, opt, split, order)  # fills the TE window as in real use
        start = time.perf_counter()
        tracker.step()
        return time.perf_counter() - start

    steps = sorted(measure() for _ in range(repeats))
    tracker.close()
    return {"epoch_s": epoch, "epoch_with_te_hooks_s": hooked_epoch, "tracker_step_s": steps[len(steps) // 2],
            "probe_size": len(split.y_test), "overhead_ratio": (hooked_epoch + steps[len(steps) // 2]) / epoch}


def gpu_sweep(args):
    """VGG-16-BN width 1 on the GPU: kernels (use_backend("cuda")) against the torch path."""
    import statistics

    from _record import gpu_environment_name

    net, x, y = vgg_probe(args.probe, width=1.0, device="cuda")
    runs = {}
    for backend in ("cuda", "torch"):
        times, result = [], None
        for _ in range(args.repeats + 1):  # the first is a warm-up
            torch.cuda.synchronize()
            start = time.perf_counter()
            with pf.use_backend(backend):
                result = layer_sweep(net, x, y)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        runs[backend] = (statistics.median(times[1:]), result)
    worst = max(abs(a[q] - b[q]) for a, b in zip(runs["cuda"][1].rows, runs["torch"][1].rows)
                for q in ("h_t", "i_xt", "i_ty"))
    if worst > 1e-4:
        raise SystemExit(f"kernels and torch disagree by {worst:.3g} bits")
    layers = len(runs["torch"][1].rows) // 2
    record = {"benchmark": "bench_sweep_gpu", "environment": environment(),
              "sweep": {"model": "vgg16_bn(width=1)", "probe": args.probe, "layers": layers,
                        "estimators": sorted({r["estimator"] for r in runs["torch"][1].rows}),
                        "kernels_s": runs["cuda"][0], "torch_s": runs["torch"][0],
                        "ratio": runs["torch"][0] / runs["cuda"][0], "max_abs_diff_bits": worst}}
    table = ("| workload | kernels (s) | torch (s) | torch / kernels | max difference (bits) |\n|---|---|---|---|---|\n"
             f"| layer sweep, VGG-16-BN width 1, {layers} layers, Rényi + LogDet, N = {args.probe} | "
             f"{runs['cuda'][0]:.2f} | {runs['torch'][0]:.2f} | {runs['torch'][0] / runs['cuda'][0]:.2f}x | {worst:.2g} |")
    print(table)
    print("wrote", write(f"bench_sweep_gpu_{gpu_environment_name()}", record, table, args.out))


def child(tree: Path, job: str, model: str, n: int, cache: str, budget: str | None = None) -> dict:
    """One run in its own process; its JSON, or ``{"failed": reason}``."""
    env = {**os.environ, "PYFASTENT_CACHE_DIR": cache}
    extra = ["--budget", budget] if budget else []
    done = subprocess.run([sys.executable, str(HERE / "_sweep_child.py"), "--tree", str(tree), "--job", job,
                           "--model", model, "--n", str(n), *extra], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"failed": (done.stderr.strip().splitlines() or ["killed"])[-1][:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def worktree(rev: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="pyfastent-baseline-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(folder), rev], cwd=HERE, check=True,
                   capture_output=True)
    return folder


def compare(new_rows: list, old_rows: list) -> dict:
    """Largest differences: Rényi in bits, LogDet relative (to at least 1 bit)."""
    worst = {"renyi_bits": 0.0, "logdet_relative": 0.0}
    for a, b in zip(new_rows, old_rows):
        assert (a["layer"], a["estimator"]) == (b["layer"], b["estimator"]), (a["layer"], b["layer"])
        for q in ("h_t", "i_xt", "i_ty"):
            if a["estimator"].startswith("renyi"):
                worst["renyi_bits"] = max(worst["renyi_bits"], abs(a[q] - b[q]))
            else:
                worst["logdet_relative"] = max(worst["logdet_relative"], abs(a[q] - b[q]) / max(abs(b[q]), 1.0))
    return worst


def cpu(args):
    net, x, y = vgg_probe(128)
    _, checked = check_sweep(net, x, y, default_estimators(x))
    cache = tempfile.mkdtemp(prefix="pyfastent-plan-")
    baseline = worktree(args.baseline)
    results = []
    runs = [r for r in RUNS if args.only is None or r[0] == args.only]
    try:
        for job, model, n, compared in runs:
            row = {"job": job, "model": model, "n": n, "new": child(HERE.parent, job, model, n, cache)}
            if compared and args.only is None:
                row["baseline"] = child(baseline, job, model, n, cache)
            new, old = row["new"], row.get("baseline")
            if job == "sweep" and old and "rows" in old and "rows" in new:
                row["speedup"] = old["seconds"] / new["seconds"]
                row["max_difference"] = compare(new["rows"], old["rows"])
            print(json.dumps({k: v for k, v in row.items() if k not in ("new", "baseline")}),
                  {side: {k: v for k, v in r.items() if k != "rows"} for side, r in
                   (("new", new), ("baseline", old)) if r}, flush=True)
            results.append(row)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=HERE, capture_output=True)
    overhead = tracker_overhead(args.repeats)
    for row in results:  # the rows are in the JSON; the record keeps them once
        for side in ("new", "baseline"):
            if side in row and "rows" in row[side]:
                row[side]["layers"] = len(row[side]["rows"]) // 2
    record = {"benchmark": "bench_sweep", "environment": environment(), "baseline": args.baseline,
              "rows_checked_against_direct_calls": checked, "runs": results, "demo_tracker": overhead}
    table = sweep_table(results, args.baseline) + (
        f"\n\nThe demo (mnist_cnn on digits): training epoch {overhead['epoch_s']:.3f} s, with the TE recording "
        f"hooks {overhead['epoch_with_te_hooks_s']:.3f} s; one tracker step (both estimators + layer TE, "
        f"N = {overhead['probe_size']}) {overhead['tracker_step_s']:.3f} s.")
    print(table)
    print("wrote", write("bench_sweep_cpu" if args.only is None else f"bench_sweep_{args.only}_cpu", record, table,
                         args.out))


def scale(args):
    """The 224×224 ResNet-18 (60 layers) under memory budgets: N = 400
    without a budget and with 3 GB (equal to round-off; the commit before
    slicing, ``--baseline``, refused the budgeted run), N = 1000 with 3 GB
    (goal: peak resident memory ≤ 4.5 GB) and N = 2000 with 6 GB."""
    cache = tempfile.mkdtemp(prefix="pyfastent-plan-")
    baseline = worktree(args.baseline)
    runs = []
    try:
        for n, budget in SCALE:
            row = {"model": "resnet18-imagenet", "n": n, "budget": budget,
                   "new": child(HERE.parent, "sweep", "resnet18-imagenet", n, cache, budget)}
            if n == 400 and budget:
                row["baseline"] = child(baseline, "sweep", "resnet18-imagenet", n, cache, budget)
            print(json.dumps({k: v for k, v in row["new"].items() if k != "rows"}), flush=True)
            runs.append(row)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=HERE, capture_output=True)
    free, budgeted = runs[0]["new"], runs[1]["new"]
    difference = compare(budgeted["rows"], free["rows"]) if "rows" in free and "rows" in budgeted else None
    for row in runs:
        if "rows" in row["new"]:
            row["new"]["layers"] = len(row["new"].pop("rows")) // 2
    record = {"benchmark": "bench_sweep_scale", "environment": environment(), "baseline": args.baseline,
              "runs": runs, "budgeted_vs_unbudgeted_n400": difference, "goal_peak_gib_n1000_3gb": 4.5 * 1e9 / 2**30}
    lines = ["| N | memory_budget | seconds | peak GiB | passes | layers held in slices | batch size | "
             f"baseline {args.baseline} |", "|---|---|---|---|---|---|---|---|"]
    for row in runs:
        new, old = row["new"], row.get("baseline")
        if "failed" in new:
            lines.append(f"| {row['n']} | {row['budget'] or 'none'} | failed: {new['failed'][:80]} | | | | | |")
            continue
        sliced = new["sliced_layers"] or {}
        lines.append(f"| {row['n']} | {row['budget'] or 'none'} | {new['seconds']:.0f} | {new['peak_gib']:.2f} | "
                     f"{new['passes']} | {len(sliced)} ({sum(sliced.values())} slices) | {new['batch_size']} | "
                     f"{('failed: ' + old['failed'][:90]) if old and 'failed' in old else (old and 'ran') or ''} |")
    table = "\n".join(lines)
    if difference:
        table += (f"\n\nN = 400 with a 3 GB budget against no budget: Rényi {difference['renyi_bits']:.1e} bits, "
                  f"LogDet {difference['logdet_relative']:.1e} relative at most.")
    table += "\n\nWhy the passes (from each sweep's metadata):\n" + "\n".join(
        f"- N = {row['n']}, {row['budget'] or 'no budget'}: {row['new'].get('passes_reason')}" for row in runs
        if "failed" not in row["new"])
    print(table)
    print("wrote", write("bench_sweep_scale_cpu", record, table, args.out))


def sweep_table(results: list, baseline: str) -> str:
    def cell(r, key):
        if r is None:
            return "not run"
        if "failed" in r:
            return "failed: " + r["failed"][:60]
        return f"{r[key]:.1f}" if isinstance(r[key], float) else str(r[key])

    lines = [f"| run | N | seconds | peak GiB | baseline {baseline} seconds | baseline peak GiB | speedup | "
             "max difference |", "|---|---|---|---|---|---|---|---|"]
    parts = []
    for r in results:
        new, old = r["new"], r.get("baseline")
        if r["job"] == "tracker":
            ok = "failed" not in new
            step = min(new["step_s"]) if ok else float("nan")
            epoch = min(new["epoch_s"]) if ok else float("nan")
            old_step = f"{min(old['step_s']):.1f}" if old and "failed" not in old else cell(old, "step_s")
            lines.append(f"| tracker step vs training epoch (1500 samples), {r['model']} | {r['n']} | step {step:.1f}, "
                         f"epoch {epoch:.1f} (step/epoch {step / epoch:.2f}) | {cell(new, 'peak_gib')} | step "
                         f"{old_step} | {cell(old, 'peak_gib')} | | |")
            if ok and new.get("step_parts_s"):
                parts.append(f"Where one more tracker step of {r['model']} went (cProfile, cumulative): " + ", ".join(
                    f"{part} {seconds:.1f} s" for part, seconds in new["step_parts_s"].items()) + ".")
            continue
        diff = r.get("max_difference")
        shown = f"Rényi {diff['renyi_bits']:.1e} bits, LogDet {diff['logdet_relative']:.1e} rel." if diff else ""
        speed = f"{r['speedup']:.2f}x" if "speedup" in r else ""
        lines.append(f"| layer_sweep {r['model']} | {r['n']} | {cell(new, 'seconds')} | {cell(new, 'peak_gib')} | "
                     f"{cell(old, 'seconds')} | {cell(old, 'peak_gib')} | {speed} | {shown} |")
    return "\n".join(lines + ([""] + parts if parts else []))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--probe", type=int, default=None, help="probe samples of the GPU run (default 1000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default=None,
                        help="the commit to compare with (CPU; default 66ed91d, with --scale 320d7e5)")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    parser.add_argument("--only", choices=("sweep", "tracker"), default=None,
                        help="only these runs, without the baseline (bench_sweep_<only>_cpu)")
    parser.add_argument("--scale", action="store_true",
                        help="only the 224x224 runs under memory budgets (bench_sweep_scale_cpu)")
    args = parser.parse_args()
    if args.scale:
        args.baseline = args.baseline or "320d7e5"
        return scale(args)
    args.baseline = args.baseline or "66ed91d"
    if args.device == "cuda":
        args.probe = args.probe or 1000
        return gpu_sweep(args)
    return cpu(args)


if __name__ == "__main__":
    main()
