"""Script models: a command run once per trial in its own process group.

The parameters go in as a JSON file (``$CANDLE_LAB_PARAMS``, the run's ``params.json``)
and as ``--name value`` arguments. The objective comes from ``result_file`` (a number or
a JSON object of metrics) when the spec names one, else from the last
``IMPROVE_RESULT <number>`` line of the output. Output goes to the run's log; a timeout
or a stop request kills the whole process group.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from candle_lab import settings
from candle_lab.errors import CandleLabError
from candle_lab.models.results import NoObjective
from candle_lab.store.layout import LOG_FILE, PARAMS_FILE
from candle_lab.trial.context import TrialTimeout, current_trial

RESULT_LINE = re.compile(r"IMPROVE_RESULT\s+(\S+)")
KILL_GRACE = 5.0


class CommandFailed(Exception):
    """The script exited with an error status."""


def command_line(command: tuple[str, ...] | list[str], params: Mapping[str, Any]) -> list[str]:
    args = list(command)
    for name, value in params.items():
        text = json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)
        args += [f"--{name}", text]
    return args


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(KILL_GRACE)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def run_command(model: Mapping[str, Any], params: Mapping[str, Any], run_dir: Path, timeout: float | None) -> Any:
    command = model.get("command")
    if not command:
        raise CandleLabError("model.command: a command model needs the command line to run")
    args = command_line(command, params)
    env = {
        **os.environ,
        settings.PARAMS_ENV: str(run_dir / PARAMS_FILE),
        settings.RUN_DIR_ENV: str(run_dir),
        "PYTHONUNBUFFERED": "1",
    }
    cwd = model.get("path") or str(run_dir)
    log_path = run_dir / LOG_FILE
    ctx = current_trial()
    with log_path.open("ab") as out:
        out.write(f"$ {' '.join(args)}\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise CandleLabError(f"model.command: cannot start {args[0]!r}: {exc}") from None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                code = proc.wait(0.2)
                break
            except subprocess.TimeoutExpired:
                pass
            if deadline is not None and time.monotonic() > deadline:
                _kill_group(proc)
                raise TrialTimeout(f"the command ran longer than its timeout of {timeout:g} s and was killed")
            if ctx is not None and ctx.should_stop:
                _kill_group(proc)
                return NoObjective(f"stopped ({ctx.stop_reason})")
    output = log_path.read_text(encoding="utf-8", errors="replace")
    if code != 0:
        tail = "\n".join(output.splitlines()[-20:])
        raise CommandFailed(f"the command exited with status {code}; last output:\n{tail}")
    result_file = model.get("result_file")
    if result_file:
        return _read_result_file(run_dir / str(result_file))
    matches = RESULT_LINE.findall(output)
    if not matches:
        return NoObjective("no 'IMPROVE_RESULT <number>' line in the output (and no result_file in the spec)")
    try:
        return float(matches[-1])
    except ValueError:
        return NoObjective(f"the last IMPROVE_RESULT is not a number: {matches[-1]!r}")


def _read_result_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise CandleLabError(f"model.result_file: the command did not write {path.name} in its run folder") from None
    try:
        return json.loads(text)
    except ValueError:
        try:
            return float(text.split()[-1])
        except (ValueError, IndexError):
            return NoObjective(f"{path.name} holds neither JSON nor a number: {text[:80]!r}")
