"""State of the live dashboard and of the experiment browser, polled from the stores.

Plain ``param.Parameterized`` classes: views watch ``version`` and render; tests call
:meth:`ExperimentMonitor.refresh` and read the data. Polling is cheap when nothing
changed (SQLite's ``data_version``), and metrics are read incrementally.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import param

from candle_lab import analysis, api, formatting, monitor, pareto, planner
from candle_lab.bounds import Boundary
from candle_lab.efficiency import EVENT_KINDS, Efficiency, experiment_efficiency
from candle_lab.errors import CandleLabError, SpecError, expected_got
from candle_lab.spec import ExperimentSpec
from candle_lab.store import DB_NAME, FINAL_STATES, Store, experiments_root
from candle_lab.trial.gpus import is_system

log = logging.getLogger(__name__)

RUNNING_TICK_SECONDS = 1.0  # running bars grow on screen even when no event arrives
CURVES_SHOWN = 40  # loss curves drawn when no top-K filter is set: the latest trials
GANTT_BARS = 5000  # past this, consecutive finished trials of a worker share a bar
TABLE_ROWS = 500  # trials the table holds (the best, and every running one)


PLAN_REPEATS = 50  # simulated runs per what-if row on the dashboard (the CLI's default: more)
PARETO_SECONDS = 5.0  # while a search runs, its front and hypervolume are computed again at most this often
SHARED_READS = 4  # experiments whose latest read a server process keeps for the next session that opens them


@dataclass(frozen=True)
class ParetoView:
    """A multi-objective experiment's front as the views draw it: a new object only when
    computed again (a view redraws when the object it drew from is not this one)."""

    trials: pd.DataFrame  # the trials it was computed from
    front: pd.DataFrame  # pareto.front: the trials on the front, best first by the main objective
    hypervolume: pd.DataFrame  # pareto.hypervolume_over_time
    origin: float  # monitor.origin: the time axis starts there
    infeasible: int  # trials that broke a constraint


@dataclass(frozen=True)
class _Tally:
    """What a poll would otherwise count again over every trial: the trials in each final
    state and the best completed trial. A final state never changes, so each poll adds
    only the trials that reached one."""

    final: dict[str, int] = field(default_factory=dict)
    best: tuple[float, int] | None = None  # (objective, trial_id) of the best completed trial

    def add(self, trials: pd.DataFrame, direction: str) -> _Tally:
        """This tally with ``trials`` counted too (those not in a final state are passed over)."""
        if trials.empty:
            return self
        final = dict(self.final)
        reached = trials[np.isin(trials["state"].to_numpy(dtype=object), list(FINAL_STATES))]
        for state, n in monitor.state_counts(reached).items():
            if n:
                final[state] = final.get(state, 0) + n
        best, top = self.best, monitor.top_trials(trials, 1, direction)
        if not top.empty:
            value = float(top["objective"].iloc[0])
            if best is None or (value < best[0] if direction == "minimize" else value > best[0]):
                best = (value, int(top["trial_id"].iloc[0]))
        return _Tally(final, best)


@dataclass(frozen=True)
class _Read:
    """Where one session's reading of an experiment's store got to. A final state never
    changes, so a later session starts from here and reads only what changed since: the
    second page open of a 100,000-trial experiment in a server process skips the 0.7 s read
    (and, while nothing changed, the views computed from it: ``memos``)."""

    trials: pd.DataFrame
    live: dict[int, tuple[Any, ...]]
    metrics: pd.DataFrame
    metrics_row: int
    gpu_samples: pd.DataFrame
    tally: _Tally = field(default_factory=_Tally)
    memos: dict[str, tuple[pd.DataFrame, tuple[Any, ...], Any]] = field(default_factory=dict)


_reads: OrderedDict[tuple[Any, ...], _Read] = OrderedDict()  # by store: the latest read, newest last


def _read_key(store: Store, db: Path) -> tuple[Any, ...] | None:
    """The store as itself: a folder whose store was made again holds another."""
    try:
        return str(db.resolve()), db.stat().st_ino, store.meta().get("created")
    except OSError:
        return None


class ExperimentMonitor(param.Parameterized):
    """One experiment's data for the dashboard: trials, per-epoch metrics, status."""

    path = param.String(default="", doc="Experiment folder")
    trials = param.DataFrame(default=pd.DataFrame(), doc="One row per trial (Store.trials_frame)")
    metrics = param.DataFrame(default=pd.DataFrame(), doc="Per-step metrics, long format")
    status = param.Parameter(default=None, doc="api.Status of the last refresh")
    top_k = param.Integer(default=0, bounds=(0, None), doc="Show only the best K trials (0: all)")
    metric = param.String(default="", doc="Per-epoch metric of the loss curves")
    version = param.Integer(default=0, doc="Bumped whenever the data changed")
    changed_at = param.Number(default=0.0, doc="When the last change was read (time.time())")
    message = param.String(default="", doc="What the last action did")
    selected = param.Integer(default=None, allow_None=True, doc="The trial picked in any chart or the table")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._store: Store | None = None
        self._data_version: int | None = None
        self._metrics_row = 0
        self._gpu_samples = monitor.gpu_samples(pd.DataFrame())  # sys.gpu_util per trial, kept up to date
        self._tick = 0.0
        self._live: dict[int, tuple[Any, ...]] = {}  # trials not final: (state, attempt, started)
        self._tally = _Tally()  # trials in final states, counted as they reach one
        self._memos: dict[str, tuple[pd.DataFrame, tuple[Any, ...], Any]] = {}  # shared with _Read
        self._read_key: tuple[Any, ...] | None = None
        self._pareto: tuple[tuple[Any, ...], float, ParetoView] | None = None  # (key, when, view)
        self.spec: ExperimentSpec | None = None
        self.experiment: api.Experiment | None = None
        if self.path:
            self.open(self.path)

    # ------------------------------------------------------------------ loading
    def open(self, path: str | Path) -> None:
        self.close()
        exp = api.Experiment(Path(path))
        self.experiment, self.spec = exp, exp.spec
        self._store = Store(exp.path / DB_NAME, readonly=True)
        self._read_key = _read_key(self._store, exp.path / DB_NAME)
        read = _reads.get(self._read_key) if self._read_key else None
        if read is None:
            read = _Read(pd.DataFrame(), {}, pd.DataFrame(), 0, monitor.gpu_samples(pd.DataFrame()))
        self._data_version, self._metrics_row = None, read.metrics_row
        self._live, self._gpu_samples, self._memos = dict(read.live), read.gpu_samples, read.memos
        self._tally = read.tally
        with param.parameterized.batch_call_watchers(self):
            self.param.update(
                path=str(exp.path),
                trials=read.trials,
                metrics=read.metrics,
                metric=self.spec.objective.metric,
                message="",
                selected=None,
            )
        self.refresh()
        if not self.metrics.empty:
            self.metric = self._curve_metric()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def refresh(self) -> bool:
        """Read what changed since the last call; returns whether anything did."""
        if self._store is None or self.experiment is None:
            return False
        version = self._store.data_version()
        now = time.time()
        if version == self._data_version:
            running = self.status is not None and self.status.running > 0
            if running and now - self._tick >= RUNNING_TICK_SECONDS:
                self._tick = now
                self.version += 1  # running bars reach "now"
            return False
        self._data_version = version
        trials = self._read_trials()
        new = self._store.metrics_frame(after=self._metrics_row)
        metrics = self.metrics
        if not new.empty:
            self._metrics_row = int(new["row"].max())
            self._gpu_samples = monitor.add_samples(self._gpu_samples, monitor.gpu_samples(new))
            metrics = new if metrics.empty else pd.concat([metrics, new], ignore_index=True)
        meta = self._store.meta()
        live = Counter(state for state, *_ in self._live.values())
        counts = {s: self._tally.final.get(s, 0) + live.get(s, 0) for s in monitor.STATE_ORDER}
        best = self._tally.best
        status = self.experiment.status_of(
            meta, len(trials), counts, None if best is None else best[0], monitor.elapsed(trials, now)
        )
        self._tick = now
        if trials is not self.trials:
            self._memos = {}
        self._share_read(trials, metrics)
        with param.parameterized.batch_call_watchers(self):
            self.param.update(trials=trials, metrics=metrics, status=status, changed_at=now)
            if not new.empty:
                self.metric = self._curve_metric()
            self.version += 1
        return True

    def _share_read(self, trials: pd.DataFrame, metrics: pd.DataFrame) -> None:
        """Leave this read for the next session that opens the experiment in this process
        (the :data:`SHARED_READS` latest experiments are kept)."""
        if self._read_key is None:
            return
        _reads[self._read_key] = _Read(trials, dict(self._live), metrics, self._metrics_row, self._gpu_samples,
                                       self._tally, self._memos)
        _reads.move_to_end(self._read_key)
        while len(_reads) > SHARED_READS:
            _reads.popitem(last=False)

    def _read_trials(self) -> pd.DataFrame:
        """The trials, reading only what changed: new trials, and those not yet in a final
        state (a final state never changes) whose state, attempt or start moved, so a poll
        stays cheap at 100k trials and 1000 running."""
        assert self._store is not None
        old = self.trials
        if old.empty or "trial_id" not in old:
            fresh = self._store.trials_frame()
            self._live, self._tally = _live_keys(fresh), _Tally().add(fresh, self.direction)
            return fresh
        now = self._store.changes(list(self._live))
        moved = [t for t, seen in self._live.items() if now.get(t) != seen]
        fresh = self._store.trials_frame(newer_than=int(old["trial_id"].iloc[-1]), ids=moved)
        if fresh.empty:
            return old
        for t in moved:
            del self._live[t]
        self._live.update(_live_keys(fresh))
        self._tally = self._tally.add(fresh, self.direction)
        return _merged(old, fresh)

    def _curve_metric(self) -> str:
        """Keep the chosen metric while trials report it; else the objective's, else a loss."""
        names = self.metric_names()
        if self.metric in names:
            return self.metric
        preferred = [self.spec.objective.metric if self.spec else "", "val_loss", "loss"]
        return next((n for n in preferred if n in names), names[0] if names else self.metric)

    # ------------------------------------------------------------------ derived views of the data
    @property
    def direction(self) -> str:
        return self.spec.objective.direction if self.spec else "minimize"

    def best_row(self, trials: pd.DataFrame | None = None) -> pd.Series | None:
        """The best completed trial of ``trials``; of this experiment's trials by default,
        found from the tally, not by a pass over every trial."""
        if trials is not None and trials is not self.trials:
            best = monitor.top_trials(trials, 1, self.direction)
            return None if best.empty else best.iloc[0]
        if self._tally.best is None or self.trials.empty:
            return None
        ids = self.trials["trial_id"].to_numpy()
        at = int(np.searchsorted(ids, self._tally.best[1]))
        return self.trials.iloc[at] if at < len(ids) and ids[at] == self._tally.best[1] else None

    def _memo(self, name: str, compute: Any, *key: Any) -> Any:
        """``compute()``, again only when the trials frame (or ``key``) changed: a tick that
        only moves "now" (running bars growing) redraws in milliseconds at 100,000 trials."""
        held = self._memos.get(name)
        if held is not None and held[0] is self.trials and held[1] == key:
            return held[2]
        value = compute()
        self._memos[name] = (self.trials, key, value)
        return value

    def gantt(self) -> pd.DataFrame:
        """The Gantt's bars; between reads of the store only running and queued bars change
        (they end "now")."""
        bars, t0 = self._memo(
            "gantt", lambda: (monitor.gantt_rows(self.trials, queued=True, limit=GANTT_BARS,
                                                 earlier=self._earlier_attempts(), direction=self.direction),
                              monitor.origin(self.trials)))
        busy = self.lane_busy()
        live = bars["state"].isin(["running", "queued"]).to_numpy()
        if not live.any() and busy.empty:
            return bars
        bars = bars.copy()
        if live.any():
            bars.loc[live, "end"] = time.time() - t0
        if not busy.empty:  # GPU lanes say how busy their GPU was: "job 12 · GPU 0 — 93% busy"
            labels = {lane: monitor.busy_label(lane, pct) for lane, pct in busy.items()}
            bars["lane"] = bars["lane"].map(labels).fillna(bars["lane"])
        return bars

    def lane_busy(self) -> pd.Series:
        """Mean GPU busy % per Gantt lane, from the trials' ``sys.gpu_util`` samples (none
        without ``nvidia-smi`` on the workers)."""
        return self._memo("lane_busy", lambda: monitor.lane_busy(self.trials, self._gpu_samples),
                          self._metrics_row)

    def boundaries(self) -> list[str]:
        """The bounds the best trials gather at, with a wider one to try (the engine's
        ``boundary`` events; read again only when the trials changed)."""
        if self._store is None:
            return []
        store = self._store
        return self._memo("boundaries", lambda: [str(Boundary(**e[3])) for e in store.events(["boundary"])])

    def history(self) -> list[str]:
        """What changed the search from outside: trials imported from other experiments
        (warm start) and budget or worker changes, oldest first."""
        if self._store is None:
            return []
        store = self._store
        return self._memo("history", lambda: [_history_line(e) for e in store.events(["warm-start", "changed"])])

    def _earlier_attempts(self) -> pd.DataFrame | None:
        """Attempts cut off and run again (read with the trials: a few events at most)."""
        return None if self._store is None else monitor.earlier_attempts(self._store.events(["retry"]))

    def slots(self) -> int:
        """Trials that run at once (workers, times the trials sharing each one's GPUs)."""
        return 1 if self.spec is None else monitor.slots(self.spec.compute)

    def usage(self) -> monitor.Utilization:
        if self.spec is None:
            return monitor.utilization(self.trials, 1)
        return monitor.compute_utilization(self.trials, self.spec.compute)

    def efficiency(self) -> Efficiency | None:
        """The experiment's HPC efficiency figures, computed again only when the trials
        frame changed (the worker events are read then too)."""
        if self.spec is None or self._store is None:
            return None
        return self._memo("efficiency", self._efficiency, self._metrics_row)

    def _efficiency(self) -> Efficiency:
        assert self.spec is not None and self._store is not None
        events = self._store.events(EVENT_KINDS)
        running = self.status is not None and self.status.driver_alive
        return experiment_efficiency(self.trials, self.metrics, events, self.spec.compute, running=running)

    def phase(self) -> str:
        """What the experiment is doing while nothing shows yet: "starting the cluster",
        "waiting for workers", "first epoch"; "" once results arrive."""
        s = self.status
        if s is None or not s.driver_alive or self.spec is None:
            return ""
        trials = self.trials
        if trials.empty:
            return "starting the cluster and proposing the first trials"
        if trials["started"].isna().all():
            return f"waiting for workers ({self.spec.compute.workers} asked; first trials queued)"
        if self.metrics.empty and s.completed == 0:
            return "importing the model and training the first epoch"
        return ""

    def running_series(self) -> pd.DataFrame:
        return monitor.running_over_time(self.trials, points=analysis.MAX_POINTS)

    @property
    def multi_objective(self) -> bool:
        return self.spec is not None and self.spec.multi_objective

    def pareto(self) -> ParetoView | None:
        """With several objectives, the front and its hypervolume over time (None with one):
        computed again only when a trial completed, and while the search runs at most every
        :data:`PARETO_SECONDS` (100,000 trials of 4 objectives take a second or two)."""
        if self.spec is None or not self.spec.multi_objective:
            return None
        key, now, held = (self.path, self.completed_count()), time.monotonic(), self._pareto
        if held is not None and held[0][0] == key[0]:
            running = self.status is not None and self.status.driver_alive
            if held[0] == key or (running and now - held[1] < PARETO_SECONDS):
                return held[2]
        trials, goals = self.trials, self.spec.goals
        infeasible = int((trials["feasible"] == 0).sum()) if "feasible" in trials else 0
        view = ParetoView(trials, pareto.front(trials, goals), pareto.hypervolume_over_time(trials, goals),
                          monitor.origin(trials), infeasible)
        self._pareto = (key, now, view)
        return view

    def best_curve(self) -> pd.DataFrame:
        return self._memo("best", lambda: monitor.thinned(monitor.best_so_far(self.trials, self.direction),
                                                          analysis.MAX_POINTS), self.direction)

    def table(self) -> pd.DataFrame:
        """Trials for the table: best first, top-K when set (at most :data:`TABLE_ROWS`, then
        the running ones); parameters as columns."""
        return self._memo("table", self._table, self.top_k, self.direction)

    def _table(self) -> pd.DataFrame:
        k = min(self.top_k or TABLE_ROWS, TABLE_ROWS)
        rows = monitor.top_trials(self.trials, k, self.direction)
        if not self.trials.empty:
            live = self.trials[self.trials["state"] == "running"]
            rows = pd.concat([rows, live[~live.index.isin(rows.index)]])
        if rows.empty:
            return pd.DataFrame(columns=["trial_id", "run_id", "state", "objective"])
        params = [c for c in rows.columns if c.startswith("param.")]
        cols = ["trial_id", "run_id", "state", "objective", *params, "attempt", "worker", "duration", "reason"]
        out = rows[[c for c in cols if c in rows.columns]].copy()
        # numbers as people read them, still numbers (the columns sort): 5 significant
        # figures for the objective, 4 for parameters, durations to a tenth of a second
        for column, digits in (("objective", 5), *((p, 4) for p in params)):
            out[column] = out[column].map(lambda v, d=digits: _rounded(v, d))
        if "duration" in out:
            out["duration"] = pd.to_numeric(out["duration"], errors="coerce").round(1)
        if "worker" in out:
            out["worker"] = monitor.lanes(rows)
        out = out.rename(columns={**{c: c[6:] for c in params}, "duration": "duration (s)"})
        return out.reset_index(drop=True)

    def shown_trials(self) -> list[int]:
        """Trials whose loss curves are drawn: the top K, else the latest ones."""
        if self.trials.empty:
            return []
        if self.top_k > 0:
            return [int(t) for t in monitor.top_trials(self.trials, self.top_k, self.direction)["trial_id"]]
        return [int(t) for t in self.trials["trial_id"].tail(CURVES_SHOWN)]

    def curves(self, trial_ids: list[int] | None = None) -> dict[int, pd.DataFrame]:
        return monitor.loss_curves(self.metrics, self.metric, self.shown_trials() if trial_ids is None else trial_ids)

    def states_of(self, trial_ids: list[int]) -> dict[int, str]:
        """The state of each of these trials (for curves that say how each ended)."""
        if self.trials.empty:
            return {}
        rows = self.trials[self.trials["trial_id"].isin(trial_ids)]
        return {int(t): str(s) for t, s in zip(rows["trial_id"], rows["state"], strict=True)}

    # ------------------------------------------------------------------ analysis (bounded at any size)
    def importance(self) -> pd.DataFrame:
        return self._memo("importance", lambda: analysis.importance(self.trials, self.direction), self.direction)

    def slices(self) -> dict[str, tuple[analysis.Axis, pd.DataFrame]]:
        return analysis.slices(self.trials, self.direction)

    def contour(self, x: str, y: str) -> analysis.Contour | None:
        return analysis.contour(self.trials, x, y, self.direction)

    def edf(self) -> pd.DataFrame:
        return analysis.edf(self.trials)

    def parallel(self) -> tuple[list[analysis.Axis], np.ndarray]:
        return analysis.parallel(self.trials, self.direction)

    def varying(self) -> list[str]:
        """Parameters that take more than one value among the completed trials."""
        return analysis.varying_parameters(analysis.completed(self.trials, self.direction, analysis.MAX_POINTS))

    def completed_count(self) -> int:
        return 0 if self.status is None else int(self.status.completed)

    @property
    def population_based(self) -> bool:
        return self.spec is not None and self.spec.search.algorithm == "pbt"

    def population(self) -> tuple[dict[int, pd.DataFrame], pd.DataFrame]:
        """PBT: each member's curve of the chosen metric and its exploit jumps."""
        return monitor.population_curves(self.trials, self.metrics, self.metric)

    def lineage(self) -> pd.DataFrame:
        return monitor.lineage(self.trials)

    def metric_names(self) -> list[str]:
        names = [] if self.metrics.empty else sorted(n for n in self.metrics["name"].unique() if not is_system(n))
        return names or ([self.metric] if self.metric else [])

    def running_trials(self) -> list[int]:
        if self.trials.empty:
            return []
        return [int(t) for t in self.trials.loc[self.trials["state"].isin(["running", "queued"]), "trial_id"]]

    # ------------------------------------------------------------------ controls
    def stop(self) -> None:
        if self.experiment is not None:
            self.experiment.stop()
            self.message = f"asked {self.experiment.id} to stop"

    def stop_trial(self, trial_id: int) -> None:
        if self.experiment is not None:
            self.experiment.stop_trial(trial_id)
            self.message = f"asked trial {trial_id} to stop"

    def can_resume(self) -> bool:
        return self.status is not None and not self.status.driver_alive and self.status.state != "created"

    def resume(self) -> None:
        """Continue the experiment in a new detached driver process."""
        if self.experiment is None:
            return
        try:
            api.resume(self.experiment.path, wait=False)
        except CandleLabError as exc:
            self.message = str(exc)
            return
        self.message = f"resumed {self.experiment.id}"

    def change(self, budget: str, workers: str) -> None:
        """A new budget (trials in all) or worker count for this experiment; blank leaves
        it. Running: from now on; stopped: when it resumes. The outcome is in ``message``."""
        if self.experiment is None:
            return
        try:
            spec = self.experiment.change(max_trials=_count(budget, "budget"), workers=_count(workers, "workers"))
        except CandleLabError as exc:
            self.message = str(exc)
            return
        when = "from now on" if self.status is not None and self.status.driver_alive else "when it resumes"
        total = spec.budget.max_trials if spec.budget.max_trials is not None else "unlimited"
        self.message = f"{self.experiment.id}: budget {total} trials, {spec.compute.workers} workers ({when})"

    def plan(self, workers: str, modes: list[str]) -> tuple[str, pd.DataFrame] | None:
        """What-if (:mod:`candle_lab.planner`) for ``workers`` ("8,32,128"; empty: around this
        run's) and ``modes``: its headline and table; None (the reason in ``message``) when
        the input or the experiment cannot be planned from."""
        if self.experiment is None or self.spec is None:
            return None
        try:
            counts = planner.parse_workers(workers, "workers") if workers.strip() else None
            chosen = planner.check_modes(modes, "modes") if modes else None
            measured = planner.measure(self.trials, self.spec, self.experiment.id)
            rows = planner.plan(measured, counts, chosen, repeats=PLAN_REPEATS)
        except CandleLabError as exc:
            self.message = str(exc)
            return None
        table = pd.DataFrame(planner.cells(rows), columns=list(planner.COLUMNS))
        if rows:
            table = table.rename(columns={"hours": rows[0].unit, "": "row"})
        self.message = ""
        return planner.headline(self.experiment.id, measured), table

    def ensemble(self, top: int, method: str, members: int) -> api.Experiment | None:
        """An uncertainty ensemble of this experiment's best configurations, started in a
        detached driver; None (and the reason in ``message``) when it cannot start."""
        if self.experiment is None:
            return None
        try:
            started = api.ensemble(self.experiment, top=top, method=method, members=members, wait=False)
        except CandleLabError as exc:
            self.message = str(exc)
            return None
        self.message = f"started {started.id}: {method} ensemble of the {top} best of {self.experiment.id}"
        return started


