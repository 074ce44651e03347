"""HPC efficiency figures: hand-made trials, metrics and worker events with known answers,
and one real tiny experiment whose figures must hold together."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import model_spec

import candle_lab
from candle_lab import efficiency
from candle_lab.efficiency import experiment_efficiency, trial_efficiency
from candle_lab.spec import ComputeSpec

H = 3600.0


def trials_frame(*rows: dict[str, Any]) -> pd.DataFrame:
    """A trials table as :meth:`Store.trials_frame` gives it (the columns used here)."""
    defaults = {"state": "completed", "attempt": 1, "gpu": None, "queued": None, "reason": None, "ended": None}
    return pd.DataFrame([{**defaults, **row} for row in rows])


def metrics_frame(*rows: tuple[int, int, int, str, float, float]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["trial_id", "attempt", "step", "name", "value", "time"])


def joined(when: float, lane: str, gpus: float = 1, **detail: Any) -> tuple[float, str, None, dict[str, Any]]:
    return (when, "worker-joined", None,
            {"lane": lane, "address": detail.pop("address", f"tcp://{lane}"), "gpus": gpus, "threads": 1, **detail})


def left(when: float, lane: str, **detail: Any) -> tuple[float, str, None, dict[str, Any]]:
    return (when, "worker-left", None, {"lane": lane, "address": detail.pop("address", f"tcp://{lane}"), **detail})


NO_METRICS = metrics_frame()


def test_two_one_gpu_workers_over_100s_with_150s_of_trials_idle_50s() -> None:
    trials = trials_frame(
        {"trial_id": 1, "worker": "0", "gpu": "0", "attempt": 2, "queued": -10.0, "started": 0.0, "ended": 100.0},
        {"trial_id": 2, "worker": "1", "gpu": "0", "state": "failed", "reason": "exception", "queued": 0.0,
         "started": 0.0, "ended": 50.0},
    )
    metrics = metrics_frame(
        (1, 1, 1, "loss", 9.0, -50.0),  # the first attempt's: not this trial's start-up
        (1, 2, 0, "sys.gpu_util", 50.0, 1.0), (1, 2, 1, "sys.gpu_util", 70.0, 2.0),  # samples, not epochs
        (1, 2, 0, "sys.gpu_mem_mb", 1000.0, 1.0), (1, 2, 1, "sys.gpu_mem_mb", 3000.0, 2.0),
        *((1, 2, step, name, 1.0, 10.0 + 15.0 * step) for step in (1, 2, 3, 4) for name in ("loss", "val_loss")),
        (2, 1, 1, "loss", 1.0, 30.0),  # one report: no start-up to tell
    )
    events = [(-5.0, "driver-start", None, {}), joined(0.0, "0"), joined(0.0, "1"), left(100.0, "0"),
              left(100.0, "1", reason="TIMEOUT")]
    compute = ComputeSpec(workers=2, gpus=1)

    rows = trial_efficiency(trials, metrics, compute).set_index("trial_id")
    assert rows.loc[1, "queue_wait"] == 10.0
    assert rows.loc[1, "startup"] == 10.0  # first epoch reported at 25 s, one epoch is 15 s
    assert rows.loc[1, "training"] == 90.0
    assert rows.loc[1, "hours"] == 100 / H and rows.loc[1, "units"] == 1.0
    assert rows.loc[1, "gpu_busy"] == 60.0 and rows.loc[1, "gpu_mem_mb"] == 3000.0
    assert math.isnan(rows.loc[2, "startup"]) and math.isnan(rows.loc[2, "training"])
    assert math.isnan(rows.loc[2, "gpu_busy"]) and rows.loc[2, "queue_wait"] == 0.0

    found = experiment_efficiency(trials, metrics, events, compute)
    assert found.unit == "GPU" and found.allocation_source == "worker events" and found.workers == 2
    assert found.allocated_hours == pytest.approx(200 / H)
    assert found.trial_hours == pytest.approx(150 / H)
    assert found.idle_hours == pytest.approx(50 / H) and found.idle_share == pytest.approx(0.25)
    assert found.failed_share == pytest.approx(1 / 3) and found.stopped_share == 0.0
    assert found.gpu_busy == 60.0 and found.sampled_trials == 1
    assert found.median_queue_wait == 5.0 and found.median_startup == 10.0
    assert found.job_wait_median is None and found.counts == {"completed": 1, "failed": 1}
    assert found.trials == 2 and found.notes == ()
    json.dumps(found.as_dict())  # plain values


def test_shared_gpus_partial_idle_open_workers_and_slurm_queue_wait() -> None:
    """Two trials share job 7's GPU (0.5 each); the worker never says it left: it leaves at
    the driver's end. Job 8's worker holds a GPU for 40 s and runs nothing."""
    trials = trials_frame(
        {"trial_id": 1, "worker": "job 7", "gpu": "0", "queued": 0.0, "started": 0.0, "ended": 100.0},
        {"trial_id": 2, "worker": "job 7", "gpu": "0", "state": "stopped", "reason": "early-stop", "queued": 0.0,
         "started": 0.0, "ended": 60.0},
    )
    events = [
        (-40.0, "driver-start", None, {}),
        joined(0.0, "job 7", job="7", submitted=-30.0),
        joined(10.0, "job 8", job="8", submitted=-50.0),
        left(50.0, "job 8", reason="TIMEOUT"),
        (120.0, "driver-end", None, {"reason": "budget"}),
    ]
    compute = ComputeSpec(workers=2, gpus=1, gpus_per_trial=0.5)
    found = experiment_efficiency(trials, NO_METRICS, events, compute)
    assert found.allocated_hours == pytest.approx((120 + 40) / H)
    assert found.trial_hours == pytest.approx((100 + 60) * 0.5 / H)
    # job 7: both trials use the whole GPU to 60 s, half of it to 100 s, none to 120 s; job 8: all 40 s
    assert found.idle_hours == pytest.approx((20 + 20 + 40) / H)
    assert found.stopped_share == pytest.approx(30 / 80) and found.failed_share == 0.0
    assert found.job_wait_median == 45.0 and found.job_wait_max == 60.0
    assert found.gpu_busy is None and found.sampled_trials == 0
    labels = dict(efficiency.describe(found))
    assert labels["SLURM queue wait (worker jobs)"] == "median 45 s, max 60 s"
    assert labels["GPU busy"] == "no samples"


def test_workers_of_a_crashed_run_leave_with_it_not_at_the_resume() -> None:
    trials = trials_frame(
        {"trial_id": 1, "worker": "0", "started": 0.0, "ended": 30.0},
        {"trial_id": 2, "worker": "0", "started": 110.0, "ended": 130.0},
    )
    events = [
        (0.0, "driver-start", None, {}), joined(0.0, "0", gpus=0, address="tcp://a"),  # crashed: no end
        (100.0, "driver-start", None, {}), joined(101.0, "0", gpus=0, address="tcp://b"),
        (140.0, "driver-end", None, {"reason": "budget"}),
    ]
    found = experiment_efficiency(trials, NO_METRICS, events, ComputeSpec(workers=1))
    assert found.unit == "worker" and found.workers == 2
    assert found.allocated_hours == pytest.approx((30 + 39) / H)  # the first worker went at its last trial end
    assert found.trial_hours == pytest.approx(50 / H)
    assert found.idle_hours == pytest.approx((9 + 10) / H)


def test_without_worker_events_the_allocation_is_estimated_in_worker_hours() -> None:
    trials = trials_frame(
        {"trial_id": 1, "worker": "0", "started": 0.0, "ended": 10.0},
        {"trial_id": 2, "worker": "1", "started": 0.0, "ended": 4.0},
        {"trial_id": 3, "worker": "1", "state": "stopped", "reason": "stopped", "started": 5.0, "ended": 10.0},
        {"trial_id": 4, "state": "cancelled", "queued": 1.0, "ended": 10.0},  # never ran
    )
    found = experiment_efficiency(trials, NO_METRICS, [(10.0, "driver-end", None, {})], ComputeSpec(workers=2))
    assert found.unit == "worker" and found.allocation_source == "estimated" and found.workers == 2
    assert found.allocated_hours == pytest.approx(20 / H)
    assert found.trial_hours == pytest.approx(19 / H)
    assert found.idle_hours == pytest.approx(1 / H)
    assert found.stopped_share == pytest.approx(5 / 19) and found.cancelled_share == 0.0
    assert found.counts == {"completed": 2, "stopped": 1, "cancelled": 1} and found.trials == 4
    assert "estimated" in dict(efficiency.describe(found))["worker-hours allocated"]


def test_a_running_trial_counts_to_now_and_a_stray_lane_is_noted() -> None:
    trials = trials_frame(
        {"trial_id": 1, "worker": "0", "state": "running", "gpu": "0,1", "started": 10.0},
        {"trial_id": 2, "worker": "elsewhere", "gpu": None, "started": 0.0, "ended": 20.0},
    )
    events = [joined(0.0, "0", gpus=2)]
    compute = ComputeSpec(workers=1, gpus=2, gpus_per_trial=1)
    rows = trial_efficiency(trials, NO_METRICS, compute, now=50.0).set_index("trial_id")
    assert rows.loc[1, "units"] == 2.0 and rows.loc[2, "units"] == 1.0  # its devices; else gpus_per_trial
    found = experiment_efficiency(trials, NO_METRICS, events, compute, running=True, now=50.0)
    assert found.allocated_hours == pytest.approx(2 * 50 / H)
    assert found.trial_hours == pytest.approx((2 * 40 + 20) / H)
    assert found.idle_hours == pytest.approx(2 * 10 / H)  # trial 2's lane has no worker event
    assert len(found.notes) == 1 and "1 trials ran on workers with no worker-joined event" in found.notes[0]


def test_an_empty_experiment_has_zero_figures() -> None:
    empty = pd.DataFrame(columns=["trial_id", "state", "started", "ended", "queued", "worker", "gpu", "attempt"])
    found = experiment_efficiency(empty, NO_METRICS, [], ComputeSpec(workers=2, gpus=1))
    assert (found.trials, found.trial_hours, found.allocated_hours, found.idle_hours) == (0, 0.0, 0.0, 0.0)
    assert found.idle_share is None and found.failed_share is None
    assert "GPU-hours idle" in efficiency.table(found)
    assert trial_efficiency(empty, NO_METRICS, ComputeSpec()).empty


def test_a_real_experiment_gives_consistent_figures_everywhere(client: Any, root: Path) -> None:
    from candle_lab.html_report import write_report
    from candle_lab.ui.state import ExperimentMonitor

    spec = model_spec(
        "epochs",
        space=[{"name": "x", "type": "real", "low": 0.0, "high": 1.0},
               {"name": "epoch_seconds", "type": "constant", "value": 0.05},
               {"name": "epochs", "type": "constant", "value": 4}],
        objective={"metric": "loss"},
        budget={"max_trials": 4},
    )
    exp = candle_lab.run(spec, client=client, root=root)
    found = exp.efficiency()
    assert found.unit == "worker" and found.allocation_source in ("worker events", "estimated")
    assert found.counts == {"completed": 4}
    assert 0 < found.trial_hours <= found.allocated_hours * (1 + 1e-9)
    assert 0 <= found.idle_hours <= found.allocated_hours
    assert found.median_queue_wait is not None and found.median_queue_wait >= 0
    assert found.median_startup is not None and found.median_startup >= 0
    rows = exp.trial_efficiency()
    assert len(rows) == 4 and (rows["queue_wait"] >= 0).all() and (rows["startup"] >= 0).all()
    assert (rows["training"] > 0).all() and rows["hours"].sum() == pytest.approx(found.trial_hours)
    monitor = ExperimentMonitor(path=str(exp.path))
    try:
        shown = monitor.efficiency()
        assert shown is not None and shown is monitor.efficiency()  # memoized until the trials change
        assert shown.trial_hours == pytest.approx(found.trial_hours)
        assert shown.allocated_hours == pytest.approx(found.allocated_hours)
    finally:
        monitor.close()
    page = write_report(exp, plotly="cdn").read_text()
    assert "<h2>Efficiency</h2>" in page and "worker-hours idle" in page
