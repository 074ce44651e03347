"""What-if planning: from an experiment's own measured figures, what would a larger or
smaller allocation, or the other search mode, give?

:func:`measure` reads a finished (or running) experiment's trials table into a
:class:`Measured`; :func:`simulate` replays a configuration in a discrete-event simulation;
:func:`plan` puts the real run, the model of the real run (its self-check) and the what-ifs
side by side. Pure code: no cluster, no store, no UI.

The model (its assumptions, said once here and in the notes of each :class:`Measured`):

* **Wall time** runs from the first trial start to the last trial end. Getting the
  workers (cluster start-up, SLURM queue) before the first trial starts is not in it;
  workers that arrive late are (see *start-up* below).
* **Trial durations** are drawn from the measured ones (``ended - started`` of completed,
  failed and stopped trials), with replacement (a bootstrap, seeded): a trial's duration
  does not depend on how many workers run beside it, nor on the mode.
* **Failures**: each attempt fails with the measured rate (failed attempts over all
  attempts; only retryable failures: exceptions, out of memory, lost workers); a failed
  attempt is re-run while ``trial.retries`` allows, costing another drawn duration.
* **Dispatch**: a worker starts its next trial the measured dispatch overhead after its
  last one ended (the median gap along a worker's lane; gaps longer than
  ``GAP_FACTOR`` × the median duration, and a second, are idle time or start-up, not
  dispatch; batch: gaps within a round only).
* **Start-up**: worker 0 starts at 0; every other worker starts its first trial at an
  offset drawn from the measured offsets of the real run's other workers (first start of
  each lane after the run's first start; lanes first seen later than that limit are
  replacements and left out).
* **Async** (every algorithm but batch-bo and generational GA): a worker starts a new
  trial as soon as it has finished one. **Batch**: rounds of ``search.batch_size`` (default:
  one per worker; the first round at least ``search.initial_points``; GA: the population)
  with a barrier: the next round starts the measured per-round proposal cost (median gap
  from a round's last end to the next round's first start) after the whole round, retries
  included, has ended.
* The optimizer is not a shared queue: the per-trial dispatch overhead and the per-round
  proposal cost do not grow with the number of workers or of trials told.
* **Idle** is the share of trial-slot time (workers × trials per worker × wall time) with
  no attempt running; failed attempts count as busy. **GPU-hours** are allocated hours
  (workers × ``compute.gpus`` × wall time), worker-hours when ``compute.gpus`` is 0.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from candle_lab.errors import SpecError, expected_got, shown
from candle_lab.trial.protocol import RETRYABLE

if TYPE_CHECKING:
    import pandas as pd

    from candle_lab.spec import ExperimentSpec

Mode = Literal["async", "batch"]
MODES: tuple[Mode, ...] = ("async", "batch")
RowKind = Literal["measured", "model", "what-if"]

GAP_FACTOR = 3.0  # gaps (and late first starts) longer than this many median durations are not dispatch
MIN_PAUSE = 1.0  # ... nor shorter than this many seconds idle pauses (trials of milliseconds)
RAN_STATES = ("completed", "failed", "stopped")
RETRYABLE_REASONS = RETRYABLE  # failures the engine retries
EVENT_BUDGET = 1_000_000  # simulated attempts over all repeats when the caller leaves repeats to us
DEFAULT_REPEATS = 200


@dataclass(frozen=True)
class Measured:
    """What one experiment measured, as the simulator uses it (seconds throughout).

    Built by :func:`measure` from a store, or by hand for a thought experiment."""

    durations: tuple[float, ...]  # one per trial that ran, in trial order
    workers: int  # compute.workers of the real run
    trials: int  # trials that ran (completed, failed, stopped)
    mode: Mode = "async"
    dispatch: float = 0.0  # median gap on a worker between one trial's end and the next one's start
    startup: tuple[float, ...] = ()  # first-start offsets of the real run's other workers
    failure_rate: float = 0.0  # retryable failed attempts over all attempts
    retries: int = 0  # trial.retries
    round_cost: float | None = None  # batch: median gap from a round's last end to the next one's first start
    batch_size: int | None = None  # batch: trials per round (None: one per worker)
    first_round: int = 0  # batch: the first round has at least this many trials
    trials_per_worker: int = 1  # compute.trials_per_worker (trials sharing a worker's GPUs)
    gpus: int = 0  # compute.gpus (per worker)
    wall: float | None = None  # the real run: first start to last end
    busy: float | None = None  # the real run: seconds of trials running (last attempts only)
    notes: tuple[str, ...] = ()  # what was assumed where the run measured nothing

    @property
    def median_duration(self) -> float:
        return float(np.median(self.durations))

    @property
    def idle(self) -> float | None:
        """The real run's idle share of its trial-slot time."""
        if self.wall is None or self.busy is None or self.wall <= 0:
            return None
        return max(0.0, 1.0 - self.busy / (self.workers * self.trials_per_worker * self.wall))

    def round_sizes(self, workers: int, trials: int) -> list[int]:
        """Trials per round in batch mode with ``workers`` workers, as the engine plans them."""
        size = self.batch_size or workers
        sizes: list[int] = []
        left = trials
        while left > 0:
            n = min(left, max(size, self.first_round) if not sizes else size)
            sizes.append(n)
            left -= n
        return sizes


