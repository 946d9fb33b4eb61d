"""Optional packages of the integrations, imported when first used."""
from __future__ import annotations

import importlib


def require(module: str, extra: str, what: str):
    """Import ``module`` or raise an ``ImportError`` that names the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{what} needs the {module.split('.')[0]} package: "
                          f'pip install "pyfastent[{extra}]"') from exc
