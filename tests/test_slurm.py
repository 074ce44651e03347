"""Clusters from site profiles, on a real single-node SLURM (scripts/slurm-up, 2 fake GPUs).

Never skipped: without a SLURM the fixture brings one up (root) or fails."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import TESTS, assert_pbt_progress_continues, pbt_progress_spec

import candle_lab
from candle_lab.clusters import resolve
from candle_lab.clusters.profiles import SiteProfile, load_profile, walltime_notice
from candle_lab.clusters.slurm import cluster_kwargs, job_script, worker_command_python
from candle_lab.engine.walltime import SLACK_MIN
from candle_lab.errors import SpecError
from candle_lab.spec import ComputeSpec


def our_jobs() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i %j %T"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "candle-lab-" in line]


def exp_events(exp: candle_lab.Experiment) -> list[tuple[float, str, int | None, Any]]:
    from candle_lab.store import Store

    with Store(exp.path / "experiment.db", readonly=True) as store:
        return store.events()


def gpu_spec(trials: int, sleep: float, **compute: Any) -> dict[str, Any]:
    return {
        "name": "slurm-gpu",
        "model": {"ref": "trial_models:gpu_probe", "path": str(TESTS)},
        "space": [
            {"name": "x", "type": "real", "low": 0, "high": 1},
            {"name": "sleep", "type": "constant", "value": sleep},
        ],
        "objective": {"metric": "objective"},
        "search": {"algorithm": "async-bo", "initial_points": 2, "seed": 5},
        "budget": {"max_trials": trials},
        "compute": {"profile": "lab", "workers": 2, "gpus": 1, "memory": "1GB", "walltime": "00:20:00", **compute},
        "trial": {"retries": 2},
    }


# ------------------------------------------------------------------ profiles (no SLURM needed)
@pytest.mark.parametrize(
    ("compute", "field", "text"),
    [
        ({"partition": "bigmem"}, "compute.partition", "expected one of gpu, cpu"),
        ({"gpus": 1, "gpu_type": "h100"}, "compute.gpu_type", "got 'h100'"),
        ({"gpus": 3}, "compute.gpus", "has 2 any GPUs, asked for 3"),
        ({"gpus": 1, "partition": "cpu"}, "compute.gpus", "GPU partitions: gpu"),
        ({"walltime": "12:00:00"}, "compute.walltime", "at most 04:00:00"),
        ({"memory": "64GB"}, "compute.memory", "has 16GB, asked for 64GB"),
        ({"cores": 16}, "compute.cores", "has 2 cores"),
    ],
)
def test_compute_is_checked_against_the_profile(compute: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(SpecError) as info:
        resolve(ComputeSpec(profile="lab", **compute))
    assert field in str(info.value) and text in str(info.value)


def test_shell_metacharacters_never_reach_sbatch() -> None:
    with pytest.raises(SpecError, match=r"compute\.partition"):
        candle_lab.spec_from_dict(gpu_spec(2, 0.1, partition="gpu; rm -rf ~"))
    bad = Path(TESTS) / "data" / "bad_profile.yaml"
    with pytest.raises(SpecError, match="partitions"):
        load_profile(str(bad))


def test_biowulf_profile_and_job_script(tmp_path: Path) -> None:
    resolved = resolve(ComputeSpec(profile="biowulf", gpus=1, gpu_type="v100", workers=8))
    assert (resolved.partition, resolved.memory, resolved.walltime, resolved.gres) == (
        "gpu",
        "16GB",
        "08:00:00",
        "gpu:v100:1",
    )
    kwargs = cluster_kwargs(resolved, tmp_path)
    assert kwargs["job_extra_directives"] == ["--gres=gpu:v100:1", "--signal=B:USR1@720"]  # 10 min + 2 min stagger
    assert kwargs["worker_extra_args"][:2] == ["--resources", "GPU=1"] and "--lifetime" in kwargs["worker_extra_args"]
    assert "module load python/3.11" in kwargs["job_script_prologue"]
    assert kwargs["python"].startswith("exec /")  # the worker replaces the batch shell: it hears --signal
    script = job_script(resolved, tmp_path)
    for line in ("#SBATCH -p gpu", "#SBATCH --gres=gpu:v100:1", "#SBATCH --mem=", "#SBATCH -t 08:00:00", "GPU=1"):
        assert line in script, script


def test_container_worker_command() -> None:
    container = {"image": "/shared/candle lab.sif", "options": ["--nv", "--bind", "/data"]}
    profile = SiteProfile.model_validate({**load_profile("generic-slurm").model_dump(), "container": container})
    resolved = resolve(ComputeSpec(profile="generic-slurm", gpus=1), profile)
    assert worker_command_python(resolved) == "apptainer exec --nv --bind /data '/shared/candle lab.sif' python3"


# ------------------------------------------------------------------ real SLURM
def test_async_experiment_on_slurm_gpu_workers(slurm: None, tmp_path: Path) -> None:
    exp = candle_lab.run(gpu_spec(8, 1.5), wait=False, root=tmp_path)
    seen_jobs: set[str] = set()
    deadline = time.monotonic() + 180
    while exp.status().state in ("created", "running") and time.monotonic() < deadline:
        seen_jobs.update(line.split()[0] for line in our_jobs())
        time.sleep(0.3)
    status = exp.wait(timeout=60)
    assert status.state == "completed" and status.completed == 8, exp.meta().get("error")
    assert seen_jobs, "no worker job was ever visible in squeue"
    gpu_of_job: dict[float, set[float]] = {}
    for t in exp.records():
        assert t.metrics is not None and t.metrics["gpu_count"] == 1  # exactly one GPU per trial
        gpu_of_job.setdefault(t.metrics["slurm_job"], set()).add(t.metrics["gpu_index"])
        assert t.worker == f"job {int(t.metrics['slurm_job'])}" and t.gpu is not None  # Gantt lane: job · GPU
    assert all(len(gpus) == 1 for gpus in gpu_of_job.values())  # a worker keeps its GPU
    assert {g for gpus in gpu_of_job.values() for g in gpus} <= {0.0, 1.0}
    assert str(exp.meta()["scheduler"]).startswith("tls://")
    assert not our_jobs(), "worker jobs were left in the queue"


def test_three_cancelled_worker_jobs_lose_nothing(slurm: None, tmp_path: Path) -> None:
    """``scancel`` of the job running a trial, three times: each of those trials runs again
    in another job with its next attempt, no other trial uses an attempt, all complete."""
    exp = candle_lab.run(gpu_spec(6, 3.0), wait=False, root=tmp_path)
    cancelled: dict[int, str] = {}
    deadline = time.monotonic() + 180
    while len(cancelled) < 3:
        assert time.monotonic() < deadline and exp.status().state in ("created", "running"), cancelled
        for t in exp.records():
            job_file = exp.path / t.run_id / "slurm_job"
            if t.state == "running" and t.trial_id not in cancelled and job_file.is_file() and job_file.read_text():
                cancelled[t.trial_id] = job_file.read_text()
                subprocess.run(["scancel", cancelled[t.trial_id]], check=True)
                break
        time.sleep(0.1)
    status = exp.wait(timeout=300)
    trials = exp.records()
    assert status.state == "completed" and status.completed == 6, [(t.state, t.error) for t in trials]
    assert {t.trial_id: t.attempt for t in trials if t.attempt > 1} == dict.fromkeys(cancelled, 2)  # exact
    for trial_id, job in cancelled.items():
        assert trials[trial_id].metrics and trials[trial_id].metrics["slurm_job"] != float(job)  # ran elsewhere
    assert not our_jobs()
    # How each job ended (scontrol here, sacct where SLURM keeps accounting) names the retry.
    events = exp_events(exp)
    ended = {e[2]: e[3] for e in events if e[1] == "slurm-job-ended"}
    retries = {e[2]: e[3] for e in events if e[1] == "retry"}
    for trial_id, job in cancelled.items():
        assert (ended[trial_id]["job"], ended[trial_id]["state"]) == (job, "CANCELLED"), events
        assert retries[trial_id]["reason"] == "cancelled", retries
        assert retries[trial_id]["error"].startswith(f"SLURM job {job} ended CANCELLED")
    # Worker events: one lane per job, as the trials name it; the cancelled jobs left CANCELLED.
    joined = {e[3]["job"]: e[3] for e in events if e[1] == "worker-joined"}
    assert {t.worker for t in trials} <= {d["lane"] for d in joined.values()}
    for job, detail in joined.items():
        assert detail["lane"] == f"job {job}" and detail["gpus"] == 1.0 and detail["threads"] == 1
        assert detail["submitted"] <= detail["ends"] and detail["ends"] - detail["submitted"] >= 20 * 60
    left = {e[3]["lane"]: e[3]["reason"] for e in events if e[1] == "worker-left"}
    seen = set(cancelled.values()) & set(joined)  # (a worker may die before it is seen: rarely)
    assert seen and all(left[f"job {job}"] == "CANCELLED" for job in seen), (left, joined)


def test_tls_refuses_a_client_without_the_certificate(slurm: None, tmp_path: Path) -> None:
    from distributed import Client
    from distributed.security import Security

    exp = candle_lab.run(gpu_spec(4, 4.0), wait=False, root=tmp_path)
    deadline = time.monotonic() + 60
    while "scheduler" not in exp.meta():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    address = str(exp.meta()["scheduler"])
    assert address.startswith("tls://")
    with pytest.raises(Exception):  # noqa: B017 - no TLS context at all
        Client(address, timeout=5)
    with pytest.raises(OSError):  # a certificate from another authority: handshake refused
        Client(address, security=Security.temporary(), timeout=5)
    exp.stop()
    exp.wait(timeout=120)
    assert not our_jobs()
    assert os.stat(exp.path / "tls").st_mode & 0o077 == 0  # certificates: the user's only


def test_experiment_outlives_its_worker_jobs(slurm: None, tmp_path: Path) -> None:
    """Workers retire before their walltime (80 s: lifetime 60 s ± 10 s) and fresh jobs
    take over; every trial completes."""
    exp = candle_lab.run(gpu_spec(26, 5.0, walltime="00:01:20"), wait=False, root=tmp_path)
    status = exp.wait(timeout=400)
    assert status.state == "completed" and status.completed == 26, [(t.state, t.error) for t in exp.records()]
    jobs = {t.metrics["slurm_job"] for t in exp.records() if t.metrics}
    assert len(jobs) > 2, f"all trials ran in jobs {jobs}: no worker was retired"
    assert not our_jobs()


def test_pbt_members_hand_checkpoints_across_worker_jobs(slurm: None, tmp_path: Path) -> None:
    """PBT on SLURM workers: each interval starts from the checkpoint its member (or the
    member it copied) left in a run folder, whichever job ran that; member 1's later
    intervals each kill their worker once and run again from the same checkpoint."""
    spec = pbt_progress_spec(4, compute={"profile": "lab", "workers": 2, "memory": "1GB", "walltime": "00:20:00"})
    exp = candle_lab.run(spec, wait=False, root=tmp_path)
    status = exp.wait(timeout=300)
    records = {t.run_id: t for t in exp.records()}
    assert status.state == "completed" and status.completed == len(records), [
        (t.state, t.error) for t in records.values()
    ]
    assert_pbt_progress_continues(records, exp.metrics)
    assert all(str(t.worker).startswith("job ") for t in records.values())
    assert not our_jobs()


def test_a_trial_whose_job_is_cancelled_resumes_from_its_checkpoint_in_another_job(
    slurm: None, tmp_path: Path
) -> None:
    """``scancel`` of the job running a trial after its third epoch: the next attempt runs in
    another job from the last epoch saved; the epochs recorded run 1..8 without a restart,
    and the Gantt keeps the segment that was cut off on the first job's lane."""
    from candle_lab import monitor

    spec = {
        **gpu_spec(1, 0.0),
        "model": {"ref": "trial_models:resumable", "path": str(TESTS)},
        "space": [{"name": "x", "type": "real", "low": 0.5, "high": 1.0},
                  {"name": "epochs", "type": "constant", "value": 8},
                  {"name": "epoch_seconds", "type": "constant", "value": 1.0}],
        "objective": {"metric": "loss"},
        "search": {"algorithm": "random", "seed": 3},
    }
    exp = candle_lab.run(spec, wait=False, root=tmp_path)
    job = ""
    deadline = time.monotonic() + 180
    while not job:
        assert time.monotonic() < deadline and exp.status().state in ("created", "running")
        m = exp.metrics
        if not m.empty and m["step"].max() >= 3:
            job = (exp.path / "RUN000" / "slurm_job").read_text()
            subprocess.run(["scancel", job], check=True)
        time.sleep(0.1)
    status = exp.wait(timeout=240)
    (t,) = exp.records()
    assert status.state == "completed" and t.state == "completed" and t.attempt == 2, t.error
    assert t.worker != f"job {job}"  # ran again elsewhere
    m = exp.metrics[exp.metrics["name"] == "total"]
    first = m[m["attempt"] == 1]["step"].tolist()
    second = m[m["attempt"] == 2]["step"].tolist()
    assert first[:3] == [1, 2, 3] and second == list(range(second[0], 9)), (first, second)
    assert second[0] <= first[-1] + 1  # resumed from a saved epoch, not from epoch 1 ...
    assert second[0] > 1
    x = float(t.params["x"])
    assert t.metrics is not None and abs(t.metrics["total"] - 8 * x) < 1e-9  # ... and each epoch counted once
    (resumed,) = exp.events(["resumed"])
    assert resumed[3]["epoch"] == second[0] - 1
    earlier = monitor.earlier_attempts(exp.events(["retry"]))
    assert earlier["worker"].tolist() == [f"job {job}"]
    bars = monitor.gantt_rows(exp.trials, earlier=earlier)
    assert sorted(bars["state"]) == ["completed", "interrupted"] and set(bars["trial_id"]) == {0}
    assert not our_jobs()


