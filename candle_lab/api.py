"""The Python API: start, resume, open and control experiments.

Every other entry point (CLI, Panel app, notebook widgets, Jupyter server extension)
goes through these functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from candle_lab import settings, warm
from candle_lab.errors import CandleLabError, SpecError, expected_got
from candle_lab.spec import ExperimentSpec, changed_fields, load_spec, spec_from_dict
from candle_lab.states import ExperimentState, TrialState
from candle_lab.store import (
    DB_NAME,
    REQUESTS,
    SPEC_NAME,
    Store,
    TrialRecord,
    experiments_root,
    find_experiment,
    list_experiments,
    new_experiment_dir,
)
from candle_lab.store.layout import CHANGE_REQUEST, DRIVER_LOG

if TYPE_CHECKING:
    import pandas as pd

    from candle_lab.efficiency import Efficiency
    from candle_lab.engine import Observer
    from candle_lab.planner import Measured, PlanRow
    from candle_lab.uq import ConfigUncertainty

log = logging.getLogger(__name__)

SpecLike = ExperimentSpec | str | os.PathLike[str] | Mapping[str, Any]
STALE_SECONDS = 15.0


def as_spec(spec: SpecLike) -> ExperimentSpec:
    """A validated spec from a spec object, a dict, or a YAML/JSON file path."""
    if isinstance(spec, ExperimentSpec):
        return spec
    if isinstance(spec, Mapping):
        return spec_from_dict(spec)
    return load_spec(spec)


def create_experiment(spec: SpecLike, root: str | os.PathLike[str] | None = None) -> Path:
    """A new experiment folder holding the spec (with its seed fixed) and an empty store."""
    spec = as_spec(spec)
    if spec.search.seed is None:
        spec = spec.replace(search={"seed": secrets.randbelow(2**31)})
    imported, notes = _warm_start(spec, root)  # a source that does not fit fails before anything is created
    path = new_experiment_dir(experiments_root(root))
    (path / SPEC_NAME).write_text(spec.to_yaml(), encoding="utf-8")
    with Store(path / DB_NAME) as store:
        store.set_meta(
            id=path.name,
            name=spec.name,
            spec=spec.to_dict(),
            seed=spec.search.seed,
            created=time.time(),
            state=ExperimentState.CREATED,
        )
        store.add_event("created")
        store.add_imported(warm.as_row(t) for t in imported)
        for note in notes:
            store.add_event("warm-start", detail={**dataclasses.asdict(note), "text": note.text()})
            log.info("warm start: %s", note.text())
        store.commit()
    log.info("experiment %s created in %s", path.name, path)
    return path


def _warm_start(spec: ExperimentSpec, root: str | os.PathLike[str] | None) -> tuple[list[warm.WarmTrial],
                                                                                     list[warm.WarmNote]]:
    """The trials of ``search.warm_start``'s experiments mapped onto ``spec``'s space."""
    trials: list[warm.WarmTrial] = []
    notes: list[warm.WarmNote] = []
    for i, ref in enumerate(spec.search.warm_start):
        field = f"search.warm_start[{i}]"
        try:
            source = open_experiment(ref, root)
            records, source_spec = source.records(), source.spec
        except CandleLabError as exc:
            raise SpecError.one(field, str(exc).removeprefix("experiment: ")) from None
        found, note = warm.map_trials(spec, field, source.id, source_spec, records)
        trials += found
        notes.append(note)
    return trials, notes


def drive(
    exp_dir: Path,
    *,
    client: Any = None,
    fn: Callable[..., Any] | None = None,
    observer: Observer | None = None,
) -> str:
    """Run (or continue) the experiment in ``exp_dir`` in this process until it ends."""
    from candle_lab.clusters import open_client, rescaler, resolve, task_resources
    from candle_lab.engine import Engine
    from candle_lab.engine.workers import slurm_workers

    with Store(exp_dir / DB_NAME) as store:
        store.set_meta(driver_pid=os.getpid(), driver_host=socket.gethostname(), heartbeat=time.time(), error=None)
        store.commit()
        try:
            spec = load_spec(exp_dir / SPEC_NAME)
            resolved = resolve(spec.compute)  # a bad compute request fails before anything is submitted
            with contextlib.nullcontext(client) if client is not None else open_client(resolved, exp_dir) as c:
                store.set_meta(scheduler=c.scheduler.address, dashboard=c.dashboard_link)
                engine = Engine(spec, exp_dir, store, c, fn=fn, observer=observer, resources=task_resources(resolved),
                                workers_retire=resolved.profile.scheduler == "slurm", slurm=slurm_workers(resolved),
                                rescale=None if client is not None else rescaler(c, spec.compute.trials_per_worker))
                return engine.run()
        except KeyboardInterrupt:
            store.set_meta(state=ExperimentState.INTERRUPTED)
            store.commit()
            raise
        except BaseException as exc:
            # What the user can fix is said in one message; anything else keeps its traceback.
            error = str(exc) if isinstance(exc, CandleLabError) else "".join(traceback.format_exception(exc))
            store.set_meta(state=ExperimentState.FAILED, error=error)
            store.commit()
            raise


def run(
    spec: SpecLike,
    *,
    fn: Callable[..., Any] | None = None,
    wait: bool = True,
    root: str | os.PathLike[str] | None = None,
    client: Any = None,
    observer: Observer | None = None,
) -> Experiment:
    """Start an experiment.

    ``fn`` overrides the spec's model with a Python function ``f(params) -> float | dict``.
    ``wait=False`` returns at once: the search runs in a detached process (so it outlives
    this one), or, when ``fn`` or ``client`` is given, in a thread of this process.
    """
    path = create_experiment(spec, root)
    return _start(path, fn=fn, wait=wait, client=client, observer=observer)


def resume(
    ref: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    fn: Callable[..., Any] | None = None,
    wait: bool = True,
    client: Any = None,
    observer: Observer | None = None,
) -> Experiment:
    """Continue a stopped or crashed experiment: completed trials are kept, never re-run."""
    exp = open_experiment(ref, root)
    if exp.driver_alive():
        raise CandleLabError(f"experiment {exp.id} is still running (driver pid {exp.meta().get('driver_pid')})")
    return _start(exp.path, fn=fn, wait=wait, client=client, observer=observer)


def extend(
    ref: str | os.PathLike[str] | Experiment,
    space: str | os.PathLike[str] | Sequence[Mapping[str, Any]],
    *,
    max_trials: int | None = None,
    root: str | os.PathLike[str] | None = None,
    wait: bool = True,
    client: Any = None,
    fn: Callable[..., Any] | None = None,
) -> Experiment:
    """A new experiment like ``ref`` over another ``space`` (a space file or a list of
    parameters), warm-started from ``ref``'s completed trials."""
    source = ref if isinstance(ref, Experiment) else open_experiment(ref, root)
    spec = as_spec(extend_spec(source, space, max_trials=max_trials))
    return run(spec, wait=wait, root=source.path.parent if root is None else root, client=client, fn=fn)


