"""The search loop: ask -> submit -> completed -> tell -> store, for async and batch modes.

One loop serves both modes. Async keeps every worker busy: a new trial is submitted
the moment one finishes, with its proposal prepared ahead on the proposer's thread.
Batch (batch-bo) submits a round and waits for all of it before the next round.

Completions (future callbacks) and worker events (trial started, per-step metrics)
arrive on one queue; the loop is the only writer of the store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import queue
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from candle_lab.clusters.profiles import load_profile
from candle_lab.optimizers import (
    BackgroundProposer,
    DirectProposer,
    Observation,
    Proposal,
    Proposer,
    make_optimizer,
)
from candle_lab.placement import Turnaround, placements, slots
from candle_lab.spec import ExperimentSpec
from candle_lab.stopping import make_rule
from candle_lab.store import REQUESTS, Store, default_run_id, run_dir_name
from candle_lab.trial import (
    PARAMS_FILE,
    RETRYABLE,
    TOPIC,
    Reason,
    TrialOutcome,
    TrialTask,
    read_outcome,
    request_stop,
    run_trial,
    started_attempts,
)

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
POLL_SECONDS = 0.25
RESTART_WAIT_SECONDS = 30.0  # at the end, for workers restarted to stop their trials
MEMORY_TOPIC = "worker-restart-memory"  # dask's nanny: a worker past its memory limit
STOP_GRACE_SECONDS = 10.0  # a trial asked to stop gets this long to end at an epoch boundary
BEST_DIR = "best"
COALESCE_SECONDS = 0.0
QUEUE_AHEAD = 16  # non-adaptive searches: trials queued on the scheduler beyond the workers
SLOTS_SECONDS = 5.0  # placing trials: how often the workers' list is read again
UNSTARTED_LOSSES = 3  # a trial whose worker dies before it starts is re-queued this often, free


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


@dataclass
class _Trial:
    trial_id: int
    run_id: str
    params: dict[str, Any]
    round: int | None
    attempt: int = 1
    future: Any = None
    started: float | None = None
    address: str | None = None
    worker: str | None = None
    stop_deadline: float | None = None  # asked to stop: killed if still running then
    restarts: int = 0  # times dask re-ran this attempt elsewhere after its worker left
    stop_reason: str | None = None
    target: str | None = None  # the worker it was submitted to, when the engine places trials
    unstarted_losses: int = 0  # times its worker was lost while it waited behind another trial


def _failed(
    trial_id: int, attempt: int, started: float | None, worker: str | None, *, reason: Reason, error: str
) -> TrialOutcome:
    """The outcome the driver records for an attempt whose worker gave none."""
    now = time.time()
    return TrialOutcome(
        trial_id=trial_id, attempt=attempt, state="failed", objective=None, metrics={},
        started=started or now, ended=now, worker=worker, reason=reason, error=error,
    )


@dataclass
class _Counters:
    created: int = 0
    finished: int = 0
    failed: int = 0
    best: float | None = None
    rounds: int = 0
    reruns: list[_Trial] = field(default_factory=list)


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
    ) -> None:
        self.spec = spec
        self.exp_dir = exp_dir
        self.store = store
        self.client = client
        self.fn = fn
        self.observer = observer
        self.resources = resources
        self.exp_id = exp_dir.name
        # Unique on a shared scheduler: task keys and events of two experiments never mix.
        self.key = f"{exp_dir.name}-{uuid.uuid4().hex[:8]}"
        self.batch = spec.search.algorithm == "batch-bo"
        self.workers = spec.compute.workers
        meta = store.meta()
        self.seed = int(meta["seed"])
        self.elapsed_before = float(meta.get("elapsed", 0.0))
        self.optimizer = make_optimizer(spec, self.seed)
        self._inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._running: dict[int, _Trial] = {}
        self._n = _Counters()
        self._stopping: str | None = None
        self._start = time.monotonic()
        self._last_beat = self._last_checks = 0.0
        self._model = spec.model.model_dump(mode="json")
        t = spec.trial
        self._rule = make_rule(t.early_stop, t.grace_epochs, t.min_trials, t.eta)
        self._turnaround = Turnaround()
        self._slots: dict[str, int] = {}  # worker address -> trials at once, once placing
        # SLURM workers retire before their walltime and new jobs take over: a trial placed
        # on a retiring worker could wait forever (seen in the SLURM tests), so dask places.
        self._workers_retire = load_profile(spec.compute.profile).scheduler == "slurm"
        self._restarts: list[threading.Thread] = []  # workers being restarted to stop a trial
        self._memory_kills: dict[str, int] = {}  # worker address -> its memory (bytes) when dask restarted it
        self._slots_read = -math.inf
        self._placed = False  # the queue-ahead event is stored once

    # ------------------------------------------------------------------ public
    def run(self) -> str:
        """Run to the end; returns why it ended (``budget``, ``target``, ``exhausted``, ``stopped``)."""
        self._restore()
        adaptive_async = self.optimizer.adaptive and not self.batch
        proposer: Proposer = (
            BackgroundProposer(self.optimizer, capacity=self.workers, on_ready=self._wake)
            if adaptive_async
            else DirectProposer(self.optimizer)
        )
        self.client.subscribe_topic(TOPIC, self._on_event)
        self.client.subscribe_topic(MEMORY_TOPIC, self._on_memory_kill)
        self.store.set_meta(state="running")
        self.store.add_event("driver-start", detail={"resumed_trials": self._n.created})
        self.store.commit()
        try:
            ended = self._loop(proposer)
        finally:
            proposer.close()
            for topic in (TOPIC, MEMORY_TOPIC):
                with contextlib.suppress(Exception):
                    self.client.unsubscribe_topic(topic)
            self._cancel_running("cancelled", self._stopping or "driver ended")
            for restart in self._restarts:  # the cluster may close once its workers are back
                restart.join(RESTART_WAIT_SECONDS)
            self.store.set_meta(elapsed=self._elapsed())
            self.store.commit()
        self.store.set_meta(state="completed" if ended != "stopped" else "stopped", ended_because=ended)
        self.store.add_event("driver-end", detail={"reason": ended})
        self.store.commit()
        return ended

    # ------------------------------------------------------------------ resume
    def _restore(self) -> None:
        """Tell the optimizer what earlier runs of this experiment did; collect what to re-run."""
        records = self.store.trials()
        self.optimizer.register([Proposal(t.params, t.run_id) for t in records])
        told: list[Observation] = []
        began = started_attempts(self.exp_dir)
        for t in records:
            if t.finished:
                loss = self._loss(t.objective) if t.state == "completed" else None
                told.append(Observation(t.params, loss, t.run_id))
                self._count_finished(t.state, t.objective)
                continue
            outcome = read_outcome(self._run_dir(t.run_id))
            if outcome is not None and outcome.attempt >= t.attempt:
                # Finished on its worker while no driver was listening.
                told.append(self._record(t.trial_id, t.params, outcome, t.run_id))
                continue
            if t.state == "queued" and (t.trial_id, t.attempt) not in began:  # never started: none used up
                attempt = t.attempt
            elif t.attempt <= self.spec.trial.retries:  # running when the driver died: that attempt counts
                attempt = t.attempt + 1
            else:
                why = f"the driver stopped during its last attempt ({t.attempt} of {self.spec.trial.retries + 1})"
                lost = _failed(t.trial_id, t.attempt, t.started, t.worker, reason="lost-worker", error=why)
                told.append(self._record(t.trial_id, t.params, lost, t.run_id))
                continue
            trial = _Trial(t.trial_id, t.run_id, t.params, t.round, attempt=attempt)
            self.store.requeue(t.trial_id, attempt, reason="driver restarted")
            self._n.reruns.append(trial)
        self.optimizer.tell(told)
        self._n.created = len(records)
        self._n.rounds = max((t.round or 0 for t in records), default=-1) + 1
        self.store.commit()

    # ------------------------------------------------------------------ loop
    def _loop(self, proposer: Proposer) -> str:
        while True:
            if self._stopping is None and self._time_up():
                self._stopping = "budget"
            if self._stopping is not None:
                return self._stopping  # trials still running are cancelled by run()
            self._dispatch(proposer)
            if not self._running and not self._n.reruns:
                if self._room() == 0:
                    return "budget"
                if proposer.exhausted:
                    return "exhausted"
            self._wait_and_handle(proposer)
            now = time.monotonic()
            if now - self._last_checks >= POLL_SECONDS:  # not at every event: 1000s of trials run
                self._last_checks = now
                self._check_timeouts(proposer)
                self._check_requests(proposer)
            self._heartbeat()

    def _time_up(self) -> bool:
        limit = self.spec.budget.max_time
        return limit is not None and self._elapsed() >= limit

    def _room(self) -> int:
        """How many new trials the budget still allows."""
        if self.spec.budget.max_trials is None:
            return 1 << 30
        return max(0, self.spec.budget.max_trials - self._n.created)

    def _dispatch(self, proposer: Proposer) -> None:
        """Submit re-runs and new trials, all in one scheduler update."""
        if self.batch:
            batch, self._n.reruns = self._n.reruns, []
            if not self._running and not batch and self._room() > 0:
                want = self.spec.search.batch_size or self.workers
                if self._n.rounds == 0:  # the initial design, on every worker the round has
                    want = max(want, self.spec.search.initial_points)
                batch += self._new_trials(proposer, min(want, self._room()), round=self._n.rounds)
                self._n.rounds += 1
            self._submit(batch)
            return
        targets = self._targets()
        batch = self._n.reruns[: len(targets)]
        del self._n.reruns[: len(batch)]
        fresh = len(targets) - len(batch)
        if fresh >= self._refill_at() and self._room() > 0:
            batch += self._new_trials(proposer, min(fresh, self._room()), round=None)
        for trial, target in zip(batch, targets, strict=False):
            trial.target = target
        self._submit(batch)

    def _targets(self) -> list[str | None]:
        """One entry per trial that may be submitted now: the worker it goes to, or None
        where dask chooses. Adaptive searches are placed by the engine, one trial queued
        on each worker, once the measured round trip costs the workers time."""
        if not self._placing():
            return [None] * max(0, self._capacity() - len(self._running))
        where = [t.address or t.target for t in self._running.values()]
        unplaced = where.count(None)
        in_flight = Counter(a for a in where if a is not None)
        return list(placements(self._slots, in_flight, unplaced, self._room() + len(self._n.reruns)))

    def _placing(self) -> bool:
        if not self.optimizer.adaptive or not self._turnaround.queue_ahead or self._workers_retire:
            return False
        now = time.monotonic()
        if now - self._slots_read > SLOTS_SECONDS:  # workers come and go: read their list now and then
            self._slots_read = now
            with contextlib.suppress(Exception):
                self._slots = slots(self.client.scheduler_info()["workers"], self.resources)
            if self._slots and not self._placed:
                self._placed = True
                detail = {**self._turnaround.figures(), "workers": len(self._slots)}
                log.info("queueing one trial ahead on each worker (%s)", detail)
                self.store.add_event("queue-ahead", detail=detail)
        return bool(self._slots)

    def _capacity(self) -> int:
        """Trials submitted at once. Adaptive searches propose at the last moment (one
        per worker); the others keep a queue on the scheduler so that no worker waits
        for the driver, refilled in chunks to keep scheduler updates few."""
        return self.workers if self.optimizer.adaptive else self.workers + max(self.workers, QUEUE_AHEAD)

    def _refill_at(self) -> int:
        return 1 if self.optimizer.adaptive else max(1, min(self.workers, QUEUE_AHEAD) // 2)

    def _new_trials(self, proposer: Proposer, n: int, round: int | None) -> list[_Trial]:
        if n <= 0 or proposer.exhausted:
            return []
        out = []
        for proposal in proposer.take(n):
            trial_id = self._n.created
            run_id = proposal.run_id or default_run_id(trial_id)
            self.store.add_trial(trial_id, run_id, proposal.params, round=round)
            self._n.created += 1
            out.append(_Trial(trial_id, run_id, proposal.params, round))
        return out

    def _submit(self, trials: list[_Trial]) -> None:
        """One scheduler update per target worker (most often a single one, dask's choice)."""
        groups: dict[str | None, list[_Trial]] = {}
        for t in trials:
            groups.setdefault(t.target, []).append(t)
        for target, group in groups.items():  # placed trials may still move if their worker leaves
            where = {"workers": [target], "allow_other_workers": True} if target else {}
            futures = self.client.map(
                run_trial,
                [self._task(t) for t in group],
                key=[self._task_key(t) for t in group],
                pure=False,
                resources=self.resources,
                **where,
            )
            for trial, future in zip(group, futures, strict=True):
                trial.started = trial.address = None
                trial.stop_deadline = trial.stop_reason = None
                trial.future = future
                self._running[trial.trial_id] = trial
                future.add_done_callback(lambda fut, t=trial, a=trial.attempt: self._inbox.put(("done", (t, a, fut))))

    def _task_key(self, t: _Trial) -> str:
        """Unique per submission: a key dask still holds would hand back its old result."""
        again = f"-q{t.unstarted_losses}" if t.unstarted_losses else ""
        return f"{self.key}-trial{t.trial_id}-a{t.attempt}{again}"

    def _task(self, t: _Trial) -> TrialTask:
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
            cores=self.spec.compute.cores,
            gpus=self.spec.compute.gpus,
            save_model=self.spec.trial.keep_models != "none",
            checkpoint=self.spec.trial.checkpoints,
            fn=self.fn,
        )

    # ------------------------------------------------------------------ completions and events
    def _on_event(self, event: Any) -> None:
        """Called by dask (on its own thread) for each worker event of our topic."""
        message = event[1] if isinstance(event, tuple) else event
        if isinstance(message, dict) and message.get("experiment") == self.key:
            self._inbox.put(("event", message))

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
        if not self.optimizer.adaptive and not self.batch:
            # Workers have queued trials: let completions gather so that results are
            # fetched and recorded many at a time (no worker waits meanwhile).
            time.sleep(COALESCE_SECONDS)
        done: list[tuple[_Trial, int, Any]] = []
        while True:
            kind, payload = item
            if kind == "done":
                done.append(payload)
            elif kind == "event":
                ended = self._on_message(payload)
                if ended is not None:
                    proposer.tell([ended])
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
        proposer.tell(self._on_done(done))
        for notice in proposer.notices():
            self.store.add_event(notice.kind, detail=notice.detail)
        self.store.commit()
        self._notify()

    def _wake(self) -> None:
        """The proposer has proposals ready (called on its thread)."""
        self._inbox.put(("ready", None))

    def _on_message(self, message: dict[str, Any]) -> Observation | None:
        """A worker event; returns what the optimizer must hear of a trial it ended."""
        trial = self._running.get(int(message["trial_id"]))
        if trial is None or trial.attempt != message.get("attempt"):
            return None  # a late event of an attempt that already ended
        if message["kind"] == "start":
            started = float(message.get("started", message["time"]))
            if trial.started is not None and started != trial.started:
                # dask moved the task to another worker (its worker left: walltime, scancel)
                trial.restarts += 1
                self.store.add_event("rescheduled", trial.trial_id, {"from": trial.worker, "to": message.get("lane")})
                if trial.attempt + trial.restarts > self.spec.trial.retries + 1:  # the engine decides, not dask
                    used = trial.attempt + trial.restarts - 1
                    why = f"its worker was lost during its last attempt ({used} of {self.spec.trial.retries + 1})"
                    self._end_running(trial, "failed", "lost-worker", why)
                    return Observation(trial.params, None, trial.run_id)
            trial.started = started
            trial.address = message.get("address")
            self._turnaround.started(trial.address, started)
            trial.worker = message.get("lane")
            self.store.mark_running(
                trial.trial_id,
                trial.attempt + trial.restarts,
                worker=trial.worker,
                host=message.get("host"),
                gpu=message.get("gpu"),
                started=trial.started,
            )
        elif message["kind"] == "metrics":
            step, values = int(message["step"]), message["metrics"]
            self.store.add_metrics(trial.trial_id, trial.attempt, step, values, float(message["time"]))
            metric = self.spec.objective.metric
            if self._rule is not None and metric in values and trial.stop_reason is None:
                loss = self.spec.objective.loss(float(values[metric]))
                if self._rule.should_stop(trial.trial_id, step, loss):
                    log.info(
                        "early stopping trial %d at epoch %d (%s=%g)", trial.trial_id, step, metric, values[metric]
                    )
                    self._ask_stop(trial, "early-stop")
        return None

    def _on_done(self, done: list[tuple[_Trial, int, Any]]) -> list[Observation]:
        """Record finished futures (results fetched in one request); retry what may succeed."""
        current = [(t, a, f) for t, a, f in done if self._running.get(t.trial_id) is t and t.attempt == a]
        finished = [f for _, _, f in current if f.status == "finished"]
        try:
            results = dict(zip(finished, self.client.gather(finished), strict=True))
        except Exception:  # a worker died between finishing and handing over: one by one
            results = {}
        observations = []
        for trial, attempt, future in current:
            outcome = results.get(future) or self._outcome_of(trial, attempt, future)
            if outcome is None:
                continue
            del self._running[trial.trial_id]
            future.release()
            if self._never_started(trial, attempt, outcome):
                self.store.add_event("requeued", trial.trial_id, {"attempt": attempt, "reason": outcome.reason})
                self.store.requeue(trial.trial_id, attempt, outcome.reason, "its worker was lost before it started")
                self._n.reruns.append(trial)
                continue
            self._turnaround.freed(trial.address, outcome.ended, outcome.ended - outcome.started)
            if trial.restarts:
                outcome = dataclasses.replace(outcome, attempt=outcome.attempt + trial.restarts)
            if outcome.reason in RETRYABLE and outcome.attempt <= self.spec.trial.retries and self._stopping is None:
                log.info("trial %d attempt %d failed (%s); retrying", trial.trial_id, attempt, outcome.reason)
                self.store.add_event(
                    "retry", trial.trial_id, {"attempt": attempt, "reason": outcome.reason, "error": outcome.error}
                )
                trial.attempt = outcome.attempt + 1
                trial.restarts = 0
                self.store.requeue(trial.trial_id, trial.attempt, outcome.reason, outcome.error)
                self._n.reruns.append(trial)
                continue
            observations.append(self._record(trial.trial_id, trial.params, outcome, trial.run_id))
        return observations

    def _never_started(self, trial: _Trial, attempt: int, outcome: TrialOutcome) -> bool:
        """A trial whose worker died while it waited behind another (no start event, no
        line in ``EXP/starts/``) keeps its attempt: the trial that ran is charged."""
        if outcome.reason != "lost-worker" or trial.started is not None or trial.restarts:
            return False
        if trial.unstarted_losses >= UNSTARTED_LOSSES or (trial.trial_id, attempt) in started_attempts(self.exp_dir):
            return False
        trial.unstarted_losses += 1
        return True

    def _outcome_of(self, trial: _Trial, attempt: int, future: Any) -> TrialOutcome | None:
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
        return _failed(trial.trial_id, attempt, trial.started, trial.worker, reason=reason, error=error)

    def _record(
        self, trial_id: int, params: dict[str, Any], outcome: TrialOutcome, run_id: str | None = None
    ) -> Observation:
        self.store.finish_trial(
            trial_id,
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
        )
        if outcome.state == "failed":
            log.warning("trial %d failed (%s)", trial_id, outcome.reason)
        previous_best = self._n.best
        self._count_finished(outcome.state, outcome.objective)
        if outcome.state == "completed" and self._n.best != previous_best:
            self._keep_best(trial_id, params, outcome)
        elif outcome.model_file and self.spec.trial.keep_models == "best":
            Path(outcome.model_file).unlink(missing_ok=True)
        target = self.spec.budget.target
        if (
            outcome.objective is not None
            and target is not None
            and self.spec.objective.reached(outcome.objective, target)
            and self._stopping is None
        ):
            log.info("trial %d reached the target %s", trial_id, target)
            self.store.add_event("target-reached", trial_id, {"objective": outcome.objective})
            self._stopping = "target"
        loss = self._loss(outcome.objective) if outcome.state == "completed" else None
        return Observation(params, loss, run_id)

    def _keep_best(self, trial_id: int, params: dict[str, Any], outcome: TrialOutcome) -> None:
        """The best trial's parameters (and Keras model) in ``EXP/best/``."""
        best = self.exp_dir / BEST_DIR
        best.mkdir(exist_ok=True)
        old_model = best / "source.txt"
        if self.spec.trial.keep_models == "best" and old_model.is_file():
            Path(old_model.read_text().strip()).unlink(missing_ok=True)
        info = {"trial_id": trial_id, "objective": outcome.objective, "metrics": outcome.metrics, "params": params}
        (best / PARAMS_FILE).write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
        (best / "model.keras").unlink(missing_ok=True)
        old_model.unlink(missing_ok=True)
        if outcome.model_file and Path(outcome.model_file).is_file():
            shutil.copy2(outcome.model_file, best / "model.keras")
            old_model.write_text(outcome.model_file)

    def _count_finished(self, state: str, objective: float | None) -> None:
        self._n.finished += 1
        if state == "failed":
            self._n.failed += 1
        if (
            state == "completed"
            and objective is not None
            and (self._n.best is None or self.spec.objective.better(objective, self._n.best))
        ):
            self._n.best = objective

    def _loss(self, objective: float | None) -> float | None:
        return None if objective is None or not math.isfinite(objective) else self.spec.objective.loss(objective)

    # ------------------------------------------------------------------ timeouts, stops
    def _check_timeouts(self, proposer: Proposer) -> None:
        """Kill trials past their timeout (plus a grace for the Keras callback to end them
        cleanly) or past the deadline of a stop request they did not honour."""
        limit = self.spec.trial.timeout
        now = time.time()
        for trial in list(self._running.values()):
            if trial.stop_deadline is not None and now > trial.stop_deadline:
                self._end_running(
                    trial, "stopped", trial.stop_reason or "stopped", "stopped (its worker was restarted)"
                )
            elif limit is not None and trial.started is not None and now - trial.started > limit + _grace(limit):
                self._end_running(trial, "failed", "timeout", f"the trial ran longer than its timeout of {limit:g} s")
            else:
                continue
            proposer.tell([Observation(trial.params, None, trial.run_id)])
        self.store.commit()

    def _ask_stop(self, trial: _Trial, reason: str) -> None:
        """Ask a trial to stop at its next epoch boundary; it is killed if it does not."""
        trial.stop_reason = reason
        self.store.add_event("stop-asked", trial.trial_id, {"reason": reason})
        if trial.address is None:  # not started yet: nothing to interrupt
            self._end_running(trial, "stopped", reason, "stopped before it started")
            return
        trial.stop_deadline = time.time() + STOP_GRACE_SECONDS
        try:
            self.client.run(request_stop, self.key, trial.trial_id, reason, workers=[trial.address])
        except Exception:
            log.warning("could not reach the worker of trial %d", trial.trial_id, exc_info=True)

    def _check_requests(self, proposer: Proposer) -> None:
        folder = self.exp_dir / REQUESTS
        try:
            names = [p.name for p in folder.iterdir()]
        except FileNotFoundError:
            return
        for name in names:
            (folder / name).unlink(missing_ok=True)
            if name == "stop" and self._stopping is None:
                self.store.add_event("stop-requested")
                self._stopping = "stopped"
            elif name.startswith("stop-trial-") and name[11:].isdigit():
                trial = self._running.get(int(name[11:]))
                if trial is not None and trial.stop_reason is None:
                    self._ask_stop(trial, "stopped")
        self.store.commit()

    def _end_running(self, trial: _Trial, state: str, reason: str, message: str) -> None:
        """End a running trial from the driver; its worker is restarted to stop the code."""
        del self._running[trial.trial_id]
        trial.future.cancel()
        self.store.finish_trial(
            trial.trial_id,
            state,
            attempt=trial.attempt,
            started=trial.started,
            reason=reason,
            error=message,
        )
        self.store.add_event(reason, trial.trial_id, {"attempt": trial.attempt})
        self._count_finished(state, None)
        if trial.address and trial.started is not None:
            restart = threading.Thread(target=self._restart_worker, args=(trial.address,), daemon=True)
            restart.start()
            self._restarts = [t for t in self._restarts if t.is_alive()] + [restart]

    def _restart_worker(self, address: str) -> None:
        try:
            self.client.restart_workers([address], raise_for_error=False)
        except Exception as exc:
            log.warning("could not restart worker %s: %s", address, exc)

    def _cancel_running(self, state: str, why: str) -> None:
        for trial in list(self._running.values()):
            del self._running[trial.trial_id]
            if trial.future is not None:
                trial.future.cancel()
            self.store.finish_trial(
                trial.trial_id,
                state,
                attempt=trial.attempt,
                started=trial.started,
                reason=why,
            )
        for trial in self._n.reruns:
            self.store.finish_trial(trial.trial_id, state, attempt=trial.attempt, reason=why)
        self._n.reruns.clear()

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
            n = self._n
            self.observer(
                Progress(
                    n.created,
                    n.finished,
                    len(self._running),
                    n.failed,
                    n.best,
                    self.spec.budget.max_trials,
                    self._elapsed(),
                )
            )


def _grace(timeout: float) -> float:
    """Time past the timeout before a trial is killed (its callback stops it first)."""
    return min(30.0, max(2.0, 0.05 * timeout))
