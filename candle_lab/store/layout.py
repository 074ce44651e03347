"""Where experiments live on disk: ``ROOT/EXP000/`` with ``RUN000/`` per trial."""

from __future__ import annotations

import os
import re
from pathlib import Path

from candle_lab.errors import ExperimentNotFound

ROOT_ENV = "CANDLE_LAB_HOME"
EXP_RE = re.compile(r"^EXP(\d{3,})$")
DB_NAME = "experiment.db"
SPEC_NAME = "spec.yaml"
REQUESTS = "requests"


def experiments_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The experiments folder: ``root``, else ``$CANDLE_LAB_HOME``, else ``./experiments``."""
    if root is not None:
        return Path(root).expanduser().resolve()
    env = os.environ.get(ROOT_ENV)
    return Path(env).expanduser().resolve() if env else (Path.cwd() / "experiments").resolve()


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
