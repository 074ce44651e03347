"""GPU/CPU workers as SLURM jobs through dask-jobqueue, built from a resolved profile.

One dask worker per job, one trial per worker. GPU workers ask ``--gres`` for their GPUs
and advertise a ``GPU`` resource that GPU trials require. Workers follow demand
(adaptive, up to the spec's ``workers``), retire before their walltime (lifetime with a
stagger) and are cancelled when the experiment ends. On shared clusters all traffic is
TLS with certificates generated for the experiment (files readable by the user only).
"""

from __future__ import annotations

import logging
import os
import shlex
from pathlib import Path
from typing import Any

from candle_lab.clusters.profiles import Resolved, worker_lifetime, worker_python
from candle_lab.errors import MissingDependency

log = logging.getLogger(__name__)


def worker_command_python(resolved: Resolved) -> str:
    """The worker's interpreter, or the container command that runs it."""
    profile = resolved.profile
    if profile.container is not None:
        c = profile.container
        return " ".join([c.runtime, "exec", *map(shlex.quote, c.options), shlex.quote(c.image), c.python])
    return worker_python(profile)


def cluster_kwargs(resolved: Resolved, exp_dir: Path) -> dict[str, Any]:
    """Keyword arguments of ``SLURMCluster`` (also used to show the job script)."""
    extra_args: list[str] = []
    directives: list[str] = []
    if resolved.gres:
        directives.append(f"--gres={resolved.gres}")
        extra_args += ["--resources", f"GPU={resolved.gpus}"]
    lifetime = worker_lifetime(resolved)
    if lifetime is not None:
        extra_args += ["--lifetime", f"{int(lifetime[0])}s", "--lifetime-stagger", f"{int(lifetime[1])}s"]
    logs = exp_dir / "worker-logs"
    logs.mkdir(parents=True, exist_ok=True)
    return {
        "cores": resolved.cores,
        "processes": 1,
        "memory": resolved.memory,
        "queue": resolved.partition,
        "walltime": resolved.walltime,
        "python": worker_command_python(resolved),
        "job_name": f"candle-lab-{exp_dir.name}",
        "job_extra_directives": directives,
        "worker_extra_args": extra_args,
        "job_script_prologue": list(resolved.profile.env_setup),
        "interface": resolved.profile.interface,
        "local_directory": resolved.profile.local_directory,
        "log_directory": str(logs),
        "scheduler_options": {"dashboard_address": ":0"},
    }


def tls_directory(exp_dir: Path) -> Path:
    path = exp_dir / "tls"
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def start_slurm(resolved: Resolved, exp_dir: Path, adaptive: bool = True) -> tuple[Any, Any]:
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise MissingDependency("dask-jobqueue", "slurm", "SLURM workers") from None
    from distributed import Client

    kwargs = cluster_kwargs(resolved, exp_dir)
    security = None
    if resolved.profile.tls:
        try:
            from distributed.security import Security

            security = Security.temporary()  # a fresh CA and certificate for this experiment
        except ImportError:
            raise MissingDependency("cryptography", "slurm", "TLS between scheduler and workers") from None
        kwargs.update(security=security, protocol="tls://", shared_temp_directory=str(tls_directory(exp_dir)))
    cluster = SLURMCluster(**kwargs)
    log.info(
        "SLURM workers: up to %d on %s; job script:\n%s", resolved.workers, resolved.partition, cluster.job_script()
    )
    if adaptive:
        cluster.adapt(minimum=0, maximum=resolved.workers)
    client = Client(cluster, security=security)
    return cluster, client


def job_script(resolved: Resolved, exp_dir: Path) -> str:
    """The batch script a worker job would run, without submitting anything."""
    try:
        from dask_jobqueue.slurm import SLURMJob
    except ImportError:
        raise MissingDependency("dask-jobqueue", "slurm", "SLURM workers") from None
    kwargs = {k: v for k, v in cluster_kwargs(resolved, exp_dir).items() if k != "scheduler_options"}
    return str(SLURMJob(scheduler="tls://SCHEDULER:PORT", name="worker", **kwargs).job_script())
