"""The search loop: ask -> submit -> completed -> tell -> store, for async and batch modes.

One loop serves both modes. Async keeps every worker busy: a new trial is submitted
the moment one finishes, with its proposal prepared ahead on the proposer's thread.
Batch (batch-bo) submits a round and waits for all of it before the next round.

Completions (future callbacks) and worker events (trial started, per-step metrics)
arrive on one queue; the loop is the only writer of the store.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from candle_lab.optimizers import (
    BackgroundProposer,
    DirectProposer,
    Observation,
    Proposal,
    Proposer,
    make_optimizer,
)
from candle_lab.spec import ExperimentSpec
from candle_lab.store import REQUESTS, Store, default_run_id, run_dir_name
from candle_lab.trial import RETRYABLE, TOPIC, TrialOutcome, TrialTask, read_outcome, run_trial

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
POLL_SECONDS = 0.25


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
    ) -> None:
        self.spec = spec
        self.exp_dir = exp_dir
        self.store = store
        self.client = client
        self.fn = fn
        self.observer = observer
        self.exp_id = exp_dir.name
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
        self._last_beat = 0.0
        self._model = spec.model.model_dump(mode="json")

    # ------------------------------------------------------------------ public
    def run(self) -> str:
        """Run to the end; returns why it ended (``budget``, ``target``, ``exhausted``, ``stopped``)."""
        self._restore()
        adaptive_async = self.optimizer.adaptive and not self.batch
        proposer: Proposer = BackgroundProposer(self.optimizer) if adaptive_async else DirectProposer(self.optimizer)
        self.client.subscribe_topic(TOPIC, self._on_event)
        self.store.set_meta(state="running")
        self.store.add_event("driver-start", detail={"resumed_trials": self._n.created})
        self.store.commit()
        try:
            ended = self._loop(proposer)
        finally:
            proposer.close()
            with contextlib.suppress(Exception):
                self.client.unsubscribe_topic(TOPIC)
            self._cancel_running("cancelled", self._stopping or "driver ended")
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
            trial = _Trial(t.trial_id, t.run_id, t.params, t.round, attempt=t.attempt + 1)
            self.store.requeue(t.trial_id, trial.attempt, reason="driver restarted")
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
        if self._n.reruns:
            while self._n.reruns and (self.batch or len(self._running) < self._capacity()):
                self._submit(self._n.reruns.pop(0))
        if self.batch:
            if self._running or self._room() == 0:
                return
            want = self.spec.search.batch_size or self.workers
            if self._n.rounds == 0 and self.spec.search.algorithm == "batch-bo":
                want = self.spec.search.initial_points
            self._new_trials(proposer, min(want, self._room()), round=self._n.rounds)
            self._n.rounds += 1
            return
        free = self._capacity() - len(self._running)
        if free > 0 and self._room() > 0:
            self._new_trials(proposer, min(free, self._room()), round=None)

    def _capacity(self) -> int:
        # Non-adaptive searches queue a second wave on the scheduler so that a worker
        # never waits for the driver; adaptive ones propose at the last moment.
        return self.workers if self.optimizer.adaptive else 2 * self.workers

    def _new_trials(self, proposer: Proposer, n: int, round: int | None) -> None:
        if n <= 0 or proposer.exhausted:
            return
        for proposal in proposer.take(n):
            trial_id = self._n.created
            run_id = proposal.run_id or default_run_id(trial_id)
            trial = _Trial(trial_id, run_id, proposal.params, round)
            self.store.add_trial(trial_id, run_id, proposal.params, round=round)
            self._n.created += 1
            self._submit(trial)

    def _submit(self, trial: _Trial) -> None:
        task = TrialTask(
            experiment=self.exp_id,
            run_dir=str(self._run_dir(trial.run_id)),
            trial_id=trial.trial_id,
            run_id=trial.run_id,
            attempt=trial.attempt,
            params=trial.params,
            model=self._model,
            metric=self.spec.objective.metric,
            timeout=self.spec.trial.timeout,
            fn=self.fn,
        )
        key = f"{self.exp_id}-trial{trial.trial_id}-a{trial.attempt}"
        trial.started = None
        trial.future = self.client.submit(run_trial, task, key=key, pure=False)
        self._running[trial.trial_id] = trial
        trial.future.add_done_callback(lambda fut, t=trial, a=trial.attempt: self._inbox.put(("done", (t, a, fut))))

    # ------------------------------------------------------------------ completions and events
    def _on_event(self, event: Any) -> None:
        """Called by dask (on its own thread) for each worker event of our topic."""
        message = event[1] if isinstance(event, tuple) else event
        if isinstance(message, dict) and message.get("experiment") == self.exp_id:
            self._inbox.put(("event", message))

    def _wait_and_handle(self, proposer: Proposer) -> None:
        try:
            item = self._inbox.get(timeout=POLL_SECONDS)
        except queue.Empty:
            return
        done: list[Observation] = []
        while True:
            kind, payload = item
            if kind == "done":
                obs = self._on_done(*payload)
                if obs is not None:
                    done.append(obs)
            else:
                self._on_message(payload)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
        proposer.tell(done)
        self.store.commit()
        self._notify()

    def _on_message(self, message: dict[str, Any]) -> None:
        trial = self._running.get(int(message["trial_id"]))
        if trial is None or trial.attempt != message.get("attempt"):
            return  # a late event of an attempt that already ended
        if message["kind"] == "start":
            trial.started = float(message["time"])
            trial.address = message.get("address")
            trial.worker = message.get("worker")
            self.store.mark_running(
                trial.trial_id,
                trial.attempt,
                worker=trial.worker,
                host=message.get("host"),
                gpu=message.get("gpu"),
                started=trial.started,
            )
        elif message["kind"] == "metrics":
            self.store.add_metrics(
                trial.trial_id, trial.attempt, int(message["step"]), message["metrics"], float(message["time"])
            )

    def _on_done(self, trial: _Trial, attempt: int, future: Any) -> Observation | None:
        if self._running.get(trial.trial_id) is not trial or trial.attempt != attempt:
            return None  # cancelled or already replaced by a newer attempt
        if future.status == "finished":
            outcome: TrialOutcome = future.result()
        elif future.status == "cancelled":
            return None
        else:
            exc = future.exception()
            outcome = TrialOutcome(
                trial_id=trial.trial_id,
                attempt=attempt,
                state="failed",
                objective=None,
                metrics={},
                started=trial.started or time.time(),
                ended=time.time(),
                worker=trial.worker,
                reason="lost-worker",
                error=f"{type(exc).__name__}: {exc}",
            )
        del self._running[trial.trial_id]
        future.release()
        if outcome.reason in RETRYABLE and attempt <= self.spec.trial.retries and self._stopping is None:
            log.info("trial %d attempt %d failed (%s); retrying", trial.trial_id, attempt, outcome.reason)
            self.store.add_event(
                "retry", trial.trial_id, {"attempt": attempt, "reason": outcome.reason, "error": outcome.error}
            )
            trial.attempt += 1
            self.store.requeue(trial.trial_id, trial.attempt, outcome.reason, outcome.error)
            self._n.reruns.append(trial)
            return None
        return self._record(trial.trial_id, trial.params, outcome, trial.run_id)

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
        self._count_finished(outcome.state, outcome.objective)
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
        limit = self.spec.trial.timeout
        if limit is None:
            return
        now = time.time()
        for trial in list(self._running.values()):
            if trial.started is not None and now - trial.started > limit:
                self._end_running(trial, "failed", "timeout", f"the trial ran longer than its timeout of {limit:g} s")
                proposer.tell([Observation(trial.params, None, trial.run_id)])
        self.store.commit()

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
                if trial is not None:
                    self._end_running(trial, "stopped", "stopped", "stopped by the user")
                    proposer.tell([Observation(trial.params, None, trial.run_id)])
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
            error=message,  # type: ignore[arg-type]
        )
        self.store.add_event(reason, trial.trial_id, {"attempt": trial.attempt})
        self._count_finished(state, None)
        if trial.address:
            address = trial.address
            threading.Thread(target=self._restart_worker, args=(address,), daemon=True).start()

    def _restart_worker(self, address: str) -> None:
        try:
            self.client.restart_workers([address], raise_for_error=False)
        except Exception:
            log.warning("could not restart worker %s", address, exc_info=True)

    def _cancel_running(self, state: str, why: str) -> None:
        for trial in list(self._running.values()):
            del self._running[trial.trial_id]
            if trial.future is not None:
                trial.future.cancel()
            self.store.finish_trial(
                trial.trial_id,
                state,
                attempt=trial.attempt,
                started=trial.started,  # type: ignore[arg-type]
                reason=why,
            )
        for trial in self._n.reruns:
            self.store.finish_trial(trial.trial_id, state, attempt=trial.attempt, reason=why)  # type: ignore[arg-type]
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
