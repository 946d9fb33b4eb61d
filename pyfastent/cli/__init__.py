"""The ``pyfastent`` command: ``demo`` (the main job), ``sweep``, ``similarity``, ``tokens``, ``reproduce``
and ``info``.

A mistake on the command line or in its inputs ends in one line naming what
to fix and exit code 2, never a traceback (``--debug`` shows it). Every
input, and whether ``--out`` can be written, is checked before any
computation and before the user's module is imported.

Each subcommand imports the rooms it runs inside its function, so that
``pyfastent --version``, ``info`` and argument errors answer without loading
``nn``, matplotlib or scikit-learn (``tests/test_cli_plot.py`` checks it).
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings

import torch

import pyfastent
from pyfastent.cli.checks import UsageError, one_line, writable_dir
from pyfastent.cli import similarity
from pyfastent.cli.demo import run_demo
from pyfastent.cli.sweep import launched_ranks, run_sweep
from pyfastent.cli.tokens import run_tokens
from pyfastent.distributed import RankFailed

__all__ = ["main", "UsageError"]


def main(argv=None) -> int:
    parser, commands = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # the subcommand's usage, not the top level's
        commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    rank = os.environ.get("RANK", "0")
    speaks = rank == "0"  # under torchrun only rank 0 prints, errors included; warnings say their rank
    who = args.command if speaks else f"{args.command} (rank {rank})"
    try:
        if launched_ranks() > 1 and args.command != "sweep":
            raise UsageError(f"only `pyfastent sweep` runs under torchrun; run `pyfastent {args.command}` alone")
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, category, *rest, **kw: print(
                f"pyfastent {who}: {category.__name__}: {message}", file=sys.stderr)
            code = args.run(args)
        sys.stdout.flush()  # a closed pipe surfaces here, inside the handler
        return code
    except BrokenPipeError:  # `pyfastent info | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"pyfastent {args.command}: interrupted", file=sys.stderr)
        return 130
    except (UsageError, ValueError, FileNotFoundError, ImportError, MemoryError, OSError, RankFailed,
            torch.distributed.DistError) as exc:
        if args.debug:
            traceback.print_exc()
        if speaks:
            print(f"pyfastent {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2


def _parser():
    parser = argparse.ArgumentParser(prog="pyfastent", description=pyfastent.__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"pyfastent {pyfastent.__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {}

    demo = commands["demo"] = sub.add_parser(
        "demo", parents=[common], help="train a small CNN on the built-in digits and track its information plane")
    demo.add_argument("--out", default="pyfastent-demo", help="output directory (default: ./pyfastent-demo)")
    demo.add_argument("--epochs", type=int, default=20, help="training epochs (default: 20)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the data split, initialization and order")
    demo.add_argument("--batch-size", type=int, default=32)
    demo.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.set_defaults(run=run_demo)

    sweep = commands["sweep"] = sub.add_parser(
        "sweep", parents=[common], help="H(T), I(X;T), I(T;Y) of every layer of your model on your data")
    sweep.add_argument("--model", required=True, help="module:factory, a callable returning the nn.Module")
    sweep.add_argument("--data", required=True, help=".npz file with arrays x (inputs) and y (integer labels)")
    sweep.add_argument("--weights", help="a state_dict saved with torch.save, loaded into the model")
    sweep.add_argument("--layers", help="comma-separated module names (default: every leaf layer)")
    sweep.add_argument("--estimators", default="renyi,logdet", help="comma-separated: renyi, logdet, discrete")
    sweep.add_argument("--channels", action="store_true", help="conv maps per channel (multivariate Rényi)")
    sweep.add_argument("--pooling", choices=("auto", "mean", "first", "last", "none"), default="auto",
                       help="a transformer block's [N, T, D] output as one vector per sample (default auto: the "
                            "mean over tokens for models with repeated blocks)")
    sweep.add_argument("--method", choices=("auto", "exact", "lanczos"), default="auto",
                       help="Rényi spectra: exact, randomized (lanczos), or auto: exact up to N = 4096")
    sweep.add_argument("--seed", type=int, default=0, help="torch seed set before the model is built")
    sweep.add_argument("--batch-size", type=int,
                       help="probe samples per forward pass (default: all at once when that fits the budget)")
    sweep.add_argument("--memory-budget",
                       help="memory the sweep may hold, e.g. 4GB (default: 40%% of what is free); layers that do "
                            "not fit together are measured in several passes")
    sweep.add_argument("--out", default="sweep.csv", help="CSV file to write (default: sweep.csv)")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.add_argument("--backend", choices=("gloo", "nccl"),
                       help="under torchrun: the process group's backend (default: nccl with CUDA, else gloo)")
    sweep.add_argument("--timeout", type=float, default=600.0,
                       help="under torchrun: seconds a rank waits for the others before giving up (default: 600)")
    sweep.set_defaults(run=run_sweep)

    commands["similarity"] = similarity.add_parser(sub, common)

    tokens = commands["tokens"] = sub.add_parser(
        "tokens", parents=[common],
        help="token-level entropies of every layer of a language model over the lines of a text file")
    tokens.add_argument("--model", required=True,
                        help="a directory written by save_pretrained (model and tokenizer, loaded offline), or "
                             "module:factory, a callable returning (model, tokenizer)")
    tokens.add_argument("--text", required=True, help="UTF-8 text file: one prompt per non-empty line")
    tokens.add_argument("--out", default="pyfastent-tokens", help="output directory (default: ./pyfastent-tokens)")
    tokens.add_argument("--batch-size", type=int, default=16, help="prompts per forward pass (default: 16)")
    tokens.add_argument("--max-length", type=int,
                        help="truncate prompts to this many tokens (default: the model's maximum positions)")
    tokens.add_argument("--alpha", type=float, default=1.0, help="order of the entropies (default: 1)")
    tokens.add_argument("--normalizations", default="raw,maxEntropy",
                        help="comma-separated, from raw, logN, logD, maxEntropy, logNlogD (default: raw,maxEntropy)")
    tokens.add_argument("--exclude-special", action="store_true", help="leave special tokens ([CLS], BOS...) out")
    views = tokens.add_mutually_exclusive_group()
    views.add_argument("--views", help="UTF-8 file with the views of each prompt for DiME, LiDAR and InfoNCE: one line "
                                       "per prompt of --text, its views (at least 2) separated by tabs")
    views.add_argument("--augment", type=int, metavar="N",
                       help="make N views of each prompt by pyfastent's seeded random edits (split words, random "
                            "characters, keyboard typos) for DiME, LiDAR and InfoNCE")
    tokens.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present, else cpu")
    tokens.add_argument("--no-progress", action="store_true", help="no progress bar")
    tokens.set_defaults(run=run_tokens)

    reproduce = commands["reproduce"] = sub.add_parser(
        "reproduce", parents=[common], help="one seed paper's analysis on bundled data: pictures, CSV, report.md")
    reproduce.add_argument("name", nargs="?", help="which paper (see --list)")
    reproduce.add_argument("--list", action="store_true", help="name the reproductions and their papers")
    reproduce.add_argument("--out", help="output directory (default: ./reproduce-NAME)")
    reproduce.add_argument("--quick", action="store_true", help="a smaller run: minutes on a 2-core CPU")
    reproduce.add_argument("--seed", type=int, default=0, help="seed of the data split, networks and tests")
    reproduce.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present, else cpu")
    reproduce.add_argument("--no-progress", action="store_true", help="no progress bar")
    reproduce.set_defaults(run=run_reproduce)

    info = commands["info"] = sub.add_parser("info", parents=[common], help="which backend is in use, and why")
    info.set_defaults(run=run_info)
    return parser, commands


BATCH_WORDS = {"1": "one at a time", "few": "a few at once", "many": "many at once"}


def run_info(args) -> int:
    info = pyfastent.backend_info()
    policy = info.pop("auto_kernels")
    plan = info.pop("eigensolver")
    for key, value in info.items():
        print(f"{key:18s} {value}")
    print(f"{'eigensolver plan':18s} {plan['source']} (drivers: {', '.join(plan['drivers'])}; below "
          f"{plan['smallest_class']}: torch)")
    for name, entry in plan["classes"].items():
        size, kind = name.split("/")
        timings = ", ".join(f"{d} {s * 1e3:.3g} ms" for d, s in sorted(entry["median_s"].items(), key=lambda kv: kv[1]))
        print(f"  n <= {size:<6} {BATCH_WORDS[kind]:14s} {entry['driver']:10s} {timings}")
    if plan["measuring"]:
        print(f"  {'measuring':18s} {', '.join(plan['measuring'])}")
    if not policy:
        print(f"{'auto policy':18s} no kernel validated on a GPU yet: 'auto' runs every op on torch")
    else:
        print(f"{'auto policy':18s} op, shapes, evidence:")
        for row in policy:
            print(f"  {row['op']:20s} {row['shapes']:28s} {row['evidence']}")
    return 0


def run_reproduce(args) -> int:
    from pyfastent import reproduce

    if args.list:
        for name in reproduce.REPRODUCTIONS:
            paper = reproduce.module(name)
            print(f"{name:18s} {paper.TITLE}\n{'':18s} {paper.PAPER}")
        return 0
    if args.name is None:
        raise UsageError(f"name the reproduction: one of {', '.join(reproduce.REPRODUCTIONS)} (or --list)")
    if args.name not in reproduce.REPRODUCTIONS:
        raise UsageError(f"unknown reproduction {args.name!r}: one of {', '.join(reproduce.REPRODUCTIONS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device here")
    out = writable_dir("--out", args.out or f"reproduce-{args.name}")
    report = reproduce.run(args.name, out, quick=args.quick, seed=args.seed, device=args.device,
                           progress=False if args.no_progress else None)
    print(f"{report.title}\nverdict: {report.verdict}. {report.reason}")
    print(f"wrote report.md, {report.table.name if report.table else ''} and "
          f"{', '.join(p.name for p in report.figures)} in {out}")
    return 0