def test_two_trials_share_a_fake_gpu_and_never_three(slurm: None, tmp_path: Path) -> None:
    """``gpus: 1, gpus_per_trial: 0.5``: the worker job asks for one GPU and runs two dask
    worker processes (``GPU=0.5`` each, a core each); two trials run at once on the job's
    fake GPU, never three, each on a lane of its own process."""
    from benchmarks.gpu_check import most_at_once

    exp = candle_lab.run(gpu_spec(6, 4.0, workers=1, gpus_per_trial=0.5, memory="2GB"), wait=False, root=tmp_path)
    status = exp.wait(timeout=300)
    records = exp.records()
    assert status.state == "completed" and status.completed == 6, [(t.state, t.error) for t in records]
    for t in records:
        assert t.metrics is not None and t.metrics["gpu_count"] == 1  # CUDA_VISIBLE_DEVICES: one GPU
        assert t.gpu == str(int(t.metrics["gpu_index"]))  # the record names the GPU the trial saw
        job = int(t.metrics["slurm_job"])
        assert t.worker in (f"job {job}/0", f"job {job}/1"), t.worker  # a lane per process of the job
    at_once = most_at_once(exp.trials)
    assert max(at_once.values()) == 2 and all(n <= 2 for n in at_once.values()), at_once
    assert len({t.worker for t in records}) >= 2
    assert not exp.events(["retry"]) and all(t.attempt == 1 for t in records)  # adaptive kept whole jobs
    assert not our_jobs()


