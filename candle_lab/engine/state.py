"""The search's decisions, without a cluster: stimuli in, actions out.

:class:`SearchState` is fed what happens (proposals admitted, a trial started, metrics,
an attempt finished, the clock, a stop request, the records of an earlier run) and
answers with actions (submit these trials, record this outcome, retry, ask a trial to
stop, end it, write this event). It does no I/O: the driver (:mod:`.driver`) does dask,
the store and files around it, and the tests feed it directly (the shape of
distributed's ``WorkerState``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from candle_lab import bounds, pareto
from candle_lab.engine.retry import retry_kind
from candle_lab.optimizers.base import Observation, Proposal
from candle_lab.spec import ExperimentSpec, changed_fields
from candle_lab.states import TrialState
from candle_lab.stopping import make_rule
from candle_lab.trial.gpus import is_system
from candle_lab.trial.protocol import MetricsEvent, Reason, StartEvent, TrialOutcome

STOP_GRACE_SECONDS = 10.0  # a trial asked to stop gets this long to end at an epoch boundary
QUEUE_AHEAD = 16  # non-adaptive searches: trials queued on the scheduler beyond the workers
UNSTARTED_LOSSES = 3  # a trial whose worker dies before it starts is re-queued this often, free
REQUEUED = "requeued"  # the event of a trial sent again with the same attempt (it never started)


@dataclass
class Trial:
    """A trial the search holds: waiting to be (re)submitted, or in flight."""

    trial_id: int
    run_id: str
    params: dict[str, Any]
    round: int | None
    attempt: int = 1
    started: float | None = None
    address: str | None = None  # its worker's dask address, once started
    worker: str | None = None  # its worker's lane name, once started
    stop_deadline: float | None = None  # asked to stop: killed if still running then
    stop_reason: str | None = None
    restarts: int = 0  # times dask re-ran this attempt elsewhere after its worker left
    target: str | None = None  # the worker it was submitted to, when the driver places trials
    unstarted_losses: int = 0  # times its worker was lost while it waited behind another trial
    origin: dict[str, Any] | None = None  # where its point came from (PBT: the checkpoint it starts from)
    reported: int = 0  # the attempt (with restarts) whose metrics arrived: a resumed one says so once
    free_retries: int = 0  # attempts retried free (walltime, preemption, node failure): not counted against retries

    @property
    def key_suffix(self) -> str:
        """Unique per submission (a task key dask still holds would hand back its old result)."""
        again = f"-q{self.unstarted_losses}" if self.unstarted_losses else ""
        return f"trial{self.trial_id}-a{self.attempt}{again}"


def _held(record: Any, attempt: int) -> Trial:
    """A stored trial (a :class:`~candle_lab.store.TrialRecord`) as the search holds it."""
    origin = getattr(record, "origin", None)
    return Trial(record.trial_id, record.run_id, record.params, record.round, attempt, origin=origin)


# ------------------------------------------------------------------ actions
@dataclass(frozen=True)
class Created:
    """A new trial: store it (with where its point came from, when the search says)."""

    trial: Trial
    origin: dict[str, Any] | None = None


@dataclass(frozen=True)
class Submit:
    """Send these trials to the workers (new ones and re-runs)."""

    trials: tuple[Trial, ...]


@dataclass(frozen=True)
class Running:
    """The attempt started on a worker: store where and when."""

    trial_id: int
    attempt: int
    worker: str | None
    host: str | None
    gpu: str | None
    started: float


@dataclass(frozen=True)
class Metrics:
    """Store one step's metrics; ``late``: of an earlier attempt of the trial (a step it
    sent as it was cut off, or one its successor resent from the checkpoint), stored
    unless already there."""

    trial_id: int
    attempt: int
    step: int
    values: dict[str, float]
    time: float
    late: bool = False


@dataclass(frozen=True)
class Record:
    """An attempt's final outcome: store it; ``best`` when it is the best trial so far."""

    trial_id: int
    params: dict[str, Any]
    run_id: str
    outcome: TrialOutcome
    best: bool
    feasible: bool | None = None  # with constraints: whether it satisfied them


