"""The driver: dask, the store and files around the search's decisions (:mod:`.state`).

One loop serves both modes. Async keeps every worker busy: a new trial is submitted
the moment one finishes, with its proposal prepared ahead on the proposer's thread.
Batch (batch-bo) submits a round and waits for all of it before the next round.

Completions (future callbacks) and worker events (trial started, per-step metrics)
arrive on one queue, with what the worker watch (:mod:`.workers`) learns on its thread
(workers joining and leaving, how a lost trial's SLURM job ended); the loop is the only
writer of the store. On SLURM, trials are placed for their walltime (:mod:`.walltime`)
and lost ones retried by how their job ended (:mod:`.retry`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import queue
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from candle_lab import settings, warm
from candle_lab.engine.placement import Turnaround, placements
from candle_lab.engine.retry import job_end
from candle_lab.engine.state import (
    REQUEUED,
    Action,
    AskStop,
    Created,
    End,
    Event,
    FrontChange,
    Metrics,
    Record,
    Requeue,
    Running,
    SearchState,
    Submit,
    Trial,
    failed_outcome,
)
from candle_lab.engine.walltime import DurationModel, fits, fitting, slack, usable
from candle_lab.engine.workers import JobAnswer, Joined, Left, SlurmWorkers, WorkerWatch
from candle_lab.errors import CandleLabError
from candle_lab.optimizers import BackgroundProposer, DirectProposer, Proposal, Proposer, make_optimizer
from candle_lab.spec import ExperimentSpec, load_spec
from candle_lab.states import ExperimentState, TrialState
from candle_lab.store import REQUESTS, Store, default_run_id, run_dir_name
from candle_lab.store.layout import BEST_DIR, BEST_SOURCE, CHANGE_REQUEST, MODEL_FILE, PARAMS_FILE, SPEC_NAME
from candle_lab.trial.context import request_stop
from candle_lab.trial.protocol import (
    TOPIC,
    MetricsEvent,
    Reason,
    StartEvent,
    TrialOutcome,
    TrialTask,
    WorkerEvent,
    parse_event,
    read_outcome,
    started_attempts,
)
from candle_lab.trial.runner import run_trial

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
POLL_SECONDS = 0.25
RESTART_WAIT_SECONDS = 30.0  # at the end, for workers restarted to stop their trials
MEMORY_TOPIC = "worker-restart-memory"  # dask's nanny: a worker past its memory limit
SLOTS_SECONDS = 5.0  # how often the workers' list is read (worker events, placing trials)
FRESH_WORKER = "candle-lab-fresh-worker"  # no such worker: a trial no worker has time for waits for a new one
RETIRE_TRIES = 5  # times a worker is asked to retire, a second apart


@dataclass(frozen=True)
class Progress:
    """Where a running search stands (for progress bars and dashboards)."""

    created: int
    finished: int
    running: int
    failed: int
    best: float | None
    max_trials: int | None
    elapsed: float


class Observer(Protocol):
    def __call__(self, progress: Progress) -> None: ...


class Engine:
    """Runs one experiment's search on a dask client until budget, target or exhaustion."""

    def __init__(
        self,
        spec: ExperimentSpec,
        exp_dir: Path,
        store: Store,
        client: Any,
        *,
        fn: Callable[..., Any] | None = None,
        observer: Observer | None = None,
        resources: dict[str, float] | None = None,
        workers_retire: bool = False,
        slurm: SlurmWorkers | None = None,
        rescale: Callable[[int], None] | None = None,
    ) -> None:
        self.spec = spec
        self._rescale = rescale  # sets the cluster's workers (when this driver started the cluster)
        self._proposer: Proposer | None = None
        self.exp_dir = exp_dir
        self.store = store
        self.client = client
        self.fn = fn
        self.observer = observer
        self.resources = resources
        # Unique on a shared scheduler: task keys and events of two experiments never mix.
        self.key = f"{exp_dir.name}-{uuid.uuid4().hex[:8]}"
        meta = store.meta()
        self.elapsed_before = float(meta.get("elapsed", 0.0))
        self.optimizer = make_optimizer(spec, int(meta["seed"]))
        self.state = SearchState(spec, adaptive=self.optimizer.adaptive, began=self._began)
        self._futures: dict[int, Any] = {}
        self._inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._start = time.monotonic()
        self._last_beat = self._last_checks = 0.0
        self._model = spec.model.model_dump(mode="json")
        self._required = (  # metrics a completed trial must report besides the objective
            *((g.metric, f"objectives[{i}].metric") for i, g in enumerate(spec.objectives) if i > 0),
            *((c.metric, f"constraints[{i}].metric") for i, c in enumerate(spec.constraints)),
        )
        self._turnaround = Turnaround()
        self._slots: dict[str, int] = {}  # worker address -> trials at once, once placing
        # SLURM workers retire before their walltime and new jobs take over: a trial placed
        # on a retiring worker could wait forever (seen in the SLURM tests), so dask places.
        self._workers_retire = workers_retire
        self._restarts: list[threading.Thread] = []  # workers being restarted to stop a trial
        self._starts: set[tuple[int, int]] | None = None  # EXP/starts/ as last read
        self._memory_kills: dict[str, int] = {}  # worker address -> its memory (bytes) when dask restarted it
        self._placed = False  # the queue-ahead event is stored once
        # Workers and their jobs (events, placement), read on a thread of the watch.
        self._slurm = slurm
        self._watch = WorkerWatch(client, self._inbox.put, slurm=slurm is not None,
                                  gpus=spec.compute.trial_gpus if spec.compute.gpus else 0.0,  # a process's
                                  resources=resources, interval=SLOTS_SECONDS,
                                  processes=spec.compute.trials_per_worker)
        # Walltime-aware placement (SLURM): trials go only to workers with time for them.
        self._durations = DurationModel()
        self._restricted: dict[int, tuple[str, ...]] = {}  # trial id -> the workers it may start on ...
        self._held: set[int] = set()  # ... none yet: it waits for a fresh worker
        self._moves: dict[int, int] = {}  # trial id -> times it was submitted again elsewhere
        self._retiring: set[str] = set()  # workers that take no more trials (too short, or told their job ends) ...
        self._retired: set[str] = set()  # ... and those asked to retire

    # ------------------------------------------------------------------ public
    def run(self) -> str:
        """Run to the end; returns why it ended (``budget``, ``target``, ``exhausted``, ``stopped``)."""
        self._restore()
        adaptive_async = self.optimizer.adaptive and not self.state.batch
        proposer: Proposer = (
            BackgroundProposer(self.optimizer, capacity=self.state.workers, on_ready=self._wake)
            if adaptive_async
            else DirectProposer(self.optimizer)
        )
        self._proposer = proposer
        self.client.subscribe_topic(TOPIC, self._on_event)
        self.client.subscribe_topic(MEMORY_TOPIC, self._on_memory_kill)
        self._watch.start()
        if self._slurm is not None and self._slurm.notice is not None:
            self._hear_walltime_notices()
        self.store.set_meta(state=ExperimentState.RUNNING)
        self.store.add_event("driver-start", detail={"resumed_trials": self.state.n.created})
        self.store.commit()
        try:
            ended = self._loop(proposer)
        finally:
            proposer.close()
            self._watch.close()
            for topic in (TOPIC, MEMORY_TOPIC):
                with contextlib.suppress(Exception):
                    self.client.unsubscribe_topic(topic)
            self._apply(self.state.cancel_all(self.state.stopping or "driver ended"))
            for restart in self._restarts:  # the cluster may close once its workers are back
                restart.join(RESTART_WAIT_SECONDS)
            self.store.set_meta(elapsed=self._elapsed())
            self.store.commit()
        final = ExperimentState.STOPPED if ended == "stopped" else ExperimentState.COMPLETED
        self.store.set_meta(state=final, ended_because=ended)
        self.store.add_event("driver-end", detail={"reason": ended})
        self.store.commit()
        return ended

    # ------------------------------------------------------------------ resume
    def _restore(self) -> None:
        """Tell the optimizer what earlier runs of this experiment did; collect what to re-run."""
        imported = [warm.from_row(row) for row in self.store.imported()]
        if imported:  # other experiments' trials (warm start), before this one's
            self.optimizer.tell(warm.observations(self.spec, imported))
        records = self.store.trials()
        self.optimizer.register([Proposal(t.params, t.run_id, t.origin) for t in records])
        for t in records:  # how long trials take (walltime-aware placement)
            if t.state == TrialState.COMPLETED and t.attempt == 1 and t.started is not None and t.ended is not None:
                self._durations.add(t.ended - t.started, t.params)
        self._starts = None
        self._apply(self.state.restore(records, lambda run_id: read_outcome(self._run_dir(run_id))))
        self.optimizer.tell(self.state.take_observations())
        self.store.commit()

    def _began(self, trial_id: int, attempt: int) -> bool:
        """Whether a worker noted it began this attempt (``EXP/starts/`` read at most once
        per batch of completions: a lost worker fails every trial queued behind it)."""
        if self._starts is None:
            self._starts = started_attempts(self.exp_dir)
        return (trial_id, attempt) in self._starts

    # ------------------------------------------------------------------ loop
    def _loop(self, proposer: Proposer) -> str:
        state = self.state
        while True:
            state.time_up(self._elapsed())
            if state.stopping is not None:
                return state.stopping  # trials still running are cancelled by run()
            self._dispatch(proposer)
            ended = state.end_reason(proposer.exhausted)
            if ended is not None:
                return ended
            self._wait_and_handle(proposer)
            now = time.monotonic()
            if now - self._last_checks >= POLL_SECONDS:  # not at every event: 1000s of trials run
                self._last_checks = now
                self._apply(state.tick(time.time()))
                self._check_requests()
                proposer.tell(state.take_observations())
                self.store.commit()
            self._heartbeat()

    def _dispatch(self, proposer: Proposer) -> None:
        """Submit re-runs and new trials, all in one scheduler update."""
        targets = [] if self.state.batch else self._targets()
        plan = self.state.plan(len(targets))
        batch = list(plan.reruns)
        if plan.new > 0 and not proposer.exhausted:
            created = self.state.admit(proposer.take(plan.new), plan.round, default_run_id)
            self._apply(created)
            batch += [c.trial for c in created]
        for trial, target in zip(batch, targets, strict=False):
            trial.target = target
        if batch:
            self._apply([self.state.submitted(batch)])

    def _targets(self) -> list[str | None]:
        """One entry per trial that may be submitted now: the worker it goes to, or None
        where dask chooses. Trials are placed by the engine, one queued on each worker,
        once the measured round trip costs the workers time (dask's own queue on the
        scheduler is a round trip too, slow when the scheduler's process is busy)."""
        if not self._placing():
            return [None] * self.state.free_slots()
        where = [t.address or t.target for t in self.state.running.values()]
        unplaced = where.count(None)
        in_flight = Counter(a for a in where if a is not None)
        return list(placements(self._slots, in_flight, unplaced, self.state.room() + len(self.state.reruns)))

    def _placing(self) -> bool:
        if not self._turnaround.queue_ahead or self._workers_retire:
            return False
        self._slots = self._watch.slots  # workers come and go: the watch reads their list now and then
        if self._slots and not self._placed:
            self._placed = True
            detail = {**self._turnaround.figures(), "workers": len(self._slots)}
            log.info("queueing one trial ahead on each worker (%s)", detail)
            self.store.add_event("queue-ahead", detail=detail)
        return bool(self._slots)

    def _submit(self, trials: Sequence[Trial]) -> None:
        """One scheduler update per placement (most often a single one, dask's choice)."""
        groups: dict[tuple[tuple[str, ...], bool], list[Trial]] = {}
        fits_of: dict[float, tuple[str, ...] | None] = {}  # trials alike (the same prediction) go alike
        for t in trials:
            groups.setdefault(self._where(t, fits_of), []).append(t)
        for (workers, loose), group in groups.items():
            where = {"workers": list(workers), "allow_other_workers": loose} if workers else {}
            futures = self.client.map(
                run_trial,
                [self._task(t) for t in group],
                key=[self._task_key(t) for t in group],
                pure=False,
                resources=self.resources,
                **where,
            )
            for trial, future in zip(group, futures, strict=True):
                self._futures[trial.trial_id] = future
                future.add_done_callback(lambda fut, t=trial, a=trial.attempt: self._inbox.put(("done", (t, a, fut))))

    def _task_key(self, t: Trial) -> str:
        moved = self._moves.get(t.trial_id)
        return f"{self.key}-{t.key_suffix}" + (f"-m{moved}" if moved else "")

    # ------------------------------------------------------------------ walltime-aware placement
    def _where(self, t: Trial, fits_of: dict[float, tuple[str, ...] | None]) -> tuple[tuple[str, ...], bool]:
        """Where dask may start a trial: (workers, allow_other_workers); no workers: anywhere.
        A trial queued ahead on a worker may move if that worker leaves. On SLURM a trial
        never starts on a worker that winds down (retiring, or told its job ends soon)
        and, once durations are predicted, only on a worker with time for it; where none
        has, it waits for a fresh one."""
        if t.target:
            return (t.target,), True
        fit = self._fit(t, fits_of)
        if fit is None:
            self._restricted.pop(t.trial_id, None)
            self._held.discard(t.trial_id)
            return (), True
        predicted, allowed = fit
        self._restricted[t.trial_id] = allowed
        if allowed:
            self._held.discard(t.trial_id)
            return allowed, False
        self._held.add(t.trial_id)
        self._watch.hurry = True
        if predicted is not None:
            self._walltime_skip(t, predicted)
        return (FRESH_WORKER,), False

    def _fit(
        self, t: Trial, fits_of: dict[float, tuple[str, ...] | None] | None = None
    ) -> tuple[float | None, tuple[str, ...]] | None:
        """(predicted duration, the workers it may start on), or None where dask places the
        trial: no walltime, no workers known yet, or every worker may take it (none winds
        down and, where durations are predicted, every one has time for it).
        ``fits_of`` keeps the answers of one submission (by prediction)."""
        notice = self._slurm.notice if self._slurm is not None else None
        workers = self._watch.workers
        if notice is None or not workers:
            return None
        predicted = self._durations.predict(t.params)
        key = -1.0 if predicted is None else predicted
        if fits_of is None or key not in fits_of:
            ends = {a: w.ends for a, w in workers.items() if a not in self._retiring}
            allowed = tuple(
                ends if predicted is None else fitting(ends, predicted, now := time.time(), notice, self._free_at(now))
            )
            found = None if len(allowed) == len(workers) else allowed
            if fits_of is None:
                return None if found is None else (predicted, found)
            fits_of[key] = found
        found = fits_of[key]
        return None if found is None else (predicted, found)

    def _free_at(self, now: float) -> dict[str, float]:
        """When each busy worker is predicted to be free: its running trial's predicted end,
        then the trials waiting for that worker alone (a trial queued behind another starts
        later than now: seen in CI as a trial placed with time to spare that started without it)."""
        free: dict[str, float] = {}
        predict = self._durations.predict
        for trial in self.state.running.values():
            if trial.address and trial.started is not None and (predicted := predict(trial.params)) is not None:
                free[trial.address] = max(free.get(trial.address, now), trial.started + predicted)
        for trial_id, allowed in self._restricted.items():
            waiting = self.state.running.get(trial_id)
            if waiting is not None and waiting.started is None and len(allowed) == 1 \
                    and (predicted := predict(waiting.params)) is not None:
                free[allowed[0]] = free.get(allowed[0], now) + predicted
        return free

    def _walltime_skip(self, t: Trial, predicted: float) -> None:
        """No worker has time for the trial: it waits for a fresh worker, and the idle
        workers too short for it retire so that the cluster starts fresh jobs."""
        notice = self._slurm.notice if self._slurm is not None else None
        workers = self._watch.workers
        now = time.time()
        left = {a: usable(w.ends, notice or 0.0, now) for a, w in workers.items() if w.ends is not None}
        best = max(left, key=left.__getitem__, default=None)
        retired = self._retire_short(predicted)
        detail = {
            "worker": workers[best].lane if best else None,
            "remaining": round(left[best], 1) if best else None,  # its time before it winds down
            "predicted": round(predicted, 1),
            "margin": round(slack(predicted), 1),
            "retire": [workers[a].lane for a in retired if a in workers],
        }
        self._apply([Event("walltime-skip", t.trial_id, detail)])

    def _retire_short(self, predicted: float) -> list[str]:
        """Retire the idle workers without time for a trial of ``predicted`` seconds: the
        adaptive cluster replaces them with fresh jobs."""
        notice = self._slurm.notice if self._slurm is not None else None
        if notice is None:
            return []
        busy = self._busy()
        now, margin = time.time(), slack(predicted)
        short = [
            a for a, w in self._watch.workers.items()
            if a not in busy and a not in self._retired and w.ends is not None
            and not fits(usable(w.ends, notice, now), predicted, margin)
        ]
        self._retiring.update(short)
        self._retire(short)
        return short

    def _wind_down(self, address: str) -> None:
        """A worker told that its job ends soon (a trial stopped for its walltime) takes no
        more trials, and retires once idle."""
        if address in self._watch.workers:
            self._retiring.add(address)
            self._retire([a for a in self._retiring - self._busy()])

    def _busy(self) -> set[str]:
        """Workers running a trial of ours, or chosen for one that has yet to start."""
        busy: set[str] = set()
        for trial in self.state.running.values():
            if trial.address:
                busy.add(trial.address)
            else:
                busy.update(self._restricted.get(trial.trial_id, ()))
        return busy

    def _retire(self, addresses: list[str]) -> None:
        """Retire workers (once each), on a thread: dask waits for them to close."""
        addresses = [a for a in addresses if a not in self._retired]
        if addresses:
            self._retired.update(addresses)
            threading.Thread(target=self._retire_now, args=(addresses,), name="candle-lab-retire", daemon=True).start()

    def _retire_now(self, addresses: list[str]) -> None:
        cluster = getattr(self.client, "cluster", None)
        workers = self._watch.workers
        if cluster is not None and hasattr(cluster, "worker_spec") and hasattr(cluster, "scale_down"):
            # dask-jobqueue: a job all of whose workers retire ends at once and the adaptive
            # cluster asks for a fresh one (retire_workers alone leaves the job in its plan
            # until SLURM ends it); a job with other workers still busy keeps them.
            of_job: dict[str, set[str]] = {}
            for address, w in workers.items():
                of_job.setdefault(w.job or address, set()).add(address)
            whole = [a for a in addresses if a in workers and of_job[workers[a].job or a] <= set(addresses)]
            try:
                if whole:
                    cluster.sync(cluster.scale_down, sorted({workers[a].name or a for a in whole}))
            except Exception as exc:
                log.warning("could not retire workers %s: %s", whole, exc)
            addresses = [a for a in addresses if a not in whole]
            if not addresses:
                return
        left = list(addresses)
        for _ in range(RETIRE_TRIES):  # a result just released may still hold a worker back
            try:
                retired = self.client.retire_workers(workers=left, close_workers=True) or {}
            except Exception as exc:
                log.warning("could not retire workers %s: %s", left, exc)
                return
            left = [a for a in left if a not in retired]
            if not left:
                return
            time.sleep(1.0)
        log.info("workers %s did not retire; they leave at their lifetime", left)

    def _replace(self) -> None:
        """Workers came or went: trials that wait for workers that are gone (or for a
        fresh one) are submitted again where they fit; short idle workers retire while
        trials wait."""
        live = set(self._watch.workers) - self._retiring
        self._retiring &= set(self._watch.workers)
        self._retired &= set(self._watch.workers)
        for trial_id, allowed in list(self._restricted.items()):
            t = self.state.running.get(trial_id)
            if t is None or t.started is not None:
                del self._restricted[trial_id]
                self._held.discard(trial_id)
                continue
            if live.intersection(allowed):
                continue
            fit = self._fit(t)
            if fit is not None and not fit[1]:
                continue  # still no worker with time for it: it waits
            future = self._futures.pop(trial_id, None)
            if future is not None:
                future.cancel()  # its callback finds nothing to record
            self._moves[trial_id] = self._moves.get(trial_id, 0) + 1
            self._submit([t])
        if self._retiring - self._retired:  # wound down, and idle now?
            self._retire(list(self._retiring - self._busy()))
        waiting = [self.state.running[i] for i in self._held if i in self.state.running]
        self._watch.hurry = bool(waiting)
        if waiting:
            predictions = [p for t in waiting if (p := self._durations.predict(t.params)) is not None]
            if predictions:
                self._retire_short(min(predictions))

    def _placed_for(self, trial_id: int) -> None:
        """The trial started (or ended): where it might start no longer matters."""
        self._restricted.pop(trial_id, None)
        self._held.discard(trial_id)

    def _hear_walltime_notices(self) -> None:
        """SLURM signals a worker ahead of its walltime: its trials stop at the next epoch
        boundary and run again elsewhere (:mod:`candle_lab.trial.walltime`)."""
        from candle_lab.trial.walltime import ForwardNotice, WalltimeNotice

        for plugin in (WalltimeNotice(), ForwardNotice()):
            try:
                self.client.register_plugin(plugin)
            except Exception as exc:
                log.warning("workers will not hear walltime notices (%s): %s", type(plugin).__name__, exc)

    def _task(self, t: Trial) -> TrialTask:
        return TrialTask(
            experiment=self.key,
            run_dir=str(self._run_dir(t.run_id)),
            trial_id=t.trial_id,
            run_id=t.run_id,
            attempt=t.attempt,
            params=t.params,
            model=self._model,
            metric=self.spec.objective.metric,
            timeout=self.spec.trial.timeout,
            cores=max(1, self.spec.compute.cores // self.spec.compute.trials_per_worker),  # a process's share
            gpus=self.spec.compute.gpus,
            gpu_share=self.spec.compute.gpus_per_trial if self.spec.compute.gpus else None,
            gpu_sample=settings.gpu_sample_seconds(),
            save_model=self.spec.trial.keep_models != "none",
            checkpoint=self.spec.trial.checkpoints,
            resume=self.spec.trial.resume,
            required=self._required,
            **self._from_origin(t),
            fn=self.fn,
        )

    def _from_origin(self, t: Trial) -> dict[str, Any]:
        """PBT: the epochs this trial trains and the checkpoint it starts from; an ensemble
        member: how it resamples or how often it predicts."""
        if self.spec.search.algorithm == "ensemble" and t.origin:
            return {"uq": {k: t.origin[k] for k in ("method", "seed", "passes") if k in t.origin}}
        if self.spec.search.algorithm != "pbt" or not t.origin:
            return {}
        width = self.spec.search.interval_epochs
        first = int(t.origin.get("interval", 0)) * width
        source = t.origin.get("from")
        return {"interval": (first, first + width), "restore_from": str(self._run_dir(source)) if source else None}

    # ------------------------------------------------------------------ completions and events
    def _on_event(self, message: Any) -> None:
        """Called by dask (on its own thread) for each worker event of our topic."""
        event = parse_event(message, self.key)
        if event is not None:
            self._inbox.put(("event", event))

    def _on_memory_kill(self, event: Any) -> None:
        """dask's nanny restarts a worker past its memory limit (on dask's thread)."""
        message = event[1] if isinstance(event, tuple) else event
        if isinstance(message, dict) and message.get("worker"):
            self._memory_kills[str(message["worker"])] = int(message.get("rss") or 0)

    def _wait_and_handle(self, proposer: Proposer) -> None:
        try:
            item = self._inbox.get(timeout=POLL_SECONDS)
        except queue.Empty:
            return
        done: list[tuple[Trial, int, Any]] = []
        changed = False
        while True:
            kind, payload = item
            if kind == "done":
                done.append(payload)
            elif kind == "event":
                self._on_worker_event(payload)
            elif kind == "worker":
                self._on_worker_change(payload)
            elif kind == "workers":
                changed = True
            elif kind == "job":
                self._on_job_answer(payload)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
        self._on_done(done)
        if changed or (done and (self._held or self._retiring - self._retired)):
            self._replace()
        proposer.tell(self.state.take_observations())
        for notice in proposer.notices():
            self.store.add_event(notice.kind, detail=notice.detail)
        self.store.commit()
        self._notify()

    def _wake(self) -> None:
        """The proposer has proposals ready (called on its thread)."""
        self._inbox.put(("ready", None))

    def _on_worker_event(self, event: WorkerEvent) -> None:
        if isinstance(event, StartEvent):
            self._watch.poke(event.address)
            self._apply(self.state.started(event))
            self._placed_for(event.trial_id)
            if self.state.current(event.trial_id, event.attempt) is not None:
                self._turnaround.started(event.address, event.started)
        elif isinstance(event, MetricsEvent):
            self._apply(self.state.metrics(event, time.time()))

    def _on_done(self, done: list[tuple[Trial, int, Any]]) -> None:
        """Record finished futures (results fetched in one request); retry what may succeed."""
        current = [(t, a, f) for t, a, f in done if self.state.current(t.trial_id, a) is t]
        self._starts = None  # read again if a lost worker asks
        finished = [f for _, _, f in current if f.status == "finished"]
        try:
            results = dict(zip(finished, self.client.gather(finished), strict=True))
        except Exception:  # a worker died between finishing and handing over: one by one
            results = {}
        for trial, attempt, future in current:
            outcome = results.get(future) or self._outcome_of(trial, attempt, future)
            if outcome is None:
                continue
            self._futures.pop(trial.trial_id, None)
            future.release()
            job = self._lost_job(trial, outcome)
            if job is not None:  # how its SLURM job ended decides: asked on the watch's thread
                self._watch.lookup(job, (trial, attempt, outcome))
                continue
            self._finish(trial, outcome)

    def _finish(self, trial: Trial, outcome: TrialOutcome, *, retry: bool = True) -> None:
        self._placed_for(trial.trial_id)
        self._moves.pop(trial.trial_id, None)  # a re-run has a new attempt, hence a new key
        actions = self.state.finished(trial, outcome, retry=retry)
        if outcome.state == TrialState.STOPPED and outcome.reason == "walltime" and trial.address:
            self._wind_down(trial.address)
        if not any(isinstance(a, Event) and a.kind == REQUEUED for a in actions):  # it ran
            self._turnaround.freed(trial.address, outcome.ended, outcome.ended - outcome.started)
        self._apply(actions)

    def _lost_job(self, trial: Trial, outcome: TrialOutcome) -> str | None:
        """The SLURM job of a trial that ran and was lost with its worker."""
        lane = outcome.worker or trial.worker or ""
        if self._slurm is None or outcome.reason != "lost-worker" or trial.started is None:
            return None
        job = lane.removeprefix("job ").partition("/")[0]  # "job 12/1": process 1 of job 12
        return job if lane.startswith("job ") and job.strip() else None

    def _on_job_answer(self, answer: JobAnswer) -> None:
        """How a lost trial's job ended: its reason, error and whether it runs again."""
        trial: Trial
        outcome: TrialOutcome
        trial, attempt, outcome = answer.payload
        if self.state.current(trial.trial_id, attempt) is not trial:
            return  # ended meanwhile (its timeout, a stop, the end of the search)
        slurm = self._slurm or SlurmWorkers(None, None, None, None)
        verdict = job_end(answer.job, answer.state, answer.reason, memory=slurm.memory, partition=slurm.partition,
                          node_memory=slurm.node_memory)
        detail = {"job": answer.job, "state": answer.state, "reason": answer.reason, "attempt": attempt,
                  "worker": outcome.worker or trial.worker}
        self._apply([Event("slurm-job-ended", trial.trial_id, detail)])
        if verdict is None:
            self._finish(trial, outcome)
        else:
            self._finish(trial, dataclasses.replace(outcome, reason=verdict.reason, error=verdict.error),
                         retry=verdict.retry)

    def _on_worker_change(self, change: Joined | Left) -> None:
        """The worker events (a data contract: :mod:`candle_lab.efficiency` reads them)."""
        info = change.info
        if isinstance(change, Joined):
            self.store.add_event("worker-joined", detail=info.joined_detail(), when=change.time)
        else:
            detail = {"lane": info.lane, "address": info.address, "reason": change.state}
            self.store.add_event("worker-left", detail=detail, when=change.time)

    def _outcome_of(self, trial: Trial, attempt: int, future: Any) -> TrialOutcome | None:
        if future.status == "cancelled":
            return None
        if future.status == "finished":
            with contextlib.suppress(Exception):
                return future.result()
        exc = future.exception() if future.status == "error" else None
        killed = self._memory_kills.get(trial.address or "")
        if killed is not None and trial.started is not None:
            reason: Reason = "oom"
            error = (
                f"the worker's memory grew to {killed / 2**20:,.0f} MB, past its limit "
                f"({self.spec.compute.memory or 'the machine'}): dask restarted it"
            )
        else:
            reason = "lost-worker"
            error = f"{type(exc).__name__}: {exc}" if exc else "the worker holding the result was lost"
        return failed_outcome(trial.trial_id, attempt, trial.started, trial.worker, reason=reason, error=error)

    # ------------------------------------------------------------------ actions
    def _apply(self, actions: Sequence[Action]) -> None:
        """Carry out the state's decisions: the store, dask, files."""
        for action in actions:
            if isinstance(action, Created):
                t = action.trial
                self.store.add_trial(t.trial_id, t.run_id, t.params, round=t.round, origin=action.origin)
            elif isinstance(action, Submit):
                self._submit(action.trials)
            elif isinstance(action, Running):
                self.store.mark_running(action.trial_id, action.attempt, worker=action.worker, host=action.host,
                                        gpu=action.gpu, started=action.started)
            elif isinstance(action, Metrics):
                self.store.add_metrics(action.trial_id, action.attempt, action.step, action.values, action.time,
                                       only_new=action.late)
            elif isinstance(action, Record):
                self._record(action)
            elif isinstance(action, FrontChange):
                self.store.set_pareto(action.joined, action.left)
            elif isinstance(action, Requeue):  # its event (retry, requeued) says why
                self.store.requeue(action.trial_id, action.attempt, action.reason, action.error)
            elif isinstance(action, AskStop):
                self._ask_stop(action)
            elif isinstance(action, End):
                self._end(action)
            elif isinstance(action, Event):
                log.info("%s (trial %s): %s", action.kind, action.trial_id, action.detail or "")
                self.store.add_event(action.kind, action.trial_id, action.detail)

    def _record(self, action: Record) -> None:
        outcome = action.outcome
        self.store.finish_trial(
            action.trial_id,
            outcome.state,
            objective=outcome.objective,
            metrics=outcome.metrics,
            attempt=outcome.attempt,
            worker=outcome.worker,
            host=outcome.host,
            gpu=outcome.gpu,
            started=outcome.started,
            ended=outcome.ended,
            reason=outcome.reason,
            error=outcome.error,
            feasible=action.feasible,
        )
        if outcome.state == TrialState.FAILED:
            log.warning("trial %d failed (%s)", action.trial_id, outcome.reason)
        if outcome.state == TrialState.COMPLETED and outcome.attempt == 1:  # a resumed attempt ran part of it
            self._durations.add(outcome.ended - outcome.started, action.params)
        if action.best:
            self._keep_best(action.trial_id, action.params, outcome)
        elif outcome.model_file and self.spec.trial.keep_models == "best":
            Path(outcome.model_file).unlink(missing_ok=True)

    def _keep_best(self, trial_id: int, params: dict[str, Any], outcome: TrialOutcome) -> None:
        """The best trial's parameters (and Keras model) in ``EXP/best/``."""
        best = self.exp_dir / BEST_DIR
        best.mkdir(exist_ok=True)
        old_model = best / BEST_SOURCE
        if self.spec.trial.keep_models == "best" and old_model.is_file():
            Path(old_model.read_text().strip()).unlink(missing_ok=True)
        info = {"trial_id": trial_id, "objective": outcome.objective, "metrics": outcome.metrics, "params": params}
        (best / PARAMS_FILE).write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
        (best / MODEL_FILE).unlink(missing_ok=True)
        old_model.unlink(missing_ok=True)
        if outcome.model_file and Path(outcome.model_file).is_file():
            shutil.copy2(outcome.model_file, best / MODEL_FILE)
            old_model.write_text(outcome.model_file)

    def _ask_stop(self, action: AskStop) -> None:
        try:
            self.client.run(request_stop, self.key, action.trial_id, action.reason, workers=[action.address])
        except Exception:
            log.warning("could not reach the worker of trial %d", action.trial_id, exc_info=True)

    def _end(self, action: End) -> None:
        """A trial ended by the driver; its worker is restarted to stop the code."""
        future = self._futures.pop(action.trial_id, None)
        if future is not None:
            future.cancel()
        self._placed_for(action.trial_id)
        self.store.finish_trial(action.trial_id, action.state, attempt=action.attempt, started=action.started,
                                reason=action.reason, error=action.message or None)
        if action.restart is not None:
            restart = threading.Thread(target=self._restart_worker, args=(action.restart,), daemon=True)
            restart.start()
            self._restarts = [t for t in self._restarts if t.is_alive()] + [restart]

    def _restart_worker(self, address: str) -> None:
        try:
            self.client.restart_workers([address], raise_for_error=False)
        except Exception as exc:
            log.warning("could not restart worker %s: %s", address, exc)

    def _check_requests(self) -> None:
        folder = self.exp_dir / REQUESTS
        try:
            names = [p.name for p in folder.iterdir()]
        except FileNotFoundError:
            return
        for name in names:
            if name.startswith("."):  # a request being written
                continue
            if name.startswith(CHANGE_REQUEST):  # a new budget or concurrency (Experiment.change)
                self._change(folder / name)
                continue
            (folder / name).unlink(missing_ok=True)
            if name == "stop":
                self._apply(self.state.stop_requested())
            elif name.startswith("stop-trial-") and name[11:].isdigit():
                self._apply(self.state.stop_trial(int(name[11:]), time.time()))

    def _change(self, request: Path) -> None:
        """Apply a change request: the new spec (validated by who asked) is the
        experiment's from now on, also for a later resume; the cluster grows or shrinks
        when this driver started it."""
        try:
            spec = load_spec(request)
        except (OSError, CandleLabError) as exc:
            log.warning("change request %s ignored: %s", request.name, exc)
            return
        finally:
            request.unlink(missing_ok=True)
        self.spec = spec
        (self.exp_dir / SPEC_NAME).write_text(spec.to_yaml(), encoding="utf-8")
        self.store.set_meta(spec=spec.to_dict())
        self._apply(self.state.change(spec))
        if isinstance(self._proposer, BackgroundProposer):  # its reserve follows the trial slots
            self._proposer.capacity = max(1, self.state.workers)
        if self._rescale is not None:
            self._rescale(spec.compute.workers)

    # ------------------------------------------------------------------ bookkeeping
    def _run_dir(self, run_id: str) -> Path:
        return self.exp_dir / run_dir_name(run_id)

    def _elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self._start

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if now - self._last_beat >= HEARTBEAT_SECONDS:
            self._last_beat = now
            self.store.set_meta(heartbeat=time.time(), elapsed=self._elapsed())
            self.store.commit()
            self._notify()

    def _notify(self) -> None:
        if self.observer is not None:
            n = self.state.n
            self.observer(
                Progress(n.created, n.finished, len(self.state.running), n.failed, n.best,
                         self.spec.budget.max_trials, self._elapsed())
            )
