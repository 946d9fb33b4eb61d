"""Checks shared by the commands: each turns a mistake in an argument or an
input file into a :class:`UsageError` of one line naming the flag. Like every
command module, it imports ``nn`` only inside the function that needs it
(``pyfastent.cli`` says why)."""
from __future__ import annotations

import importlib
import sys
import tempfile
import traceback
import zipfile
from pathlib import Path

import numpy as np
import torch


class UsageError(Exception):
    """A mistake on the command line or in its inputs: one line, exit code 2."""


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 400 else text[:397] + "..."


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


def load_arrays(path: str, labels: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """x and y of an .npz file, checked: x real numbers of shape (N, ...),
    y integer class labels of shape (N,) (``labels=False``: y is neither
    needed nor read, and ``None`` is returned for it)."""
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
            missing = [k for k in (("x", "y") if labels else ("x",)) if k not in archive.files]
            if missing:
                raise UsageError(f"--data {path!r} has no array named {', '.join(missing)} "
                                 f"(it has {', '.join(archive.files) or 'none'})")
            x, y = archive["x"], archive["y"] if labels else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise UsageError(f"--data {path!r} is not a readable .npz file ({one_line(exc)})") from None
    if x.dtype.kind not in "biuf":
        raise UsageError(f"x must hold real numbers, got dtype {x.dtype}")
    if x.ndim < 2:
        raise UsageError(f"x must have shape (N, features...), one row per sample; got shape {x.shape}")
    if x.shape[0] < 2:
        raise UsageError(f"x needs at least 2 samples, got {x.shape[0]}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise UsageError(f"x contains {int((~np.isfinite(x)).sum())} non-finite values (NaN or inf)")
    if y is not None and (y.dtype.kind not in "biu" or y.ndim != 1):
        raise UsageError(f"y must be integer class labels of shape (N,), got {y.dtype} of shape {y.shape}"
                         + (" (one-hot? pass y.argmax(1))" if y.ndim == 2 else ""))
    if y is not None and len(y) != len(x):
        raise UsageError(f"y has {len(y)} labels but x has {len(x)} samples")
    return x, y


def load_weights(path: str, flag: str = "--weights") -> dict:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{flag} {path!r} does not exist")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UsageError(f"{flag} {path!r} is not a state_dict saved with torch.save ({one_line(exc)})") from None
    if not isinstance(state, dict):
        raise UsageError(f"{flag} {path!r} holds a {type(state).__name__}, not a state_dict")
    return state


def load_model(spec: str, weights: str | None, debug: bool, flag: str = "--model", weights_flag: str = "--weights"):
    """The model of module:factory in eval mode, with the state_dict of the
    ``weights`` file loaded when given (read before the user's module is
    imported)."""
    state = load_weights(weights, weights_flag) if weights else None
    model = build_model(spec, debug, flag)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise UsageError(f"{weights_flag} {weights!r} does not fit the model: {one_line(exc)}") from None
    return model.eval()


def build_model(spec: str, debug: bool, flag: str = "--model"):
    """Import module:factory and call it; its errors become one line."""
    model = call_factory(spec, debug, flag)
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"{flag}: {spec} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def call_factory(spec: str, debug: bool, flag: str = "--model"):
    """What module:factory returns; import and call errors become one line."""
    module_name, sep, factory_name = spec.partition(":")
    if not sep or not module_name or not factory_name:
        raise UsageError(f"{flag} must look like module:factory, got {spec!r}")
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"{flag}: cannot import module {module_name!r} ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - the user's module failed while importing
        if debug:
            traceback.print_exc()
        raise UsageError(f"{flag}: importing {module_name!r} raised {type(exc).__name__}: {one_line(exc)}") from None
    finally:
        sys.path.pop(0)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise UsageError(f"{flag}: {module_name!r} has no callable {factory_name!r}")
    try:
        return factory()
    except Exception as exc:  # noqa: BLE001 - the user's factory failed
        if debug:
            traceback.print_exc()
        raise UsageError(f"{flag}: {spec}() raised {type(exc).__name__}: {one_line(exc)}") from None


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
                         f"{one_line(exc)}{hint}") from None
