"""Shared pieces of the benchmarks: the 6-D mixed space, a synthetic objective, tables."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from candle_lab.space import SearchSpace
from candle_lab.spec import spec_from_dict

MIXED_6D = [
    {"name": "lr", "type": "real", "low": 1e-5, "high": 0.1, "log": True},
    {"name": "dropout", "type": "real", "low": 0.0, "high": 0.8},
    {"name": "units", "type": "integer", "low": 16, "high": 1024, "log": True},
    {"name": "layers", "type": "integer", "low": 1, "high": 6},
    {"name": "activation", "type": "categorical", "choices": ["relu", "tanh", "elu"]},
    {"name": "batch_size", "type": "categorical", "choices": [16, 32, 64, 128], "ordered": True},
]


def mixed_space() -> SearchSpace:
    spec = spec_from_dict({"model": {"ref": "m:f"}, "space": MIXED_6D, "budget": {"max_trials": 1}})
    return spec.space.search_space()


def mixed_objective(p: dict[str, Any]) -> float:
    """A smooth-ish synthetic loss over the mixed space (for proposal-cost runs)."""
    act = {"relu": 0.0, "tanh": 0.1, "elu": 0.05}[p["activation"]]
    return (
        (math.log10(p["lr"]) + 3) ** 2 / 4
        + (p["dropout"] - 0.3) ** 2
        + (math.log2(p["units"]) - 7) ** 2 / 16
        + (p["layers"] - 3) ** 2 / 9
        + act
        + abs(math.log2(p["batch_size"]) - 5) / 10
    )


T = TypeVar("T")
V = TypeVar("V")


def in_flight(ask: Callable[[int], list[T]], finish: Callable[[T], V], *, evals: int, parallel: int,
              seed: int) -> list[V]:
    """``evals`` evaluations with ``parallel`` in flight, as on a cluster: results return
    in random order (seeded), and a new point is asked the moment one returns.
    ``ask(n)``: n new points; ``finish(point)``: evaluate it and tell the optimizer."""
    rng = np.random.default_rng(seed + 1000)
    pending = ask(min(parallel, evals))
    found: list[V] = []
    while len(found) < evals:
        found.append(finish(pending.pop(int(rng.integers(len(pending))))))
        if len(found) + len(pending) < evals:
            pending += ask(1)
    return found


def one_thread() -> None:
    """A benchmark process's numeric libraries on one thread (two processes share 2 cores)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[h for h in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
    print(f"\n== {title}")
    for r in cells:
        print(
            "  "
            + "  ".join(
                str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
