"""What a model returned, turned into the objective and the metrics to record."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelResult:
    """The objective (NaN when the model gave none) and every scalar metric seen."""

    objective: float
    metrics: dict[str, float]
    detail: str | None = None  # why the objective is NaN


class NoObjective:
    """Returned by an adapter whose model gave no objective, with the reason why."""

    def __init__(self, detail: str) -> None:
        self.detail = detail


def _scalar(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if hasattr(value, "item") and getattr(value, "size", 1) == 1:
        value = value.item()
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _last(values: Any) -> float | None:
    if isinstance(values, (list, tuple)) and values:
        return _scalar(values[-1])
    return _scalar(values)


def interpret(result: Any, metric: str) -> ModelResult:
    """A number is the objective; a mapping gives ``result[metric]``; a Keras ``History``
    (anything with a ``history`` dict of per-epoch lists) gives the last value of ``metric``."""
    if isinstance(result, NoObjective):
        return ModelResult(math.nan, {}, result.detail)
    history = getattr(result, "history", None)
    if isinstance(history, Mapping):
        metrics = {str(k): v for k, v in ((k, _last(v)) for k, v in history.items()) if v is not None}
        return _pick(metrics, metric, "the History")
    if isinstance(result, Mapping):
        metrics = {str(k): v for k, v in ((k, _last(v)) for k, v in result.items()) if v is not None}
        return _pick(metrics, metric, "the returned dict")
    value = _scalar(result)
    if value is not None:
        return ModelResult(value, {metric: value})
    return ModelResult(math.nan, {}, f"expected a number, a dict or a Keras History, got {type(result).__name__}")


def _pick(metrics: dict[str, float], metric: str, where: str) -> ModelResult:
    if metric in metrics:
        return ModelResult(metrics[metric], metrics)
    known = ", ".join(sorted(metrics)) or "nothing"
    return ModelResult(math.nan, metrics, f"metric {metric!r} not in {where} (it has: {known})")
