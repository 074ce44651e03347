"""GPUs per trial (compute.gpus_per_trial): which GPUs a worker process gets, the dask
resources and processes that express it, the nvidia-smi sampler and what reads its
``sys.*`` metrics; an experiment on the local cluster with a fake ``nvidia-smi``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import TESTS, model_spec

import candle_lab
from benchmarks import gpu_check
from candle_lab import monitor
from candle_lab.clusters import resolve, task_resources
from candle_lab.clusters.slurm import cluster_kwargs, job_script
from candle_lab.engine.state import Metrics
from candle_lab.engine.workers import lane_of
from candle_lab.errors import SpecError
from candle_lab.spec import ComputeSpec
from candle_lab.trial import runner
from candle_lab.trial.gpus import (
    FOREIGN_MEMORY,
    GPU_MEMORY,
    GPU_UTIL,
    PROCESS_MEMORY,
    GpuSample,
    GpuSampler,
    assign,
    memory_caps,
    parse_apps,
    parse_query,
    slot_of,
    summarize,
)
from candle_lab.trial.protocol import MetricsEvent, TrialTask

SMI = """\
0, 93, 10240, GPU-aaaa
1, 7, 512, GPU-bbbb
2, [N/A], [N/A], GPU-cccc

"""


# ------------------------------------------------------------------ the spec
@pytest.mark.parametrize(
    ("compute", "trial_gpus", "per_worker"),
    [
        ({"gpus": 2}, 2.0, 1),
        ({"gpus": 1, "gpus_per_trial": 0.5}, 0.5, 2),
        ({"gpus": 2, "gpus_per_trial": 0.25}, 0.25, 8),
        ({"gpus": 4, "gpus_per_trial": 2}, 2.0, 2),
        ({"gpus": 2, "gpus_per_trial": 2}, 2.0, 1),
    ],
)
def test_gpus_per_trial_in_the_spec(compute: dict[str, Any], trial_gpus: float, per_worker: int) -> None:
    c = ComputeSpec(**compute)
    assert (c.trial_gpus, c.trials_per_worker) == (trial_gpus, per_worker)


@pytest.mark.parametrize(
    ("compute", "text"),
    [
        ({"gpus": 0, "gpus_per_trial": 0.5}, "needs compute.gpus of 1 or more"),
        ({"gpus": 2, "gpus_per_trial": 0.3}, "a fraction 1/k"),
        ({"gpus": 2, "gpus_per_trial": 3}, "up to compute.gpus (2)"),
        ({"gpus": 2, "gpus_per_trial": 1.5}, "got 1.5"),
    ],
)
def test_gpus_per_trial_is_checked(compute: dict[str, Any], text: str) -> None:
    with pytest.raises(Exception, match="gpus_per_trial") as info:
        ComputeSpec(**compute)
    assert text in str(info.value)


# ------------------------------------------------------------------ which GPUs
@pytest.mark.parametrize(
    ("visible", "share", "expected"),
    [
        (None, 0.25, [["0"], ["0"], ["0"], ["0"], ["1"], ["1"], ["1"], ["1"]]),  # 4 trials share each GPU
        (["3", "5"], 0.5, [["3"], ["3"], ["5"], ["5"]]),  # SLURM's GPUs of the job, not the machine's
        (None, 1.0, [["0"], ["1"], ["2"]]),
        (["0", "1", "2", "3"], 2.0, [["0", "1"], ["2", "3"]]),  # one trial on several GPUs
        (["6", "7"], 2.0, [["6", "7"]]),  # a job's only process keeps them all
        (["4"], 0.5, [["4"], ["4"], ["4"]]),  # more slots than GPUs: they wrap around
        ([], 0.5, [[]]),
    ],
)
def test_assign(visible: list[str] | None, share: float, expected: list[list[str]]) -> None:
    assert [assign(visible, slot, share) for slot in range(len(expected))] == expected


def test_assign_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="share"):
        assign(None, 0, 0.0)


@pytest.mark.parametrize(
    ("name", "processes", "slot"),
    [("3", 4, 3), ("3", 1, 3), ("SLURMCluster-12-1", 2, 1), ("SLURMCluster-12", 1, 0), ("odd-name-x", 2, 0),
     (None, 2, 0)],
)
def test_slot_of(name: str | None, processes: int, slot: int) -> None:
    assert slot_of(name, processes) == slot


def _task(**kwargs: Any) -> TrialTask:
    return TrialTask(experiment="e", run_dir="/tmp/x", trial_id=1, run_id="r", attempt=1, params={}, model={},
                     metric="loss", **kwargs)


@pytest.fixture
def fresh_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A worker process that has not run a trial yet (its CUDA_VISIBLE_DEVICES unread)."""
    monkeypatch.setattr(runner, "_given", [])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return monkeypatch


