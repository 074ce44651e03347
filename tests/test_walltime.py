"""Walltime and preemption without a cluster: the retry policy, SLURM's answers as the
driver reads them, the duration model and the fit of a trial on a worker, the worker's
walltime notice, and the job script's --signal."""

from __future__ import annotations

import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import model_spec
from test_engine_state import kinds, launch, outcome, start, state

import candle_lab
from candle_lab.clusters import resolve
from candle_lab.clusters.jobs import parse_sacct, parse_scontrol, parse_squeue, parse_time
from candle_lab.clusters.profiles import walltime_notice, worker_lifetime
from candle_lab.clusters.slurm import cluster_kwargs, job_script
from candle_lab.engine.retry import MAX_FREE_RETRIES, job_end, retry_kind
from candle_lab.engine.walltime import SLACK_MIN, DurationModel, fits, fitting, slack, usable
from candle_lab.spec import ComputeSpec
from candle_lab.store import Store
from candle_lab.trial.context import TrialContext, _running, _walltime_notice, notice_walltime
from candle_lab.trial.protocol import TrialOutcome, TrialTask

# What scontrol said of a job cancelled on the test SLURM (scripts/slurm-up), trimmed.
SCONTROL = (
    "JobId=22 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901755 Nice=0 "
    "Account=(null) QOS=(null) JobState=CANCELLED Reason=None Dependency=(null) Requeue=1 Restarts=0 "
    "BatchFlag=1 Reboot=0 ExitCode=143:0 RunTime=00:00:02 TimeLimit=00:02:00 TimeMin=N/A "
    "SubmitTime=2026-12-04T13:50:49 EligibleTime=2026-12-04T13:50:49 AccrueTime=2026-12-04T13:50:49 "
    "StartTime=2026-12-04T13:50:49 EndTime=2026-12-04T13:50:51 Deadline=N/A SuspendTime=None "
    "Partition=cpu NodeList=vm BatchHost=vm NumNodes=1 NumCPUs=1 TRES=cpu=1,mem=100M,node=1,billing=1 "
    "Command=(null) WorkDir=/tmp/x StdOut=/tmp/x/slurm-22.out Power=\n"
)


# ------------------------------------------------------------------ the retry policy
@pytest.mark.parametrize(
    ("reason", "attempt", "free_used", "expected"),
    [
        ("walltime", 5, 0, "free"),  # attempts past trial.retries: still free
        ("preempted", 1, 0, "free"),
        ("node-fail", 3, 2, "free"),
        ("walltime", 20, MAX_FREE_RETRIES, None),  # at most MAX_FREE_RETRIES free ones
        ("preempted", 2, MAX_FREE_RETRIES, "counted"),  # then they count: 2 - 10 <= 1
        ("cancelled", 1, 0, "counted"),
        ("cancelled", 2, 0, None),  # retries 1: attempt 2 was the last
        ("cancelled", 3, 2, "counted"),  # two of its attempts were free: this was its first counted one
        ("cancelled", 4, 2, None),
        ("lost-worker", 1, 0, "counted"),
        ("oom", 1, 0, "counted"),
        ("nan", 1, 0, None),
        ("early-stop", 1, 0, None),
        (None, 1, 0, None),
    ],
)
def test_retry_kind(reason: str | None, attempt: int, free_used: int, expected: str | None) -> None:
    assert retry_kind(reason, attempt, retries=1, free_used=free_used) == expected


@pytest.mark.parametrize(
    ("state_", "reason", "retry"),
    [
        ("PREEMPTED", "preempted", True),
        ("NODE_FAIL", "node-fail", True),
        ("BOOT_FAIL", "node-fail", True),
        ("TIMEOUT", "walltime", True),
        ("CANCELLED", "cancelled", True),
        ("COMPLETED", "lost-worker", True),
        ("FAILED", "lost-worker", True),
        ("OUT_OF_MEMORY", "oom", False),
    ],
)
def test_job_end_names_the_slurm_state(state_: str, reason: str, retry: bool) -> None:
    verdict = job_end("123", state_, "None", memory="1GB", partition="gpu", node_memory="16GB")
    assert verdict is not None and (verdict.reason, verdict.retry) == (reason, retry)
    assert verdict.error.startswith(f"SLURM job 123 ended {state_}")


@pytest.mark.parametrize("state_", [None, "RUNNING", "COMPLETING", "PENDING"])
def test_a_job_that_has_not_ended_says_nothing(state_: str | None) -> None:
    assert job_end("123", state_) is None


