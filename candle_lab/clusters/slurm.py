"""GPU/CPU workers as SLURM jobs through dask-jobqueue, built from a resolved profile.

One dask worker per job, one trial per worker. GPU workers ask ``--gres`` for their GPUs
and advertise a ``GPU`` resource that GPU trials require; with ``gpus_per_trial`` a job
runs one worker process per trial slot (``trials_per_worker``: several trials sharing a
GPU, or a few GPUs each), each advertising one trial's share. Workers follow demand
(adaptive, up to the spec's ``workers``), retire before their walltime (lifetime with a
stagger) and are cancelled when the experiment ends. On shared clusters all traffic is
TLS with certificates generated for the experiment (files readable by the user only).
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask

from candle_lab import settings
from candle_lab.clusters import dask_settings
from candle_lab.clusters.profiles import (
    Resolved,
    load_profile,
    memory_bytes,
    walltime_notice,
    worker_lifetime,
    worker_python,
)
from candle_lab.errors import CandleLabError, MissingDependency
from candle_lab.store.layout import DRIVER_LOG, TLS_DIR, WORKER_LOGS

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
        # The job asks for all its GPUs; each of its processes (one trial at a time each:
        # several when trials share GPUs or take a few each) advertises a trial's share.
        directives.append(f"--gres={resolved.gres}")
        extra_args += ["--resources", f"GPU={_number(resolved.trial_gpus)}"]
    lifetime = worker_lifetime(resolved)
    if lifetime is not None:
        extra_args += ["--lifetime", f"{int(lifetime[0])}s", "--lifetime-stagger", f"{int(lifetime[1])}s"]
    python = worker_command_python(resolved)
    prologue = [*resolved.profile.env_setup, *dask_settings.worker_exports()]
    notice = walltime_notice(resolved)
    if notice is not None:
        # SLURM signals the batch shell (B:) ahead of the walltime; the worker replaces the
        # shell (exec) to hear it, and ignores it until the driver's plugin takes it
        # (candle_lab.trial.walltime): its trials stop at an epoch boundary and run again.
        directives.append(f"--signal=B:USR1@{int(notice)}")
        prologue.insert(0, "trap '' USR1")
        python = f"exec {python}"
    logs = exp_dir / WORKER_LOGS
    logs.mkdir(parents=True, exist_ok=True)
    return {
        "cores": resolved.job_cores,  # split between the processes by dask-jobqueue, as is the memory
        "processes": resolved.processes,
        "memory": resolved.memory,
        "queue": resolved.partition,
        "walltime": resolved.walltime,
        "python": python,
        "job_name": f"candle-lab-{exp_dir.name}",
        "job_extra_directives": directives,
        "worker_extra_args": extra_args,
        "job_script_prologue": prologue,
        "interface": resolved.profile.interface,
        "local_directory": resolved.profile.local_directory,
        "log_directory": str(logs),
        "scheduler_options": {"dashboard_address": ":0"},
    }


def _number(x: float) -> str:
    """1.0 -> "1", 0.25 -> "0.25" (as a worker's ``--resources`` reads)."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def tls_directory(exp_dir: Path) -> Path:
    path = exp_dir / TLS_DIR
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
    # A cancelled or ended job fails its running task at once (dask would rerun it on
    # another job unseen): the engine, not dask, decides about retries.
    with dask.config.set(dask_settings.SCHEDULER):
        cluster = SLURMCluster(**kwargs)
    log.info(
        "SLURM workers: up to %d on %s; job script:\n%s", resolved.workers, resolved.partition, cluster.job_script()
    )
    if adaptive and resolved.processes > 1:
        # Several workers per job: dask's target (one worker for a queue of trials no
        # worker can run yet) cancelled each job before it started; whole jobs instead.
        cluster.adapt(Adaptive=_whole_jobs_adaptive(resolved.processes), worker_key=job_of_worker, minimum_jobs=0,
                      maximum_jobs=resolved.workers)
    elif adaptive:
        cluster.adapt(minimum=0, maximum=resolved.workers)
    client = Client(cluster, security=security)
    return cluster, client


def job_of_worker(worker: Any) -> str:
    """The job of a worker process that dask-jobqueue named ``<job name>-<i>`` (adaptive
    scaling closes whole jobs)."""
    return str(worker.name).rpartition("-")[0]


def _whole_jobs_adaptive(per_job: int) -> type[Any]:
    """dask's ``Adaptive`` with targets rounded up to whole jobs (of ``per_job`` workers)."""
    from distributed.deploy.adaptive import Adaptive

    class WholeJobs(Adaptive):
        async def target(self) -> int:
            wanted = int(await super().target())
            return -(-wanted // per_job) * per_job

    return WholeJobs


def job_script(resolved: Resolved, exp_dir: Path) -> str:
    """The batch script a worker job would run, without submitting anything."""
    try:
        from dask_jobqueue.slurm import SLURMJob
    except ImportError:
        raise MissingDependency("dask-jobqueue", "slurm", "SLURM workers") from None
    kwargs = {k: v for k, v in cluster_kwargs(resolved, exp_dir).items() if k != "scheduler_options"}
    return str(SLURMJob(scheduler="tls://SCHEDULER:PORT", name="worker", **kwargs).job_script())


# ------------------------------------------------------------------ detached drivers
DRIVER_MEMORY_GB = 2
SESSION_SECRETS = ("password", settings.PASSWORD_ENV, "JUPYTER_TOKEN")  # the session's, not the driver's


def run_command(args: Sequence[str], stdin: str | None = None) -> str:
    """Run an external command (logged); its output, or :class:`CandleLabError` with it."""
    log.info("running %s", shlex.join(args))
    try:
        result = subprocess.run(list(args), input=stdin, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise CandleLabError(f"{args[0]} not found: is this a SLURM node? (running {shlex.join(args)})") from None
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise CandleLabError(f"{shlex.join(args)} failed with exit code {result.returncode}: {output}")
    return result.stdout


def submit_driver_job(command: Sequence[str], exp_dir: Path, profile_name: str) -> str | None:
    """Run a detached driver as a SLURM job of its own (one core on the profile's CPU
    partition), so that it outlives the job it was started from (a portal session): its
    job id, or None for a profile without SLURM (those drivers stay beside their caller)."""
    profile = load_profile(profile_name)
    if profile.scheduler != "slurm" or not profile.partitions:
        return None
    partition = profile.cpu_partition or next(iter(profile.partitions))
    part = profile.partitions[partition]
    memory_gb = max(1, min(DRIVER_MEMORY_GB, memory_bytes(part.memory) >> 30))
    script = "\n".join(
        [
            "#!/bin/bash",
            f"# candle_lab driver of experiment {exp_dir.name}",
            "unset " + " ".join(SESSION_SECRETS),
            *profile.env_setup,
            "exec " + shlex.join(command),
            "",
        ]
    )
    args = [
        "sbatch",
        "--parsable",
        f"--job-name=candle-lab-driver-{exp_dir.name}",
        f"--partition={partition}",
        "--nodes=1",
        "--ntasks=1",
        "--cpus-per-task=1",
        f"--mem={memory_gb}G",
        f"--time={part.max_walltime}",
        f"--output={exp_dir / DRIVER_LOG}",
        "--open-mode=append",
        f"--chdir={exp_dir.parent}",
    ]
    job = run_command(args, stdin=script).strip().split(";")[0]
    log.info("driver of %s: SLURM job %s on partition %s", exp_dir.name, job, partition)
    return job
