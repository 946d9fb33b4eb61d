"""``pyfastent tokens``: token-level entropies of every layer of a language
model, loaded offline from a save_pretrained directory or a factory. ``nn``,
matplotlib and transformers are imported when it runs (``pyfastent.cli``
says why)."""
from __future__ import annotations

import time
import traceback
from pathlib import Path

import torch

from pyfastent._text import text_table
from pyfastent.cli.checks import UsageError, call_factory, one_line, positive, writable_dir

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
        raise UsageError(f"{flag} {path!r} is not UTF-8 text ({one_line(exc)})") from None
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
        raise UsageError(f"--model {str(path)!r}: its {CONFIG_FILE} could not be read: {one_line(exc)}") from None
    from pyfastent.nn.prompts import config_positions

    check_max_length(max_length, config_positions(config))
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = transformers.AutoModel.from_pretrained(path, config=config, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - an unreadable or partial directory
        if debug:
            traceback.print_exc()
        raise UsageError(f"--model {str(path)!r} could not be loaded with transformers: "
                         f"{type(exc).__name__}: {one_line(exc)}") from None
    return model, tokenizer


def check_tokenizer(tokenizer, prompt: str, spec: str) -> None:
    """A tokenizer that turns the first prompt into no tokens at all is
    empty (transformers builds one quietly from a directory without a vocabulary)."""
    try:
        ids = tokenizer([prompt])["input_ids"][0]
    except Exception as exc:  # noqa: BLE001 - the user's tokenizer failed
        raise UsageError(f"--model {spec!r}: its tokenizer failed on the first prompt: {one_line(exc)}") from None
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
