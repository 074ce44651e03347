"""Pure computations over a trials table: Gantt rows, utilization, idle %, best so far.

Input is the DataFrame of :meth:`Store.trials_frame` (times in seconds since the epoch);
nothing here draws. The report, the Panel dashboard and the notebook widgets share it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

STATE_ORDER = ("queued", "running", "completed", "failed", "stopped", "cancelled")


@dataclass(frozen=True)
class Utilization:
    """How busy the workers were between ``start`` and ``end``."""

    start: float
    end: float
    workers: int
    busy_seconds: float
    gpus_per_worker: int = 0

    @property
    def capacity_seconds(self) -> float:
        return self.workers * max(0.0, self.end - self.start)

    @property
    def utilization(self) -> float:
        return self.busy_seconds / self.capacity_seconds if self.capacity_seconds > 0 else 0.0

    @property
    def idle_fraction(self) -> float:
        return 1.0 - self.utilization if self.capacity_seconds > 0 else 0.0

    @property
    def gpu_hours_used(self) -> float:
        return self.busy_seconds * self.gpus_per_worker / 3600

    @property
    def gpu_hours_idle(self) -> float:
        return (self.capacity_seconds - self.busy_seconds) * self.gpus_per_worker / 3600


def _intervals(trials: pd.DataFrame, now: float | None = None) -> pd.DataFrame:
    """Rows that ran: start and end (a running trial ends ``now``)."""
    if trials.empty or "started" not in trials:
        return pd.DataFrame(columns=["trial_id", "lane", "start", "end", "state"])
    ran = trials[trials["started"].notna()].copy()
    now = time.time() if now is None else now
    ran["start"] = ran["started"].astype(float)
    ran["end"] = ran["ended"].astype(float).where(ran["ended"].notna(), now)
    ran["lane"] = lanes(ran)
    return ran


def lanes(trials: pd.DataFrame) -> pd.Series:
    """The Gantt lane of each trial: its worker, and its GPU when it had one."""
    lane = trials["worker"].fillna("?").astype(str)
    if "gpu" in trials:
        gpu = trials["gpu"]
        has = gpu.notna() & (gpu.astype(str) != "")
        lane = lane.where(~has, lane + " · GPU " + gpu.astype(str))
    return lane


QUEUE_LANE = "queued"
GANTT_COLUMNS = ["trial_id", "lane", "start", "end", "state", "shade", "objective"]


def gantt_rows(trials: pd.DataFrame, now: float | None = None, *, queued: bool = False) -> pd.DataFrame:
    """One bar per trial: ``lane`` (worker), ``start``/``end`` (seconds from the first
    start), ``state``, and ``shade`` 0/1 alternating along each lane so that neighbouring
    trials are told apart. ``queued=True`` adds waiting trials on a lane of their own,
    from when they were queued until now."""
    now = time.time() if now is None else now
    ran = _intervals(trials, now)
    waiting = pd.DataFrame(columns=GANTT_COLUMNS)
    if queued and not trials.empty and "queued" in trials:
        wait = trials[(trials["state"] == "queued") & trials["queued"].notna()]
        waiting = pd.DataFrame(
            {"trial_id": wait["trial_id"], "lane": QUEUE_LANE, "start": wait["queued"].astype(float), "end": now,
             "state": "queued", "shade": 0, "objective": wait["objective"]}
        )
    if ran.empty and waiting.empty:
        return pd.DataFrame(columns=GANTT_COLUMNS)
    if not ran.empty:
        ran = ran.sort_values(["lane", "start"])
        ran["shade"] = ran.groupby("lane").cumcount() % 2
        ran = ran[GANTT_COLUMNS]
    out = pd.concat([f for f in (ran, waiting) if not f.empty], ignore_index=True)
    t0 = float(out["start"].min())
    out["start"] = out["start"].astype(float) - t0
    out["end"] = out["end"].astype(float) - t0
    out["shade"] = out["shade"].astype(int)
    return out


def utilization(
    trials: pd.DataFrame, workers: int, gpus_per_worker: int = 0, *, now: float | None = None,
    start: float | None = None, end: float | None = None,
) -> Utilization:
    """Busy worker-seconds over the window (default: first start to last end)."""
    ran = _intervals(trials, now)
    if ran.empty:
        return Utilization(0.0, 0.0, workers, 0.0, gpus_per_worker)
    t0 = float(ran["start"].min()) if start is None else start
    t1 = float(ran["end"].max()) if end is None else end
    busy = (ran["end"].clip(upper=t1) - ran["start"].clip(lower=t0)).clip(lower=0).sum()
    return Utilization(t0, t1, workers, float(busy), gpus_per_worker)


def running_over_time(trials: pd.DataFrame, now: float | None = None) -> pd.DataFrame:
    """Step series: ``time`` (seconds from first start) and ``running`` trials."""
    ran = _intervals(trials, now)
    if ran.empty:
        return pd.DataFrame({"time": [], "running": []})
    t0 = float(ran["start"].min())
    times = np.concatenate([ran["start"].to_numpy(), ran["end"].to_numpy()]) - t0
    steps = np.concatenate([np.ones(len(ran)), -np.ones(len(ran))])
    order = np.lexsort((steps, times))
    return pd.DataFrame({"time": times[order], "running": np.cumsum(steps[order])})


def best_so_far(trials: pd.DataFrame, direction: str = "minimize") -> pd.DataFrame:
    """Completed trials in order of ending, with the best objective up to each (and the
    round — batch round or GA generation — each belongs to, NaN when none)."""
    if trials.empty:
        return pd.DataFrame({"trial_id": [], "ended": [], "objective": [], "round": [], "best": []})
    done = trials[(trials["state"] == "completed") & trials["objective"].notna()].sort_values("ended")
    best = done["objective"].cummin() if direction == "minimize" else done["objective"].cummax()
    out = done[["trial_id", "ended", "objective"]].copy()
    out["round"] = pd.to_numeric(done["round"], errors="coerce") if "round" in done else float("nan")
    out["best"] = best.to_numpy()
    if not out.empty:
        out["ended"] = out["ended"] - float(trials["started"].min())
    return out.reset_index(drop=True)


def top_trials(trials: pd.DataFrame, k: int, direction: str = "minimize") -> pd.DataFrame:
    """The ``k`` best completed trials, best first (``k <= 0``: every trial, best first)."""
    if trials.empty:
        return trials
    if k <= 0:
        return trials.sort_values("objective", ascending=direction == "minimize", na_position="last", kind="stable")
    done = trials["objective"][trials["state"] == "completed"].astype(float).dropna()
    best = done.nsmallest(k) if direction == "minimize" else done.nlargest(k)
    return trials.loc[best.index]


def loss_curves(metrics: pd.DataFrame, metric: str, trial_ids: Iterable[int] | None = None) -> dict[int, pd.DataFrame]:
    """Per-epoch values of ``metric`` for each trial (its latest attempt): ``step``, ``value``."""
    if metrics.empty:
        return {}
    rows = metrics[metrics["name"] == metric]
    if trial_ids is not None:
        rows = rows[rows["trial_id"].isin(list(trial_ids))]
    if rows.empty:
        return {}
    latest = rows.groupby("trial_id")["attempt"].transform("max")
    rows = rows[rows["attempt"] == latest].sort_values(["trial_id", "step"])
    return {int(t): part[["step", "value"]].reset_index(drop=True) for t, part in rows.groupby("trial_id")}


def state_counts(trials: pd.DataFrame) -> dict[str, int]:
    counts = trials["state"].value_counts().to_dict() if not trials.empty else {}
    return {s: int(counts.get(s, 0)) for s in STATE_ORDER}


# ------------------------------------------------------------------ population based training
def lineage(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per PBT interval: ``member``, ``interval``, ``source`` (the member whose
    checkpoint it started from: itself, or the member it copied), ``exploit``, its
    ``objective``, ``state`` and ``trial_id``; empty when the trials are not PBT's."""
    columns = ["trial_id", "member", "interval", "source", "exploit", "objective", "state"]
    if trials.empty or "origin.member" not in trials:
        return pd.DataFrame(columns=columns)
    rows = trials[trials["origin.member"].notna()]
    copied = rows["origin.exploit"] if "origin.exploit" in rows else pd.Series(float("nan"), index=rows.index)
    out = pd.DataFrame(
        {
            "trial_id": rows["trial_id"].astype(int),
            "member": rows["origin.member"].astype(int),
            "interval": rows["origin.interval"].astype(int),
            "source": copied.fillna(rows["origin.member"]).astype(int),
            "exploit": copied.notna(),
            "objective": pd.to_numeric(rows["objective"], errors="coerce"),
            "state": rows["state"],
        }
    )
    return out.sort_values(["member", "interval", "trial_id"]).reset_index(drop=True)


def population_curves(
    trials: pd.DataFrame, metrics: pd.DataFrame, metric: str
) -> tuple[dict[int, pd.DataFrame], pd.DataFrame]:
    """Each PBT member's ``metric`` over its whole life (``step``, ``value``: its intervals
    one after the other) and the exploit jumps: where a member's curve continues from
    another member's checkpoint (``member``, ``step``, ``value``, ``donor``)."""
    jumps = pd.DataFrame(columns=["member", "step", "value", "donor"])
    line = lineage(trials)
    per_trial = loss_curves(metrics, metric, line["trial_id"].tolist()) if not line.empty else {}
    curves: dict[int, pd.DataFrame] = {}
    found = []
    for member, part in line.groupby("member"):
        pieces = []
        for row in part.itertuples(index=False):
            curve = per_trial.get(int(row.trial_id))
            if curve is None or curve.empty:
                continue
            pieces.append(curve)
            if row.exploit:
                first = curve.iloc[0]
                found.append({"member": int(member), "step": first["step"], "value": first["value"],
                              "donor": int(row.source)})
        if pieces:
            curves[int(member)] = pd.concat(pieces, ignore_index=True)
    if found:
        jumps = pd.DataFrame(found)
    return curves, jumps
