"""On SLURM workers: hear that the job ends soon, and tell the driver which job a worker is.

A worker job runs with ``#SBATCH --signal=B:USR1@<notice>`` and ``exec``s its worker
(:func:`candle_lab.clusters.slurm.cluster_kwargs`), so SLURM's USR1 reaches the dask
nanny; :class:`ForwardNotice` (a nanny plugin) passes it on to the worker process, where
:class:`WalltimeNotice` (a worker plugin) asks the running trials to stop at their next
epoch boundary with reason ``walltime`` (:func:`candle_lab.trial.context.notice_walltime`).
The driver registers both (``Client.register_plugin``); the job script ignores USR1 until
they are installed. Without a nanny the worker plugin hears the signal itself.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from distributed.diagnostics.plugin import NannyPlugin, WorkerPlugin

from candle_lab.trial.context import notice_walltime

log = logging.getLogger(__name__)

NOTICE_SIGNAL = signal.SIGUSR1


def job_id() -> str | None:
    """This worker's SLURM job (run on workers by the driver)."""
    return os.environ.get("SLURM_JOB_ID") or None


def _install(handler: Any, where: str) -> None:
    try:
        signal.signal(NOTICE_SIGNAL, handler)
    except ValueError:  # not the main thread: a worker in another program's thread
        log.warning("%s: no walltime notice (signal handlers need the main thread)", where)


def _on_notice(signum: int, frame: Any) -> None:
    stopping = notice_walltime()
    log.warning("this worker's SLURM job ends soon: %d running trials stop at their next epoch", stopping)


class WalltimeNotice(WorkerPlugin):
    """In the worker process: USR1 stops the running trials (reason ``walltime``)."""

    name = "candle-lab-walltime"
    idempotent = True

    def setup(self, worker: Any) -> None:
        _install(_on_notice, f"worker {worker.address}")


class ForwardNotice(NannyPlugin):
    """In the nanny (the job's batch process): USR1 is passed on to its worker process."""

    name = "candle-lab-walltime-nanny"
    idempotent = True

    def setup(self, nanny: Any) -> None:
        def forward(signum: int, frame: Any) -> None:
            process = getattr(getattr(nanny, "process", None), "process", None)
            pid = getattr(process, "pid", None)
            if pid:
                os.kill(pid, signum)

        _install(forward, f"nanny {getattr(nanny, 'address', '')}")
