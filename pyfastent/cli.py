"""The ``pyfastent`` command: ``demo`` (the main job), ``sweep``, ``tokens``, ``reproduce`` and ``info``.

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
import contextlib
import datetime
import importlib
import math
import os
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

import pyfastent
from pyfastent import Discrete, LogDet, Renyi
from pyfastent._text import markdown_table, text_table
from pyfastent.distributed import RankFailed
from pyfastent.estimators.base import SATURATION

ESTIMATORS = {"renyi": Renyi, "logdet": LogDet, "discrete": Discrete}  # LogDet: β = 100·d of X


def _estimator(name: str, method: str):
    return Renyi(method=method) if name == "renyi" else ESTIMATORS[name]()


class UsageError(Exception):
    """A mistake on the command line or in its inputs: one line, exit code 2."""


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
            print(f"pyfastent {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 400 else text[:397] + "..."


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


# ---- info -------------------------------------------------------------------

def run_info(args) -> int:
    info = pyfastent.backend_info()
    policy = info.pop("auto_kernels")
    plan = info.pop("eigensolver")
    for key, value in info.items():
        print(f"{key:18s} {value}")
    print(f"{'eigensolver plan':18s} {plan['source']} (drivers: {', '.join(plan['drivers'])}; below "
          f"{plan['smallest_class']}: torch)")
    for size, entry in plan["classes"].items():
        timings = ", ".join(f"{d} {s * 1e3:.3g} ms" for d, s in sorted(entry["median_s"].items(), key=lambda kv: kv[1]))
        print(f"  n <= {size:<13} {entry['driver']:10s} {timings}")
    if plan["measuring"]:
        print(f"  {'measuring':18s} n <= {', '.join(map(str, plan['measuring']))}")
    if not policy:
        print(f"{'auto policy':18s} no kernel validated on a GPU yet: 'auto' runs every op on torch")
    else:
        print(f"{'auto policy':18s} op, shapes, evidence:")
        for row in policy:
            print(f"  {row['op']:20s} {row['shapes']:28s} {row['evidence']}")
    return 0


# ---- checks shared by the commands -------------------------------------------

def positive(flag: str, value, kind=int):
    if not value > 0:
        raise UsageError(f"{flag} must be a positive {'integer' if kind is int else 'number'}, got {value}")
    return value


def writable_dir(flag: str, path: str, shown: str | None = None) -> Path:
    """``path`` as a directory that exists (made if needed) and can be written;
    errors name ``shown`` (the flag's value) or ``path``."""
    out, shown = Path(path), shown or path
    if out.exists() and not out.is_dir():
        raise UsageError(f"{flag} {shown!r}: {str(out)!r} exists and is not a directory"
                         if shown != path else f"{flag} {path!r} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise UsageError(f"{flag} {shown!r} cannot be written: {exc.strerror or exc}") from None
    return out


def writable_file(flag: str, path: str) -> Path:
    out = Path(path)
    if out.is_dir():
        raise UsageError(f"{flag} {path!r} is a directory; give a file name")
    writable_dir(flag, str(out.parent), shown=path)
    return out


def load_arrays(path: str) -> tuple[np.ndarray, np.ndarray]:
    """x and y of an .npz file, checked: x real numbers of shape (N, ...),
    y integer class labels of shape (N,)."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--data {path!r} does not exist" if not file.exists() else f"--data {path!r} is not a file")
    if file.stat().st_size == 0:
        raise UsageError(f"--data {path!r} is empty")
    try:
        archive = np.load(file, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise UsageError(f"--data {path!r} holds a single array (.npy); save x and y together with "
                             "numpy.savez(path, x=x, y=y)")
        with archive:
            missing = [k for k in ("x", "y") if k not in archive.files]
            if missing:
                raise UsageError(f"--data {path!r} has no array named {', '.join(missing)} "
                                 f"(it has {', '.join(archive.files) or 'none'})")
            x, y = archive["x"], archive["y"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise UsageError(f"--data {path!r} is not a readable .npz file ({_one_line(exc)})") from None
    if x.dtype.kind not in "biuf":
        raise UsageError(f"x must hold real numbers, got dtype {x.dtype}")
    if x.ndim < 2:
        raise UsageError(f"x must have shape (N, features...), one row per sample; got shape {x.shape}")
    if x.shape[0] < 2:
        raise UsageError(f"x needs at least 2 samples, got {x.shape[0]}")
    if y.dtype.kind not in "biu" or y.ndim != 1:
        raise UsageError(f"y must be integer class labels of shape (N,), got {y.dtype} of shape {y.shape}"
                         + (" (one-hot? pass y.argmax(1))" if y.ndim == 2 else ""))
    if len(y) != len(x):
        raise UsageError(f"y has {len(y)} labels but x has {len(x)} samples")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise UsageError(f"x contains {int((~np.isfinite(x)).sum())} non-finite values (NaN or inf)")
    return x, y


def load_weights(path: str) -> dict:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--weights {path!r} does not exist")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UsageError(f"--weights {path!r} is not a state_dict saved with torch.save ({_one_line(exc)})") from None
    if not isinstance(state, dict):
        raise UsageError(f"--weights {path!r} holds a {type(state).__name__}, not a state_dict")
    return state


def build_model(spec: str, debug: bool):
    """Import module:factory and call it; its errors become one line."""
    model = call_factory(spec, debug)
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"--model: {spec} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def call_factory(spec: str, debug: bool):
    """What module:factory returns; import and call errors become one line."""
    module_name, sep, factory_name = spec.partition(":")
    if not sep or not module_name or not factory_name:
        raise UsageError(f"--model must look like module:factory, got {spec!r}")
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--model: cannot import module {module_name!r} ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - the user's module failed while importing
        if debug:
            traceback.print_exc()
        raise UsageError(f"--model: importing {module_name!r} raised {type(exc).__name__}: {_one_line(exc)}") from None
    finally:
        sys.path.pop(0)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise UsageError(f"--model: {module_name!r} has no callable {factory_name!r}")
    try:
        return factory()
    except Exception as exc:  # noqa: BLE001 - the user's factory failed
        if debug:
            traceback.print_exc()
        raise UsageError(f"--model: {spec}() raised {type(exc).__name__}: {_one_line(exc)}") from None


def check_inputs(model: torch.nn.Module, x: np.ndarray) -> None:
    """Check on two samples that the model accepts x, converted as the sweep
    will convert it (floating data to the model's dtype and device, integer
    data only moved)."""
    from pyfastent.nn.inputs import parameter_dtype_device, to_model

    dtype, device = parameter_dtype_device(model)
    try:
        with torch.no_grad():
            model(to_model(torch.as_tensor(x[:2]), dtype, device))
    except Exception as exc:  # noqa: BLE001 - a shape the model rejects
        hint = (" (integer inputs reach the model unconverted, as token ids must; save x as floats if the model "
                "takes floats)" if x.dtype.kind in "biu" else "")
        raise UsageError(f"x of shape {tuple(x.shape)} does not fit the model: {type(exc).__name__}: "
                         f"{_one_line(exc)}{hint}") from None


# ---- sweep ------------------------------------------------------------------

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
    state = load_weights(args.weights) if args.weights else None

    torch.manual_seed(args.seed)
    model = build_model(args.model, args.debug)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise UsageError(f"--weights {args.weights!r} does not fit the model: {_one_line(exc)}") from None
    model.eval()
    if device is not None:
        model.to(device)
    layers = [n.strip() for n in args.layers.split(",") if n.strip()] if args.layers else None
    select_layers(model, layers)  # unknown names are an error now, not after the forward pass
    if args.batch_size is not None:
        positive("--batch-size", args.batch_size)
    budget = _memory_budget(args.memory_budget)
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


def _memory_budget(text: str | None):
    """--memory-budget as pyfastent.nn.stream.resolve_budget takes it; a bad value is a one-line error."""
    from pyfastent.nn.stream import resolve_budget

    if text is None:
        return None
    try:
        return resolve_budget(text, torch.device("cpu"))
    except ValueError:
        raise UsageError(f"--memory-budget must be a size such as 4GB or 512MiB, got {text!r}") from None


# ---- tokens -----------------------------------------------------------------

def run_tokens(args) -> int:
    from pyfastent import plot
    from pyfastent.nn import token_profile
    from pyfastent.nn.prompts import model_positions
    from pyfastent.token_measures import NORMALIZATIONS

    positive("--batch-size", args.batch_size)
    positive("--alpha", args.alpha, float)
    if args.max_length is not None:
        positive("--max-length", args.max_length)
    norms = [n.strip() for n in args.normalizations.split(",") if n.strip()]
    if not norms or any(n not in NORMALIZATIONS for n in norms):
        raise UsageError(f"--normalizations must be from {', '.join(NORMALIZATIONS)}, got {args.normalizations!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device here")
    if args.augment is not None and args.augment < 2:
        raise UsageError(f"--augment must be at least 2 (views per prompt), got {args.augment}")
    out = writable_dir("--out", args.out)
    prompts = read_prompts(args.text)
    views = read_views(args.views, len(prompts)) if args.views else None
    if args.augment is not None:
        from pyfastent.nn.prompts import augmentations

        views = augmentations(args.augment)
    model, tokenizer = load_language_model(args.model, args.debug, args.max_length)
    check_tokenizer(tokenizer, prompts[0], args.model)
    positions = model_positions(model)
    check_max_length(args.max_length, positions)
    model.to(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    start = time.perf_counter()
    profile = token_profile(model, prompts, tokenizer, alpha=args.alpha, normalizations=norms,
                            batch_size=args.batch_size, max_length=args.max_length or positions,
                            exclude_special=args.exclude_special, progress=False if args.no_progress else None,
                            views=views)
    seconds = time.perf_counter() - start
    table = profile.save(out / "tokens.csv")
    image = plot.token_curves(profile, out / "tokens.png")
    print(text_table(_token_summary(profile, norms[0])))
    points = profile.metadata["points"]
    print(f"\n{len(prompts)} prompts in {seconds:.1f} s; layer 0 is {points[next(iter(points))]}, the last "
          f"{points[list(points)[-1]]}")
    print(f"wrote {table}, {table.with_suffix('.meta.json').name} and {image.name} in {out}")
    return 0


def read_prompts(path: str, flag: str = "--text") -> list:
    """The non-empty lines of a UTF-8 text file, stripped."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{flag} {path!r} does not exist" if not file.exists() else f"{flag} {path!r} is not a file")
    try:
        lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as exc:
        raise UsageError(f"{flag} {path!r} is not UTF-8 text ({_one_line(exc)})") from None
    prompts = [line for line in lines if line]
    if not prompts:
        raise UsageError(f"{flag} {path!r} has no non-empty lines")
    return prompts


# What save_pretrained writes: a directory needs one of each group.
CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model", "tekken.json")


def read_views(path: str, prompts: int) -> list:
    """The views of each prompt: one line per prompt, views separated by tabs."""
    lines = read_prompts(path, "--views")
    groups = [[view.strip() for view in line.split("\t") if view.strip()] for line in lines]
    if len(groups) != prompts:
        raise UsageError(f"--views {path!r} has {len(groups)} non-empty lines but --text has {prompts} prompts: one "
                         "line of views per prompt")
    sizes = sorted({len(g) for g in groups})
    if sizes[0] < 2 or len(sizes) > 1:
        raise UsageError(f"--views {path!r}: every line needs the same number (at least 2) of tab-separated views, "
                         f"found {', '.join(map(str, sizes))}")
    return groups


def check_max_length(max_length: int | None, positions: int | None) -> None:
    if max_length is not None and positions is not None and max_length > positions:
        raise UsageError(f"--max-length {max_length} is above the {positions} positions the model's configuration "
                         "allows")


def load_language_model(spec: str, debug: bool, max_length: int | None = None):
    """(model, tokenizer) from a save_pretrained directory (offline) or
    module:factory; what was looked for and not found is said in one line,
    and ``max_length`` is checked against a directory's configuration
    before its weights are read."""
    path = Path(spec)
    if path.is_dir():
        return _load_saved(path, debug, max_length)
    if path.exists():
        raise UsageError(f"--model {spec!r} is a file; give a directory written by save_pretrained, or "
                         "module:factory")
    if ":" not in spec:
        raise UsageError(f"--model {spec!r}: no such directory (--model takes a directory written by "
                         "save_pretrained, or module:factory)")
    made = call_factory(spec, debug)
    if not (isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], torch.nn.Module)
            and callable(made[1])):
        raise UsageError(f"--model: {spec} must return (model, tokenizer), got {type(made).__name__}")
    return made


