"""Native output (TensorFlow's C++ log, absl, CUDA probes, child processes) belongs to the
trial that wrote it: in its run folder's ``output.log``, not on the terminal or in
``driver.log``, unless ``--verbose``; every run folder has an ``output.log``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import candle_lab
from candle_lab.settings import VERBOSE_ENV, verbose
from candle_lab.trial.output import QUIET_ENV, configure_native_logs, native_output_to

CLI = [sys.executable, "-m", "candle_lab.cli"]
# A line of TensorFlow's/absl's C++ log ("I0000 00:00:... file.cc:31] ...") or absl's notice.
NATIVE_LOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d|absl|oneDNN|cuInit|cudart|cpu_feature_guard", re.M)

MODELS = '''
import os
import subprocess
import sys
import time


def chatty(params):
    """Python prints, native writes to descriptors 1 and 2, a child process's output."""
    x = params["x"]
    print(f"x={x} python line")
    os.write(2, f"x={x} native stderr\\n".encode())
    os.write(1, f"x={x} native stdout\\n".encode())
    subprocess.run([sys.executable, "-c", f"print('x={x} child line')"], check=True)
    print(f"x={x} last line", file=sys.stderr)
    return float(x)


def varied(params):
    """silent: prints nothing; fails: raises before any output; hangs: runs past its timeout."""
    if params["mode"] == "fails":
        raise RuntimeError("fails before printing anything")
    if params["mode"] == "hangs":
        time.sleep(60)
    return 1.0


def keras_model(params):
    """A tiny Keras fit (TensorFlow starts in the worker: its notices) and a print."""
    import keras
    import numpy as np

    print("model says hello")
    x = np.linspace(-1, 1, 32, dtype="float32").reshape(-1, 1)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(x, 2 * x, epochs=1, verbose=0)
    return float(history.history["loss"][-1])
'''


@pytest.fixture
def models(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "quiet_models.py").write_text(textwrap.dedent(MODELS))
    return folder


@pytest.fixture
def restore_env() -> Iterator[None]:
    names = [VERBOSE_ENV, *QUIET_ENV]
    saved = {name: os.environ.get(name) for name in names}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def spec(models: Path, function: str, space: list[dict[str, Any]], **sections: Any) -> dict[str, Any]:
    return {
        "name": f"quiet-{function}",
        "model": {"ref": f"quiet_models:{function}", "path": str(models)},
        "space": space,
        "objective": {"metric": "objective"},
        "search": {"algorithm": "grid"},
        "compute": {"workers": 1},
        "trial": {"retries": 0},
        **sections,
    }


def run_cli(tmp_path: Path, data: dict[str, Any], *flags: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    root = tmp_path / "experiments"
    env = {k: v for k, v in os.environ.items() if k not in (VERBOSE_ENV, *QUIET_ENV)}
    done = subprocess.run([*CLI, *flags, "--root", str(root), "run", str(path)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done, root / "EXP000"


# ---------------------------------------------------------------------------------- the environment
def test_quiet_levels_unless_verbose_and_the_users_values_kept(restore_env: None) -> None:
    for name in (VERBOSE_ENV, *QUIET_ENV):
        os.environ.pop(name, None)
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"  # the user's own
    configure_native_logs(False)
    assert not verbose()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0" and os.environ["GRPC_VERBOSITY"] == "ERROR"

    for name in (VERBOSE_ENV, *QUIET_ENV):
        os.environ.pop(name, None)
    configure_native_logs(True)  # -v: said to the processes started from here, no level set
    assert verbose() and os.environ[VERBOSE_ENV] == "1"
    assert not any(name in os.environ for name in QUIET_ENV)
    configure_native_logs(False)  # a process started with --verbose (a detached driver) stays verbose
    assert verbose() and not any(name in os.environ for name in QUIET_ENV)


def test_native_output_goes_to_the_file_then_back(tmp_path: Path, capfd: Any) -> None:
    log = tmp_path / "run" / "output.log"
    print("before", flush=True)
    with native_output_to(log):
        os.write(2, b"native inside\n")
        assert sys.__stdout__ is not None
        sys.__stdout__.write("python inside\n")  # buffered: flushed before the descriptors return
        with native_output_to(tmp_path / "nested.log"):  # one redirection at a time: no-op
            os.write(1, b"nested inside\n")
    os.write(2, b"native after\n")
    assert log.read_text().splitlines() == ["native inside", "python inside", "nested inside"]
    assert not (tmp_path / "nested.log").exists()
    out, err = capfd.readouterr()
    assert "before" in out and "native after" in err and "inside" not in out + err


# ---------------------------------------------------------------------------------- run folders
def test_every_run_folder_has_an_output_log(client: Any, tmp_path: Path, models: Path) -> None:
    data = spec(models, "varied", [{"name": "mode", "type": "categorical", "choices": ["silent", "fails", "hangs"]}],
                trial={"retries": 0, "timeout": 1}, compute={"workers": 2})
    exp = candle_lab.run(data, client=client, root=tmp_path / "experiments")
    states = {t.params["mode"]: t.state for t in exp.records()}
    assert states == {"silent": "completed", "fails": "failed", "hangs": "failed"}, states
    folders = sorted(p for p in exp.path.iterdir() if p.name.startswith("RUN"))
    assert len(folders) == 3
    assert all((p / "output.log").is_file() for p in folders), [sorted(q.name for q in p.iterdir()) for p in folders]


def test_native_output_of_a_trial_is_in_its_log_in_order(client: Any, tmp_path: Path, models: Path) -> None:
    data = spec(models, "chatty", [{"name": "x", "type": "categorical", "choices": [1, 2]}], compute={"workers": 2})
    exp = candle_lab.run(data, client=client, root=tmp_path / "experiments")
    for t in exp.records():
        x = t.params["x"]
        lines = (exp.path / t.run_id / "output.log").read_text().splitlines()
        assert lines == [f"x={x} python line", f"x={x} native stderr", f"x={x} native stdout",
                         f"x={x} child line", f"x={x} last line"], lines


# ---------------------------------------------------------------------------------- the command line
def test_cli_keeps_native_output_off_the_terminal_unless_verbose(tmp_path: Path, models: Path) -> None:
    data = spec(models, "chatty", [{"name": "x", "type": "categorical", "choices": [1]}])
    done, exp = run_cli(tmp_path / "quiet", data)
    terminal = done.stdout + done.stderr
    assert not any(f"x=1 {what}" in terminal for what in ("native st", "child line", "last line")), terminal
    log = (exp / "RUN000" / "output.log").read_text()
    assert "x=1 native stderr" in log and "x=1 child line" in log and "x=1 python line" in log

    done, exp = run_cli(tmp_path / "verbose", data, "-v")
    terminal = done.stdout + done.stderr
    assert "x=1 native stderr" in terminal and "x=1 child line" in terminal, terminal  # -v: where it was
    log = (exp / "RUN000" / "output.log").read_text()
    assert "x=1 python line" in log and "x=1 native st" not in log  # the model's prints stay the run's


@pytest.mark.slow
def test_cli_run_of_a_keras_model_prints_no_tensorflow_notices(tmp_path: Path, models: Path) -> None:
    data = spec(models, "keras_model", [{"name": "x", "type": "categorical", "choices": [1]}])
    done, exp = run_cli(tmp_path, data)
    terminal = done.stdout + done.stderr
    assert not NATIVE_LOG.search(terminal), terminal
    assert "completed" in done.stdout
    assert "model says hello" in (exp / "RUN000" / "output.log").read_text()
