"""candle_lab's environment variables, all read here (and only here).

=========================  =========================================  ====================================
Variable                   Meaning                                    Read with (default when unset)
=========================  =========================================  ====================================
``CANDLE_LAB_HOME``        the experiments folder                     :func:`home` (``./experiments``; the
                                                                      Jupyter server extension:
                                                                      ``<server root>/experiments``)
``CANDLE_LAB_PASSWORD``    the dashboard's login password             :func:`password` (generated when the
                                                                      dashboard is not on loopback)
``CANDLE_LAB_GALLERY``     more gallery folders, ``os.pathsep``-      :func:`gallery_dirs` (none: the
                           separated, searched first                  installed and source galleries only)
``CANDLE_LAB_DATA``        the cache folder of downloaded data files  :func:`data_dir`
                                                                      (``~/.cache/candle_lab/data``)
``CANDLE_LAB_DRIVER_JOB``  set (to 1) in portal sessions (Open        :func:`driver_job` (unset: detached
                           OnDemand): detached drivers are SLURM      drivers are processes beside their
                           jobs of their own                          caller)
``CANDLE_LAB_VERBOSE``     ``candle-lab -v`` was asked (set for the   :func:`verbose` (unset: quiet; native
                           workers and drivers it starts)             output goes to the trial's log)
``CANDLE_LAB_GPU_SAMPLE``  seconds between two samples of a trial's   :func:`gpu_sample_seconds` (5)
                           GPUs (``nvidia-smi``; read by the driver)
=========================  =========================================  ====================================

Set by candle_lab for the processes it starts (never read by candle_lab itself):

=========================  ==========================================================================
``CANDLE_LAB_PARAMS``      a command model's parameters: the run's ``params.json``
``CANDLE_LAB_RUN_DIR``     a command model's run folder
=========================  ==========================================================================

The Open OnDemand job scripts also read ``CANDLE_LAB_PYTHON`` (the interpreter a site
chose); no Python code reads it. An empty value counts as unset everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "CANDLE_LAB_HOME"
PASSWORD_ENV = "CANDLE_LAB_PASSWORD"
GALLERY_ENV = "CANDLE_LAB_GALLERY"
DATA_ENV = "CANDLE_LAB_DATA"
DRIVER_JOB_ENV = "CANDLE_LAB_DRIVER_JOB"
PARAMS_ENV = "CANDLE_LAB_PARAMS"
RUN_DIR_ENV = "CANDLE_LAB_RUN_DIR"
VERBOSE_ENV = "CANDLE_LAB_VERBOSE"
GPU_SAMPLE_ENV = "CANDLE_LAB_GPU_SAMPLE"
GPU_SAMPLE_SECONDS = 5.0


def _value(name: str) -> str | None:
    """The variable's value; ``None`` when unset or empty."""
    return os.environ.get(name) or None


def _path(name: str) -> Path | None:
    value = _value(name)
    return Path(value).expanduser() if value else None


def home() -> Path | None:
    """``$CANDLE_LAB_HOME`` (``~`` expanded, not resolved), or ``None``."""
    return _path(HOME_ENV)


def share_home(folder: Path) -> None:
    """Make ``folder`` the experiments folder of processes started from this one, unless
    ``$CANDLE_LAB_HOME`` is already set (the Jupyter server extension and the dashboard
    it proxies read the same folder)."""
    os.environ.setdefault(HOME_ENV, str(folder))


def password() -> str | None:
    """``$CANDLE_LAB_PASSWORD``, or ``None``."""
    return _value(PASSWORD_ENV)


def gallery_dirs() -> list[Path]:
    """The folders in ``$CANDLE_LAB_GALLERY`` (``os.pathsep``-separated, ``~`` expanded)."""
    return [Path(p).expanduser() for p in (_value(GALLERY_ENV) or "").split(os.pathsep) if p]


def data_dir() -> Path | None:
    """``$CANDLE_LAB_DATA`` (``~`` expanded), or ``None``."""
    return _path(DATA_ENV)


def driver_job() -> bool:
    """Whether ``$CANDLE_LAB_DRIVER_JOB`` is set (to anything but the empty string)."""
    return _value(DRIVER_JOB_ENV) is not None


def verbose() -> bool:
    """Whether ``--verbose`` was asked, here or by the process that started this one
    (``$CANDLE_LAB_VERBOSE`` set to anything but "", "0", "false", "no")."""
    return (_value(VERBOSE_ENV) or "").strip().lower() not in ("", "0", "false", "no")


def share_verbose() -> None:
    """Tell the processes started from this one (workers, a detached driver) that
    ``--verbose`` was asked."""
    os.environ[VERBOSE_ENV] = "1"


def gpu_sample_seconds() -> float:
    """``$CANDLE_LAB_GPU_SAMPLE``: seconds between two samples of a trial's GPUs (at least
    0.1; 5 when unset or not a number)."""
    try:
        return max(0.1, float(_value(GPU_SAMPLE_ENV) or GPU_SAMPLE_SECONDS))
    except ValueError:
        return GPU_SAMPLE_SECONDS