def _load_saved(path: Path, debug: bool, max_length: int | None):
    """The model and tokenizer of a save_pretrained directory, after
    checking that it holds both."""
    found = sorted(p.name for p in path.iterdir())
    listing = ", ".join(found[:8]) + (", ..." if len(found) > 8 else "") if found else "nothing"
    if not (path / CONFIG_FILE).is_file():
        raise UsageError(f"--model {str(path)!r} has no {CONFIG_FILE}, so it holds no model saved with "
                         f"save_pretrained (it holds {listing})")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise UsageError(f"--model {str(path)!r} has {CONFIG_FILE} but no weights (looked for "
                         f"{', '.join(WEIGHT_FILES)}): save the model with model.save_pretrained(DIR)")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise UsageError(f"--model {str(path)!r} has no tokenizer files (looked for {', '.join(TOKENIZER_FILES)}): "
                         "save the tokenizer beside the model with tokenizer.save_pretrained(DIR)")
    try:
        import transformers
    except ImportError:
        raise UsageError('--model: loading a directory needs transformers: pip install "pyfastent[transformers]"') \
            from None
    try:
        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - an unreadable configuration
        raise UsageError(f"--model {str(path)!r}: its {CONFIG_FILE} could not be read: {_one_line(exc)}") from None
    from pyfastent.nn.prompts import config_positions

    check_max_length(max_length, config_positions(config))
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = transformers.AutoModel.from_pretrained(path, config=config, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - an unreadable or partial directory
        if debug:
            traceback.print_exc()
        raise UsageError(f"--model {str(path)!r} could not be loaded with transformers: "
                         f"{type(exc).__name__}: {_one_line(exc)}") from None
    return model, tokenizer


def check_tokenizer(tokenizer, prompt: str, spec: str) -> None:
    """A tokenizer that turns the first prompt into no tokens at all is
    empty (transformers builds one quietly from a directory without a vocabulary)."""
    try:
        ids = tokenizer([prompt])["input_ids"][0]
    except Exception as exc:  # noqa: BLE001 - the user's tokenizer failed
        raise UsageError(f"--model {spec!r}: its tokenizer failed on the first prompt: {_one_line(exc)}") from None
    if len(ids) == 0:
        raise UsageError(f"--model {spec!r}: its tokenizer turns the first prompt into no tokens (an empty "
                         "vocabulary); save a trained tokenizer beside the model with tokenizer.save_pretrained(DIR)")


def _token_summary(profile, norm: str) -> list:
    """Per layer: the mean of each measure over prompts (± s.e. where it
    has one), entropies in ``norm``."""
    out = {}
    columns = (("prompt_entropy", norm, "prompt entropy"), ("effective_rank", None, "effective rank"),
               ("token_logdet", None, "logdet"), ("curvature", None, "curvature"),
               ("dataset_entropy", norm, "dataset entropy"), ("dime", norm, "DiME"), ("lidar", norm, "LiDAR"),
               ("infonce", None, "InfoNCE"))
    for measure, wanted, header in columns:
        for r in profile.values(measure, wanted):
            row = out.setdefault(r["layer"], {"layer": r["layer"], "name": r["name"]})
            shown = f"{r['mean']:.4g}" + (f" ± {r['stderr']:.2g}" if r["stderr"] is not None else "")
            row[header if r["units"] == "rank" else f"{header} ({r['units']})"] = shown
    return list(out.values())


# ---- reproduce --------------------------------------------------------------

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


# ---- demo -------------------------------------------------------------------

def run_demo(args) -> int:
    from pyfastent import data, models, plot
    from pyfastent.nn import InformationPlane, LayerTE
    from pyfastent.nn.train import train_classifier

    positive("--epochs", args.epochs)
    positive("--batch-size", args.batch_size)
    positive("--lr", args.lr, float)
    out = writable_dir("--out", args.out)
    log = out / "information_plane.jsonl"
    log.unlink(missing_ok=True)  # a new run of the demo replaces the last one's files

    torch.manual_seed(args.seed)
    split = data.digits(seed=args.seed)
    net = models.mnist_cnn(in_size=8)
    tracker = InformationPlane(net, split.x_test, split.y_test, sigma_smoothing=0.9,
                               transfer_entropy=LayerTE(window=1000, seed=args.seed), log=log, progress=False)
    start = time.perf_counter()
    history = train_classifier(
        net, split, args.epochs, args.batch_size, args.lr, seed=args.seed,
        on_epoch=lambda s: tracker.step(epoch=s.epoch, loss=s.loss, test_accuracy=s.test_accuracy),
        progress=False if args.no_progress else None)
    tracker.close()
    seconds = time.perf_counter() - start
    accuracy = history[-1].test_accuracy

    table_path = tracker.save(out / "information_plane.csv")
    images = [plot.information_plane(tracker, out / "information_plane.png"),
              plot.layer_curves(tracker, out / "layer_curves.png"),
              plot.te_plane(tracker, out / "te_plane.png")]
    summary = _summary_rows(tracker)
    (out / "report.md").write_text(_report(args, tracker, summary, images, seconds))
    print(text_table(summary))
    print(f"\nfinal test accuracy {accuracy:.3f}; {args.epochs} epochs in {seconds:.0f} s")
    print(f"wrote {log.name} (written as it went), {table_path.name}, {', '.join(p.name for p in images)} "
          f"and report.md in {out}")
    return 0


def _summary_rows(tracker) -> list:
    """Last step's I(X;T) and I(T;Y) per layer and estimator, plus layer TE."""
    from pyfastent.nn.plane import TE_ESTIMATOR

    last = max(r["step"] for r in tracker.rows)
    values = {(r["layer"], r["estimator"], r["quantity"]): r["value"] for r in tracker.rows if r["step"] == last}
    rows = []
    for layer in tracker.names:
        row = {"layer": layer}
        for est in tracker.table.metadata["estimators"]:
            row[f"{est} I(X;T)"] = values.get((layer, est, "i_xt"))
            row[f"{est} I(T;Y)"] = values.get((layer, est, "i_ty"))
        row["TE in (mean)"] = values.get((layer, TE_ESTIMATOR, "te_in_mean"))
        rows.append(row)
    return rows


def _report(args, tracker, summary, images, seconds) -> str:
    from pyfastent.nn import dpi_pairs, dpi_violations

    last = max(r["step"] for r in tracker.rows)
    wide: dict = {}
    for r in tracker.rows:
        if r["step"] == last and r["quantity"] in ("i_xt", "i_ty"):
            wide.setdefault((r["estimator"], r["layer"]), {"estimator": r["estimator"], "layer": r["layer"]})[
                r["quantity"]] = r["value"]
    pairs, how = dpi_pairs(tracker.model, tracker.names)
    violations = dpi_violations(list(wide.values()), {e.label: e.dpi_slack for e in tracker.estimators}, pairs)
    dpi = "\n".join(f"- {v['estimator']}: {v['quantity']} rises from {v['earlier']} to {v['later']} by "
                    f"{v['size']:.4g} bits" for v in violations) or "- none"
    meta = tracker.table.metadata
    ceiling = math.log2(SATURATION * meta["probe_size"])
    saturated = sorted({(r["layer"], r["epoch"]) for r in tracker.rows if r["estimator"].startswith("renyi")
                        and r["quantity"] == "h_t" and r["value"] >= ceiling})
    at_ceiling = (f"Rényi H(T) reached log2(0.9·N) = {ceiling:.2f} bits (an effective {SATURATION:.0%} of the "
                  f"{meta['probe_size']} samples distinct) in {len(saturated)} (layer, epoch) pairs, e.g. "
                  + ", ".join(f"{layer} at epoch {epoch}" for layer, epoch in saturated[:6])
                  + ". There the kNN width is far below the spread of the activations and I(X;T), I(T;Y) "
                  "reflect N more than the layer." if saturated else "No Rényi H(T) reached log2(0.9·N).")
    pictures = "\n\n".join(f"![{p.stem}]({p.name})" for p in images)
    return f"""# pyfastent demo

Small CNN (`pyfastent.models.mnist_cnn`) trained for {args.epochs} epochs on scikit-learn's digits
(seed {args.seed}); information plane on the {meta['probe_size']} held-out images, every epoch.
Estimators: {', '.join(f'`{e}`' for e in meta['estimators'])}; binary layer transfer entropy
over the last {meta['transfer_entropy']['window']} training samples. Values in bits. Run time {seconds:.0f} s.

## Last epoch

{markdown_table(summary)}

## Data processing inequality (last epoch)

For each layer and the layer it is computed from alone (pairs from the {how}), the true I(X;T) and
I(T;Y) cannot rise. Estimates can: every layer gets its own kernel width (Rényi) and LogDet's β sets
its scale per layer. Rises beyond each estimator's round-off slack:

{dpi}

## Estimates at their ceiling

{at_ceiling}

## Pictures

{pictures}

Full table: `information_plane.csv` (with `information_plane.meta.json`) and the log
`information_plane.jsonl`, written step by step; read either with
`pyfastent.nn.InformationPlane.load(path)`.
"""


if __name__ == "__main__":
    sys.exit(main())