def test_a_trial_never_starts_on_a_worker_without_time_for_it(slurm: None, tmp_path: Path) -> None:
    """12-s trials on 2-min workers: a worker winds down 45 s before its walltime (its
    --signal, its earliest retirement) and a trial needs its predicted time plus 30 s, so a
    fresh worker has time for about 3 trials. Once two trials completed, none starts on a
    worker without that time: each ends at least the slack before its worker's notice
    (without the placement, a 4th trial per worker would run past it); when no worker
    has time, the idle short ones retire and fresh jobs take over."""
    exp = candle_lab.run(gpu_spec(8, 12.0, walltime="00:02:00"), wait=False, root=tmp_path)
    status = exp.wait(timeout=240)
    trials = exp.records()
    assert status.state == "completed" and status.completed == 8, [(t.state, t.error) for t in trials]
    events = exp_events(exp)
    notice = walltime_notice(resolve(ComputeSpec(profile="lab", gpus=1, memory="1GB", walltime="00:02:00")))
    assert notice == 45
    ends = {e[3]["lane"]: e[3]["ends"] for e in events if e[1] == "worker-joined"}
    assert len(ends) >= 3, ends  # fresh jobs replaced the short ones
    assert not [e for e in events if e[1] in ("retry", "rescheduled")]  # no trial was cut off
    second = sorted(t.ended for t in trials if t.ended is not None)[1]  # from then on durations are predicted
    for t in trials:
        assert t.worker in ends and t.started is not None and t.ended is not None
        if t.started >= second:
            assert t.ended <= ends[t.worker] - notice - SLACK_MIN + 3.0, (t.trial_id, t.worker, t.started, t.ended)
    skips = [e[3] for e in events if e[1] == "walltime-skip"]
    assert skips and all(s["remaining"] < s["predicted"] + s["margin"] for s in skips), skips
    assert any(s["retire"] for s in skips)
    assert not our_jobs()


