"""HPC efficiency: where an experiment's GPU-hours (worker-hours without GPUs) went.

Pure computations over what the store holds, like :mod:`candle_lab.monitor`: the trials
table (:meth:`Store.trials_frame`), the per-step metrics (:meth:`Store.metrics_frame`), the
driver's worker events (:meth:`Store.events`, kinds :data:`EVENT_KINDS`) and the spec's
compute section in; a per-trial DataFrame (:func:`trial_efficiency`) and a frozen
:class:`Efficiency` (:func:`experiment_efficiency`) out. Nothing here reads files or draws;
the API, the CLI (``candle-lab status EXP --efficiency``), the HTML report and the
dashboard show the same figures (:func:`describe`).

The unit is the GPU when ``compute.gpus`` > 0, else the worker (one trial holds one
worker at a time), so the figures mean the same on a laptop's local cluster.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from candle_lab import formatting
from candle_lab.trial.gpus import GPU_MEMORY, GPU_UTIL, SYSTEM_PREFIX  # system samples (percent, MiB)

__all__ = [
    "EVENT_KINDS",
    "TRIAL_COLUMNS",
    "Efficiency",
    "describe",
    "experiment_efficiency",
    "horizon",
    "trial_efficiency",
]

WORKER_JOINED, WORKER_LEFT = "worker-joined", "worker-left"
EVENT_KINDS = (WORKER_JOINED, WORKER_LEFT, "driver-start", "driver-end")  # the events read here
TRIAL_COLUMNS = [
    "trial_id", "state", "reason", "worker", "started", "queue_wait", "startup", "training", "duration", "units",
    "hours", "gpu_busy", "gpu_mem_mb",
]

Unit = Literal["GPU", "worker"]
Event = tuple[float, str, int | None, Any]  # (time, kind, trial_id, detail) as Store.events gives them


class Compute(Protocol):
    """What is read of :class:`candle_lab.spec.ComputeSpec`."""

    @property
    def workers(self) -> int: ...
    @property
    def gpus(self) -> int: ...
    @property
    def trial_gpus(self) -> float: ...


@dataclass(frozen=True)
class Efficiency:
    """An experiment's figures. Hours are GPU-hours, or worker-hours when ``unit`` is
    "worker"; shares are fractions (0.25 = 25 %); None where there is nothing to measure."""

    unit: Unit
    allocation_source: Literal["worker events", "estimated"]
    trials: int  # every trial, in any state
    counts: dict[str, int]  # trials per state
    workers: int  # worker allocations seen (joins); compute.workers when estimated
    trial_hours: float  # spent by trials: their run time × the GPUs each held
    allocated_hours: float  # held by workers: their lifetimes × their GPUs
    idle_hours: float  # allocated with no trial using it
    failed_share: float | None  # of trial_hours, in trials that failed
    stopped_share: float | None  # ... that were stopped (early stop, user stop)
    cancelled_share: float | None  # ... cancelled when the search ended
    gpu_busy: float | None  # mean GPU utilization (%) over the trials with samples
    sampled_trials: int  # trials with GPU utilization samples
    median_queue_wait: float | None  # seconds from queued to started (trials that started)
    median_startup: float | None  # seconds from started to the first epoch (trials with ≥ 2 reports)
    job_wait_median: float | None  # SLURM: seconds from a worker job's submission to its worker joining
    job_wait_max: float | None
    notes: tuple[str, ...] = field(default=())

    @property
    def idle_share(self) -> float | None:
        """Idle over allocated hours."""
        return self.idle_hours / self.allocated_hours if self.allocated_hours > 0 else None

    def as_dict(self) -> dict[str, Any]:
        """The figures as plain JSON values (and ``idle_share``)."""
        return {**asdict(self), "notes": list(self.notes), "idle_share": self.idle_share}


def unit_of(compute: Compute) -> Unit:
    return "GPU" if compute.gpus else "worker"


# ------------------------------------------------------------------ per trial
def trial_efficiency(trials: pd.DataFrame, metrics: pd.DataFrame, compute: Compute, *,
                     now: float | None = None) -> pd.DataFrame:
    """One row per trial (its latest attempt), times in seconds:

    ``queue_wait`` started - queued; ``startup`` the time before its first epoch: its first
    report minus started, minus one epoch (the median gap between its consecutive reports),
    never negative, NaN with fewer than 2 reports; ``training`` duration - startup;
    ``duration`` ended (``now`` while it runs) - started; ``units`` the GPUs it held (its
    ``gpu`` devices, or ``compute.trial_gpus`` when shared or unknown; 1 worker without
    GPUs); ``hours`` duration × units / 3600 (0 for a trial that never started);
    ``gpu_busy`` the mean of its ``sys.gpu_util`` samples (%), ``gpu_mem_mb`` the largest
    ``sys.gpu_mem_mb`` one (NaN without samples)."""
    if trials.empty:
        return pd.DataFrame(columns=TRIAL_COLUMNS)
    now = time.time() if now is None else now
    started = _numbers(trials, "started")
    ended = _numbers(trials, "ended")
    ended = ended.where(ended.notna() | started.isna(), now)
    duration = (ended - started).clip(lower=0)
    units = _units(trials, compute)
    out = pd.DataFrame({
        "trial_id": trials["trial_id"].astype(int),
        "state": trials["state"].astype(object),
        "reason": trials["reason"].astype(object) if "reason" in trials else None,
        "worker": trials["worker"].astype(object) if "worker" in trials else None,
        "started": started,
        "queue_wait": (started - _numbers(trials, "queued")).clip(lower=0),
        "duration": duration,
        "units": units,
        "hours": (duration * units / 3600).fillna(0.0),
    })
    reports = _reports(trials, metrics)
    ids = out["trial_id"]
    first, gap, steps = (ids.map(reports[c]) for c in ("first", "gap", "steps"))
    startup = (first - started - gap).clip(lower=0)
    out["startup"] = startup.where(steps.fillna(0) >= 2)
    out["training"] = duration - out["startup"]
    samples = _samples(trials, metrics)
    out["gpu_busy"] = ids.map(samples["gpu_busy"]).astype(float)
    out["gpu_mem_mb"] = ids.map(samples["gpu_mem_mb"]).astype(float)
    out = out[TRIAL_COLUMNS].reset_index(drop=True)
    out.attrs["unit"] = unit_of(compute)
    return out


def _numbers(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def _units(trials: pd.DataFrame, compute: Compute) -> pd.Series:
    """GPUs each trial held: a fraction when trials share GPUs, else how many devices its
    ``gpu`` text names ("0,1": 2), ``compute.trial_gpus`` when it names none; 1 (a
    worker) without GPUs."""
    if not compute.gpus:
        return pd.Series(1.0, index=trials.index)
    share = float(compute.trial_gpus)
    if share < 1 or "gpu" not in trials:
        return pd.Series(share, index=trials.index)
    text = trials["gpu"].astype(object).where(trials["gpu"].notna(), "").astype(str).str.strip()
    devices = (text.str.count(",") + 1).astype(float)
    return devices.where(text != "", share)


def _latest(trials: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Metrics rows of each trial's latest attempt (the one the trials table describes)."""
    if metrics.empty or "attempt" not in trials:
        return metrics.iloc[:0]
    attempts = pd.Series(pd.to_numeric(trials["attempt"], errors="coerce").to_numpy(),
                         index=trials["trial_id"].astype(int).to_numpy())
    wanted = metrics["trial_id"].map(attempts).to_numpy()
    return metrics[metrics["attempt"].to_numpy() == wanted]


