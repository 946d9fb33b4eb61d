"""A layer sweep split across processes with torch.distributed.

The sweep of ``bench_sweep.py`` (VGG-16 with batch norm at width 1/4, every
leaf layer, Rényi and LogDet, 512 CIFAR-sized probe samples) run by 1 and by
2 processes with the gloo backend, one thread each, spawned from here on
this machine. Correctness first: every rank's rows must equal the
one-process rows exactly. Then the median wall time of the sweep (timed
between barriers, the model and data already built), the speedup and the
parallel efficiency t₁ / (P·t_P).

Writes JSON and Markdown to ``benchmarks/results/`` (or ``--out``). Usage:
``python benchmarks/bench_distributed.py [--ranks 1,2] [--samples 512] [--repeats 3]``.
"""
from __future__ import annotations

import argparse
import datetime
import os
import pickle
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pyfastent.nn import default_estimators, layer_sweep
from _record import RESULTS, environment, write
from bench_sweep import vgg_probe


def _rank(rank: int, ranks: int, port: int, samples: int, repeats: int, folder: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    if ranks > 1:
        dist.init_process_group("gloo", rank=rank, world_size=ranks, timeout=datetime.timedelta(minutes=10))
    net, x, y = vgg_probe(samples)
    seconds, rows = [], None
    for _ in range(repeats + 1):  # the first is a warm-up
        estimators = default_estimators(x)  # new estimators: nothing remembered from the last sweep
        if ranks > 1:
            dist.barrier()
        start = time.perf_counter()
        rows = layer_sweep(net, x, y, estimators=estimators, progress=False).rows
        if ranks > 1:
            dist.barrier()
        seconds.append(time.perf_counter() - start)
    with open(Path(folder) / f"{ranks}-{rank}.pkl", "wb") as f:
        pickle.dump({"rows": rows, "seconds": seconds[1:]}, f)
    if ranks > 1:
        dist.destroy_process_group()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(ranks: int, samples: int, repeats: int, folder: str) -> list:
    mp.start_processes(_rank, args=(ranks, _port(), samples, repeats, folder), nprocs=ranks, start_method="spawn")
    out = []
    for rank in range(ranks):
        with open(Path(folder) / f"{ranks}-{rank}.pkl", "rb") as f:
            out.append(pickle.load(f))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="1,2", help="comma-separated process counts; the first is the baseline")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    counts = [int(r) for r in args.ranks.split(",")]
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        for ranks in counts:
            runs[ranks] = run(ranks, args.samples, args.repeats, folder)
    reference = runs[counts[0]][0]["rows"]
    for ranks, per_rank in runs.items():
        for rank, result in enumerate(per_rank):
            if result["rows"] != reference:
                raise SystemExit(f"{ranks} processes: rank {rank}'s rows differ from the one-process rows")
    baseline = statistics.median(runs[counts[0]][0]["seconds"]) * counts[0]
    cases = []
    for ranks, per_rank in runs.items():
        t = statistics.median(per_rank[0]["seconds"])
        cases.append({"processes": ranks, "threads_per_process": 1, "seconds": t,
                      "speedup": baseline / t, "efficiency": baseline / (ranks * t)})
    record = {"benchmark": "bench_distributed", "environment": environment(),
              "workload": f"layer_sweep of vgg16_bn(width=0.25), {args.samples} samples, every leaf layer "
                          f"({len({r['layer'] for r in reference})}), Renyi and LogDet (β = 100·d)",
              "backend": "gloo", "repeats": args.repeats, "rows_identical": True, "cases": cases}
    lines = ["| processes | sweep (s) | speedup | parallel efficiency |", "|---|---|---|---|"]
    lines += [f"| {c['processes']} | {c['seconds']:.2f} | {c['speedup']:.2f}x | {c['efficiency']:.0%} |"
              for c in cases]
    table = (f"{record['workload']}; gloo, one thread per process, median of {args.repeats}. Every rank's rows "
             f"equal the one-process rows exactly.\n\n" + "\n".join(lines) + "\n")
    print(table)
    write("bench_distributed_cpu", record, table, args.out)


if __name__ == "__main__":
    main()