def test_a_walltime_notice_stops_the_trial_at_an_epoch_and_it_resumes_elsewhere(slurm: None, tmp_path: Path) -> None:
    """1-minute workers hear SLURM's USR1 (--signal) 7 to 37 s before their walltime: the
    trial (60 epochs of 1 s: more than a worker's time) stops at its next epoch boundary
    with reason walltime, runs again without using a retry (it has none) in a fresh job,
    and resumes from its last epoch: every epoch is recorded once."""
    spec = {
        "name": "slurm-walltime",
        "model": {"ref": "trial_models:resumable", "path": str(TESTS)},
        "space": [
            {"name": "x", "type": "real", "low": 0.5, "high": 1},
            {"name": "epochs", "type": "constant", "value": 60},
            {"name": "epoch_seconds", "type": "constant", "value": 1.0},
        ],
        "objective": {"metric": "loss"},
        "search": {"algorithm": "random", "seed": 3},
        "budget": {"max_trials": 1},
        "compute": {"profile": "lab", "workers": 1, "gpus": 1, "memory": "1GB", "walltime": "00:01:00"},
        "trial": {"retries": 0},
    }
    exp = candle_lab.run(spec, wait=False, root=tmp_path)
    status = exp.wait(timeout=240)
    (t,) = exp.records()
    assert status.state == "completed" and t.state == "completed", (t.state, t.reason, t.error)
    retries = [e[3] for e in exp_events(exp) if e[1] == "retry"]
    assert retries and all(r["reason"] == "walltime" and r["free"] for r in retries), retries
    attempts = [line.split() for line in (exp.path / t.run_id / "attempts").read_text().splitlines()]
    assert len({job for _, job, _ in attempts}) == len(attempts) == t.attempt >= 2, attempts  # a job each
    assert all(int(first) > 1 for _, _, first in attempts[1:]), attempts  # each resumed from its checkpoint
    steps = exp.metrics.query("name == 'total'")["step"].tolist()
    assert sorted(steps) == list(range(1, 61)), steps
    assert t.metrics is not None and t.metrics["total"] == pytest.approx(60 * t.params["x"])
    assert not our_jobs()