@dataclass(frozen=True)
class Prediction:
    """One simulated configuration: medians over the repeats, the wall time's spread."""

    workers: int
    mode: Mode
    trials: int
    wall: float  # median seconds, first start to last end
    wall_p10: float
    wall_p90: float
    idle: float  # median share of trial-slot time with no attempt running
    worker_hours: float  # workers × wall
    gpu_hours: float | None  # workers × compute.gpus × wall; None without GPUs
    repeats: int


@dataclass(frozen=True)
class PlanRow:
    """One line of a plan: the real run (``measured``), the model of the real run
    (``model``, with its ``error`` against it) or a what-if."""

    kind: RowKind
    workers: int
    mode: Mode
    trials: int
    wall: float
    wall_p10: float | None
    wall_p90: float | None
    idle: float | None
    hours: float  # GPU-hours, or worker-hours without GPUs (see unit)
    unit: str  # "GPU-hours" | "worker-hours"
    speedup: float | None  # the real run's wall time over this row's (other trial counts: the model's of the
    # real run's configuration for as many trials)
    error: float | None = None  # model row: (predicted - real) / real

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


# ------------------------------------------------------------------------------- measuring
def measure(trials: pd.DataFrame, spec: ExperimentSpec, source: str = "experiment") -> Measured:
    """The figures of one experiment's trials table (:meth:`Store.trials_frame`)."""
    import pandas as pd

    search, compute = spec.search, spec.compute
    mode: Mode = "batch" if _batch(spec) else "async"
    if trials.empty or "started" not in trials:
        ran = trials.iloc[0:0]
    else:
        ran = trials[trials["state"].isin(RAN_STATES) & trials["started"].notna() & trials["ended"].notna()]
        ran = ran.sort_values("trial_id")
    if len(ran) < 2:
        raise SpecError.one(
            "experiment",
            f"expected an experiment with at least 2 finished trials to measure, got {len(ran)} in {source}",
        )
    started = ran["started"].astype(float).to_numpy()
    ended = ran["ended"].astype(float).to_numpy()
    durations = np.maximum(ended - started, 0.0)
    median = float(np.median(durations))
    limit = max(GAP_FACTOR * median, MIN_PAUSE)
    notes: list[str] = []

    attempts = ran["attempt"].fillna(1).astype(int).clip(lower=1) if "attempt" in ran else pd.Series(1, ran.index)
    reasons = ran["reason"] if "reason" in ran else pd.Series(None, ran.index, dtype=object)
    final_failures = int(((ran["state"] == "failed") & reasons.isin(RETRYABLE_REASONS)).sum())
    retried = int((attempts - 1).sum())
    failure_rate = (retried + final_failures) / int(attempts.sum())
    if retried:
        notes.append(
            f"{retried} failed attempts were retried: the store keeps each trial's last attempt, so the real "
            "run's idle share counts their time as idle; the model draws their durations from the others'"
        )

    lane = _lane_keys(ran)
    frame = pd.DataFrame({"lane": lane, "start": started, "end": ended,
                          "round": ran["round"].to_numpy() if "round" in ran else None})
    frame = frame.sort_values(["lane", "start"], kind="stable")
    gaps: list[np.ndarray] = []
    for _, own in frame.groupby("lane", sort=False):
        reach = np.maximum.accumulate(own["end"].to_numpy(float))  # shared lanes: the latest end so far
        gap = own["start"].to_numpy(float)[1:] - reach[:-1]
        keep = (gap >= 0) & (gap <= limit)
        if mode == "batch":  # across rounds: a barrier, not dispatch
            rounds = own["round"].to_numpy(object)
            keep &= np.array([a == b for a, b in zip(rounds[1:], rounds[:-1], strict=True)], dtype=bool)
        gaps.append(gap[keep])
    found = np.concatenate(gaps) if gaps else np.empty(0)
    dispatch = float(np.median(found)) if len(found) else 0.0
    if not len(found):
        notes.append("no worker ran two trials back to back (without a pause): dispatch overhead taken as 0")

    t0 = float(started.min())
    firsts = frame.groupby("lane", sort=False)["start"].min().to_numpy(dtype=float) - t0
    firsts = np.sort(firsts)[1:]  # the first lane starts at 0 by definition
    startup = tuple(float(f) for f in firsts if f <= limit)

    round_cost = None
    if mode == "batch" and frame["round"].notna().any():
        by_round = frame.dropna(subset=["round"]).groupby("round")
        first, last = by_round["start"].min().sort_index(), by_round["end"].max().sort_index()
        between = (first.to_numpy()[1:] - last.to_numpy()[:-1]).clip(min=0)
        if len(between):
            round_cost = float(np.median(between))
    if round_cost is None:
        round_cost = dispatch
        notes.append(
            f"the per-round proposal cost of batch mode was not measured ({mode} run): taken as the "
            f"dispatch overhead ({dispatch * 1000:.3g} ms)"
        )

    batch_size, first_round = search.batch_size, search.initial_points
    if search.algorithm == "ga":
        batch_size = first_round = search.population
    if batch_size is not None:
        setting = "search.population" if search.algorithm == "ga" else "search.batch_size"
        notes.append(f"batch rounds of {batch_size} trials ({setting}), whatever the workers")

    wall = float(ended.max()) - t0
    lanes_seen = len(set(lane))
    slots = compute.workers * compute.trials_per_worker
    if lanes_seen > slots:
        notes.append(f"{lanes_seen} worker lanes for {slots} trial slots: some workers were replaced")
    if "state" in trials and (trials["state"] == "running").any():
        notes.append("the experiment is still running: figures from its finished trials so far")
    return Measured(
        durations=tuple(float(d) for d in durations),
        workers=compute.workers,
        trials=len(ran),
        mode=mode,
        dispatch=dispatch,
        startup=startup,
        failure_rate=failure_rate,
        retries=spec.trial.retries,
        round_cost=round_cost,
        batch_size=batch_size,
        first_round=first_round,
        trials_per_worker=compute.trials_per_worker,
        gpus=compute.gpus,
        wall=wall,
        busy=float(durations.sum()),
        notes=tuple(notes),
    )