@dataclass(frozen=True)
class FrontChange:
    """Trials that joined and left the Pareto front (several objectives)."""

    joined: list[int]
    left: list[int]


@dataclass(frozen=True)
class Requeue:
    """The trial waits for attempt ``attempt`` (a retry, or the same attempt again)."""

    trial_id: int
    attempt: int
    reason: str | None
    error: str | None


@dataclass(frozen=True)
class AskStop:
    """Ask the running trial to stop at its next epoch boundary."""

    trial_id: int
    address: str
    reason: str


@dataclass(frozen=True)
class End:
    """End a trial from the driver (timeout, stop, lost worker): store it, cancel its task,
    and restart ``restart`` (its worker) to stop the code if it is running."""

    trial_id: int
    attempt: int
    state: str
    reason: str
    message: str
    started: float | None
    restart: str | None


@dataclass(frozen=True)
class Event:
    kind: str
    trial_id: int | None = None
    detail: dict[str, Any] | None = None


Action = Created | Submit | Running | Metrics | Record | FrontChange | Requeue | AskStop | End | Event


@dataclass(frozen=True)
class Plan:
    """What to send now: these re-runs and ``new`` fresh trials (of batch round ``round``)."""

    reruns: list[Trial]
    new: int
    round: int | None


@dataclass
class Counters:
    created: int = 0
    finished: int = 0
    failed: int = 0
    best: float | None = None
    rounds: int = 0


