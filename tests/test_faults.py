"""Faults a run must survive or report truthfully: drivers that die, fail or never start."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

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
