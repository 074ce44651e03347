"""Faults a run must survive or report truthfully: drivers that die, fail or never start."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from conftest import model_spec

from candle_lab import api
from candle_lab.store import DB_NAME, Store


def test_a_detached_driver_that_rejects_the_spec_ends_failed_with_the_message(root: Path, tmp_path: Path) -> None:
    profile = tmp_path / "site.yaml"
    profile.write_text("name: site\nscheduler: local\n")
    path = api.create_experiment(model_spec("sleepy", compute={"profile": str(profile)}), root)
    # The driver checks the compute request again when it starts: a site profile changed
    # in between must end the experiment with the driver's message, not leave it "created".
    profile.write_text("name: site\nscheduler: local\nmax_workers: 1\n")
    exp = api._start(path, fn=None, wait=False, client=None, observer=None)
    status = exp.wait(timeout=60)
    assert status.state == "failed"
    assert status.ended_because == (
        "invalid input: compute.workers: profile 'site' allows at most 1 workers, asked for 2"
    )
    assert "Traceback" not in str(exp.meta()["error"])
    assert api.Experiment(path).status().state == "failed"  # as the CLI's status and the dashboard read it


def test_a_driver_that_dies_before_it_registers_ends_failed(root: Path) -> None:
    path = api.create_experiment(model_spec("sleepy"), root)
    dead = subprocess.Popen([sys.executable, "-c", "import sys; print('ImportError: no module x'); sys.exit(1)"],
                            stdout=(path / api.DRIVER_LOG).open("wb"))
    dead.wait()
    with Store(path / DB_NAME) as store:
        store.set_meta(launched_pid=dead.pid, driver_host=socket.gethostname())
        store.commit()
    exp = api.Experiment(path)
    start = time.monotonic()
    status = exp.wait(timeout=30)
    assert time.monotonic() - start < 10  # wait() does not hang on a driver that is gone
    assert status.state == "failed"
    assert status.ended_because == "the driver exited before it started: ImportError: no module x"


def test_trial_output_is_captured_per_thread_not_per_process(tmp_path: Path, capsys: Any) -> None:
    """With worker threads in the host process (a notebook's ``Client(processes=False)``)
    each trial's prints land in its own log and the host's own prints stay the host's."""
    import threading

    from distributed import Client, LocalCluster

    import candle_lab

    printing = threading.Event()

    def noisy(params: dict[str, Any]) -> float:
        for i in range(20):
            print(f"trial x={params['x']} line {i}")
            time.sleep(0.01)
        return float(params["x"])

    def host() -> None:
        while not printing.is_set():
            print("host line")
            time.sleep(0.005)

    spec = {"name": "threads", "model": {"ref": "m:f"}, "space": [{"name": "x", "type": "categorical",
            "choices": [1, 2, 3, 4]}], "search": {"algorithm": "grid"}, "compute": {"workers": 2}}
    chatter = threading.Thread(target=host)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        chatter.start()
        try:
            exp = candle_lab.run(spec, fn=noisy, client=client, root=tmp_path)
        finally:
            printing.set()
            chatter.join()
    print("host after the run")
    logs = {t.params["x"]: (exp.path / t.run_id / "output.log").read_text() for t in exp.records()}
    for x, text in logs.items():
        assert text.splitlines() == [f"trial x={x} line {i}" for i in range(20)], text
    out = capsys.readouterr().out
    assert "host after the run" in out and "host line" in out and "trial x=" not in out


def test_a_trial_keeps_one_worker_name_from_start_to_end(client: Any, root: Path) -> None:
    spec = model_spec("sleepy", space=[{"name": "x", "type": "real", "low": 0, "high": 1},
                                       {"name": "sleep", "type": "constant", "value": 0.6}],
                      budget={"max_trials": 6})
    exp = api.run(spec, client=client, root=root, wait=False)
    seen: dict[int, set[str | None]] = {}
    while exp._running():
        for t in exp.records():
            if t.state == "running":
                seen.setdefault(t.trial_id, set()).add(t.worker)
        time.sleep(0.05)
    final = {t.trial_id: t.worker for t in exp.records()}
    assert seen and all(names == {final[i]} for i, names in seen.items()), (seen, final)
    assert not any(str(name).startswith("tcp://") for name in final.values())


def test_resume_counts_attempts_exactly(client: Any, root: Path) -> None:
    """At a driver crash: a queued trial never started keeps its attempt, a running one has
    used that attempt, and one running its last attempt is not run again."""
    spec = model_spec("sleepy", budget={"max_trials": 3}, trial={"retries": 1})
    path = api.create_experiment(spec, root)
    with Store(path / DB_NAME) as store:
        for trial_id, x in enumerate((0.1, 0.2, 0.3)):
            store.add_trial(trial_id, f"RUN{trial_id:03d}", {"x": x})
        store.mark_running(1, 1, worker="0", host="h", gpu=None, started=time.time())
        store.mark_running(2, 2, worker="1", host="h", gpu=None, started=time.time())
        store.set_meta(state="running")
        store.commit()
    api.drive(path, client=client)
    trials = {t.trial_id: t for t in api.Experiment(path).records()}
    assert (trials[0].state, trials[0].attempt) == ("completed", 1)
    assert (trials[1].state, trials[1].attempt) == ("completed", 2)
    assert (trials[2].state, trials[2].attempt, trials[2].reason) == ("failed", 2, "lost-worker")
    assert "last attempt (2 of 2)" in str(trials[2].error)
    assert not (path / "RUN002" / "result.json").exists()  # it did not run again


def test_a_memory_overrun_is_blamed_on_the_trial_that_ran(root: Path) -> None:
    """Its worker is restarted by dask: that trial is ``oom``, no other trial is."""
    spec = model_spec("hog", space=[{"name": "x", "type": "categorical", "choices": [0, 1, 2, 3]}],
                      search={"algorithm": "grid"}, compute={"workers": 1, "memory": "400MB"},
                      trial={"retries": 1})
    exp = api.run(spec, root=root)
    trials = {t.params["x"]: t for t in exp.records()}
    assert (trials[0].state, trials[0].reason, trials[0].attempt) == ("failed", "oom", 2), trials[0]
    assert "400MB" in str(trials[0].error)
    # Trials that waited behind it on the restarted worker never started: no attempt used.
    assert all((trials[x].state, trials[x].attempt) == ("completed", 1) for x in (1, 2, 3)), trials
    with exp._store() as store:
        requeued = {trial_id for _, kind, trial_id, _ in store.events() if kind == "requeued"}
    assert requeued and requeued <= {1, 2, 3}


def test_a_run_ending_on_timeouts_shuts_down_quietly(tmp_path: Path) -> None:
    spec = model_spec("hang", space=[{"name": "x", "type": "categorical", "choices": [0.9, 0.1, 0.95]}],
                      search={"algorithm": "grid"}, budget={}, trial={"timeout": 2, "retries": 0})
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    run = subprocess.run([sys.executable, "-m", "candle_lab.cli", "--root", str(tmp_path / "exps"), "run", str(path)],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    assert "1 completed, 2 failed of 3 trials" in run.stdout
    assert "Traceback" not in run.stderr and "Error" not in run.stderr, run.stderr
    assert len(run.stderr.splitlines()) <= 6, run.stderr


def _driver_starts(db: Path) -> int:
    try:
        with Store(db, readonly=True) as store:
            return sum(kind == "driver-start" for _, kind, _, _ in store.events())
    except Exception:  # not created yet
        return 0


def test_ten_driver_kills_at_random_moments_lose_nothing(tmp_path: Path) -> None:
    """kill -9 of the driver and its workers, ten times at seeded random moments of the
    search (0-3 s after the driver starts searching), each followed by a resume: every
    completed result is kept as it was, never re-run, and a kill uses at most one attempt
    of each trial it interrupts."""
    import os
    import random
    import signal

    rng = random.Random(15)
    spec = model_spec("sleepy", space=[{"name": "x", "type": "real", "low": 0, "high": 1},
                                       {"name": "sleep", "type": "constant", "value": 0.3}],
                      budget={"max_trials": 40}, trial={"retries": 10})
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    root, cli = tmp_path / "exps", [sys.executable, "-m", "candle_lab.cli", "--root", str(tmp_path / "exps")]
    db = root / "EXP000" / DB_NAME
    seen: dict[int, tuple[Any, ...]] = {}
    command = [*cli, "run", str(path), "-q"]
    for run in range(10):
        driver = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while _driver_starts(db) <= run:  # its cluster is up and it is searching (startup varies by seconds)
            assert driver.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 3.0))
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        command = [*cli, "resume", "EXP000", "-q"]
        with Store(db, readonly=True) as store:
            for t in store.trials(["completed"]):
                seen.setdefault(t.trial_id, (t.objective, t.started, t.ended, t.attempt))
    final = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    with Store(db, readonly=True) as store:
        trials = {t.trial_id: t for t in store.trials()}
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len(seen) > 0 and sorted(trials) == list(range(40))
    assert all(t.state == "completed" for t in trials.values())
    for trial_id, values in seen.items():
        t = trials[trial_id]
        assert (t.objective, t.started, t.ended, t.attempt) == values  # kept, never re-run
    assert sum(t.attempt - 1 for t in trials.values()) <= 10 * 2  # at most the two running per kill


