"""Python callable models: ``module:function`` called with the trial's parameters."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from functools import cache
from typing import Any

from candle_lab.errors import CandleLabError


def ensure_path(path: str | None) -> None:
    if path and path not in sys.path:
        sys.path.insert(0, path)


@cache
def load_callable(ref: str, path: str | None = None) -> Callable[..., Any]:
    """Import ``module:function`` (``path`` is put on ``sys.path`` first)."""
    ensure_path(path)
    module_name, _, attr = ref.partition(":")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CandleLabError(f"model.ref: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise CandleLabError(f"model.ref: expected a callable at {ref!r}, got {type(obj).__name__}")
    return obj
