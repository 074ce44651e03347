"""Several objectives and constraints: losses, feasibility, the Pareto front and its
hypervolume.

Objectives are compared as losses (each one's value, negated when it is maximised), so
"smaller is better" everywhere. Non-dominated sorting and hypervolume come from moocore
(the maintained C library of the multi-objective community), not from code of our own.
Pure code over numbers and trials tables: the engine, the API and the views share it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from candle_lab.spec import ConstraintSpec, ObjectiveSpec

HV_POINTS = 200  # the hypervolume-over-time curve is computed at most at this many completions
REFERENCE_MARGIN = 0.1  # the reference point: the worst value of each objective, a tenth of its range beyond


def losses(metrics: Mapping[str, float] | None, goals: Sequence[ObjectiveSpec]) -> tuple[float, ...] | None:
    """A trial's objectives as losses; None when one is missing or not finite."""
    if not metrics:
        return None
    out = []
    for goal in goals:
        value = metrics.get(goal.metric)
        if value is None or not math.isfinite(float(value)):
            return None
        out.append(goal.loss(float(value)))
    return tuple(out)


def feasible(metrics: Mapping[str, float] | None, constraints: Sequence[ConstraintSpec]) -> bool | None:
    """Whether a trial's metrics satisfy every constraint; None without constraints, or
    when a constrained metric is missing."""
    if not constraints:
        return None
    values = metrics or {}
    found = [values.get(c.metric) for c in constraints]
    if any(v is None or not math.isfinite(float(v)) for v in found):
        return None
    return all(c.satisfied(float(v)) for c, v in zip(constraints, found, strict=True))  # type: ignore[arg-type]


def nondominated(points: np.ndarray) -> np.ndarray:
    """Which rows of ``points`` (losses, one row per trial) no other row dominates."""
    import moocore

    points = np.asarray(points, dtype=float)
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(points, keep_weakly=True), dtype=bool)


def reference_point(points: np.ndarray) -> np.ndarray:
    """The worst value of each objective, a tenth of its range (at least 1e-9) beyond."""
    points = np.asarray(points, dtype=float)
    worst, best = points.max(axis=0), points.min(axis=0)
    return worst + np.maximum(REFERENCE_MARGIN * (worst - best), 1e-9)


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """The volume the points dominate up to ``reference`` (points beyond it add nothing)."""
    import moocore

    points = np.asarray(points, dtype=float)
    inside = points[(points < reference).all(axis=1)] if len(points) else points
    return float(moocore.hypervolume(inside, ref=reference)) if len(inside) else 0.0


def objective_columns(goals: Sequence[ObjectiveSpec]) -> list[str]:
    """The trials table's column of each objective."""
    return [f"metric.{g.metric}" for g in goals]


def _candidates(trials: pd.DataFrame, goals: Sequence[ObjectiveSpec]) -> pd.DataFrame:
    """Completed, feasible trials that report every objective."""
    columns = objective_columns(goals)
    if trials.empty or any(c not in trials for c in columns):
        return trials.iloc[0:0]
    done = trials[trials["state"] == "completed"]
    if "feasible" in done:
        done = done[done["feasible"].fillna(1).astype(float) != 0]
    values = done[columns].apply(lambda c: c.astype(float))
    return done[np.isfinite(values.to_numpy()).all(axis=1)]


def loss_matrix(trials: pd.DataFrame, goals: Sequence[ObjectiveSpec]) -> np.ndarray:
    """The objectives of ``trials`` as losses, one row per trial."""
    values = trials[objective_columns(goals)].to_numpy(dtype=float)
    signs = np.array([1.0 if g.direction == "minimize" else -1.0 for g in goals])
    return values * signs


def front(trials: pd.DataFrame, goals: Sequence[ObjectiveSpec]) -> pd.DataFrame:
    """The trials on the Pareto front (completed, feasible, not dominated), sorted by the
    first objective; their objectives in the columns ``metric.NAME``."""
    ran = _candidates(trials, goals)
    if ran.empty:
        return ran
    keep = nondominated(loss_matrix(ran, goals))
    return ran[keep].sort_values(objective_columns(goals)[0], ascending=goals[0].direction == "minimize")


def hypervolume_over_time(
    trials: pd.DataFrame, goals: Sequence[ObjectiveSpec], points: int = HV_POINTS
) -> pd.DataFrame:
    """``ended`` (seconds since the epoch), ``trials`` (completed so far) and the
    ``hypervolume`` of the front found by then, against one reference point (from all
    the trials shown); at most ``points`` rows, always the last."""
    import pandas as pd

    ran = _candidates(trials, goals).sort_values("ended")
    if ran.empty:
        return pd.DataFrame(columns=["ended", "trials", "hypervolume"])
    matrix = loss_matrix(ran, goals)
    reference = reference_point(matrix)
    n = len(ran)
    at = np.unique(np.linspace(1, n, min(points, n)).round().astype(int))
    volumes, found, done = [], matrix[:0], 0
    for k in at:  # the front so far and the trials since: each trial sorted once (20-40x faster at 100k)
        found = np.vstack([found, matrix[done:k]])
        found, done = found[nondominated(found)], k
        volumes.append(hypervolume(found, reference))
    return pd.DataFrame({"ended": ran["ended"].to_numpy(float)[at - 1], "trials": at, "hypervolume": volumes})


class Front:
    """The running front of a search (the engine's): which trials are on it, updated one
    completion at a time. ``add`` returns the trials that joined and left."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self._points = np.empty((0, 0))

    def add(self, trial_id: int, point: Sequence[float]) -> tuple[list[int], list[int]]:
        row = np.asarray(point, dtype=float)[None, :]
        points = np.vstack([self._points, row]) if len(self.ids) else row
        ids = [*self.ids, trial_id]
        keep = nondominated(points)
        left = [i for i, k in zip(ids, keep, strict=True) if not k and i != trial_id]
        self.ids = [i for i, k in zip(ids, keep, strict=True) if k]
        self._points = points[keep]
        return ([trial_id] if trial_id in self.ids else []), left
