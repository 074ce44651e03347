"""The search's decisions (engine/state.py), fed stimuli directly: no cluster, no store."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from conftest import model_spec

from candle_lab.engine.state import (
    STOP_GRACE_SECONDS,
    AskStop,
    End,
    Event,
    Record,
    Requeue,
    Running,
    SearchState,
    Trial,
)
from candle_lab.optimizers.base import Proposal
from candle_lab.spec import spec_from_dict
from candle_lab.trial.protocol import MetricsEvent, StartEvent, TrialOutcome


def state(adaptive: bool = True, began: Any = lambda i, a: True, **sections: Any) -> SearchState:
    sections.setdefault("budget", {"max_trials": 10})
    return SearchState(spec_from_dict(model_spec("sleepy", **sections)), adaptive=adaptive, began=began)


def outcome(trial: Trial, objective: float | None = 1.0, reason: str | None = None, **kw: Any) -> TrialOutcome:
    failed = reason is not None
    return TrialOutcome(trial.trial_id, trial.attempt, "failed" if failed else "completed",
                        None if failed else objective, {}, 0.0, 1.0, reason=reason, **kw)


def launch(s: SearchState, n: int | None = None) -> list[Trial]:
    """Plan, admit proposals x=0.0, 0.1, … and submit them, as the driver does."""
    plan = s.plan(s.free_slots() if n is None else n)
    created = s.admit([Proposal({"x": i / 10}) for i in range(plan.new)], plan.round, lambda i: f"RUN{i:03d}")
    trials = [*plan.reruns, *(c.trial for c in created)]
    s.submitted(trials)
    return trials


def start(s: SearchState, t: Trial, when: float = 100.0, address: str = "tcp://w0") -> list[Any]:
    return s.started(StartEvent(t.trial_id, t.attempt, when, when, address, "0", "host", None))


def kinds(actions: list[Any]) -> list[str]:
    return [type(a).__name__ if not isinstance(a, Event) else f"Event:{a.kind}" for a in actions]


# ------------------------------------------------------------------ capacity and budget
def test_async_adaptive_fills_each_worker_once() -> None:
    s = state()
    trials = launch(s)
    assert len(trials) == 2 and s.free_slots() == 0  # two workers
    assert [t.trial_id for t in trials] == [0, 1]


def test_non_adaptive_keeps_a_queue_and_refills_in_chunks() -> None:
    s = state(adaptive=False, budget={"max_trials": 100}, compute={"workers": 8})
    assert len(launch(s)) == 8 + 16
    s.finished(s.running[0], outcome(s.running[0]))
    assert s.plan(s.free_slots()).new == 0  # one free slot: below the refill chunk (4)
    for i in range(1, 4):
        s.finished(s.running[i], outcome(s.running[i]))
    assert s.plan(s.free_slots()).new == 4


def test_budget_caps_new_trials_and_ends_the_search() -> None:
    s = state(budget={"max_trials": 3})
    trials = launch(s)
    assert s.end_reason(exhausted=False) is None
    for t in trials:
        s.finished(t, outcome(t))
    third = launch(s)
    assert len(third) == 1 and s.room() == 0
    s.finished(third[0], outcome(third[0]))
    assert s.end_reason(exhausted=False) == "budget"


def test_an_exhausted_optimizer_ends_the_search_once_nothing_runs() -> None:
    s = state()
    assert s.end_reason(exhausted=True) == "exhausted"
    launch(s)
    assert s.end_reason(exhausted=True) is None


def test_max_time_stops_the_search() -> None:
    s = state(budget={"max_time": 60})
    s.time_up(59.0)
    assert s.stopping is None
    s.time_up(60.0)
    assert s.stopping == "budget"


def test_batch_rounds_wait_for_the_whole_round() -> None:
    s = state(search={"algorithm": "batch-bo", "initial_points": 5, "batch_size": 2})
    first = launch(s)
    assert len(first) == 5 and {t.round for t in first} == {0}  # the initial design, at least the workers
    s.finished(first[0], outcome(first[0]))
    assert s.plan(0).new == 0  # the barrier: 4 still run
    for t in first[1:]:
        s.finished(t, outcome(t))
    second = launch(s)
    assert len(second) == 2 and {t.round for t in second} == {1}


# ------------------------------------------------------------------ outcomes, retries, lost workers
def test_a_retryable_failure_runs_again_with_the_next_attempt() -> None:
    s = state(trial={"retries": 1})
    t = launch(s)[0]
    actions = s.finished(t, outcome(t, reason="exception", error="boom"))
    assert kinds(actions) == ["Event:retry", "Requeue"] and actions[1] == Requeue(0, 2, "exception", "boom")
    again = launch(s, 1)[0]
    assert again is t and t.attempt == 2
    actions = s.finished(t, outcome(t, reason="exception", error="boom"))
    assert isinstance(actions[0], Record) and actions[0].outcome.attempt == 2  # no retries left
    assert s.n.failed == 1 and s.take_observations()[-1].loss is None


@pytest.mark.parametrize("reason", ["nan", "import", "timeout", "disk-full"])
def test_failures_that_would_fail_again_are_not_retried(reason: str) -> None:
    s = state(trial={"retries": 3})
    t = launch(s)[0]
    assert kinds(s.finished(t, outcome(t, reason=reason))) == ["Record"]


def test_no_retry_once_the_search_is_stopping() -> None:
    s = state(trial={"retries": 3})
    t = launch(s)[0]
    s.stop_requested()
    assert kinds(s.finished(t, outcome(t, reason="lost-worker"))) == ["Record"]


def test_a_trial_queued_behind_a_lost_worker_keeps_its_attempt() -> None:
    began = {(0, 1)}
    s = state(trial={"retries": 1}, began=lambda i, a: (i, a) in began)
    ran, waited = launch(s)
    start(s, ran)
    lost = s.finished(waited, outcome(waited, reason="lost-worker"))
    assert kinds(lost) == ["Event:requeued", "Requeue"] and lost[1].attempt == 1
    assert kinds(s.finished(ran, outcome(ran, reason="lost-worker")))[1] == "Requeue"
    assert ran.attempt == 2 and waited.attempt == 1
    again = launch(s, 2)
    assert {t.trial_id for t in again} == {0, 1} and waited.key_suffix == "trial1-a1-q1"  # a fresh task key


def test_a_trial_that_began_without_a_start_event_is_charged() -> None:
    s = state(trial={"retries": 1}, began=lambda i, a: True)  # the worker noted it began
    t = launch(s)[0]
    assert kinds(s.finished(t, outcome(t, reason="lost-worker"))) == ["Event:retry", "Requeue"]
    assert t.attempt == 2


def test_losses_before_starting_are_free_only_a_few_times() -> None:
    s = state(trial={"retries": 0}, began=lambda i, a: False)
    t = launch(s, 1)[0]
    for _ in range(3):
        assert kinds(s.finished(t, outcome(t, reason="lost-worker")))[0] == "Event:requeued"
        launch(s, 1)
    assert kinds(s.finished(t, outcome(t, reason="lost-worker"))) == ["Record"]


def test_dask_rerunning_an_attempt_elsewhere_counts_as_an_attempt() -> None:
    s = state(trial={"retries": 1})
    t = launch(s)[0]
    start(s, t, when=100.0)
    actions = start(s, t, when=105.0, address="tcp://w1")  # its worker left; dask re-ran it
    assert kinds(actions) == ["Event:rescheduled", "Running"] and actions[1].attempt == 2
    actions = start(s, t, when=110.0, address="tcp://w2")  # a third run: past its retries
    assert kinds(actions)[:2] == ["Event:rescheduled", "End"]
    assert actions[1].reason == "lost-worker" and "last attempt (2 of 2)" in actions[1].message
    assert t.trial_id not in s.running


def test_late_events_of_an_ended_attempt_are_ignored() -> None:
    s = state(trial={"retries": 1})
    t = launch(s)[0]
    s.finished(t, outcome(t, reason="exception"))
    assert start(s, SimpleNamespace(trial_id=0, attempt=1)) == []  # type: ignore[arg-type]
    assert s.metrics(MetricsEvent(0, 1, 5.0, 3, {"loss": 1.0}), 5.0) == []  # ended: not running again yet
    launch(s, 1)
    (late,) = s.metrics(MetricsEvent(0, 1, 6.0, 3, {"loss": 1.0}), 6.0)  # attempt 2 runs: stored, once
    assert late.late and (late.attempt, late.step) == (1, 3)


# ------------------------------------------------------------------ best and target
def test_best_and_target() -> None:
    s = state(budget={"max_trials": 10, "target": 0.05})
    a, b = launch(s)
    first = s.finished(a, outcome(a, 0.5))
    assert isinstance(first[0], Record) and first[0].best and s.n.best == 0.5
    second = s.finished(b, outcome(b, 0.01))
    assert second[0].best and kinds(second) == ["Record", "Event:target-reached"]  # type: ignore[union-attr]
    assert s.stopping == "target"


def test_maximised_objective_is_told_as_its_negation() -> None:
    s = state(objective={"metric": "acc", "direction": "maximize"})
    a, b = launch(s)
    s.finished(a, outcome(a, 0.9))
    assert not s.finished(b, outcome(b, 0.8))[0].best  # type: ignore[union-attr]
    assert [o.loss for o in s.take_observations()] == [-0.9, -0.8] and s.n.best == 0.9


# ------------------------------------------------------------------ stops, timeouts, early stopping
def test_timeout_ends_a_trial_after_its_grace_and_restarts_its_worker() -> None:
    s = state(trial={"timeout": 10})
    t = launch(s)[0]
    start(s, t, when=100.0)
    assert s.tick(111.0) == []  # the grace: min 2 s
    actions = s.tick(112.5)
    assert isinstance(actions[0], End) and (actions[0].state, actions[0].reason) == ("failed", "timeout")
    assert actions[0].restart == "tcp://w0" and s.n.failed == 1
    assert s.take_observations()[-1].loss is None  # the optimizer hears it gave nothing


def test_stop_trial_asks_then_ends_at_the_deadline() -> None:
    s = state()
    t = launch(s)[0]
    start(s, t)
    actions = s.stop_trial(0, now=200.0)
    assert kinds(actions) == ["Event:stop-asked", "AskStop"] and actions[1] == AskStop(0, "tcp://w0", "stopped")
    assert s.stop_trial(0, now=201.0) == []  # asked once
    assert s.tick(200.0 + STOP_GRACE_SECONDS - 1) == []
    end = s.tick(200.0 + STOP_GRACE_SECONDS + 1)[0]
    assert isinstance(end, End) and (end.state, end.reason) == ("stopped", "stopped")


def test_stopping_a_trial_not_started_ends_it_at_once() -> None:
    s = state()
    t = launch(s)[0]
    actions = s.stop_trial(t.trial_id, now=0.0)
    assert kinds(actions)[:2] == ["Event:stop-asked", "End"] and actions[1].restart is None


def test_early_stopping_asks_the_worst_trial_to_stop() -> None:
    s = state(trial={"early_stop": "median", "grace_epochs": 1, "min_trials": 2}, budget={"max_trials": 10},
              objective={"metric": "loss"}, compute={"workers": 3})
    trials = launch(s)
    for t in trials:
        start(s, t, address=f"tcp://w{t.trial_id}")
    for step in (1, 2):
        for t, loss in zip(trials[:2], (0.1, 0.2), strict=True):
            assert s.metrics(MetricsEvent(t.trial_id, 1, 0.0, step, {"loss": loss}), now=0.0)[1:] == []
    worst = s.metrics(MetricsEvent(2, 1, 0.0, 2, {"loss": 5.0}), now=0.0)
    assert kinds(worst) == ["Metrics", "Event:stop-asked", "AskStop"] and worst[2].reason == "early-stop"


def test_cancel_all_at_the_end() -> None:
    s = state(trial={"retries": 1})
    a, _ = launch(s)
    s.finished(a, outcome(a, reason="exception"))  # waiting to run again
    ends = s.cancel_all("stopped")
    assert {(e.trial_id, e.state) for e in ends} == {(0, "cancelled"), (1, "cancelled")}
    assert not s.running and not s.reruns


# ------------------------------------------------------------------ resume
def record(trial_id: int, state_: str, attempt: int = 1, objective: float | None = None) -> Any:
    finished = state_ in ("completed", "failed", "stopped", "cancelled")
    return SimpleNamespace(trial_id=trial_id, run_id=f"RUN{trial_id:03d}", params={"x": trial_id / 10}, round=None,
                           state=state_, attempt=attempt, objective=objective, metrics=None, reason=None, started=None,
                           worker=None,
                           finished=finished)


def test_resume_decides_each_trial_of_the_earlier_run() -> None:
    began = {(2, 1)}
    s = state(trial={"retries": 1}, began=lambda i, a: (i, a) in began)
    on_worker = {"RUN004": TrialOutcome(4, 1, "completed", 0.2, {}, 0.0, 1.0)}
    records = [
        record(0, "completed", objective=0.5),  # told, not run again
        record(1, "queued"),  # never started: same attempt
        record(2, "queued"),  # began (starts/ says so) before its start event: that attempt counts
        record(3, "running"),  # running at the crash: next attempt
        record(4, "running"),  # finished on its worker while no driver listened
        record(5, "running", attempt=2),  # running its last attempt: lost
    ]
    actions = s.restore(records, on_worker.get)
    requeued = {a.trial_id: a.attempt for a in actions if isinstance(a, Requeue)}
    assert requeued == {1: 1, 2: 2, 3: 2}
    recorded = {a.trial_id: (a.outcome.state, a.outcome.reason) for a in actions if isinstance(a, Record)}
    assert recorded == {4: ("completed", None), 5: ("failed", "lost-worker")}
    assert [t.trial_id for t in s.reruns] == [1, 2, 3] and s.n.created == 6 and s.n.finished == 3
    assert len(s.take_observations()) == 3 and s.n.best == 0.2
    assert [t.trial_id for t in launch(s)] == [1, 2]  # re-runs go first, then new ids from 6
    assert [t.trial_id for t in launch(s, 3)] == [3, 6, 7]


def test_running_events_carry_where_and_when() -> None:
    s = state()
    t = launch(s)[0]
    actions = start(s, t, when=123.0)
    assert actions == [Running(0, 1, "0", "host", None, 123.0)] and t.address == "tcp://w0"