def test_local_workers_take_their_share_of_the_machine(fresh_env: pytest.MonkeyPatch) -> None:
    task = _task(gpus=2, gpu_share=0.5)
    assert [runner.trial_gpus(task, str(i)) for i in range(4)] == [["0"], ["0"], ["1"], ["1"]]
    assert runner.trial_gpus(_task(gpus=2), "1") == ["2", "3"]  # no share: as before, worker i gets i*g..
    assert runner.trial_gpus(_task(gpus=0), "1") is None


def test_slurm_processes_split_their_jobs_gpus(fresh_env: pytest.MonkeyPatch) -> None:
    fresh_env.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # as SLURM set it for the job
    task = _task(gpus=2, gpu_share=0.5)
    assert runner.configure_resources(task, "SLURMCluster-7-3") == "3"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert runner.configure_resources(task, "SLURMCluster-7-3") == "3"  # the next trial: the same, from the job's
    assert runner.trial_gpus(_task(gpus=2), "SLURMCluster-8") is None  # one process: SLURM's choice stands


# ------------------------------------------------------------------ the cluster
def test_slurm_jobs_run_one_process_per_trial(tmp_path: Path) -> None:
    resolved = resolve(ComputeSpec(profile="lab", gpus=1, gpus_per_trial=0.5, memory="1GB"))
    kwargs = cluster_kwargs(resolved, tmp_path)
    assert (kwargs["processes"], kwargs["cores"]) == (2, 2)  # a core per process at least
    assert kwargs["job_extra_directives"][0] == "--gres=gpu:1"  # the job still asks for its GPUs
    assert kwargs["worker_extra_args"][:2] == ["--resources", "GPU=0.5"]
    assert task_resources(resolved) == {"GPU": 0.5}
    script = job_script(resolved, tmp_path)
    assert "--nworkers 2" in script and "--nthreads 1" in script and "GPU=0.5" in script, script


def test_slurm_default_is_one_process_with_every_gpu(tmp_path: Path) -> None:
    resolved = resolve(ComputeSpec(profile="lab", gpus=2, memory="1GB"))
    kwargs = cluster_kwargs(resolved, tmp_path)
    assert (kwargs["processes"], kwargs["cores"], kwargs["worker_extra_args"][:2]) == (1, 1, ["--resources", "GPU=2"])
    assert task_resources(resolved) == {"GPU": 2.0}
    assert task_resources(resolve(ComputeSpec(profile="lab", memory="1GB"))) is None


def test_more_trials_per_job_than_cores_is_refused() -> None:
    with pytest.raises(SpecError, match=r"compute\.gpus_per_trial.*4 trials per worker need a core each"):
        resolve(ComputeSpec(profile="lab", gpus=2, gpus_per_trial=0.5, memory="1GB"))


def test_lanes_of_a_jobs_processes() -> None:
    assert lane_of("tcp://a:1", {"name": "SLURMCluster-4-1"}, "123", processes=2) == "job 123/1"
    assert lane_of("tcp://a:1", {"name": "SLURMCluster-4"}, "123") == "job 123"
    assert lane_of("tcp://a:1", {"name": 3}, None, processes=2) == "3"