def test_out_of_memory_says_what_to_raise() -> None:
    room = job_end("7", "OUT_OF_MEMORY", memory="1GB", partition="gpu", node_memory="16GB")
    assert room is not None and not room.retry
    assert "compute.memory=1GB" in room.error and "raise compute.memory (up to 16GB" in room.error
    full = job_end("7", "OUT_OF_MEMORY", memory="16GB", partition="gpu", node_memory="16GB")
    assert full is not None and "infeasible" in full.error and "'gpu' node has (16GB)" in full.error


# ------------------------------------------------------------------ the search's decisions
def test_a_walltime_stop_runs_again_without_using_a_retry() -> None:
    s = state(trial={"retries": 0})
    t = launch(s)[0]
    for attempt in (1, 2, 3):
        start(s, t)
        stopped = TrialOutcome(t.trial_id, t.attempt, "stopped", None, {}, 0.0, 1.0, reason="walltime")
        actions = s.finished(t, stopped)
        assert kinds(actions) == ["Event:retry", "Requeue"] and actions[0].detail["free"] is True
        assert t.attempt == attempt + 1 and t.free_retries == attempt
        launch(s, 1)
    start(s, t)
    assert kinds(s.finished(t, outcome(t, reason="lost-worker"))) == ["Record"]  # retries 0: counted ones end it


def test_a_preempted_trial_rescheduled_by_dask_counts_its_free_retries() -> None:
    s = state(trial={"retries": 1})
    t = launch(s)[0]
    start(s, t)
    s.finished(t, outcome(t, reason="preempted"))  # free: attempt 2
    launch(s, 1)
    start(s, t, when=200.0)
    actions = start(s, t, when=205.0, address="tcp://w1")  # dask re-ran it: attempt 3, the 2nd counted
    assert kinds(actions) == ["Event:rescheduled", "Running"]


def test_a_verdict_not_to_retry_is_recorded() -> None:
    s = state(trial={"retries": 3})
    t = launch(s)[0]
    start(s, t)
    actions = s.finished(t, outcome(t, reason="oom"), retry=False)
    assert kinds(actions) == ["Record"] and actions[0].outcome.reason == "oom"


# ------------------------------------------------------------------ durations and fits
def test_duration_model() -> None:
    model = DurationModel()
    assert model.predict({"epochs": 10}) is None
    model.add(100.0, {"epochs": 10})
    assert model.predict({"epochs": 10}) is None  # one trial: no prediction
    model.add(40.0, {"epochs": 2})  # 20 s per epoch
    model.add(90.0, {"epochs": 6})  # 15 s per epoch
    assert model.predict({"epochs": 4}) == pytest.approx(4 * 15.0)  # median seconds per epoch × epochs
    assert model.predict({"x": 1}) == pytest.approx(90.0)  # no epochs: the median duration
    plain = DurationModel()
    for d in (10.0, 30.0, 20.0):
        plain.add(d, {"x": 0.5, "epochs": True})  # a flag is not a number of epochs
    assert plain.predict({"epochs": 3}) == pytest.approx(20.0)


def test_fits_and_fitting() -> None:
    assert slack(10.0) == SLACK_MIN and slack(3000.0) == pytest.approx(300.0)
    assert fits(100.0, 60.0, 40.0) and not fits(99.9, 60.0, 40.0)
    assert usable(ends=1000.0, notice=120.0, now=500.0) == 380.0
    ends = {"fresh": 1000.0 + 3600, "short": 1000.0 + 180, "unknown": None}
    assert fitting(ends, predicted=60.0, now=1000.0, notice=100.0) == ["fresh", "unknown"]  # short: 80 < 60 + 30
    assert fitting(ends, predicted=60.0, now=1000.0, notice=10.0) == ["fresh", "short", "unknown"]
    # a busy worker starts it once free: "short" has 170 s now, 80 s once its trial ends at 1090
    busy = {"short": 1090.0, "fresh": 900.0}  # "fresh" was predicted to be free already
    assert fitting(ends, predicted=60.0, now=1000.0, notice=10.0, free_at=busy) == ["fresh", "unknown"]


# ------------------------------------------------------------------ SLURM's answers
def test_parse_sacct() -> None:
    text = "101|CANCELLED by 0|None\n101.batch|CANCELLED|\n102|PREEMPTED|\n103|TIMEOUT|TimeLimit\n103|OUT_OF_MEMORY|\n"
    jobs = parse_sacct(text)
    assert {j: (i.state, i.reason) for j, i in jobs.items()} == {
        "101": ("CANCELLED", "None"), "102": ("PREEMPTED", None), "103": ("OUT_OF_MEMORY", None)}


