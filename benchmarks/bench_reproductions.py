"""The paper-sized reproductions (``pyfastent reproduce NAME``, seed 0) as
a user runs them: each one's verdict, wall time and time per part.

Correctness is the test suite's (the verdict rules branch by branch, the
tensor-kernels width procedure against a hand computation); this script
records what the full runs give on the machine at hand. Each report, its
CSV and pictures go to ``results/reproductions/NAME/``.
Usage: ``python benchmarks/bench_reproductions.py [NAME ...]``.
"""
from __future__ import annotations

import json
import sys
import time

import pyfastent.reproduce as reproduce
from _record import RESULTS, environment, write


def main(names: list) -> None:
    previous = RESULTS / "bench_reproductions_cpu.json"
    rows = {r["name"]: r for r in json.loads(previous.read_text())["results"]} if previous.exists() else {}
    for name in names:
        out = RESULTS / "reproductions" / name
        started = time.perf_counter()
        report = reproduce.run(name, out, quick=False, seed=0, device="cpu", progress=False)
        seconds = time.perf_counter() - started
        rows[name] = {"name": name, "verdict": report.verdict, "reason": report.reason, "seconds": round(seconds, 1),
                      "time_per_part": report.settings.get("time_per_part"), "report": f"reproductions/{name}/report.md",
                      "environment": environment()}
        print(f"{name}: {report.verdict} in {seconds / 60:.1f} min", flush=True)
    ordered = [rows[n] for n in reproduce.REPRODUCTIONS if n in rows]
    lines = ["| NAME | verdict (paper-sized) | minutes | time per part | measured at commit |",
             "|---|---|---|---|---|"]
    lines += [f"| `{r['name']}` | {r['verdict']} | {r['seconds'] / 60:.1f} | {r['time_per_part'] or '-'} | "
              f"{r['environment']['commit']} |" for r in ordered]
    write("bench_reproductions_cpu", {"benchmark": "reproductions", "environment": environment(), "results": ordered},
          "\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:] or list(reproduce.REPRODUCTIONS))