# ------------------------------------------------------------------ nvidia-smi
def test_parse_query() -> None:
    assert parse_query(SMI) == [GpuSample("0", 93.0, 10240.0, "GPU-aaaa"), GpuSample("1", 7.0, 512.0, "GPU-bbbb")]
    assert parse_query("0, 50, 100\n") == [GpuSample("0", 50.0, 100.0)]  # without uuids
    assert parse_query("No devices were found\n") == []


def test_summarize_the_trials_own_gpus() -> None:
    samples = parse_query(SMI)
    assert summarize(samples, ["0", "1"]) == {GPU_UTIL: 50.0, GPU_MEMORY: 10752.0}
    assert summarize(samples, ["GPU-bbbb"]) == {GPU_UTIL: 7.0, GPU_MEMORY: 512.0}  # CUDA_VISIBLE_DEVICES by uuid
    assert summarize(samples, ["2"]) == {} and summarize(samples, []) == {}
    apps = parse_apps("41, GPU-aaaa, 3000\n42, GPU-aaaa, 100\n41, GPU-bbbb, 200\n", 41)
    assert apps == [("GPU-aaaa", 3000.0), ("GPU-bbbb", 200.0)]
    values = summarize(samples, ["0"], apps)
    assert (values[PROCESS_MEMORY], values[FOREIGN_MEMORY]) == (3000.0, 200.0)  # 200 MiB where it was not sent