class ExperimentBrowser(param.Parameterized):
    """The experiments of one folder, with their status, for listing and comparing."""

    root = param.String(default="", doc="Experiments folder ('' = the default)")
    table = param.DataFrame(default=pd.DataFrame())
    selected = param.List(default=[], item_type=str, doc="Experiment ids picked in the list")

    def refresh(self) -> None:
        columns = ["id", "name", "state", "algorithm", "trials", "completed", "failed", "running", "best",
                   "duration", "created"]
        rows = [
            {c: getattr(s, c) for c in columns[:-3]}
            | {
                "best": "–" if s.best is None else
                f"{s.metric} {'↓' if s.direction == 'minimize' else '↑'} {formatting.number(s.best)}",
                "duration": formatting.duration(s.duration),
                "created": pd.to_datetime(s.created or 0, unit="s").strftime("%Y-%m-%d %H:%M"),
            }
            for s in api.statuses(self.root or None)
        ]
        self.table = pd.DataFrame(rows, columns=columns).iloc[::-1].reset_index(drop=True)

    def path_of(self, exp_id: str) -> Path:
        return experiments_root(self.root or None) / exp_id

    def compare(self, ids: list[str]) -> dict[str, ExperimentMonitor]:
        """Monitors of the experiments to compare side by side."""
        out = {}
        for exp_id in ids:
            with contextlib.suppress(CandleLabError):
                out[exp_id] = ExperimentMonitor(path=str(self.path_of(exp_id)))
        return out