def extend_spec(
    source: Experiment, space: str | os.PathLike[str] | Sequence[Mapping[str, Any]], *, max_trials: int | None = None
) -> dict[str, Any]:
    """The spec of :func:`extend`: ``source``'s, with the new space, a fresh seed and
    ``search.warm_start`` naming ``source``."""
    data = source.spec.to_dict()
    data["name"] = f"{source.spec.name}-extended"
    data["space"] = {"file": str(Path(space).resolve())} if isinstance(space, str | os.PathLike) else list(space)
    data["search"] = {**data["search"], "warm_start": [str(source.path)]}
    data["search"].pop("seed", None)
    if max_trials is not None:
        data["budget"] = {**data.get("budget", {}), "max_trials": max_trials}
    return data


def ensemble(
    ref: str | os.PathLike[str] | Experiment,
    *,
    top: int = 1,
    method: str = "bootstrap",
    members: int = 10,
    workers: int | None = None,
    seed: int = 0,
    wait: bool = True,
    root: str | os.PathLike[str] | None = None,
    client: Any = None,
) -> Experiment:
    """An uncertainty-quantification ensemble (CANDLE's UQ workflow) of the ``top`` best
    configurations of a finished experiment, run as an experiment of its own: ``bootstrap``
    trains ``members`` models per configuration on resamples of the training data,
    ``dropout`` one model per configuration predicting ``members`` times with dropout on.
    Models report held-out predictions (:func:`candle_lab.report_predictions`); read the
    result with :meth:`Experiment.uncertainty`."""
    source = ref if isinstance(ref, Experiment) else open_experiment(ref, root)
    spec = as_spec(ensemble_spec(source, top=top, method=method, members=members, workers=workers, seed=seed))
    return run(spec, wait=wait, root=source.path.parent if root is None else root, client=client)


