"""Where experiments live on disk: ``ROOT/EXP000/`` with ``RUN000/`` per trial."""

from __future__ import annotations

import os
import re
from pathlib import Path

from candle_lab import settings
from candle_lab.errors import ExperimentNotFound

EXP_RE = re.compile(r"^EXP(\d{3,})$")
# In an experiment folder EXPnnn/
DB_NAME = "experiment.db"
SPEC_NAME = "spec.yaml"
REQUESTS = "requests"  # requests to the driver: files named stop, stop-trial-N, change-<time>.yaml
CHANGE_REQUEST = "change-"  # a request's name: the spec with a new budget or concurrency
DRIVER_LOG = "driver.log"  # a detached driver's output
REPORT_NAME = "report.html"
BEST_DIR = "best"  # the best trial's params.json and model.keras
BEST_SOURCE = "source.txt"  # in best/: the run folder's model file it was copied from
STARTS_DIR = "starts"  # starts/<host>-<pid>: the attempts each worker process began
TLS_DIR = "tls"  # certificates of the experiment's SLURM workers (user-only)
WORKER_LOGS = "worker-logs"  # SLURM worker jobs' output
# In a run folder RUNnnn/
PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"  # the outcome, for a driver that died meanwhile
PREDICTIONS_FILE = "predictions.npz"  # y_true, y_pred on held-out samples (candle_lab.report_predictions)
LOG_FILE = "output.log"
MODEL_FILE = "model.keras"
CHECKPOINT_FILE = "checkpoint.keras"
PBT_DIR = "pbt"  # PBT: the checkpoint an interval leaves for the next (weights, optimizer state)
RESUME_DIR = "resume"  # resumable trials: epoch-NNNN/ per saved epoch, latest names the newest
FINAL_PARAMS_FILE = "final_params.json"  # CANDLE modules: the parameters after precedence


def experiments_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The experiments folder: ``root``, else ``$CANDLE_LAB_HOME``, else ``./experiments``."""
    if root is not None:
        return Path(root).expanduser().resolve()
    env = settings.home()
    return env.resolve() if env else (Path.cwd() / "experiments").resolve()


def new_experiment_dir(root: Path) -> Path:
    """Allocate the next free ``EXPnnn`` folder (atomic ``mkdir``, safe between processes)."""
    root.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in root.iterdir() if (m := EXP_RE.match(p.name))]
    n = max(numbers, default=-1) + 1
    while True:
        path = root / f"EXP{n:03d}"
        try:
            path.mkdir()
        except FileExistsError:
            n += 1
            continue
        (path / REQUESTS).mkdir()
        return path


def find_experiment(ref: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> Path:
    """An experiment folder from its id (``EXP003``, ``3``) or its path."""
    text = str(ref)
    candidates = [Path(text).expanduser()]
    if text.isdigit():
        text = f"EXP{int(text):03d}"
    candidates.append(experiments_root(root) / text)
    for path in candidates:
        if (path / DB_NAME).is_file():
            return path.resolve()
    known = ", ".join(list_experiments(root)[-5:]) or "none yet"
    raise ExperimentNotFound(
        f"experiment: expected an experiment id like EXP000 or a folder holding {DB_NAME}, "
        f"got {str(ref)!r} (in {experiments_root(root)}: {known})"
    )


def list_experiments(root: str | os.PathLike[str] | None = None) -> list[str]:
    base = experiments_root(root)
    if not base.is_dir():
        return []
    found = [p for p in base.iterdir() if EXP_RE.match(p.name) and (p / DB_NAME).is_file()]
    return [p.name for p in sorted(found, key=lambda p: int(p.name[3:]))]


def default_run_id(trial_id: int) -> str:
    return f"RUN{trial_id:03d}"


def run_dir_name(run_id: str) -> str:
    """A run id made safe for a folder name (UPF ids come from users)."""
    return re.sub(r"[^\w.-]", "_", run_id).lstrip(".") or "run"
