"""The embedded default cluster: a dask LocalCluster, one single-threaded process per worker."""

from __future__ import annotations

import logging
from typing import Any

import dask

from candle_lab.clusters import dask_settings
from candle_lab.spec import ComputeSpec

log = logging.getLogger(__name__)


def start_local(compute: ComputeSpec) -> tuple[Any, Any]:
    """A LocalCluster and its client for ``compute.workers`` workers."""
    from distributed import Client, LocalCluster

    _quiet_dashboard_origins()
    dask.config.set(dask_settings.WORKER)  # the nannies live in this process: read at every restart
    with dask.config.set(dask_settings.SCHEDULER):
        cluster = LocalCluster(
            n_workers=compute.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0",  # this machine only
            memory_limit=compute.memory or 0,
            silence_logs=logging.ERROR,
        )
    client = Client(cluster)
    log.info("local cluster with %d workers; dashboard %s", compute.workers, cluster.dashboard_link)
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