def _batch(spec: ExperimentSpec) -> bool:
    search = spec.search
    return search.algorithm == "batch-bo" or (search.algorithm == "ga" and search.generational)


def _lane_keys(ran: pd.DataFrame) -> list[str]:
    workers = ran["worker"] if "worker" in ran else [None] * len(ran)
    gpus = ran["gpu"] if "gpu" in ran else [None] * len(ran)
    return [f"{w}\x00{'' if g is None or (isinstance(g, float) and math.isnan(g)) else g}"
            for w, g in zip(workers, gpus, strict=True)]


# ------------------------------------------------------------------------------- simulating
class _Draws:
    """Attempt durations and failures for one repeat (bootstrap, or the measured order)."""

    def __init__(self, measured: Measured, rng: np.random.Generator, replay: bool, expected: int) -> None:
        self._values = np.asarray(measured.durations, dtype=float)
        self.rng, self._replay, self._chunk = rng, replay, max(16, expected)
        self._p = measured.failure_rate
        self._durations: list[float] = []
        self._failures: list[bool] = []
        self._i = 0
        self._k = 0  # replay position

    def next(self) -> tuple[float, bool]:
        if self._i >= len(self._durations):
            n = self._chunk
            if self._replay:
                idx = (np.arange(n) + self._k) % len(self._values)
                self._k += n
                self._durations = self._values[idx].tolist()
            else:
                self._durations = self.rng.choice(self._values, size=n).tolist()
            self._failures = (self.rng.random(n) < self._p).tolist() if self._p > 0 else [False] * n
            self._i = 0
        i = self._i
        self._i += 1
        return self._durations[i], self._failures[i]


