"""The what-if planner: exact predictions of the simulator, figures measured from a store,
the ``candle-lab plan`` command, and (the acceptance test) a prediction of a 4-worker run
from a 2-worker run, checked against the real 4-worker run on a local dask cluster."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from conftest import model_spec

import candle_lab
from candle_lab import api, planner
from candle_lab.cli import main
from candle_lab.errors import SpecError
from candle_lab.planner import Measured, simulate
from candle_lab.store import DB_NAME, Store

log = logging.getLogger(__name__)


def constant(seconds: float, workers: int = 2, trials: int = 8, **more: Any) -> Measured:
    return Measured(durations=(seconds,), workers=workers, trials=trials, **more)


# ------------------------------------------------------------------------------- the simulator
def test_constant_durations_give_exact_wall_idle_and_hours() -> None:
    for mode in ("async", "batch"):
        p = simulate(constant(10.0), 2, mode)  # 8 trials of 10 s on 2 workers, rounds of 2
        assert (p.wall, p.wall_p10, p.wall_p90, p.idle) == (40.0, 40.0, 40.0, 0.0), mode
        assert p.worker_hours == pytest.approx(2 * 40 / 3600) and p.gpu_hours is None
    p = simulate(constant(10.0, gpus=4), 3, "async", trials=9)
    assert p.wall == 30.0 and p.gpu_hours == pytest.approx(3 * 4 * 30 / 3600)


def test_batch_waits_for_the_slow_trial_of_each_round() -> None:
    alternating = Measured(durations=(1.0, 9.0), workers=2, trials=8)
    batch = simulate(alternating, 2, "batch", sampling="replay")
    assert batch.wall == 36.0  # 4 rounds of (1 s, 9 s): each waits 9 s
    assert batch.idle == pytest.approx(1 - 40 / 72)  # 44.4 %
    run = simulate(alternating, 2, "async", sampling="replay")
    # worker 0: 1, 1, 9, 1, 9 (ends 21); worker 1: 9, 1, 9 (ends 19)
    assert run.wall == 21.0 and run.idle == pytest.approx(1 - 40 / 42)


def test_more_workers_than_trials() -> None:
    for mode in ("async", "batch"):
        p = simulate(constant(10.0, trials=4), 8, mode)
        assert p.wall == 10.0 and p.idle == pytest.approx(0.5)


def test_failed_attempts_are_rerun_while_retries_allow() -> None:
    assert simulate(constant(10.0, trials=4, failure_rate=1.0, retries=1), 2, "async").wall == 40.0
    assert simulate(constant(10.0, trials=4, failure_rate=1.0, retries=2), 2, "batch").wall == 60.0
    assert simulate(constant(10.0, trials=4, failure_rate=1.0, retries=0), 2, "async").wall == 20.0
    # Half the attempts fail, one retry: 1.5 attempts per trial on average.
    p = simulate(constant(1.0, workers=1, trials=400, failure_rate=0.5, retries=1), 1, "async", repeats=50)
    assert 570 < p.wall < 630 and p.wall_p10 < p.wall < p.wall_p90


def test_dispatch_startup_and_round_cost() -> None:
    assert simulate(constant(10.0, trials=4, dispatch=0.5), 2, "async").wall == 20.5
    assert simulate(constant(10.0, trials=4, startup=(2.0,)), 2, "async").wall == 22.0
    assert simulate(constant(10.0, trials=4, round_cost=1.0), 2, "batch").wall == 21.0
    # The first round is at least first_round trials (the initial design); the rest: batch_size.
    m = constant(10.0, trials=10, first_round=6, batch_size=2)
    assert m.round_sizes(4, 10) == [6, 2, 2]
    assert simulate(m, 4, "batch").wall == 40.0  # 6 on 4 workers (20 s), then 2 rounds of 10 s


def test_bad_arguments_name_the_option() -> None:
    with pytest.raises(SpecError, match=r"--workers: expected comma-separated whole numbers ≥ 1.*got '0,x'"):
        planner.parse_workers("0,x")
    with pytest.raises(SpecError, match=r"--mode: expected async, batch or async,batch, got 'async,sync'"):
        planner.parse_modes("async,sync")
    assert planner.parse_workers("8, 32,8") == [8, 32] and planner.parse_modes("batch") == ["batch"]
    with pytest.raises(SpecError, match=r"workers: expected worker counts .* got 0"):
        planner.plan(constant(1.0), workers=[4, 0])
    with pytest.raises(SpecError, match=r"trials: expected a whole number ≥ 1, got 0"):
        simulate(constant(1.0), 2, "async", trials=0)


# ------------------------------------------------------------------------------- measuring a store
def synthetic(root: Path, rows: list[tuple[Any, ...]], **sections: Any) -> api.Experiment:
    """An experiment whose store holds ``rows`` of (worker, started, ended, state, attempt,
    reason, round) (times in seconds from 1000)."""
    spec = model_spec("sleepy", compute={"workers": 2}, trial={"retries": 1}, **sections)
    path = api.create_experiment(spec, root)
    with Store(path / DB_NAME) as store:
        for i, (worker, started, ended, state, attempt, reason, rnd) in enumerate(rows):
            store.add_trial(i, f"RUN{i:03d}", {"x": 0.5}, round=rnd, queued=1000.0)
            store.finish_trial(i, state, objective=0.1 if state == "completed" else None, attempt=attempt,
                               worker=worker, started=1000 + started, ended=1000 + ended, reason=reason)
        store.commit()
    return api.Experiment(path)


ASYNC_ROWS = [  # worker 0 from 0 s, worker 1 from 0.2 s; 0.1 s between trials, one 100 s pause
    ("0", 0.0, 1.0, "completed", 1, None, None),
    ("1", 0.2, 3.2, "completed", 2, None, None),  # retried once
    ("0", 1.1, 3.1, "failed", 2, "exception", None),  # failed twice (retried once)
    ("0", 3.2, 4.2, "failed", 1, "nan", None),  # not retryable
    ("1", 3.3, 5.3, "completed", 1, None, None),
    ("0", 104.2, 105.2, "completed", 1, None, None),  # after a pause: not dispatch
]


def test_measure_reads_durations_gaps_startup_and_failures(root: Path) -> None:
    exp = synthetic(root, ASYNC_ROWS)
    m = exp.measured()
    assert m.durations == pytest.approx((1.0, 3.0, 2.0, 1.0, 2.0, 1.0))
    assert (m.workers, m.trials, m.mode, m.retries) == (2, 6, "async", 1)
    assert m.dispatch == pytest.approx(0.1) and m.startup == pytest.approx((0.2,))
    assert m.failure_rate == pytest.approx(3 / 8)  # 2 retried + 1 final retryable failure, of 8 attempts
    assert m.wall == pytest.approx(105.2) and m.busy == pytest.approx(10.0)
    assert m.idle == pytest.approx(1 - 10 / (2 * 105.2))
    assert any("retried" in n for n in m.notes) and any("proposal cost" in n for n in m.notes)


def test_measure_batch_rounds(root: Path) -> None:
    rows = [
        ("0", 0.0, 2.0, "completed", 1, None, 0),
        ("1", 0.0, 4.0, "completed", 1, None, 0),
        ("0", 2.05, 3.05, "completed", 1, None, 0),  # 3 trials in round 0 on 2 workers
        ("0", 4.5, 6.5, "completed", 1, None, 1),  # the next round 0.5 s after the barrier
        ("1", 4.5, 5.5, "completed", 1, None, 1),
    ]
    m = synthetic(root, rows, search={"algorithm": "batch-bo", "initial_points": 3}).measured()
    assert m.mode == "batch" and m.round_cost == pytest.approx(0.5) and m.dispatch == pytest.approx(0.05)
    assert m.round_sizes(2, 5) == [3, 2] and m.first_round == 3 and m.batch_size is None


def test_plan_rows_start_with_the_real_run_and_its_model(root: Path) -> None:
    exp = synthetic(root, ASYNC_ROWS[:5])
    rows = exp.plan(workers=[2, 4], modes=["async", "batch"], seed=1)
    assert [(r.kind, r.workers, r.mode) for r in rows] == [
        ("measured", 2, "async"), ("model", 2, "async"), ("what-if", 2, "batch"),
        ("what-if", 4, "async"), ("what-if", 4, "batch"),
    ]
    real, model = rows[0], rows[1]
    assert real.wall == pytest.approx(5.3) and real.speedup == 1.0 and real.unit == "worker-hours"
    assert model.error == pytest.approx((model.wall - real.wall) / real.wall)
    assert all(r.wall_p10 <= r.wall <= r.wall_p90 for r in rows[1:])  # type: ignore[operator]
    assert rows == exp.plan(workers=[2, 4], modes=["async", "batch"], seed=1)  # seeded: the same figures


def test_cli_plan_table_json_and_errors(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = synthetic(root, ASYNC_ROWS)
    assert main(["--root", str(root), "plan", exp.id, "--workers", "2,8", "--mode", "async"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"{exp.id}: 6 trials") and "dispatch 100 ms/trial" in lines[0]
    assert lines[2].split()[:9] == ["workers", "mode", "trials", "wall", "time", "p10–p90", "idle",
                                    "worker-hours", "speed-up"]
    assert lines[3].split()[:4] == ["measured", "2", "async", "6"] and lines[4].startswith("model (")
    assert lines[5].split()[:3] == ["what-if", "8", "async"]
    assert "note: " in out

    assert main(["--root", str(root), "plan", exp.id, "--workers", "4", "--trials", "60", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["measured"]["workers"] == 2 and data["notes"]
    assert [(r["kind"], r["workers"], r["trials"]) for r in data["rows"]] == [
        ("measured", 2, 6), ("model", 2, 6), ("what-if", 4, 60), ("what-if", 4, 60)
    ]
    # 60 trials: the speed-up compares with the real run's allocation simulated for 60 trials too
    assert 1.5 < data["rows"][2]["speedup"] < 2.1

    for argv, message in [
        (["--workers", "0,x"], "error: invalid input: --workers: expected comma-separated whole numbers ≥ 1 "
                               "(e.g. 8,32,128), got '0,x'"),
        (["--mode", "sync"], "error: invalid input: --mode: expected async, batch or async,batch, got 'sync'"),
        (["--trials", "0"], "error: invalid input: --trials: expected a whole number ≥ 1, got 0"),
    ]:
        assert main(["--root", str(root), "plan", exp.id, *argv]) == 2
        assert capsys.readouterr().err.strip() == message
    lonely = synthetic(root, ASYNC_ROWS[:1])
    assert main(["--root", str(root), "plan", lonely.id]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: invalid input: experiment: expected an experiment with at least 2 finished trials to measure, "
        f"got 1 in {lonely.id}"
    )


# ------------------------------------------------------------------------------- the acceptance test
def sleeping_spec(workers: int, trials: int) -> dict[str, Any]:
    return model_spec(
        "sleepy",
        space=[{"name": "x", "type": "real", "low": 0, "high": 1},
               {"name": "sleep", "type": "real", "low": 0.2, "high": 0.8}],
        search={"algorithm": "random", "seed": 7},
        budget={"max_trials": trials},
        compute={"workers": workers},
    )


def test_prediction_of_4_workers_from_2_matches_a_real_run(client: Any, root: Path) -> None:
    """Measure 32 sleeping trials on 2 workers, predict 4 workers async, run 4 workers."""
    trials = 32
    two = candle_lab.run(sleeping_spec(2, trials), client=client, root=root)
    measured = two.measured()
    assert measured.trials == trials and measured.workers == 2
    predicted = simulate(measured, 4, "async")
    four = candle_lab.run(sleeping_spec(4, trials), root=root)  # its own local cluster of 4 workers
    real = four.measured()
    assert real.trials == trials and real.wall is not None
    error = (predicted.wall - real.wall) / real.wall
    line = (f"4 workers async: predicted {predicted.wall:.2f} s (p10 {predicted.wall_p10:.2f}, "
            f"p90 {predicted.wall_p90:.2f}), real {real.wall:.2f} s, error {error:+.1%}; "
            f"measured on 2 workers: {measured.wall:.2f} s, dispatch {measured.dispatch * 1000:.1f} ms")
    print(line)
    log.warning(line)
    assert abs(error) < 0.2, line
