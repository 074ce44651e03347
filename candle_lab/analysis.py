"""What the trials say about the search space: parameter importance, slices, contours,
the objective's distribution and a readable parallel-coordinates table.

Pure computations over :meth:`Store.trials_frame` (the ``param.*`` columns and the
``objective`` of completed trials); :mod:`candle_lab.figures` draws them for the report,
the notebook and the Panel dashboard alike. Every function bounds its output (at most
:data:`MAX_POINTS` points, a fixed grid) so an experiment of 100,000 trials draws as fast
as one of 1,000: the best trials are always kept, the rest sampled evenly.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

MAX_POINTS = 4000  # points any one chart sends to the browser
FIT_ROWS = 2000  # trials the importance forest and the contour use (best kept, the rest sampled)
GRID = 40  # contour resolution per axis


@dataclass(frozen=True)
class Axis:
    """One parameter as a chart axis: numeric values (log10 when ``log``), or the codes of
    its categories with their ``labels``."""

    name: str
    values: np.ndarray
    log: bool = False
    labels: tuple[str, ...] = ()

    @property
    def categorical(self) -> bool:
        return bool(self.labels)

    def ticks(self) -> tuple[list[float], list[str]]:
        """Tick positions and texts: category names, or powers of ten on a log axis."""
        if self.categorical:
            return list(range(len(self.labels))), list(self.labels)
        if self.log and self.values.size:
            lo, hi = math.floor(np.nanmin(self.values)), math.ceil(np.nanmax(self.values))
            return [float(p) for p in range(lo, hi + 1)], [f"{10.0 ** p:g}" for p in range(lo, hi + 1)]
        return [], []


@dataclass(frozen=True)
class Contour:
    """The objective over two parameters, interpolated from the trials on a grid."""

    x: Axis  # grid positions (GRID values)
    y: Axis
    z: np.ndarray  # GRID x GRID, rows along y
    points_x: np.ndarray  # the trials themselves
    points_y: np.ndarray
    objective: np.ndarray


def completed(trials: pd.DataFrame, direction: str = "minimize", limit: int | None = None) -> pd.DataFrame:
    """Completed trials with an objective, best first; at most ``limit`` of them: the best
    quarter of the limit, then an even sample of the rest (so a chart keeps its shape)."""
    if trials.empty or "objective" not in trials:
        return trials.iloc[0:0]
    done = trials[(trials["state"] == "completed") & trials["objective"].notna()]
    done = done.sort_values("objective", ascending=direction == "minimize", kind="stable")
    if limit is None or len(done) <= limit:
        return done
    best = limit // 4
    rest = done.iloc[best:]
    picks = np.linspace(0, len(rest) - 1, limit - best).round().astype(int)
    return pd.concat([done.iloc[:best], rest.iloc[np.unique(picks)]])


def varying_parameters(trials: pd.DataFrame) -> list[str]:
    """Parameter names (no ``param.`` prefix) that take more than one value (constants
    say nothing and are hidden)."""
    out = []
    for column in (c for c in trials.columns if c.startswith("param.")):
        if trials[column].map(_text).nunique() > 1:
            out.append(column[6:])
    return out


def axis(trials: pd.DataFrame, name: str, log: bool | None = None) -> Axis:
    """The values of parameter ``name`` as an axis. Numbers stay numbers (on a log10 scale
    when ``log``, or, unsaid, when positive and spanning more than two decades); anything
    else (choices, booleans, lists) becomes category codes, in sorted order."""
    column = trials[f"param.{name}"]
    numbers = pd.to_numeric(column, errors="coerce")
    is_number = numbers.notna().all() and not column.map(lambda v: isinstance(v, bool | list | str)).any()
    if is_number:
        v = numbers.to_numpy(float)
        if log is None:
            lo, hi = (float(v.min()), float(v.max())) if v.size else (1.0, 1.0)
            log = lo > 0 and hi / lo > 100
        return Axis(name, np.log10(v) if log else v, bool(log))
    text = column.map(_text)
    labels = tuple(sorted(text.unique(), key=_natural))
    codes = {c: i for i, c in enumerate(labels)}
    return Axis(name, text.map(codes).to_numpy(float), False, labels)


def importance(trials: pd.DataFrame, direction: str = "minimize", *, seed: int = 0) -> pd.DataFrame:
    """How much each varying parameter matters: scikit-learn's permutation importance of a
    random forest fitted to the completed trials (the drop in R² when a parameter's values
    are shuffled), normalised to sum to 1. Columns ``parameter``, ``importance``, ``std``,
    most important first; empty with fewer than 4 completed trials or no varying
    parameter."""
    columns = ["parameter", "importance", "std"]
    done = completed(trials, direction, FIT_ROWS)
    names = varying_parameters(done)
    if len(done) < 4 or not names:
        return pd.DataFrame(columns=columns)
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    x = np.column_stack([axis(done, n).values for n in names])
    y = done["objective"].to_numpy(float)
    forest = RandomForestRegressor(n_estimators=32, min_samples_leaf=2, random_state=seed, n_jobs=1).fit(x, y)
    found = permutation_importance(forest, x, y, n_repeats=3, random_state=seed, n_jobs=1)
    mean = np.clip(found.importances_mean, 0.0, None)
    total = float(mean.sum()) or 1.0
    out = pd.DataFrame({"parameter": names, "importance": mean / total, "std": found.importances_std / total})
    return out.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)


def slices(trials: pd.DataFrame, direction: str = "minimize") -> dict[str, tuple[Axis, pd.DataFrame]]:
    """For each varying parameter, its axis and the points (``objective``, ``trial_id``)
    of at most :data:`MAX_POINTS` completed trials."""
    done = completed(trials, direction, MAX_POINTS)
    points = done[["trial_id", "objective"]].reset_index(drop=True)
    return {name: (axis(done, name), points) for name in varying_parameters(done)}


def contour(trials: pd.DataFrame, x: str, y: str, direction: str = "minimize") -> Contour | None:
    """The objective over parameters ``x`` and ``y`` on a :data:`GRID` × :data:`GRID` grid:
    linearly interpolated between the trials of two numeric parameters (the nearest trial's
    value outside their hull, and wherever an axis is categorical); None with fewer than 3
    completed trials or when either parameter is constant."""
    from scipy.interpolate import griddata

    done = completed(trials, direction, FIT_ROWS)
    if len(done) < 3 or x == y or not {x, y} <= set(varying_parameters(done)):
        return None
    ax, ay = axis(done, x), axis(done, y)
    gx = np.linspace(np.nanmin(ax.values), np.nanmax(ax.values), GRID)
    gy = np.linspace(np.nanmin(ay.values), np.nanmax(ay.values), GRID)
    mesh = np.meshgrid(gx, gy)
    known = np.column_stack([ax.values, ay.values])
    objective = done["objective"].to_numpy(float)
    z = griddata(known, objective, tuple(mesh), method="nearest")
    if not (ax.categorical or ay.categorical):  # between categories, "linear" would invent values
        with contextlib.suppress(ValueError, RuntimeError):  # collinear trials: no triangles
            inside = griddata(known, objective, tuple(mesh), method="linear")
            z = np.where(np.isfinite(inside), inside, z)
    return Contour(
        Axis(x, gx, ax.log, ax.labels), Axis(y, gy, ay.log, ay.labels), z, ax.values, ay.values, objective
    )


def edf(trials: pd.DataFrame) -> pd.DataFrame:
    """The empirical distribution of the completed trials' objective: ``objective`` sorted
    and the ``fraction`` of trials at or below it (at most :data:`MAX_POINTS` steps)."""
    values = np.sort(completed(trials)["objective"].to_numpy(float))
    if values.size == 0:
        return pd.DataFrame({"objective": [], "fraction": []})
    fraction = np.arange(1, values.size + 1) / values.size
    if values.size > MAX_POINTS:
        keep = np.unique(np.linspace(0, values.size - 1, MAX_POINTS).round().astype(int))
        values, fraction = values[keep], fraction[keep]
    return pd.DataFrame({"objective": values, "fraction": fraction})


def parallel(trials: pd.DataFrame, direction: str = "minimize") -> tuple[list[Axis], np.ndarray]:
    """The axes of a parallel-coordinates chart (the varying parameters, in the space's
    order) and the objective of each trial drawn."""
    done = completed(trials, direction, MAX_POINTS)
    return [axis(done, n) for n in varying_parameters(done)], done["objective"].to_numpy(float)


def preload() -> None:
    """Import what the analysis uses (scikit-learn, scipy: seconds), e.g. on a server's
    spare thread before the first experiment is analysed."""
    import scipy.interpolate  # noqa: F401
    import sklearn.ensemble
    import sklearn.inspection  # noqa: F401


def _text(value: object) -> str:
    """A parameter value as text, for counting and labelling categories ([256] too)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _natural(label: str) -> tuple[int, float, str]:
    """Numbers in numeric order, then the rest alphabetically."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)