def _rounded(value: Any, digits: int) -> Any:
    """A float to ``digits`` significant figures; anything else as it is."""
    if isinstance(value, float) and np.isfinite(value) and value != 0:
        return round(value, digits - 1 - int(np.floor(np.log10(abs(value)))))
    return value


def _merged(old: pd.DataFrame, fresh: pd.DataFrame) -> pd.DataFrame:
    """``old`` with the rows of ``fresh`` (both in trial order) in place of the trials' older
    rows and the new trials after them. Only the rows from the first trial that moved on
    are put together again: running trials are the latest, so that is a short tail, and a
    poll at 100,000 trials costs one concatenation."""
    ids, again = old["trial_id"].to_numpy(), fresh["trial_id"].to_numpy()
    cut = int(np.searchsorted(ids, again[0]))
    tail = fresh
    if cut < len(old):
        tail = pd.concat([old.iloc[cut:], fresh], ignore_index=True)
        tail_ids = tail["trial_id"].to_numpy()
        order = np.argsort(tail_ids, kind="stable")  # a trial's fresh row after its old one
        in_order = tail_ids[order]
        tail = tail.take(order[np.append(in_order[1:] != in_order[:-1], True)])
    merged = pd.concat([old.iloc[:cut], tail], ignore_index=True)
    for column in fresh.columns:  # e.g. a column that held only None until now
        if column in old and old[column].dtype != fresh[column].dtype:
            merged[column] = merged[column].infer_objects()
    return merged


def _live_keys(trials: pd.DataFrame) -> dict[int, tuple[Any, ...]]:
    """``(state, attempt, started)`` of the trials not in a final state, as
    :meth:`Store.changes` returns them (what a poll compares to find the ones that moved)."""
    live = trials.loc[~trials["state"].isin(FINAL_STATES), ["trial_id", "state", "attempt", "started"]]
    return {
        int(t): (str(s), int(a), None if pd.isna(st) else float(st))
        for t, s, a, st in live.itertuples(index=False)
    }


def _count(text: str, field: str) -> int | None:
    """A whole number ≥ 1 typed in a box; None when blank."""
    text = str(text or "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise SpecError.one(field, expected_got("a whole number ≥ 1 (or nothing: unchanged)", text))
    return int(text)


def _history_line(event: tuple[float, str, int | None, Any]) -> str:
    when, kind, _, detail = event
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(when))
    if kind == "warm-start":
        return f"warm start: {detail.get('text', '')}"
    changes = ", ".join(f"{k} {v['from'] if v['from'] is not None else 'unlimited'} → {v['to']}"
                        for k, v in (detail or {}).items())
    return f"{stamp} changed: {changes or 'nothing'}"