def _round(
    n: int, starts: Sequence[float], draws: _Draws, dispatch: float, retries: int
) -> tuple[float, float]:
    """Run ``n`` trials on slots free at ``starts`` (each slot's first trial without dispatch
    overhead): the last end and the busy seconds. A failed attempt is re-run (first in
    line) from when it ended, while ``retries`` allows."""
    slots = [(t, i, True) for i, t in enumerate(starts)]
    heapq.heapify(slots)
    pending: list[tuple[float, int]] = []  # (when it may run, attempt) of re-runs
    fresh, end, busy = n, -math.inf, 0.0
    while fresh or pending:
        t, i, first = heapq.heappop(slots)
        if pending and pending[0][0] <= t:
            _, attempt = heapq.heappop(pending)
        elif fresh:
            fresh -= 1
            attempt = 1
        else:  # only re-runs are left, none ready yet: the slot that failed it runs it
            continue
        start = t if first else t + dispatch
        duration, failed = draws.next()
        stop = start + duration
        busy += duration
        end = max(end, stop)
        if failed and attempt <= retries:
            heapq.heappush(pending, (stop, attempt + 1))
        heapq.heappush(slots, (stop, i, False))
    return end, busy


def _once(measured: Measured, workers: int, mode: Mode, trials: int, draws: _Draws) -> tuple[float, float]:
    """One simulated run: wall time and busy seconds."""
    slots = workers * measured.trials_per_worker
    offsets = [0.0]
    if slots > 1 and measured.startup:
        offsets += draws.rng.choice(np.asarray(measured.startup), size=slots - 1).tolist()
    elif slots > 1:
        offsets += [0.0] * (slots - 1)
    if mode == "async":
        end, busy = _round(trials, offsets, draws, measured.dispatch, measured.retries)
        return end, busy
    cost = measured.round_cost if measured.round_cost is not None else measured.dispatch
    starts, total = offsets, 0.0
    end = 0.0
    for size in measured.round_sizes(workers, trials):
        end, busy = _round(size, starts, draws, measured.dispatch, measured.retries)
        total += busy
        starts = [end + cost] * slots
    return end, total


