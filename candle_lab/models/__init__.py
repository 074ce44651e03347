"""Model adapters: how one trial runs the researcher's model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from candle_lab.errors import CandleLabError
from candle_lab.models.callable import load_callable
from candle_lab.models.results import ModelResult, interpret

__all__ = ["ModelResult", "interpret", "model_runner"]


def model_runner(model: Mapping[str, Any], fn: Callable[..., Any] | None = None) -> Callable[[dict[str, Any]], Any]:
    """A function ``params -> result`` for the spec's ``model`` section (or ``fn`` given in Python)."""
    if fn is not None:
        return fn
    kind = model.get("kind", "callable")
    if kind == "callable":
        return load_callable(str(model["ref"]), model.get("path"))
    raise CandleLabError(f"model.kind: this version of candle_lab runs 'callable' models, got {kind!r}")