def fake_nvidia_smi(folder: Path, rows: str = SMI, total: int = 16000) -> Path:
    """An ``nvidia-smi`` that answers the queries candle_lab asks (GPU rows, compute apps:
    none, total memory)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rows.csv").write_text(rows)
    script = folder / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        f'  *memory.total*) echo {total} ;;\n'
        '  *compute-apps*) ;;\n'
        f'  *) cat "{folder / "rows.csv"}" ;;\n'
        "esac\n"
    )
    script.chmod(0o755)
    return folder


def test_sampler_reports_every_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{fake_nvidia_smi(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}")
    seen: list[tuple[int, dict[str, float]]] = []
    sampler = GpuSampler(["1"], lambda step, values: seen.append((step, values)), interval=0.05).start()
    deadline = time.monotonic() + 10
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    sampler.stop()
    assert [s for s, _ in seen[:3]] == [1, 2, 3]
    assert seen[0][1] == {GPU_UTIL: 7.0, GPU_MEMORY: 512.0}
    assert not GpuSampler([], print).active  # a CPU trial samples nothing
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert not GpuSampler(["0"], print).active  # no nvidia-smi: nothing


def test_memory_cap_of_a_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{fake_nvidia_smi(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}")
    assert memory_caps(0.25, ["0"]) == [3600]  # 16000 MiB x 0.25 x 0.9
    assert memory_caps(1.0, ["0"]) == [None] and memory_caps(None, ["0", "1"]) == [None, None]
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert memory_caps(0.5, ["0"]) == [None]  # total unknown: no cap


# ------------------------------------------------------------------ sys.* metrics are samples, not epochs
def test_samples_are_stored_but_are_not_epochs() -> None:
    """A GPU sample past step 1 of a second attempt neither says the attempt resumed nor
    feeds early stopping: it is only stored."""
    from candle_lab.engine.state import SearchState
    from candle_lab.optimizers.base import Proposal
    from candle_lab.trial.protocol import StartEvent

    s = SearchState(candle_lab.spec_from_dict(model_spec(
        "sleepy", objective={"metric": "loss"}, budget={"max_trials": 4},
        trial={"early_stop": "median", "grace_epochs": 1, "min_trials": 1})), adaptive=True, began=lambda i, a: True)
    plan = s.plan(s.free_slots())
    trials = [c.trial for c in s.admit([Proposal({"x": 0.1}), Proposal({"x": 0.2})][: plan.new], plan.round,
                                       lambda i: f"RUN{i:03d}")]
    s.submitted(trials)
    for t in trials:
        s.started(StartEvent(t.trial_id, t.attempt, 1.0, 1.0, f"tcp://w{t.trial_id}", "0", "h", "0"))
    a, b = trials
    s.metrics(MetricsEvent(a.trial_id, 1, 2.0, 1, {"loss": 0.1}), 2.0)
    s.metrics(MetricsEvent(a.trial_id, 1, 2.0, 2, {"loss": 0.1}), 2.0)
    b.restarts = 1  # dask ran it again: its second attempt
    actions = s.metrics(MetricsEvent(b.trial_id, 1, 2.0, 2, {GPU_UTIL: 99.0, "sys.gpu_mem_mb": 1e9}), 2.0)
    assert [type(x) for x in actions] == [Metrics]  # stored only
    epoch = s.metrics(MetricsEvent(b.trial_id, 1, 3.0, 3, {"loss": 0.1}), 3.0)
    assert [getattr(x, "kind", None) for x in epoch[1:]] == ["resumed"]  # the epoch report says it


def test_gpu_busy_per_lane() -> None:
    trials = pd.DataFrame({"trial_id": [1, 2, 3], "worker": ["0", "1", "0"], "gpu": ["0", "0", "0"],
                           "state": ["completed"] * 3, "started": [0.0, 0.0, 5.0], "ended": [5.0, 5.0, 9.0]})
    metrics = pd.DataFrame({"trial_id": [1, 1, 2, 3, 3], "attempt": 1, "step": [1, 2, 1, 1, 1],
                            "name": [GPU_UTIL, GPU_UTIL, GPU_UTIL, GPU_MEMORY, "loss"],
                            "value": [80.0, 100.0, 60.0, 500.0, 0.3], "time": 0.0})
    samples = monitor.add_samples(monitor.gpu_samples(metrics.iloc[:2]), monitor.gpu_samples(metrics.iloc[2:]))
    assert samples.to_dict("index") == {1: {"sum": 180.0, "count": 2.0}, 2: {"sum": 60.0, "count": 1.0}}
    busy = monitor.lane_busy(trials, samples)
    assert busy.to_dict() == {"worker 0 · GPU 0": 90.0, "worker 1 · GPU 0": 60.0}
    assert monitor.busy_label("worker 0 · GPU 0", 90.0) == "worker 0 · GPU 0 — 90% busy"
    assert monitor.lane_busy(trials, monitor.gpu_samples(pd.DataFrame())).empty


# ------------------------------------------------------------------ a real local experiment
def test_fractional_gpus_and_samples_on_the_local_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gpus 2, gpus_per_trial 0.5: one worker runs 4 processes, two on each (fake) GPU; a
    fake nvidia-smi first on the PATH says GPU 0 is 93% busy and GPU 1 7%: each trial's
    samples are its own GPU's, stored as sys.* metrics that no epoch view shows."""
    monkeypatch.setenv("PATH", f"{fake_nvidia_smi(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CANDLE_LAB_GPU_SAMPLE", "0.2")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    spec = {
        "name": "local-gpu-share",
        "model": {"ref": "trial_models:gpu_probe", "path": str(TESTS)},
        "space": [{"name": "x", "type": "real", "low": 0, "high": 1},
                  {"name": "sleep", "type": "constant", "value": 1.5}],
        "objective": {"metric": "objective"},
        "search": {"algorithm": "random", "seed": 3},
        "budget": {"max_trials": 8},
        "compute": {"profile": "local", "workers": 1, "gpus": 2, "gpus_per_trial": 0.5},
    }
    exp = candle_lab.run(spec, root=tmp_path / "experiments")
    records = exp.records()
    assert exp.status().completed == 8, [(t.state, t.error) for t in records]
    trials, metrics = exp.trials, exp.metrics
    assert {t.gpu for t in records} <= {"0", "1"} and all(t.metrics and t.metrics["gpu_count"] == 1 for t in records)
    for t in records:  # worker i of 4 has GPU i // 2
        assert t.gpu == str(int(t.worker) // 2), (t.worker, t.gpu)
        assert t.metrics and not any(k.startswith("sys.") for k in t.metrics)  # final metrics: the model's
    at_once = monitor.running_over_time(trials)["running"].max()
    assert 2 <= at_once <= 4
    util = metrics[metrics["name"] == GPU_UTIL]
    assert not util.empty
    gpu_of = {t.trial_id: t.gpu for t in records}
    expected = util["trial_id"].map(gpu_of).map({"0": 93.0, "1": 7.0})
    assert (util["value"].to_numpy() == expected.to_numpy()).all()  # its own GPU's, never the other's
    assert set(metrics.loc[metrics["name"].str.startswith("sys."), "name"]) == {GPU_UTIL, GPU_MEMORY}
    from candle_lab.efficiency import trial_efficiency

    rows = trial_efficiency(trials, metrics, exp.spec.compute)
    assert rows["gpu_busy"].notna().sum() == util["trial_id"].nunique()
    assert set(rows["units"]) == {0.5}

    check = gpu_check.analyse(trials, metrics, 0.5)  # scripts/gpu-check's analysis, on this store
    assert check.foreign == [] and max(check.at_once.values()) <= 2 and set(check.at_once) <= {"0", "1"}
    assert check.busy_all is not None and 7.0 <= check.busy_all <= 93.0
    assert "PASS  at most 2 trials per GPU at once" in check.summary()

    from candle_lab.ui.state import ExperimentMonitor

    m = ExperimentMonitor(path=str(exp.path))
    assert not any(n.startswith("sys.") for n in m.metric_names())
    lanes = set(m.gantt()["lane"])
    assert any(lane.endswith("% busy") for lane in lanes), lanes
    assert any("GPU 0 — 93% busy" in lane for lane in lanes), lanes
    m.close()


# ------------------------------------------------------------------ scripts/gpu-check's analysis
def test_gpu_check_analysis() -> None:
    trials = pd.DataFrame({
        "trial_id": [0, 1, 2, 3, 4], "state": ["completed"] * 4 + ["running"],
        "worker": ["0", "1", "2", "3", "1"], "gpu": ["0", "0", "1", "0", "0"],
        "started": [0.0, 1.0, 0.0, 2.0, 9.0], "ended": [5.0, 6.0, 4.0, 3.0, None],
    })
    metrics = pd.DataFrame({
        "trial_id": [0, 0, 1, 1, 2, 2], "attempt": 1, "step": [1, 2, 1, 1, 1, 1],
        "name": [GPU_UTIL, GPU_UTIL, GPU_UTIL, PROCESS_MEMORY, GPU_MEMORY, FOREIGN_MEMORY],
        "value": [50.0, 100.0, 100.0, 700.0, 900.0, 0.0], "time": [0.0, 10.0, 9.0, 9.0, 9.0, 9.0],
    })
    assert gpu_check.most_at_once(trials, now=10.0) == {"0": 3, "1": 1}  # trials 0, 1 and 3 at t=2
    assert gpu_check.foreign_trials(trials, metrics, 0.5) == [3]  # worker 3 has GPU 1
    assert gpu_check.foreign_trials(trials, metrics.assign(value=1.0), 0.5) == [2, 3]  # memory on another GPU
    assert gpu_check.busy(metrics) == (pytest.approx(250 / 3), 100.0)
    peaks = gpu_check.memory_peaks(metrics)
    assert peaks.loc[1, "process_mb"] == 700.0 and peaks.loc[2, "gpu_mb"] == 900.0
    check = gpu_check.analyse(trials, metrics, 0.5)
    assert [ok for _, ok, _ in check.targets()] == [True, False, False] and not check.passed  # busy: steady 100%
    assert "FAIL  no trial on a GPU it was not given: trials [3]" in check.summary()


def test_gpu_check_without_a_gpu(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                 tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu_check.main([]) == 0
    assert capsys.readouterr().out.strip() == "no GPU here: gpu-check skipped"