def _system_names(metrics: pd.DataFrame) -> list[str]:
    return [n for n in metrics["name"].unique() if str(n).startswith(SYSTEM_PREFIX)]  # few names: cheap


def _reports(trials: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Per trial: ``first`` report time, median ``gap`` between consecutive reports, ``steps``."""
    rows = _latest(trials, metrics)
    if not rows.empty:
        rows = rows[~rows["name"].isin(_system_names(rows))]
    if rows.empty:
        return pd.DataFrame({"first": [], "gap": [], "steps": []}, dtype=float)
    at = rows.groupby(["trial_id", "step"])["time"].min()  # one time per step, sorted by step
    by_trial = at.groupby(level="trial_id")
    gaps = at.groupby(level="trial_id").diff()
    return pd.DataFrame({
        "first": by_trial.min(),
        "gap": gaps.groupby(level="trial_id").median(),
        "steps": by_trial.size().astype(float),
    })


def _samples(trials: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Per trial: mean ``sys.gpu_util`` (``gpu_busy``) and largest ``sys.gpu_mem_mb``."""
    rows = _latest(trials, metrics)
    rows = rows[rows["name"].isin([GPU_UTIL, GPU_MEMORY])] if not rows.empty else rows
    if rows.empty:
        return pd.DataFrame({"gpu_busy": [], "gpu_mem_mb": []}, dtype=float)
    values = pd.to_numeric(rows["value"], errors="coerce")
    busy = values[rows["name"] == GPU_UTIL].groupby(rows["trial_id"]).mean()
    memory = values[rows["name"] == GPU_MEMORY].groupby(rows["trial_id"]).max()
    return pd.DataFrame({"gpu_busy": busy, "gpu_mem_mb": memory})


# ------------------------------------------------------------------ the experiment
@dataclass
class _Allocation:
    lane: str
    address: str
    start: float
    units: float
    job: str | None = None
    submitted: float | None = None
    end: float | None = None


def experiment_efficiency(
    trials: pd.DataFrame,
    metrics: pd.DataFrame,
    events: Iterable[Event],
    compute: Compute,
    *,
    running: bool = False,
    now: float | None = None,
    per_trial: pd.DataFrame | None = None,
) -> Efficiency:
    """The experiment's figures (see :class:`Efficiency`).

    Allocation comes from the ``worker-joined`` / ``worker-left`` events: each worker's
    lifetime × its GPUs (1 without GPUs). A worker with no ``worker-left`` leaves when its
    driver run ended (the last event or trial end before the next ``driver-start``), and
    in the last run at the last event or trial end; while the experiment is ``running``,
    ``now``. Idle is computed along each worker's lane: at each moment, the worker's GPUs
    less those the trials running on it hold (never below 0). Without worker events the
    allocation is estimated: first start to last end × ``compute.workers`` × GPUs per
    worker, and idle is that less the trials' hours."""
    events = list(events)
    end = horizon(trials, events, running=running, now=now)
    rows = trial_efficiency(trials, metrics, compute, now=end) if per_trial is None else per_trial
    unit = unit_of(compute)
    hours = float(rows["hours"].sum()) if not rows.empty else 0.0
    counts = {s: int(n) for s, n in rows["state"].value_counts().items()} if not rows.empty else {}

    def share(state: str) -> float | None:
        return float(rows.loc[rows["state"] == state, "hours"].sum()) / hours if hours > 0 else None

    allocations = _allocations(events, trials, compute, end)
    notes: list[str] = []
    if allocations:
        source: Literal["worker events", "estimated"] = "worker events"
        allocated = sum(((a.end if a.end is not None else a.start) - a.start) * a.units for a in allocations) / 3600
        idle = _idle_seconds(allocations, rows) / 3600
        workers = len(allocations)
        known = {a.lane for a in allocations} | {a.address for a in allocations}
        ran = rows[rows["hours"] > 0]
        strays = int((~ran["worker"].astype(str).isin(known)).sum()) if not ran.empty else 0
        if strays:
            notes.append(f"{strays} trials ran on workers with no worker-joined event: their hours count as "
                         "spent, not allocated")
    else:
        source = "estimated"
        per_worker = float(compute.gpus) if compute.gpus else 1.0
        ran = rows[rows["started"].notna()] if not rows.empty else rows
        span = float((ran["started"] + ran["duration"]).max() - ran["started"].min()) if not ran.empty else 0.0
        allocated = max(0.0, span) * compute.workers * per_worker / 3600
        idle = max(0.0, allocated - hours)
        workers = compute.workers
    waits = _job_waits(allocations)
    busy = rows["gpu_busy"].dropna() if not rows.empty else pd.Series(dtype=float)
    return Efficiency(
        unit=unit,
        allocation_source=source,
        trials=len(rows),
        counts=counts,
        workers=workers,
        trial_hours=hours,
        allocated_hours=float(allocated),
        idle_hours=float(idle),
        failed_share=share("failed"),
        stopped_share=share("stopped"),
        cancelled_share=share("cancelled"),
        gpu_busy=_value(busy.mean()) if not busy.empty else None,
        sampled_trials=len(busy),
        median_queue_wait=_median(rows["queue_wait"]) if not rows.empty else None,
        median_startup=_median(rows["startup"]) if not rows.empty else None,
        job_wait_median=_value(float(np.median(waits))) if waits else None,
        job_wait_max=max(waits) if waits else None,
        notes=tuple(notes),
    )


def horizon(trials: pd.DataFrame, events: Iterable[Event], *, running: bool, now: float | None = None) -> float:
    """Where unfinished work ends: ``now`` while the experiment runs, else its last event,
    trial start or trial end (a trial left "running" by a crashed driver ends there)."""
    now = time.time() if now is None else now
    if running:
        return now
    seen = [float(e[0]) for e in events]
    for column in ("started", "ended"):
        values = _numbers(trials, column).dropna() if not trials.empty else pd.Series(dtype=float)
        if not values.empty:
            seen.append(float(values.max()))
    return max(seen) if seen else now


def _value(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _median(values: pd.Series) -> float | None:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return None if values.empty else float(values.median())


def _allocations(events: Sequence[Event], trials: pd.DataFrame, compute: Compute, horizon: float) -> list[_Allocation]:
    """Worker lifetimes from the worker events, each closed by its ``worker-left``, else by
    the end of its driver run (see :func:`experiment_efficiency`)."""
    ends = np.sort(_numbers(trials, "ended").dropna().to_numpy()) if not trials.empty else np.array([])
    out: list[_Allocation] = []
    open_: list[_Allocation] = []
    last = -math.inf  # the last event of this driver run that is not a worker joining
    for when, kind, _trial, detail in events:
        detail = detail if isinstance(detail, dict) else {}
        if kind == WORKER_JOINED:
            units = float(detail.get("gpus") or 0.0) if compute.gpus else 1.0
            submitted = detail.get("submitted")
            job = detail.get("job")
            found = _Allocation(str(detail.get("lane", "")), str(detail.get("address", "")), float(when), units,
                                None if job is None else str(job),
                                None if submitted is None else float(submitted))
            out.append(found)
            open_.append(found)
            continue
        if kind == WORKER_LEFT:
            lane, address = str(detail.get("lane", "")), str(detail.get("address", ""))
            match = next((a for a in open_ if a.lane == lane and a.address == address), None) or next(
                (a for a in open_ if a.lane == lane), None)
            if match is not None:
                match.end = max(match.start, float(when))
                open_.remove(match)
        elif kind == "driver-start" and open_:
            # A new driver run: the workers of the last one that never said they left went
            # with it, at its last event or trial end (those that joined since stay).
            before = ends[ends <= when]
            closed_at = max(last, float(before[-1]) if len(before) else -math.inf)
            for a in [a for a in open_ if a.start <= closed_at]:
                a.end = closed_at
                open_.remove(a)
        last = max(last, float(when))
    for a in open_:
        a.end = max(a.start, horizon)
    return out


def _idle_seconds(allocations: Sequence[_Allocation], rows: pd.DataFrame) -> float:
    """Unit-seconds held by workers and used by no trial, lane by lane: one sweep over
    the moments a worker joins or leaves and a trial on it starts or ends."""
    by_name = {a.address: a.lane for a in allocations if a.address} | {a.lane: a.lane for a in allocations}
    started = rows["started"].to_numpy(dtype=float)
    ended = started + rows["duration"].to_numpy(dtype=float)
    lanes_of = rows["worker"].map(lambda w: by_name.get(str(w))).to_numpy(dtype=object)
    ran = ~np.isnan(started) & (rows["hours"].to_numpy() > 0) & pd.notna(lanes_of)
    alloc_lanes = np.array([a.lane for a in allocations], dtype=object)
    alloc_start = np.array([a.start for a in allocations], dtype=float)
    alloc_end = np.array([a.end if a.end is not None else a.start for a in allocations], dtype=float)
    alloc_units = np.array([a.units for a in allocations], dtype=float)
    use_units = rows["units"].to_numpy(dtype=float)[ran]
    lanes = np.concatenate([alloc_lanes, alloc_lanes, lanes_of[ran], lanes_of[ran]]).astype(str)
    times = np.concatenate([alloc_start, alloc_end, started[ran], ended[ran]])
    held = np.concatenate([alloc_units, -alloc_units, np.zeros(2 * int(ran.sum()))])
    used = np.concatenate([np.zeros(2 * len(allocations)), use_units, -use_units])
    codes = pd.factorize(lanes)[0]
    order = np.lexsort((times, codes))
    codes, times = codes[order], times[order]
    # Each lane's changes add up to 0, so a running sum over lanes in turn is each lane's own.
    free = np.cumsum(held[order]) - np.cumsum(used[order])
    span = np.diff(times)
    same_lane = codes[1:] == codes[:-1]
    return float(np.sum(np.clip(free[:-1], 0, None) * np.where(same_lane, span, 0.0)))


def _job_waits(allocations: Sequence[_Allocation]) -> list[float]:
    """SLURM queue wait of each worker job: its first worker's join less its submission."""
    seen: dict[str, float] = {}
    for a in allocations:
        if a.submitted is not None and (a.job or a.address) not in seen:
            seen[a.job or a.address] = max(0.0, a.start - a.submitted)
    return list(seen.values())


# ------------------------------------------------------------------ as people read it
def describe(eff: Efficiency) -> list[tuple[str, str]]:
    """The figures as (label, text) rows, for the CLI, the report and the dashboard."""
    hours = f"{eff.unit}-hours"

    def number(x: float) -> str:
        return formatting.number(x, 3)

    def percent(x: float | None) -> str:
        return "–" if x is None else f"{x:.0%}"

    allocated = (f"{number(eff.allocated_hours)} ({eff.workers} workers, from worker events)"
                 if eff.allocation_source == "worker events"
                 else f"{number(eff.allocated_hours)} (estimated: first start to last end × {eff.workers} workers)")
    rows = [
        (f"{hours} allocated", allocated),
        (f"{hours} in trials", f"{number(eff.trial_hours)} ({eff.trials} trials; "
                               + ", ".join(f"{n} {s}" for s, n in sorted(eff.counts.items())) + ")"),
        (f"{hours} idle", f"{number(eff.idle_hours)} ({percent(eff.idle_share)} of allocated)"),
        ("lost", f"{percent(eff.failed_share)} of trial {hours} in failed trials, {percent(eff.stopped_share)} "
                 f"in stopped, {percent(eff.cancelled_share)} in cancelled"),
        ("queue wait (trials)", f"median {formatting.duration(eff.median_queue_wait)}"),
        ("start-up (before the first epoch)", f"median {formatting.duration(eff.median_startup)}"),
    ]
    if eff.unit == "GPU":
        rows.append(("GPU busy", "no samples" if eff.gpu_busy is None
                     else f"{eff.gpu_busy:.0f}% (mean over {eff.sampled_trials} trials with samples)"))
    if eff.job_wait_median is not None:
        rows.append(("SLURM queue wait (worker jobs)", f"median {formatting.duration(eff.job_wait_median)}, "
                                                       f"max {formatting.duration(eff.job_wait_max)}"))
    rows += [("note", note) for note in eff.notes]
    return rows


def table(eff: Efficiency) -> str:
    """:func:`describe` as aligned plain-text lines."""
    rows = describe(eff)
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