class SearchState:
    """Everything the search decides: budget, target, time, retries, capacity, timeouts,
    early stopping, what is best. ``began(trial_id, attempt)`` answers whether a worker
    began that attempt (the driver reads ``EXP/starts/``); it is asked only when a worker
    was lost before a start event arrived."""

    def __init__(
        self, spec: ExperimentSpec, *, adaptive: bool, began: Callable[[int, int], bool] = lambda i, a: True
    ) -> None:
        self.spec = spec
        self.adaptive = adaptive
        search = spec.search
        self.batch = search.algorithm == "batch-bo" or (search.algorithm == "ga" and search.generational)
        self.workers = spec.compute.workers * spec.compute.trials_per_worker  # trial slots
        self.began = began
        self.running: dict[int, Trial] = {}  # submitted, not finished
        self.reruns: list[Trial] = []  # waiting to be submitted again
        self.n = Counters()
        self.stopping: str | None = None  # why the search ends, once it does
        self.observations: list[Observation] = []  # what the optimizer has yet to hear
        self._rule = make_rule(spec.trial.early_stop, spec.trial.grace_epochs, spec.trial.min_trials, spec.trial.eta)
        self.front = pareto.Front()  # several objectives: the trials on the Pareto front
        self._best: list[tuple[float, int, dict[str, Any]]] = []  # the bounds.TOP best: (loss, trial id, params)
        self._completed = 0
        self._warned: set[tuple[str, str]] = set()  # (parameter, side) of the boundary events recorded
        self._space = spec.space.search_space() if search.algorithm not in ("upf", "ensemble") else None
        self._front_moved: tuple[list[int], list[int]] | None = None

    # ------------------------------------------------------------------ resume
    def restore(
        self, records: Sequence[Any], finished_on_worker: Callable[[str], TrialOutcome | None]
    ) -> list[Action]:
        """An earlier run's trials (store records): the finished ones are told, those that
        finished while no driver listened are recorded, the others wait to run again —
        with the same attempt if they never started, the next one if they did, or end
        ``lost-worker`` if that was their last."""
        actions: list[Action] = []
        for t in records:
            if t.finished:
                observed = self._observe(t.trial_id, t.params, t.run_id, state=t.state, metrics=t.metrics,
                                         objective=t.objective, reason=t.reason)
                self._count(t.state, t.objective if observed.feasible is not False else None)
                self._front_moved = None  # the store holds the front the earlier run found
                continue
            outcome = finished_on_worker(t.run_id)
            if outcome is not None and outcome.attempt >= t.attempt:
                actions += self._record(_held(t, t.attempt), outcome)
                continue
            if t.state == TrialState.QUEUED and not self.began(t.trial_id, t.attempt):
                attempt = t.attempt  # never started: none is used up
            elif t.attempt <= self.spec.trial.retries:  # running when the driver died: that attempt counts
                attempt = t.attempt + 1
            else:
                why = f"the driver stopped during its last attempt ({t.attempt} of {self.spec.trial.retries + 1})"
                lost = failed_outcome(t.trial_id, t.attempt, t.started, t.worker, reason="lost-worker", error=why)
                actions += self._record(_held(t, t.attempt), lost)
                continue
            self.reruns.append(_held(t, attempt))
            actions.append(Requeue(t.trial_id, attempt, "driver restarted", None))
        self.n.created = len(records)
        self.n.rounds = max((t.round or 0 for t in records), default=-1) + 1
        self._boundaries()  # recorded by the earlier run
        return actions

    # ------------------------------------------------------------------ budget and capacity
    def room(self) -> int:
        """How many new trials the budget still allows."""
        if self.spec.budget.max_trials is None:
            return 1 << 30
        return max(0, self.spec.budget.max_trials - self.n.created)

    def time_up(self, elapsed: float) -> None:
        limit = self.spec.budget.max_time
        if self.stopping is None and limit is not None and elapsed >= limit:
            self.stopping = "budget"

    def capacity(self) -> int:
        """Trials submitted at once. Adaptive searches propose at the last moment (one
        per worker); the others keep a queue on the scheduler so that no worker waits
        for the driver, refilled in chunks to keep scheduler updates few."""
        return self.workers if self.adaptive else self.workers + max(self.workers, QUEUE_AHEAD)

    def free_slots(self) -> int:
        return max(0, self.capacity() - len(self.running))

    def plan(self, slots: int) -> Plan:
        """What to send when ``slots`` trials may go now (batch: the next round, once the
        last one is over). The re-runs in the plan leave :attr:`reruns`."""
        if self.batch:
            reruns, self.reruns = self.reruns, []
            if self.running or reruns or self.room() == 0:
                return Plan(reruns, 0, None)
            search = self.spec.search
            want = search.batch_size or self.workers
            if search.algorithm == "ga":  # a generation
                want = search.population
            elif self.n.rounds == 0:  # the initial design, on every worker the round has
                want = max(want, search.initial_points)
            self.n.rounds += 1
            return Plan([], min(want, self.room()), self.n.rounds - 1)
        reruns = self.reruns[:slots]
        del self.reruns[: len(reruns)]
        fresh = slots - len(reruns)
        refill_at = 1 if self.adaptive else max(1, min(self.workers, QUEUE_AHEAD) // 2)
        return Plan(reruns, min(fresh, self.room()) if fresh >= refill_at else 0, None)

    def admit(self, proposals: Iterable[Proposal], round: int | None, run_id: Callable[[int], str]) -> list[Created]:
        """New trials from the optimizer's proposals (ids in order)."""
        created = []
        for proposal in proposals:
            trial_id = self.n.created
            self.n.created += 1
            origin = proposal.origin or {}
            step = origin.get("generation", origin.get("interval")) if round is None else round
            trial = Trial(trial_id, proposal.run_id or run_id(trial_id), proposal.params, step, origin=proposal.origin)
            created.append(Created(trial, proposal.origin))
        return created

    def submitted(self, trials: Iterable[Trial]) -> Submit:
        batch = tuple(trials)
        for t in batch:
            t.started = t.address = None
            t.stop_deadline = t.stop_reason = None
            self.running[t.trial_id] = t
        return Submit(batch)

    def end_reason(self, exhausted: bool) -> str | None:
        """Why the search ends now that nothing runs or waits, if it does."""
        if self.running or self.reruns:
            return None
        if self.room() == 0:
            return "budget"
        return "exhausted" if exhausted else None

    # ------------------------------------------------------------------ worker events
    def current(self, trial_id: int, attempt: int) -> Trial | None:
        """The trial in flight with this attempt; None for a late word of an ended one."""
        trial = self.running.get(trial_id)
        return trial if trial is not None and trial.attempt == attempt else None

    def started(self, event: StartEvent) -> list[Action]:
        trial = self.current(event.trial_id, event.attempt)
        if trial is None:
            return []
        actions: list[Action] = []
        if trial.started is not None and event.started != trial.started:
            # dask moved the task to another worker (its worker left: walltime, scancel)
            trial.restarts += 1
            actions.append(Event("rescheduled", trial.trial_id, {"from": trial.worker, "to": event.lane}))
            if trial.attempt - trial.free_retries + trial.restarts > self.spec.trial.retries + 1:  # the engine decides
                used = trial.attempt - trial.free_retries + trial.restarts - 1
                why = f"its worker was lost during its last attempt ({used} of {self.spec.trial.retries + 1})"
                return [*actions, *self.end(trial, TrialState.FAILED, "lost-worker", why)]
        trial.started, trial.address, trial.worker = event.started, event.address, event.lane
        attempt = trial.attempt + trial.restarts
        actions.append(Running(trial.trial_id, attempt, trial.worker, event.host, event.gpu, event.started))
        return actions

    def metrics(self, event: MetricsEvent, now: float) -> list[Action]:
        trial = self.current(event.trial_id, event.attempt)
        if trial is None:
            later = self.running.get(event.trial_id)
            if later is not None and later.attempt > event.attempt:
                return [Metrics(event.trial_id, event.attempt, event.step, event.metrics, event.time, late=True)]
            return []
        actions: list[Action] = [Metrics(trial.trial_id, trial.attempt, event.step, event.metrics, event.time)]
        if event.metrics and all(is_system(name) for name in event.metrics):  # GPU samples (sys.*): stored, not epochs
            return actions
        attempt = trial.attempt + trial.restarts
        if trial.reported != attempt:  # the attempt's first metrics: past epoch 1, it resumed
            trial.reported = attempt
            if attempt > 1 and event.step > 1:
                actions.append(Event("resumed", trial.trial_id, {"attempt": attempt, "epoch": event.step - 1}))
        metric = self.spec.objective.metric
        if self._rule is not None and metric in event.metrics and trial.stop_reason is None:
            loss = self.spec.objective.loss(float(event.metrics[metric]))
            if self._rule.should_stop(trial.trial_id, event.step, loss):
                actions += self.ask_stop(trial, "early-stop", now)
        return actions

    # ------------------------------------------------------------------ attempts that finished
    def finished(self, trial: Trial, outcome: TrialOutcome, *, retry: bool = True) -> list[Action]:
        """An attempt's outcome (from its worker, or the driver's for a lost worker):
        retried while it may succeed (:func:`~candle_lab.engine.retry.retry_kind`: a walltime
        stop, a preemption or a node failure is retried without counting against
        ``trial.retries``), else recorded. ``retry=False``: recorded whatever it says."""
        del self.running[trial.trial_id]
        if self._never_started(trial, outcome):
            self.reruns.append(trial)
            return [
                Event(REQUEUED, trial.trial_id, {"attempt": trial.attempt, "reason": outcome.reason}),
                Requeue(trial.trial_id, trial.attempt, outcome.reason, "its worker was lost before it started"),
            ]
        if trial.restarts:
            outcome = dataclasses.replace(outcome, attempt=outcome.attempt + trial.restarts)
        kind = retry_kind(outcome.reason, outcome.attempt, self.spec.trial.retries, trial.free_retries)
        kind = kind if retry else None
        if kind is not None and self.stopping is None:
            detail = {"attempt": trial.attempt, "reason": outcome.reason, "error": outcome.error,
                      "worker": outcome.worker or trial.worker, "gpu": outcome.gpu,
                      "started": outcome.started, "ended": outcome.ended,  # the Gantt keeps this segment
                      "free": kind == "free"}
            if kind == "free":
                trial.free_retries += 1
            trial.attempt, trial.restarts = outcome.attempt + 1, 0
            self.reruns.append(trial)
            return [Event("retry", trial.trial_id, detail),
                    Requeue(trial.trial_id, trial.attempt, outcome.reason, outcome.error)]
        return self._record(trial, outcome)

    def _never_started(self, trial: Trial, outcome: TrialOutcome) -> bool:
        """A trial whose worker died while it waited behind another (no start event, and
        the worker never noted it began) keeps its attempt: the trial that ran is charged."""
        if outcome.reason != "lost-worker" or trial.started is not None or trial.restarts:
            return False
        if trial.unstarted_losses >= UNSTARTED_LOSSES or self.began(trial.trial_id, trial.attempt):
            return False
        trial.unstarted_losses += 1
        return True

    def _record(self, trial: Trial, outcome: TrialOutcome) -> list[Action]:
        previous = self.n.best
        observed = self._observe(trial.trial_id, trial.params, trial.run_id, state=outcome.state,
                                 metrics=outcome.metrics, objective=outcome.objective, reason=outcome.reason)
        usable = outcome.objective if observed.feasible is not False else None  # an infeasible trial is never best
        self._count(outcome.state, usable)
        best = outcome.state == TrialState.COMPLETED and self.n.best != previous
        actions: list[Action] = [Record(trial.trial_id, trial.params, trial.run_id, outcome, best, observed.feasible)]
        if self._front_moved:
            actions.append(FrontChange(*self._front_moved))
            self._front_moved = None
        actions += [Event("boundary", None, b.as_dict()) for b in self._boundaries()]
        target = self.spec.budget.target
        if (
            usable is not None
            and target is not None
            and self.spec.objective.reached(usable, target)
            and self.stopping is None
        ):
            actions.append(Event("target-reached", trial.trial_id, {"objective": outcome.objective}))
            self.stopping = "target"
        return actions

    def _boundaries(self) -> list[bounds.Boundary]:
        """Bounds where the best trials gather, not yet recorded."""
        if self._space is None:
            return []
        found = bounds.at_bounds(self._space, [b[2] for b in self._best], self._completed)
        new = [b for b in found if (b.parameter, b.side) not in self._warned]
        self._warned.update((b.parameter, b.side) for b in new)
        return new

    def _observe(
        self, trial_id: int, params: dict[str, Any], run_id: str, *, state: str, metrics: dict[str, float] | None,
        objective: float | None, reason: str | None,
    ) -> Observation:
        """What the optimizer hears of a finished trial: its loss (the main objective's),
        with several objectives all of them, with constraints whether it satisfied them (a
        trial that ran out of memory did not); the Pareto front follows."""
        completed = state == TrialState.COMPLETED
        spec = self.spec
        feasible = pareto.feasible(metrics, spec.constraints) if completed else (False if reason == "oom" else None)
        vector = pareto.losses(metrics, spec.goals) if completed and spec.multi_objective else None
        loss = self._loss(objective) if completed else None
        observed = Observation(params, loss, run_id, losses=vector, feasible=feasible)
        self.observations.append(observed)
        if loss is not None and feasible is not False:
            self._completed += 1
            self._best = sorted([*self._best, (loss, trial_id, params)], key=lambda b: (b[0], b[1]))[: bounds.TOP]
        if vector is not None and feasible is not False:
            joined, left = self.front.add(trial_id, vector)
            if joined or left:
                self._front_moved = (joined, left)
        return observed

    # ------------------------------------------------------------------ stops and timeouts
    def tick(self, now: float) -> list[Action]:
        """Trials past their timeout (plus a grace for the Keras callback to end them
        cleanly) or past the deadline of a stop request they did not honour."""
        limit = self.spec.trial.timeout
        actions: list[Action] = []
        for trial in list(self.running.values()):
            if trial.stop_deadline is not None and now > trial.stop_deadline:
                reason = trial.stop_reason or "stopped"
                actions += self.end(trial, TrialState.STOPPED, reason, "stopped (its worker was restarted)")
            elif limit is not None and trial.started is not None and now - trial.started > limit + grace(limit):
                actions += self.end(trial, TrialState.FAILED, "timeout",
                                    f"the trial ran longer than its timeout of {limit:g} s")
        return actions

    def change(self, spec: ExperimentSpec) -> list[Action]:
        """A new budget or concurrency while the search runs (``spec``: the experiment's
        spec with them): the trial slots follow the workers, the budget counts from what
        was already created."""
        changed = changed_fields(self.spec, spec)
        self.spec = spec
        self.workers = spec.compute.workers * spec.compute.trials_per_worker
        return [Event("changed", detail=changed)]

    def stop_requested(self) -> list[Action]:
        if self.stopping is not None:
            return []
        self.stopping = "stopped"
        return [Event("stop-requested")]

    def stop_trial(self, trial_id: int, now: float) -> list[Action]:
        trial = self.running.get(trial_id)
        if trial is None or trial.stop_reason is not None:
            return []
        return self.ask_stop(trial, "stopped", now)

    def ask_stop(self, trial: Trial, reason: str, now: float) -> list[Action]:
        """Ask a trial to stop at its next epoch boundary; it is ended if it does not."""
        trial.stop_reason = reason
        actions: list[Action] = [Event("stop-asked", trial.trial_id, {"reason": reason})]
        if trial.address is None:  # not started yet: nothing to interrupt
            return actions + self.end(trial, TrialState.STOPPED, reason, "stopped before it started")
        trial.stop_deadline = now + STOP_GRACE_SECONDS
        return [*actions, AskStop(trial.trial_id, trial.address, reason)]

    def end(self, trial: Trial, state: str, reason: str, message: str) -> list[Action]:
        """End a trial in flight from the driver; the optimizer hears it gave nothing."""
        del self.running[trial.trial_id]
        self._count(state, None)
        self.observations.append(Observation(trial.params, None, trial.run_id))
        restart = trial.address if trial.address and trial.started is not None else None
        return [End(trial.trial_id, trial.attempt, state, reason, message, trial.started, restart),
                Event(reason, trial.trial_id, {"attempt": trial.attempt})]

    def cancel_all(self, why: str) -> list[End]:
        """The driver ends: every trial in flight or waiting is cancelled."""
        ends = [End(t.trial_id, t.attempt, TrialState.CANCELLED, why, "", t.started, None)
                for t in self.running.values()]
        ends += [End(t.trial_id, t.attempt, TrialState.CANCELLED, why, "", None, None) for t in self.reruns]
        self.running.clear()
        self.reruns.clear()
        return ends

    # ------------------------------------------------------------------ bookkeeping
    def take_observations(self) -> list[Observation]:
        out, self.observations = self.observations, []
        return out

    def _count(self, state: str, objective: float | None) -> None:
        self.n.finished += 1
        if state == TrialState.FAILED:
            self.n.failed += 1
        if (
            state == TrialState.COMPLETED
            and objective is not None
            and (self.n.best is None or self.spec.objective.better(objective, self.n.best))
        ):
            self.n.best = objective

    def _loss(self, objective: float | None) -> float | None:
        return None if objective is None or not math.isfinite(objective) else self.spec.objective.loss(objective)


def grace(timeout: float) -> float:
    """Time past the timeout before a trial is killed (its callback stops it first)."""
    return min(30.0, max(2.0, 0.05 * timeout))


def failed_outcome(
    trial_id: int, attempt: int, started: float | None, worker: str | None, *, reason: Reason, error: str
) -> TrialOutcome:
    """The outcome the driver records for an attempt whose worker gave none."""
    now = time.time()
    return TrialOutcome(
        trial_id=trial_id, attempt=attempt, state="failed", objective=None, metrics={},
        started=started or now, ended=now, worker=worker, reason=reason, error=error,
    )
