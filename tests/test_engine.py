"""The search loop on a real local dask cluster: modes, failures, budget, stop requests."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import model_spec

import candle_lab
from candle_lab import monitor
from candle_lab.html_report import write_report


def run(spec: dict[str, Any], client: Any, root: Path) -> candle_lab.Experiment:
    return candle_lab.run(spec, client=client, root=root)


def run_sleepy_async(
    client: Any, root: Path, sleep: float, trials: int, initial_points: int, algorithm: str = "async-bo"
) -> candle_lab.Experiment:
    """An asynchronous search over trials that each sleep ``sleep`` seconds; every one must complete."""
    spec = model_spec(
        "sleepy",
        space=[
            {"name": "x", "type": "real", "low": 0, "high": 1},
            {"name": "sleep", "type": "constant", "value": sleep},
        ],
        search={"algorithm": algorithm, "initial_points": initial_points},
        budget={"max_trials": trials},
    )
    exp = run(spec, client, root)
    assert (exp.trials["state"] == "completed").all() and len(exp.trials) == trials
    return exp


def test_async_keeps_every_worker_busy(client: Any, root: Path) -> None:
    trials = run_sleepy_async(client, root, sleep=1.0, trials=10, initial_points=3).trials
    steps = monitor.running_over_time(trials)
    assert steps["running"].max() <= 2
    # From when both workers first ran to the last start, two trials were in flight
    # nearly all of the time (a gap is only the proposal + dispatch latency).
    t0 = steps.loc[steps["running"] == 2, "time"].min()
    t1 = float(trials["started"].max() - trials["started"].min())
    usage = monitor.utilization(trials, 2, start=trials["started"].min() + t0, end=trials["started"].min() + t1)
    assert usage.utilization > 0.9, usage


def test_grid_covers_every_point_exactly_once(client: Any, root: Path) -> None:
    space = [
        {"name": "x", "type": "categorical", "choices": [0.1, 0.2, 0.3]},
        {"name": "sleep", "type": "integer", "low": 0, "high": 1},
        {"name": "tag", "type": "categorical", "choices": ["a", "b"]},
    ]
    spec = model_spec("sleepy", space=space, search={"algorithm": "grid", "shuffle": True}, budget={})
    spec["budget"] = {}
    exp = run(spec, client, root)
    seen = [tuple(t.params[k] for k in ("x", "sleep", "tag")) for t in exp.records()]
    assert sorted(seen) == sorted(itertools.product([0.1, 0.2, 0.3], [0, 1], ["a", "b"]))
    assert exp.status().ended_because == "exhausted"


def test_batch_rounds_wait_for_each_other(client: Any, root: Path) -> None:
    spec = model_spec(
        "sleepy",
        space=[{"name": "x", "type": "real", "low": 0, "high": 1}, {"name": "sleep", "type": "constant", "value": 0.1}],
        search={"algorithm": "batch-bo", "initial_points": 4, "batch_size": 3},
        budget={"max_trials": 10},
    )
    exp = run(spec, client, root)
    trials = exp.trials
    assert list(trials.groupby("round").size()) == [4, 3, 3]  # the initial design, then rounds of 3
    for r in (1, 2):
        previous, current = trials[trials["round"] == r - 1], trials[trials["round"] == r]
        assert current["queued"].min() >= previous["ended"].max()


def test_batch_first_round_fills_every_worker(client: Any, root: Path) -> None:
    """A design smaller than the batch does not leave workers idle in round 0."""
    spec = model_spec(
        "sleepy",
        space=[{"name": "x", "type": "real", "low": 0, "high": 1}, {"name": "sleep", "type": "constant", "value": 0.1}],
        search={"algorithm": "batch-bo", "initial_points": 2, "batch_size": 4},
        budget={"max_trials": 8},
    )
    trials = run(spec, client, root).trials
    assert list(trials.groupby("round").size()) == [4, 4]


def test_failing_trial_is_retried_then_completes(client: Any, root: Path) -> None:
    exp = run(model_spec("flaky", trial={"retries": 1}, budget={"max_trials": 3}), client, root)
    records = exp.records()
    assert [t.state for t in records] == ["completed"] * 3
    assert {t.attempt for t in records} == {2}
    retries = [e for e in exp_events(exp) if e[1] == "retry"]
    assert len(retries) == 3 and "first attempt fails" in retries[0][3]["error"]


def test_failures_are_recorded_with_reason_and_search_goes_on(client: Any, root: Path) -> None:
    space = [{"name": "x", "type": "categorical", "choices": [0.2, 0.9]}]
    broken = run(
        model_spec("broken", space=space, search={"algorithm": "grid"}, budget={}, trial={"retries": 0}), client, root
    )
    by_x = {t.params["x"]: t for t in broken.records()}
    assert by_x[0.2].state == "completed" and by_x[0.2].objective == 0.2
    assert by_x[0.9].state == "failed" and by_x[0.9].reason == "exception"
    assert "ValueError: broken model: x=0.9 is too large" in (by_x[0.9].error or "")
    nan = run(model_spec("nan_model", space=space, search={"algorithm": "grid"}, budget={}), client, root)
    failed = [t for t in nan.records() if t.state == "failed"]
    assert len(failed) == 1 and failed[0].reason == "nan" and failed[0].attempt == 1  # NaN is not retried


def test_timeout_fails_the_trial_and_frees_the_worker(client: Any, root: Path) -> None:
    space = [{"name": "x", "type": "categorical", "choices": [0.1, 0.9, 0.2, 0.3]}]
    start = time.monotonic()
    exp = run(
        model_spec("hang", space=space, search={"algorithm": "grid"}, budget={}, trial={"timeout": 2}), client, root
    )
    assert time.monotonic() - start < 40
    by_x = {t.params["x"]: t for t in exp.records()}
    assert by_x[0.9].state == "failed" and by_x[0.9].reason == "timeout"
    assert all(by_x[x].state == "completed" for x in (0.1, 0.2, 0.3))


def test_lost_worker_trial_is_rescheduled(client: Any, root: Path) -> None:
    exp = run(model_spec("crash_once", budget={"max_trials": 2}, trial={"retries": 2}), client, root)
    records = exp.records()
    assert [t.state for t in records] == ["completed", "completed"]
    # 2, or 3 when the other trial's crash also took the worker it was queued on
    assert all(t.attempt in (2, 3) for t in records)
    assert any(e[1] == "retry" and e[3]["reason"] == "lost-worker" for e in exp_events(exp))
    client.wait_for_workers(2, timeout=30)


def test_target_ends_the_search(client: Any, root: Path) -> None:
    spec = model_spec("sleepy", budget={"max_trials": 40, "target": 0.5}, search={"algorithm": "random", "seed": 3})
    exp = run(spec, client, root)
    status = exp.status()
    assert status.ended_because == "target"
    assert exp.best is not None and exp.best.objective <= 0.5
    assert status.trials < 40


def test_maximize_and_metrics_reach_the_store(client: Any, root: Path) -> None:
    spec = model_spec("curve", objective={"metric": "objective", "direction": "maximize"}, budget={"max_trials": 4})
    exp = run(spec, client, root)
    assert exp.best is not None
    assert exp.best.objective == max(t.objective for t in exp.records() if t.objective is not None)
    metrics = exp.metrics
    assert set(metrics["step"]) == {1, 2, 3} and (metrics.groupby("trial_id").size() == 3).all()


def wait_for(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_stop_requests(client: Any, root: Path) -> None:
    spec = model_spec("epochs", budget={"max_trials": 50}, objective={"metric": "loss"})
    exp = candle_lab.run(spec, client=client, root=root, wait=False)
    wait_for(lambda: any(t.state == "running" for t in exp.records()))
    running = next(t for t in exp.records() if t.state == "running")
    exp.stop_trial(running.trial_id)
    wait_for(lambda: exp.records()[running.trial_id].state != "running")
    stopped = exp.records()[running.trial_id]
    assert stopped.state == "stopped" and stopped.reason == "stopped"
    assert stopped.metrics and "loss" in stopped.metrics  # its last metrics are kept
    assert stopped.ended - stopped.started < 12 * 0.25  # it ended at an epoch boundary, early
    exp.stop()
    status = exp.wait(timeout=60)
    assert status.state == "stopped" and status.trials < 50
    assert not any(t.state in ("running", "queued") for t in exp.records())
    client.wait_for_workers(2, timeout=30)


@pytest.mark.parametrize("rule", ["median", "asha"])
def test_early_stopping_rules_stop_bad_trials(client: Any, root: Path, rule: str) -> None:
    # The first two trials (run together, nothing to compare with yet) are good; the
    # later ones are worse at every epoch and get stopped at an epoch boundary.
    space = [
        {"name": "x", "type": "categorical", "choices": [0.1, 0.12, 0.9, 0.95, 0.92]},
        {"name": "epoch_seconds", "type": "constant", "value": 0.05},
        {"name": "epochs", "type": "constant", "value": 9},
    ]
    spec = model_spec(
        "epochs",
        space=space,
        search={"algorithm": "grid"},
        budget={},
        objective={"metric": "loss"},
        trial={"early_stop": rule, "grace_epochs": 1, "min_trials": 1, "eta": 2},
    )
    exp = run(spec, client, root)
    by_x = {t.params["x"]: t for t in exp.records()}
    assert len(by_x) == 5 and by_x[0.1].state == "completed"
    bad = [by_x[x] for x in (0.9, 0.95, 0.92)]
    assert all(t.state == "stopped" and t.reason == "early-stop" for t in bad), [(t.params, t.state) for t in bad]
    steps = exp.metrics.groupby("trial_id")["step"].max()
    assert steps[by_x[0.1].trial_id] == 9 and all(steps[t.trial_id] < 9 for t in bad)


def test_python_function_and_report(client: Any, root: Path) -> None:
    spec = model_spec("sleepy", budget={"max_trials": 4})

    def square(params: dict[str, Any]) -> float:
        return (params["x"] - 0.5) ** 2

    exp = candle_lab.run(spec, fn=square, client=client, root=root)
    frame = exp.trials
    assert isinstance(frame, pd.DataFrame) and len(frame) == 4
    assert frame["objective"].tolist() == pytest.approx([(x - 0.5) ** 2 for x in frame["param.x"]])
    report = write_report(exp)
    assert report == exp.path / "report.html"
    text = report.read_text()
    assert "Trials per worker" in text and "plotly" in text and exp.best.run_id in text  # type: ignore[union-attr]


def exp_events(exp: candle_lab.Experiment) -> list[tuple[float, str, int | None, Any]]:
    from candle_lab.store import Store

    with Store(exp.path / "experiment.db", readonly=True) as store:
        return store.events()


@pytest.mark.parametrize("algorithm", ["async-bo", "random"])
def test_short_trials_are_queued_one_ahead_on_each_worker(client: Any, root: Path, algorithm: str) -> None:
    """0.3-s trials: the driver's round trip (or the scheduler's, for a search that queues
    its trials there) costs the workers time, so once it is measured the engine keeps one
    trial queued on each worker; a worker never runs two at once and a freed slot starts its
    queued trial without waiting for the driver."""
    exp = run_sleepy_async(client, root, sleep=0.3, trials=60, initial_points=60, algorithm=algorithm)
    trials = exp.trials
    (event,) = [e for e in exp_events(exp) if e[1] == "queue-ahead"]
    assert event[3]["workers"] == 2 and event[3]["median_wait_s"] > 0.002 * event[3]["median_trial_s"]
    assert monitor.running_over_time(trials)["running"].max() <= 2
    waits: dict[bool, list[float]] = {False: [], True: []}
    for _, ran in trials.sort_values("started").groupby("worker"):
        for (_, before), (_, after) in itertools.pairwise(ran.iterrows()):
            waits[bool(after["started"] > event[0])].append(float(after["started"] - before["ended"]))
    after, before = sorted(waits[True]), sorted(waits[False])
    assert after and after[len(after) // 2] < 0.05
    if algorithm == "async-bo":  # the driver's round trip is gone (dask's queue is as quick on an idle scheduler)
        assert after[len(after) // 2] < before[len(before) // 2]