def test_five_worker_kills_charge_only_the_trials_that_ran(root: Path) -> None:
    """kill -9 of the worker process running a trial, five times: that trial runs again
    with its next attempt; the trials queued behind it on that worker keep theirs."""
    import os
    import signal

    spec = model_spec("pid_sleepy", space=[{"name": "x", "type": "categorical", "choices": list(range(12))}],
                      search={"algorithm": "grid"}, budget={"max_trials": 12}, trial={"retries": 3})
    exp = api.run(spec, root=root, wait=False)
    kills: Counter[int] = Counter()
    deadline = time.monotonic() + 120
    while sum(kills.values()) < 5:
        assert time.monotonic() < deadline and exp._running(), kills
        for t in exp.records():
            pid_file = exp.path / t.run_id / f"pid-{t.attempt}"
            if t.state == "running" and pid_file.is_file() and kills[t.trial_id] < t.attempt:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
                kills[t.trial_id] += 1
                break
        time.sleep(0.05)
    status = exp.wait(timeout=180)
    trials = exp.records()
    assert status.state == "completed" and status.completed == 12, [(t.state, t.error) for t in trials]
    assert {t.trial_id: t.attempt - 1 for t in trials if t.attempt > 1} == dict(kills)  # attempts exact


def test_a_full_disk_in_a_run_folder_fails_that_trial_only(client: Any, root: Path) -> None:
    """The trial that filled its run folder (a 256 kB tmpfs) fails ``disk-full``, not retried;
    the driver and the other trials carry on."""
    spec = model_spec("fills_disk", space=[{"name": "x", "type": "categorical", "choices": [0, 1, 2, 3]}],
                      search={"algorithm": "grid"}, trial={"retries": 2})
    path = api.create_experiment(spec, root)
    full = path / "RUN001"
    full.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(full)],
                           capture_output=True, text=True)
    assert mount.returncode == 0, f"this test mounts a tmpfs and needs root, as CI runs: {mount.stderr}"
    try:
        api.drive(path, client=client)
        trials = {t.params["x"]: t for t in api.Experiment(path).records()}
    finally:
        subprocess.run(["umount", "-l", str(full)], check=True)
    assert (trials[1].state, trials[1].reason, trials[1].attempt) == ("failed", "disk-full", 1), trials[1]
    assert "No space left on device" in str(trials[1].error)
    assert all((trials[x].state, trials[x].objective) == ("completed", x) for x in (0, 2, 3))
    assert api.Experiment(path).status().state == "completed"


def test_models_that_close_stdout_or_fork_harm_no_other_trial(client: Any, root: Path) -> None:
    spec = model_spec("unruly", space=[{"name": "x", "type": "categorical", "choices": [0, 1, 2, 3]}],
                      search={"algorithm": "grid"}, trial={"retries": 0})
    exp = api.run(spec, client=client, root=root)
    trials = {t.params["x"]: t for t in exp.records()}
    assert all((t.state, t.attempt) == ("completed", 1) for t in trials.values()), trials
    logs = {x: (exp.path / t.run_id / "output.log").read_text().splitlines() for x, t in trials.items()}
    assert logs[0] == ["x=0 first line", "x=0 printed after closing stdout", "x=0 last line"]
    assert logs[1] == ["x=1 first line", "x=1 child line", "x=1 last line"]  # each line once
    assert logs[2] == ["x=2 first line", "x=2 last line"] and logs[3] == ["x=3 first line", "x=3 last line"]
    import sys

    assert not any(client.run(lambda: sys.stdout.closed or sys.stderr.closed).values())
