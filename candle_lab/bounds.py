"""Best trials at the edge of the search space: a bound that is likely too narrow.

When most of the best trials sit at a bound of a numeric parameter, the optimum may lie
beyond it. :func:`at_bounds` says which bounds, and suggests a wider one (twice as far
on a log scale, half the range further on a linear one, never across zero). Pure code:
the engine records a ``boundary`` event per bound, the dashboard shows them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from candle_lab.space import IntegerParam, RealParam, SearchSpace

TOP = 5  # the best trials looked at ...
SHARE = 0.6  # ... of which at least this share at a bound ...
EDGE = 0.02  # ... within this share of the range (in the parameter's scale) of it
MIN_COMPLETED = 10  # no warning before this many trials completed


@dataclass(frozen=True)
class Boundary:
    """``parameter``'s ``side`` bound holds ``count`` of the ``top`` best trials."""

    parameter: str
    side: Literal["low", "high"]
    bound: float
    suggested: float
    count: int
    top: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        wider = "down to" if self.side == "low" else "up to"
        return (f"{self.parameter}: {self.count} of the {self.top} best trials at its {self.side} bound "
                f"{self.bound:g}; try {wider} {self.suggested:g}")


def at_bounds(space: SearchSpace, best: Sequence[Mapping[str, Any]], completed: int) -> list[Boundary]:
    """The bounds where at least :data:`SHARE` of ``best`` (the best trials' parameters,
    best first, at most :data:`TOP` used) sit, once ``completed`` trials have."""
    best = list(best)[:TOP]
    if completed < MIN_COMPLETED or len(best) < TOP:
        return []
    if space.conditional:  # layer widths by layer; absent parameters sit nowhere
        best = [space.active(space.flat(params)) for params in best]
    found = []
    for p in space.searchable:
        if not isinstance(p, RealParam | IntegerParam) or p.high <= p.low:
            continue
        for side in ("low", "high"):
            count = sum(1 for params in best if p.name in params and _near(p, float(params[p.name]), side))
            suggested = _wider(p, side)
            if count >= SHARE * len(best) and suggested is not None:
                bound = float(p.low if side == "low" else p.high)
                found.append(Boundary(p.name, side, bound, suggested, count, len(best)))
    return found


def _scaled(p: RealParam | IntegerParam, value: float) -> float:
    """Where ``value`` lies in [0, 1] on the parameter's own scale."""
    if p.log:
        return (math.log(value) - math.log(p.low)) / (math.log(p.high) - math.log(p.low))
    return (value - p.low) / (p.high - p.low)


def _near(p: RealParam | IntegerParam, value: float, side: str) -> bool:
    x = _scaled(p, value)
    return x <= EDGE if side == "low" else x >= 1.0 - EDGE


def _wider(p: RealParam | IntegerParam, side: str) -> float | None:
    """A bound twice as far (log scale) or half the range further, not across zero; None
    when there is no room (a linear lower bound at 0)."""
    low, high = float(p.low), float(p.high)
    if p.log:
        value = low / 2 if side == "low" else high * 2
    elif side == "high":
        value = high + (high - low) / 2
    else:
        value = low - (high - low) / 2
        if low >= 0:
            value = max(0.0, value)
    if isinstance(p, IntegerParam):
        value = float(math.floor(value) if side == "low" else math.ceil(value))
    return None if value == (low if side == "low" else high) else value
