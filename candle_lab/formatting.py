"""Numbers as people read them, the same in every front end: objectives to 5 significant
figures, durations as "5.2 s" / "3.1 min" / "2.4 h", parameters rounded in summaries."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

OBJECTIVE_DIGITS = 5


def number(value: Any, digits: int = OBJECTIVE_DIGITS) -> str:
    """A number to ``digits`` significant figures ("0.070312", "1.2346e+05"); "–" for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.{digits}g}"


def duration(seconds: float | None) -> str:
    """Seconds as "0.4 s", "52 s", "3.1 min", "2.4 h" or "1.5 d"; "–" for none."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    s = max(0.0, float(seconds))
    if s < 90:
        value, unit = s, "s"
    elif s < 90 * 60:
        value, unit = s / 60, "min"
    elif s < 36 * 3600:
        value, unit = s / 3600, "h"
    else:
        value, unit = s / 86400, "d"
    return f"{value:.2g} {unit}" if value < 10 else f"{value:.0f} {unit}"


def as_entered(seconds: float | None) -> str:
    """Seconds as a spec writes them, in the largest unit that divides them: "5m", "2h",
    "90m", "45s" (what :func:`candle_lab.spec.parse_duration` reads back); "" for none."""
    if seconds is None:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def params(values: Mapping[str, Any], digits: int = 4) -> str:
    """Parameters for a summary line: "lr=0.003162, units=64, act=relu"."""
    return ", ".join(f"{k}={number(v, digits)}" for k, v in values.items())