def simulate(
    measured: Measured,
    workers: int,
    mode: Mode,
    trials: int | None = None,
    *,
    seed: int = 0,
    repeats: int | None = None,
    sampling: Literal["bootstrap", "replay"] = "bootstrap",
) -> Prediction:
    """Simulate ``trials`` (default: as many as measured) on ``workers`` workers in
    ``mode``, ``repeats`` times (default: 200, fewer for very large runs); ``replay`` takes
    the measured durations in trial order instead of drawing them (failures stay random)."""
    trials = measured.trials if trials is None else trials
    _check_count("workers", workers)
    _check_count("trials", trials)
    if mode not in MODES:
        raise SpecError.one("mode", expected_got("'async' or 'batch'", mode))
    if not measured.durations:
        raise SpecError.one("durations", "expected at least one measured trial duration, got none")
    expected = math.ceil(trials * (1 + measured.failure_rate * max(1, measured.retries))) + 1
    if repeats is None:
        repeats = max(10, min(DEFAULT_REPEATS, EVENT_BUDGET // expected))
    _check_count("repeats", repeats)
    rng = np.random.default_rng(seed)
    walls, idles = np.empty(repeats), np.empty(repeats)
    capacity = workers * measured.trials_per_worker
    for r in range(repeats):
        draws = _Draws(measured, rng, sampling == "replay", expected)
        wall, busy = _once(measured, workers, mode, trials, draws)
        walls[r] = wall
        idles[r] = max(0.0, 1.0 - busy / (capacity * wall)) if wall > 0 else 0.0
    wall = float(np.median(walls))
    return Prediction(
        workers=workers,
        mode=mode,
        trials=trials,
        wall=wall,
        wall_p10=float(np.percentile(walls, 10)),
        wall_p90=float(np.percentile(walls, 90)),
        idle=float(np.median(idles)),
        worker_hours=workers * wall / 3600,
        gpu_hours=workers * measured.gpus * wall / 3600 if measured.gpus else None,
        repeats=repeats,
    )


# ------------------------------------------------------------------------------- planning
def default_workers(measured: Measured) -> list[int]:
    """Half, the same, 2x, 4x and 8x the measured workers."""
    w = measured.workers
    return sorted({max(1, w // 2), w, 2 * w, 4 * w, 8 * w})


def plan(
    measured: Measured,
    workers: Iterable[int] | None = None,
    modes: Iterable[str] | None = None,
    *,
    trials: int | None = None,
    seed: int = 0,
    repeats: int | None = None,
) -> list[PlanRow]:
    """The real run, the model of the real run (its self-check error), then one row per
    ``workers`` × ``modes`` (defaults: :func:`default_workers`, both modes) for ``trials``
    trials (default: as many as the real run)."""
    worker_list = check_workers(default_workers(measured) if workers is None else workers, "workers")
    mode_list = check_modes(MODES if modes is None else modes, "modes")
    trials = measured.trials if trials is None else trials
    _check_count("trials", trials)
    unit = "GPU-hours" if measured.gpus else "worker-hours"
    per_hour = measured.workers * (measured.gpus or 1) / 3600
    real = measured.wall
    rows: list[PlanRow] = []
    baseline = real
    if real is not None:
        rows.append(PlanRow("measured", measured.workers, measured.mode, measured.trials, real, None, None,
                            measured.idle, real * per_hour, unit, 1.0))
        own = simulate(measured, measured.workers, measured.mode, measured.trials, seed=seed, repeats=repeats)
        rows.append(_row("model", own, real, unit, error=(own.wall - real) / real if real > 0 else None))
    if real is None or trials != measured.trials:  # compare like with like: as many trials
        baseline = simulate(measured, measured.workers, measured.mode, trials, seed=seed, repeats=repeats).wall
    for w in worker_list:
        for m in mode_list:
            if real is not None and (w, m, trials) == (measured.workers, measured.mode, measured.trials):
                continue  # the model row says it
            rows.append(_row("what-if", simulate(measured, w, m, trials, seed=seed, repeats=repeats), baseline, unit))
    return rows


def _row(kind: RowKind, p: Prediction, baseline: float | None, unit: str, error: float | None = None) -> PlanRow:
    hours = p.gpu_hours if p.gpu_hours is not None else p.worker_hours
    speedup = baseline / p.wall if baseline and p.wall > 0 else None
    return PlanRow(kind, p.workers, p.mode, p.trials, p.wall, p.wall_p10, p.wall_p90, p.idle, hours, unit, speedup,
                   error)


# ------------------------------------------------------------------------------- shown
COLUMNS = ("", "workers", "mode", "trials", "wall time", "p10–p90", "idle", "hours", "speed-up")
LEGEND = ("wall time: first trial start to last trial end (cluster start-up not included); p10–p90: spread over "
          "simulated runs; model: the simulation of the real run's configuration (in brackets: its error against "
          "the real run); speed-up: against the real run (for another number of trials: against the simulation "
          "of the real run's allocation)")


def headline(exp_id: str, m: Measured) -> str:
    """What the plan was measured from, in one line."""
    from candle_lab.formatting import duration

    return (
        f"{exp_id}: {m.trials} trials, median {duration(m.median_duration)} each, on {m.workers} workers "
        f"({m.mode}); dispatch {m.dispatch * 1000:.3g} ms/trial"
        + (f", {duration(m.round_cost)} per round" if m.mode == "batch" and m.round_cost is not None else "")
        + f"; {m.failure_rate:.0%} of attempts failed (retries {m.retries})"
    )


def cells(rows: Sequence[PlanRow]) -> list[list[str]]:
    """The rows as text, in the order of :data:`COLUMNS` (``hours``: the rows' unit)."""
    from candle_lab.formatting import duration

    out = []
    for r in rows:
        label = f"model ({r.error:+.1%})" if r.kind == "model" and r.error is not None else str(r.kind)
        spread = "–" if r.wall_p10 is None or r.wall_p90 is None else f"{duration(r.wall_p10)} – {duration(r.wall_p90)}"
        out.append([
            label, str(r.workers), r.mode, str(r.trials), duration(r.wall), spread,
            "–" if r.idle is None else f"{r.idle:.1%}", f"{r.hours:.3g}",
            "–" if r.speedup is None else f"{r.speedup:.2f}x",
        ])
    return out


def text_table(exp_id: str, measured: Measured, rows: Sequence[PlanRow]) -> str:
    """The plan as the command line prints it."""
    header = [*COLUMNS[:7], rows[0].unit if rows else "", COLUMNS[8]]
    body = cells(rows)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    right = {1, 3, 6, 7, 8}
    lines = [headline(exp_id, measured), ""]
    for row in [header, *body]:
        lines.append("  ".join(c.rjust(w) if i in right else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
    lines += ["", LEGEND, *(f"note: {n}" for n in measured.notes)]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- input
def check_workers(values: Iterable[object], name: str = "workers") -> list[int]:
    """Whole numbers ≥ 1, in order, without repeats (``name`` is the option in messages)."""
    out: list[int] = []
    given = list(values)
    if not given:
        raise SpecError.one(name, expected_got("at least one worker count, e.g. 8,32,128", given))
    for v in given:
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise SpecError.one(name, expected_got("worker counts that are whole numbers ≥ 1, e.g. 8,32,128", v))
        if int(v) not in out:
            out.append(int(v))
    return out


def check_modes(values: Iterable[object], name: str = "modes") -> list[Mode]:
    out: list[Mode] = []
    given = list(values)
    if not given:
        raise SpecError.one(name, expected_got("async, batch or async,batch", given))
    for v in given:
        if v not in MODES:
            raise SpecError.one(name, expected_got("modes among 'async' and 'batch', e.g. async,batch", v))
        mode: Mode = "async" if v == "async" else "batch"
        if mode not in out:
            out.append(mode)
    return out


def parse_workers(text: str, option: str = "--workers") -> list[int]:
    """``"8,32,128"`` -> ``[8, 32, 128]``; an error naming ``option`` otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    if not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise SpecError.one(
            option, f"expected comma-separated whole numbers ≥ 1 (e.g. 8,32,128), got {shown(text)}"
        )
    return check_workers([int(p) for p in parts], option)


def parse_modes(text: str, option: str = "--mode") -> list[Mode]:
    """``"async,batch"`` -> ``["async", "batch"]``; an error naming ``option`` otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    if not all(p in MODES for p in parts):
        raise SpecError.one(option, f"expected async, batch or async,batch, got {shown(text)}")
    return check_modes(parts, option)


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise SpecError.one(name, expected_got("a whole number ≥ 1", value))


__all__ = [
    "MODES",
    "Measured",
    "Mode",
    "PlanRow",
    "Prediction",
    "check_modes",
    "check_workers",
    "default_workers",
    "measure",
    "parse_modes",
    "parse_workers",
    "plan",
    "simulate",
]