def test_parse_scontrol_and_squeue() -> None:
    (info,) = parse_scontrol(SCONTROL).values()
    assert (info.job, info.state, info.reason) == ("22", "CANCELLED", "None")
    assert info.submitted == datetime(2026, 12, 4, 13, 50, 49).timestamp()
    assert info.ends == datetime(2026, 12, 4, 13, 50, 51).timestamp()
    jobs = parse_squeue("31|RUNNING|2026-12-04T13:50:49|2026-12-04T14:50:49\n32|PENDING|2026-12-04T13:51:00|N/A\n")
    assert jobs["31"].ends is not None and jobs["31"].ends - (jobs["31"].submitted or 0) == 3600
    assert jobs["32"].state == "PENDING" and jobs["32"].ends is None
    assert parse_time("Unknown") is None and parse_time("") is None


# ------------------------------------------------------------------ the worker's side
def _task(trial_id: int) -> TrialTask:
    return TrialTask("exp", "/tmp/none", trial_id, f"RUN{trial_id}", 1, {}, {"kind": "callable"}, "loss")


def test_a_walltime_notice_stops_running_and_later_trials() -> None:
    running = TrialContext(_task(1), None, Path("/tmp/none"), 0.0)
    _running[("exp", 1)] = running
    try:
        assert notice_walltime() == 1
        assert running.stop_reason == "walltime" and running.stopped_early() is None  # the model has not looked
        assert running.should_stop and running.stopped_early() == "walltime"  # now it stops at its epoch
        later = TrialContext(_task(2), None, Path("/tmp/none"), 0.0)
        assert later.should_stop and later.stopped_early() == "walltime"
    finally:
        _running.pop(("exp", 1), None)
        _walltime_notice.clear()


def test_the_handlers_stop_trials_on_usr1() -> None:
    from candle_lab.trial.walltime import NOTICE_SIGNAL, WalltimeNotice

    before = signal.getsignal(NOTICE_SIGNAL)
    ctx = TrialContext(_task(3), None, Path("/tmp/none"), 0.0)
    _running[("exp", 3)] = ctx
    try:
        WalltimeNotice().setup(type("W", (), {"address": "tcp://w"})())
        signal.raise_signal(NOTICE_SIGNAL)
        assert ctx.stop_reason == "walltime"
    finally:
        signal.signal(NOTICE_SIGNAL, before)
        _running.pop(("exp", 3), None)
        _walltime_notice.clear()


# ------------------------------------------------------------------ the job script
@pytest.mark.parametrize(("walltime", "seconds", "notice"),  # seconds: as SLURM keeps it (whole minutes)
                         [("04:00:00", 14400, 420), ("00:02:00", 120, 45), ("00:01:00", 60, 7), ("00:01:20", 120, 70)])
def test_workers_are_signalled_before_they_retire(tmp_path: Path, walltime: str, seconds: int, notice: int) -> None:
    resolved = resolve(ComputeSpec(profile="lab", gpus=1, walltime=walltime))
    assert walltime_notice(resolved) == notice
    lifetime, stagger = worker_lifetime(resolved) or (0.0, 0.0)
    assert int(lifetime) - int(stagger) == seconds - notice  # the earliest retirement
    kwargs: dict[str, Any] = cluster_kwargs(resolved, tmp_path)
    assert f"--signal=B:USR1@{notice}" in kwargs["job_extra_directives"]
    assert kwargs["job_script_prologue"][0] == "trap '' USR1" and kwargs["python"].startswith("exec /")
    script = job_script(resolved, tmp_path)
    assert f"#SBATCH --signal=B:USR1@{notice}" in script and "\nexec /" in script


# ------------------------------------------------------------------ worker events on a local cluster
def test_worker_events_name_the_lanes_trials_ran_on(client: Any, tmp_path: Path) -> None:
    spec = model_spec("sleepy", space=[{"name": "x", "type": "real", "low": 0, "high": 1},
                                       {"name": "sleep", "type": "constant", "value": 0.2}],
                      budget={"max_trials": 4})
    exp = candle_lab.run(spec, client=client, root=tmp_path)
    with Store(exp.path / "experiment.db", readonly=True) as store:
        joined = [e[3] for e in store.events(["worker-joined"])]
    assert len(joined) == 2 and {d["threads"] for d in joined} == {1} and {d["gpus"] for d in joined} == {0.0}
    assert all(d["job"] is None and d["submitted"] is None and d["address"].startswith("tcp://") for d in joined)
    assert {t.worker for t in exp.records()} <= {d["lane"] for d in joined}
    assert exp.efficiency().allocation_source == "worker events"