def ensemble_spec(
    source: Experiment, *, top: int, method: str, members: int, workers: int | None, seed: int
) -> dict[str, Any]:
    """The spec of an ensemble of ``source``'s ``top`` best completed trials (errors name
    the option at fault)."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise SpecError.one("top", expected_got("a whole number ≥ 1", top))
    spec = source.spec
    done = [t for t in source.records() if t.state == "completed" and t.objective is not None]
    if not done:
        raise SpecError.one("experiment", f"expected an experiment with completed trials, got none in {source.id}")
    sign = 1.0 if spec.objective.direction == "minimize" else -1.0
    done.sort(key=lambda t: sign * float(t.objective or 0.0))
    data = spec.to_dict()
    data["name"] = f"{spec.name}-uq-{method}"
    data["description"] = f"{method} ensemble of the {top} best configurations of {source.id}"
    data["search"] = {"algorithm": "ensemble", "seed": seed}
    data["budget"] = {}
    data["ensemble"] = {
        "source": str(source.path),
        "method": method,
        "members": members,
        "seed": seed,
        "configs": [{"trial_id": t.trial_id, "params": t.params} for t in done[:top]],
    }
    data["space"] = {"parameters": data["space"].get("parameters", [])}
    if workers is not None:
        data["compute"] = {**data["compute"], "workers": workers}
    return data


def open_experiment(ref: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> Experiment:
    return Experiment(find_experiment(ref, root))


def check(spec: SpecLike) -> ExperimentSpec:
    """A spec ready to submit: valid, and its compute request possible on its site profile."""
    from candle_lab.clusters import resolve

    spec = as_spec(spec)
    resolve(spec.compute)
    return spec


def statuses(root: str | os.PathLike[str] | None = None) -> list[Status]:
    """The status of every experiment under ``root``, oldest first (unreadable ones are
    logged and left out, so that one damaged folder hides nothing else)."""
    folder = experiments_root(root)
    out = []
    for exp_id in list_experiments(folder):
        try:
            out.append(Experiment(folder / exp_id).status())
        except Exception:
            log.warning("cannot read experiment %s", exp_id, exc_info=True)
    return out


def _start(
    path: Path, *, fn: Callable[..., Any] | None, wait: bool, client: Any, observer: Observer | None
) -> Experiment:
    exp = Experiment(path)
    if wait:
        drive(path, client=client, fn=fn, observer=observer)
    elif fn is not None or client is not None:
        exp._thread = threading.Thread(
            target=_drive_quietly, args=(path, client, fn, observer), name=f"candle-lab-{path.name}", daemon=True
        )
        exp._thread.start()
    else:
        command = [sys.executable, "-m", "candle_lab.cli", "resume", str(path), "--quiet"]
        if settings.driver_job():  # in a portal session: outlive it as a SLURM job
            from candle_lab.clusters.slurm import submit_driver_job

            if submit_driver_job(command, path, exp.spec.compute.profile) is not None:
                return exp
        with (path / DRIVER_LOG).open("ab") as out:
            driver = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=path.parent,
            )
        with Store(path / DB_NAME) as store:  # a driver that dies before it registers is seen
            store.set_meta(launched_pid=driver.pid, driver_host=socket.gethostname())
            store.commit()
    return exp


def _process_exists(pid: Any, host: Any) -> bool:
    """A process ``pid`` runs on this host and is not a zombie (False for other hosts)."""
    if pid is None or host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" not in status.read_text()
    except OSError:
        return False


def _drive_quietly(path: Path, client: Any, fn: Callable[..., Any] | None, observer: Observer | None) -> None:
    try:
        drive(path, client=client, fn=fn, observer=observer)
    except Exception:
        log.exception("experiment %s failed", path.name)


@dataclass(frozen=True)
class Status:
    """A snapshot of an experiment for status lines, sidebars and dashboards."""

    id: str
    name: str
    state: str
    trials: int
    completed: int
    failed: int
    running: int
    best: float | None
    driver_alive: bool
    ended_because: str | None = None
    max_trials: int | None = None
    created: float | None = None
    metric: str = ""
    direction: str = "minimize"
    algorithm: str = ""
    duration: float | None = None  # seconds from the first trial queued to the last end (or now)

    @property
    def progress(self) -> float | None:
        """Finished trials over the trial budget (None without one)."""
        if not self.max_trials:
            return None
        return min(1.0, (self.completed + self.failed) / self.max_trials)


class Experiment:
    """A handle on one experiment folder; every property reads the store afresh."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.id = self.path.name
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<Experiment {self.id} at {self.path}>"

    def _store(self) -> Store:
        return Store(self.path / DB_NAME, readonly=True)

    @property
    def spec(self) -> ExperimentSpec:
        return load_spec(self.path / SPEC_NAME)

    def meta(self) -> dict[str, Any]:
        with self._store() as store:
            return store.meta()

    @property
    def trials(self) -> pd.DataFrame:
        """One row per trial (parameters as ``param.NAME`` columns)."""
        with self._store() as store:
            return store.trials_frame()

    @property
    def metrics(self) -> pd.DataFrame:
        """Per-step metrics reported by trials (long format)."""
        with self._store() as store:
            frame = store.metrics_frame()
        return frame.drop(columns="row").sort_values(["trial_id", "step"], kind="stable").reset_index(drop=True)

    def trial(self, trial_id: int) -> TrialRecord | None:
        with self._store() as store:
            return store.trial(trial_id)

    def events(self, kinds: Iterable[str] | None = None) -> list[tuple[float, str, int | None, Any]]:
        """The experiment's events, ``(time, kind, trial_id, detail)`` in the order they
        happened (``kinds``: those only): retries, resumed attempts, worker jobs joining
        and leaving, early stops, the driver's starts and ends."""
        with self._store() as store:
            return store.events(kinds)

    def imported(self) -> list[warm.WarmTrial]:
        """The trials of other experiments this one learnt from first (``search.warm_start``),
        as points of its space; the ``warm-start`` events say what was mapped."""
        with self._store() as store:
            return [warm.from_row(row) for row in store.imported()]

    def uncertainty(self) -> list[ConfigUncertainty]:
        """An ensemble experiment's per-sample uncertainty and calibration, one entry per
        configuration, best first (see :func:`candle_lab.ensemble`)."""
        from candle_lab import uq

        ensemble = self.spec.ensemble
        if ensemble is None:
            raise CandleLabError(f"{self.id} is not an ensemble: run candle-lab ensemble {self.id} first")
        runs = [
            (int(t.origin["config"]), t.run_id, t.params)
            for t in self.records()
            if t.state == "completed" and t.origin and "config" in t.origin
        ]
        found = {c.trial_id: c for c in uq.collect(self.path, runs, ensemble.method)}
        return [found[c.trial_id] for c in ensemble.configs if c.trial_id in found]

    def records(self) -> list[TrialRecord]:
        with self._store() as store:
            return store.trials()

    def measured(self) -> Measured:
        """The figures the what-if planner works from (trial durations, dispatch overhead,
        failure rate, workers and mode; see :mod:`candle_lab.planner`)."""
        from candle_lab import planner

        return planner.measure(self.trials, self.spec, self.id)

    def plan(
        self,
        workers: Sequence[int] | None = None,
        modes: Sequence[str] | None = None,
        *,
        trials: int | None = None,
        seed: int = 0,
        repeats: int | None = None,
    ) -> list[PlanRow]:
        """What-if: the predicted wall time, idle share and GPU-hours (worker-hours without
        GPUs) of this experiment's trials on other numbers of ``workers`` and in other
        ``modes`` ("async", "batch"), simulated from its own measured figures; the first
        rows are the real run and the model's prediction of it (its self-check error)."""
        from candle_lab import planner

        return planner.plan(self.measured(), workers, modes, trials=trials, seed=seed, repeats=repeats)

    def efficiency(self) -> Efficiency:
        """HPC efficiency: GPU-hours (worker-hours without GPUs) allocated, spent by trials,
        idle, and lost to failed and stopped trials; GPU busy %, queue waits, start-up
        (see :mod:`candle_lab.efficiency`)."""
        from candle_lab import efficiency

        trials, metrics, events, meta = self._efficiency_inputs()
        return efficiency.experiment_efficiency(trials, metrics, events, self.spec.compute,
                                                running=self.driver_alive(meta))

    def trial_efficiency(self) -> pd.DataFrame:
        """Per trial: queue wait, start-up, training time, GPU-hours, GPU busy % and memory
        (see :func:`candle_lab.efficiency.trial_efficiency`)."""
        from candle_lab import efficiency

        trials, metrics, events, meta = self._efficiency_inputs()
        end = efficiency.horizon(trials, events, running=self.driver_alive(meta))
        return efficiency.trial_efficiency(trials, metrics, self.spec.compute, now=end)

    def _efficiency_inputs(self) -> tuple[pd.DataFrame, pd.DataFrame, list[Any], dict[str, Any]]:
        from candle_lab.efficiency import EVENT_KINDS

        with self._store() as store:
            return store.trials_frame(), store.metrics_frame(), store.events(EVENT_KINDS), store.meta()

    @property
    def pareto(self) -> pd.DataFrame:
        """The trials on the Pareto front of the spec's objectives (completed, feasible,
        dominated by none), sorted by the first objective: the trials table's rows."""
        from candle_lab import pareto

        return pareto.front(self.trials, self.spec.goals)

    def hypervolume(self) -> pd.DataFrame:
        """The hypervolume of the front found after each completion (``ended``,
        ``trials``, ``hypervolume``; at most 200 rows): progress with several objectives."""
        from candle_lab import pareto

        return pareto.hypervolume_over_time(self.trials, self.spec.goals)

    @property
    def best(self) -> TrialRecord | None:
        """The best completed (and feasible) trial by the main objective."""
        return self._best_of(self.records())

    def _best_of(self, records: list[TrialRecord]) -> TrialRecord | None:
        objective = self.spec.objective
        best: TrialRecord | None = None
        for t in records:
            if (
                t.state == TrialState.COMPLETED
                and t.objective is not None
                and t.feasible is not False
                and (
                    best is None or objective.better(t.objective, best.objective)  # type: ignore[arg-type]
                )
            ):
                best = t
        return best

    def status(self) -> Status:
        """The status from a few aggregate queries (sidebars poll every experiment; an
        experiment of 100,000 trials answers in milliseconds)."""
        maximize = self.spec.objective.direction == "maximize"
        with self._store() as store:
            summary, meta = store.summary(maximize=maximize), store.meta()
        duration = None
        if summary.first is not None and summary.last is not None:
            duration = (time.time() if summary.counts.get("running") else summary.last) - summary.first
        return self.status_of(meta, summary.trials, summary.counts, summary.best, duration)

    def status_of(
        self, meta: Mapping[str, Any], trials: int, counts: Mapping[str, int], best: float | None,
        duration: float | None = None,
    ) -> Status:
        """A status from what a caller already read (dashboards poll the store themselves)."""
        alive = self.driver_alive(meta)
        spec = meta.get("spec") or {}
        state = str(meta.get("state", "unknown"))
        ended_because = meta.get("ended_because")
        if state == ExperimentState.RUNNING and not alive:
            state = ExperimentState.CRASHED
        elif state == ExperimentState.CREATED and not _process_exists(meta.get("launched_pid"),
                                                                      meta.get("driver_host")):
            if meta.get("launched_pid") is not None and meta.get("driver_pid") is None:
                state = ExperimentState.FAILED
                ended_because = f"the driver exited before it started: {self._driver_log_tail()}"
        elif state == ExperimentState.FAILED and not ended_because and meta.get("error"):
            ended_because = str(meta["error"]).strip().splitlines()[-1]
        return Status(
            id=self.id,
            name=str(meta.get("name", "")),
            state=str(state),
            trials=trials,
            completed=counts.get("completed", 0),
            failed=counts.get("failed", 0),
            running=counts.get("running", 0),
            best=best,
            driver_alive=alive,
            ended_because=ended_because,
            max_trials=spec.get("budget", {}).get("max_trials"),
            created=meta.get("created"),
            metric=str(spec.get("objective", {}).get("metric", "")),
            direction=str(spec.get("objective", {}).get("direction", "minimize")),
            algorithm=str(spec.get("search", {}).get("algorithm", "")),
            duration=duration,
        )

    def driver_alive(self, meta: Mapping[str, Any] | None = None) -> bool:
        """Is a driver process running this experiment now?"""
        if self._thread is not None and self._thread.is_alive():
            return True
        meta = meta if meta is not None else self.meta()
        if meta.get("state") not in (ExperimentState.RUNNING, ExperimentState.CREATED):
            return False
        pid, host = meta.get("driver_pid"), meta.get("driver_host")
        if pid is None:
            return False
        if host == socket.gethostname():
            if not _process_exists(pid, host):
                return False
            return time.time() - float(meta.get("heartbeat", 0)) < STALE_SECONDS * 4
        return time.time() - float(meta.get("heartbeat", 0)) < STALE_SECONDS

    def wait(self, timeout: float | None = None, poll: float = 0.5, progress: bool = False) -> Status:
        """Block until the search ends (for ``wait=False`` starts); returns the final status.
        ``progress=True`` shows a progress bar of finished trials (in a notebook too)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = _progress_bar(self) if progress else None
        try:
            if self._thread is not None and bar is None:
                self._thread.join(timeout)
            else:
                time.sleep(min(poll, 2.0))  # give a detached driver time to register
                while self._running():
                    if bar is not None:
                        bar(self.status())
                    if deadline is not None and time.monotonic() > deadline:
                        break
                    time.sleep(poll)
        finally:
            if bar is not None:
                bar(None)
        return self.status()

    def _running(self) -> bool:
        if self._thread is not None:
            return self._thread.is_alive()
        if self.driver_alive() or self._driver_process_running():
            return True
        # Created and no driver seen yet: it is starting (or queued as a SLURM job).
        meta = self.meta()
        return meta.get("state") == ExperimentState.CREATED and meta.get("launched_pid") is None

    def _driver_process_running(self) -> bool:
        """The driver process still exists (e.g. releasing its workers after the search)."""
        meta = self.meta()
        pid = meta.get("driver_pid") or meta.get("launched_pid")
        return pid is not None and int(pid) != os.getpid() and _process_exists(pid, meta.get("driver_host"))

    def _driver_log_tail(self) -> str:
        try:
            lines = (self.path / DRIVER_LOG).read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return lines[-1] if lines else f"no output; see {self.path / DRIVER_LOG}"

    def stop(self) -> None:
        """Ask the driver to end the search; running trials are cancelled, results kept."""
        self._request("stop")

    def change(self, *, max_trials: int | None = None, workers: int | None = None) -> ExperimentSpec:
        """A new budget (``budget.max_trials``) or concurrency (``compute.workers``), for a
        running experiment from now on, for a stopped one when it resumes. Each change is
        a ``changed`` event; errors name the field. Returns the spec with the change."""
        sections: dict[str, Any] = {}
        if max_trials is not None:
            sections["budget"] = {"max_trials": max_trials}
        if workers is not None:
            sections["compute"] = {"workers": workers}
        spec = self.spec
        if not sections:
            return spec
        changed = spec.replace(**sections)
        check(changed)  # the workers must fit the site profile
        if self.driver_alive():  # the driver applies it and records the event
            folder = self.path / REQUESTS
            folder.mkdir(exist_ok=True)
            name = f"{CHANGE_REQUEST}{time.time_ns()}.yaml"
            (folder / f".{name}").write_text(changed.to_yaml(), encoding="utf-8")
            (folder / f".{name}").rename(folder / name)
            return changed
        (self.path / SPEC_NAME).write_text(changed.to_yaml(), encoding="utf-8")
        with Store(self.path / DB_NAME) as store:
            store.set_meta(spec=changed.to_dict())
            store.add_event("changed", detail=changed_fields(spec, changed))
            store.commit()
        return changed

    def stop_trial(self, trial_id: int) -> None:
        """Ask the driver to stop one running trial (recorded as ``stopped``)."""
        self._request(f"stop-trial-{int(trial_id)}")

    def _request(self, name: str) -> None:
        folder = self.path / REQUESTS
        folder.mkdir(exist_ok=True)
        (folder / name).touch()


def _progress_bar(exp: Experiment) -> Callable[[Status | None], None]:
    """A tqdm bar fed with statuses; ``None`` closes it."""
    from tqdm.auto import tqdm

    bar = tqdm(total=exp.spec.budget.max_trials, desc=exp.id, unit="trial")

    def update(status: Status | None) -> None:
        if status is None:
            bar.close()
            return
        bar.n = status.completed + status.failed
        bar.set_postfix_str(f"{status.state}, best {status.best:.4g}" if status.best is not None else status.state)
        bar.refresh()

    return update
