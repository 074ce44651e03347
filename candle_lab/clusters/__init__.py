"""Clusters from site profiles: where the engine's dask client comes from."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from candle_lab.clusters.profiles import Resolved, SiteProfile, available_profiles, load_profile, resolve

__all__ = [
    "Resolved", "SiteProfile", "available_profiles", "load_profile", "open_client", "rescaler", "resolve",
    "task_resources",
]

log = logging.getLogger(__name__)


def task_resources(resolved: Resolved) -> dict[str, float] | None:
    """What each trial asks of its worker (SLURM): GPU trials only land on GPU workers, one
    trial per worker process (each advertises one trial's share of its job's GPUs). None on
    the local cluster: its single-threaded worker processes run one trial each already,
    and take their GPUs by their names."""
    if resolved.gpus and resolved.profile.scheduler == "slurm":
        return {"GPU": resolved.trial_gpus}
    return None


@contextlib.contextmanager
def open_client(resolved: Resolved, exp_dir: Path) -> Iterator[Any]:
    """A dask client on the cluster of a resolved ``compute`` section; closed afterwards,
    which cancels every worker job (also after errors and Ctrl-C)."""
    if resolved.profile.scheduler == "slurm":
        from candle_lab.clusters.slurm import start_slurm

        cluster, client = start_slurm(resolved, exp_dir)
    else:
        from candle_lab.clusters.local import start_local

        cluster, client = start_local(resolved.request)
    try:
        yield client
    finally:
        with _quiet("distributed"):  # closing: workers stopping mid-task say so at length
            try:
                client.close()
            finally:
                cluster.close()


def rescaler(client: Any, processes: int) -> Callable[[int], None]:
    """Sets the number of workers of the cluster behind ``client`` (each of ``processes``
    worker processes): the adaptive maximum of a SLURM cluster, the size of a local one."""

    def rescale(workers: int) -> None:
        cluster = getattr(client, "cluster", None)
        adaptive = getattr(cluster, "_adaptive", None)
        if adaptive is not None:
            adaptive.maximum = workers * processes
        elif cluster is not None:
            cluster.scale(workers * processes)
        log.info("cluster now up to %d workers", workers)

    return rescale


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Only critical records of logger ``name`` while the block runs."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
