"""The embedded default cluster: a dask LocalCluster, one single-threaded process per worker.

With GPUs, each worker is ``trials_per_worker`` processes (one trial each: several share a
GPU with ``gpus_per_trial`` 0.5 or 0.25); process ``i`` takes its GPUs by its name
(:func:`candle_lab.trial.gpus.assign`). No dask resources: one thread per process already
runs one trial at a time.
"""

from __future__ import annotations

import logging
from typing import Any

import dask

from candle_lab.clusters import dask_settings
from candle_lab.clusters.profiles import memory_bytes
from candle_lab.spec import ComputeSpec

log = logging.getLogger(__name__)


def start_local(compute: ComputeSpec) -> tuple[Any, Any]:
    """A LocalCluster and its client for ``compute.workers`` workers (times
    ``trials_per_worker`` processes with GPUs)."""
    from distributed import Client, LocalCluster

    _quiet_dashboard_origins()
    processes = compute.workers * compute.trials_per_worker
    memory: str | int = compute.memory or 0
    if compute.memory and compute.trials_per_worker > 1:  # a worker's memory, split as dask-jobqueue does
        memory = memory_bytes(compute.memory) // compute.trials_per_worker
    dask.config.set(dask_settings.WORKER)  # the nannies live in this process: read at every restart
    with dask.config.set(dask_settings.SCHEDULER):
        cluster = LocalCluster(
            n_workers=processes,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0",  # this machine only
            memory_limit=memory,
            silence_logs=logging.ERROR,
        )
    client = Client(cluster)
    log.info("local cluster with %d worker processes; dashboard %s", processes, cluster.dashboard_link)
    return cluster, client


class _KnownWildcard(logging.Filter):
    """dask's dashboard asks Bokeh for any websocket origin, and Bokeh warns each time it
    starts; here the dashboard listens on the loopback interface only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Host wildcard" not in record.getMessage()


def _quiet_dashboard_origins() -> None:
    target = logging.getLogger("bokeh.server.util")
    if not any(isinstance(f, _KnownWildcard) for f in target.filters):
        target.addFilter(_KnownWildcard())
