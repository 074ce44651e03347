"""State of the live dashboard and of the experiment browser, polled from the stores.

Plain ``param.Parameterized`` classes: views watch ``version`` and render; tests call
:meth:`ExperimentMonitor.refresh` and read the data. Polling is cheap when nothing
changed (SQLite's ``data_version``), and metrics are read incrementally.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import param

from candle_lab import api, monitor
from candle_lab.errors import CandleLabError
from candle_lab.spec import ExperimentSpec
from candle_lab.store import DB_NAME, FINAL_STATES, Store, experiments_root

log = logging.getLogger(__name__)

RUNNING_TICK_SECONDS = 1.0  # running bars grow on screen even when no event arrives
CURVES_SHOWN = 40  # loss curves drawn when no top-K filter is set: the latest trials


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

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._store: Store | None = None
        self._data_version: int | None = None
        self._metrics_row = 0
        self._tick = 0.0
        self._live: dict[int, tuple[Any, ...]] = {}  # trials not final: (state, attempt, started)
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
        self._data_version, self._metrics_row = None, 0
        with param.parameterized.batch_call_watchers(self):
            self.param.update(
                path=str(exp.path),
                trials=pd.DataFrame(),
                metrics=pd.DataFrame(),
                metric=self.metric or self.spec.objective.metric,
                message="",
            )
        self.refresh()

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
            metrics = new if metrics.empty else pd.concat([metrics, new], ignore_index=True)
        meta = self._store.meta()
        counts = monitor.state_counts(trials)
        best = self.best_row(trials)
        status = self.experiment.status_of(meta, len(trials), counts, None if best is None else best["objective"])
        self._tick = now
        with param.parameterized.batch_call_watchers(self):
            self.param.update(trials=trials, metrics=metrics, status=status, changed_at=now)
            if not new.empty:
                self.metric = self._curve_metric()
            self.version += 1
        return True

    def _read_trials(self) -> pd.DataFrame:
        """The trials, reading only what changed: new trials, and those not yet in a final
        state (a final state never changes) whose state, attempt or start moved, so a poll
        stays cheap at 100k trials and 1000 running."""
        assert self._store is not None
        old = self.trials
        if old.empty or "trial_id" not in old:
            fresh = self._store.trials_frame()
            self._live = _live_keys(fresh)
            return fresh
        now = self._store.changes(list(self._live))
        moved = [t for t, seen in self._live.items() if now.get(t) != seen]
        last = int(old["trial_id"].iloc[-1])
        fresh = self._store.trials_frame(newer_than=last, ids=moved)
        if fresh.empty:
            return old
        for t in moved:
            del self._live[t]
        self._live.update(_live_keys(fresh))
        # One concatenation, then one take: the latest row of each trial, in trial order.
        merged = pd.concat([old, fresh], ignore_index=True)
        ids = merged["trial_id"].to_numpy()
        latest = np.ones(len(ids), dtype=bool)
        again = fresh["trial_id"].to_numpy()
        latest[np.searchsorted(ids[: len(old)], again[again <= last])] = False
        order = np.argsort(ids[latest], kind="stable")
        return merged.take(np.flatnonzero(latest)[order]).reset_index(drop=True).infer_objects()

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
        trials = self.trials if trials is None else trials
        best = monitor.top_trials(trials, 1, self.direction)
        return None if best.empty else best.iloc[0]

    def gantt(self) -> pd.DataFrame:
        return monitor.gantt_rows(self.trials, queued=True)

    def usage(self) -> monitor.Utilization:
        workers = self.spec.compute.workers if self.spec else 1
        gpus = self.spec.compute.gpus if self.spec else 0
        return monitor.utilization(self.trials, workers, gpus)

    def running_series(self) -> pd.DataFrame:
        return monitor.running_over_time(self.trials)

    def best_curve(self) -> pd.DataFrame:
        return monitor.best_so_far(self.trials, self.direction)

    def table(self) -> pd.DataFrame:
        """Trials for the table: best first, top-K when set; parameters as columns."""
        rows = monitor.top_trials(self.trials, self.top_k, self.direction)
        if rows.empty:
            return pd.DataFrame(columns=["trial_id", "run_id", "state", "objective"])
        params = [c for c in rows.columns if c.startswith("param.")]
        cols = ["trial_id", "run_id", "state", "objective", *params, "attempt", "worker", "duration", "reason"]
        out = rows[[c for c in cols if c in rows.columns]].rename(columns={c: c[6:] for c in params})
        return out.reset_index(drop=True)

    def shown_trials(self) -> list[int]:
        """Trials whose loss curves are drawn: the top K, else the latest ones."""
        if self.trials.empty:
            return []
        if self.top_k > 0:
            return [int(t) for t in monitor.top_trials(self.trials, self.top_k, self.direction)["trial_id"]]
        return [int(t) for t in self.trials["trial_id"].tail(CURVES_SHOWN)]

    def curves(self) -> dict[int, pd.DataFrame]:
        return monitor.loss_curves(self.metrics, self.metric, self.shown_trials())

    @property
    def population_based(self) -> bool:
        return self.spec is not None and self.spec.search.algorithm == "pbt"

    def population(self) -> tuple[dict[int, pd.DataFrame], pd.DataFrame]:
        """PBT: each member's curve of the chosen metric and its exploit jumps."""
        return monitor.population_curves(self.trials, self.metrics, self.metric)

    def lineage(self) -> pd.DataFrame:
        return monitor.lineage(self.trials)

    def metric_names(self) -> list[str]:
        names = [] if self.metrics.empty else sorted(self.metrics["name"].unique())
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
        columns = ["id", "name", "state", "trials", "completed", "failed", "running", "best", "created"]
        rows = [
            {c: getattr(s, c) for c in columns[:-1]}
            | {"created": pd.to_datetime(s.created or 0, unit="s").strftime("%Y-%m-%d %H:%M")}
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


def _live_keys(trials: pd.DataFrame) -> dict[int, tuple[Any, ...]]:
    """``(state, attempt, started)`` of the trials not in a final state, as
    :meth:`Store.changes` returns them (what a poll compares to find the ones that moved)."""
    live = trials.loc[~trials["state"].isin(FINAL_STATES), ["trial_id", "state", "attempt", "started"]]
    return {
        int(t): (str(s), int(a), None if pd.isna(st) else float(st))
        for t, s, a, st in live.itertuples(index=False)
    }
