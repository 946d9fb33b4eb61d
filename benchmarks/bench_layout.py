"""The layout issue's before/after check: the same numbers and no lost speed
after the package was rearranged into floors.

Side by side in one run, each workload in a process of its own
(``_sweep_child.py``), this checkout against the commit before the
rearrangement (``--baseline``, default 354c45b) from a git worktree,
in the order new, old, old, new (a run right after another workload's can be
slower: measured 6% on the sweep after the token workload's 9 GB), after one
uncounted run of each workload that lets the shared eigensolver plan measure
its drivers:

1. ``layer_sweep`` of the 32×32 ResNet-18 at N = 1000 (default Rényi and
   LogDet estimators, 59 layers);
2. ``InformationPlane.step()`` on it with 500 probe samples after each of two
   training epochs over 1500 samples;
3. the token benchmark's ``pf.prompt_entropy`` (1000 prompts of 16–256
   tokens, 12 layers, D = 768, float32).

Same values: Rényi rows within 1e-5 bits, LogDet within 1e-9 relative, token
entropies within 1e-6 nats (round-off; the run stops otherwise). Speed: the
median of each side's two runs and their ratio.

Writes ``benchmarks/results/bench_layout_cpu.{json,md}`` (or ``--out``).
Usage: ``python benchmarks/bench_layout.py [--baseline REV] [--out DIR]``.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _record import RESULTS, environment, write  # noqa: E402
from bench_sweep import child, compare, worktree  # noqa: E402

WORKLOADS = [("sweep", "resnet18-cifar", 1000), ("tracker", "resnet18-cifar", 500), ("tokens", "-", 1000)]
TOLERANCE = {"renyi_bits": 1e-5, "logdet_relative": 1e-9, "token_nats": 1e-6}


def seconds(run: dict, job: str) -> float:
    """The measured time of one run: the sweep, the faster token pass, or the tracker's later step."""
    return run["step_s"][-1] if job == "tracker" else run["seconds"]


def differences(job: str, new: dict, old: dict) -> dict:
    if job == "sweep":
        return compare(new["rows"], old["rows"])
    if job == "tracker":
        worst = {"renyi_bits": 0.0, "logdet_relative": 0.0}
        for a, b in zip(new["rows"], old["rows"]):
            assert (a["step"], a["layer"], a["estimator"], a["quantity"]) == (
                b["step"], b["layer"], b["estimator"], b["quantity"]), (a, b)
            if a["estimator"].startswith("renyi"):
                if a["quantity"] != "sigma":
                    worst["renyi_bits"] = max(worst["renyi_bits"], abs(a["value"] - b["value"]))
            else:
                worst["logdet_relative"] = max(worst["logdet_relative"],
                                               abs(a["value"] - b["value"]) / max(abs(b["value"]), 1.0))
        assert len(new["rows"]) == len(old["rows"])
        return worst
    assert len(new["values"]) == len(old["values"])
    return {"token_nats": max(abs(a - b) for a, b in zip(new["values"], old["values"]))}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", default="354c45b", help="the commit before the rearrangement")
    parser.add_argument("--out", type=Path, help="results folder (default: benchmarks/results)")
    args = parser.parse_args()
    cache = tempfile.mkdtemp(prefix="pyfastent-plan-")
    baseline = worktree(args.baseline)
    results = []
    try:
        for job, model, n in WORKLOADS:  # uncounted: the eigensolver plan measures its drivers on first use
            child(HERE.parent, job, model, n, cache)
        for job, model, n in WORKLOADS:
            runs: dict = {"new": [], "old": []}
            for sides in ((("new", HERE.parent), ("old", baseline)), (("old", baseline), ("new", HERE.parent))):
                for side, tree in sides:
                    run = child(tree, job, model, n, cache)
                    if "failed" in run:
                        raise SystemExit(f"{job} on {side} failed: {run['failed']}")
                    runs[side].append(run)
            worst = differences(job, runs["new"][0], runs["old"][0])
            for key, value in worst.items():
                if value > TOLERANCE[key]:
                    raise SystemExit(f"{job}: the values moved by {value:.3g} ({key}), beyond round-off")
            new_s = statistics.median(seconds(r, job) for r in runs["new"])
            old_s = statistics.median(seconds(r, job) for r in runs["old"])
            row = {"job": job, "model": model, "n": n, "new_s": new_s, "old_s": old_s, "old_over_new": old_s / new_s,
                   "new_peak_gib": max(r["peak_gib"] for r in runs["new"]),
                   "old_peak_gib": max(r["peak_gib"] for r in runs["old"]), "max_difference": worst,
                   "new_runs_s": [seconds(r, job) for r in runs["new"]],
                   "old_runs_s": [seconds(r, job) for r in runs["old"]]}
            print(row, flush=True)
            results.append(row)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=HERE, capture_output=True)
    what = {"sweep": "layer_sweep ResNet-18 32×32, 59 layers", "tracker": "InformationPlane.step() ResNet-18 32×32",
            "tokens": "pf.prompt_entropy, token benchmark"}
    lines = [f"| workload | N | this commit (s) | {args.baseline} (s) | {args.baseline} / this | peak GiB (this, old) | "
             "largest difference |", "|---|---|---|---|---|---|---|"]
    for r in results:
        diff = ", ".join(f"{k} {v:.2g}" for k, v in r["max_difference"].items())
        lines.append(f"| {what[r['job']]} | {r['n']} | {r['new_s']:.2f} | {r['old_s']:.2f} | {r['old_over_new']:.2f}x | "
                     f"{r['new_peak_gib']:.1f}, {r['old_peak_gib']:.1f} | {diff} |")
    table = "\n".join(lines) + (
        "\n\nMedians of two runs per side, in the order new, old, old, new; each run in its own process with one shared eigensolver "
        "plan, measured by an uncounted run of each workload first. The tracker's time is its step after the second epoch; N is the probe size (prompts for tokens).")
    record = {"benchmark": "bench_layout", "environment": environment(), "baseline": args.baseline,
              "tolerance": TOLERANCE, "results": results}
    print(table)
    print("wrote", write("bench_layout_cpu", record, table, args.out or RESULTS))


if __name__ == "__main__":
    main()
