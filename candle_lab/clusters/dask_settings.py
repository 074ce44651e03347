"""The dask settings every cluster of ours runs with (local and SLURM)."""

from __future__ import annotations

# Read by the scheduler when it starts: a lost worker fails its task at once, so that the
# engine, not dask, decides about retries.
SCHEDULER = {"distributed.scheduler.allowed-failures": 0}
# Read by a nanny each time it (re)starts its worker process: not a daemon, so that models
# may start processes of their own (multiprocessing, data loaders).
WORKER = {"distributed.worker.daemon": False}


def worker_exports() -> list[str]:
    """:data:`WORKER` as ``export`` lines of a job script (dask's ``DASK_A__B`` names)."""
    return [f"export DASK_{key.upper().replace('.', '__').replace('-', '_')}={value}" for key, value in WORKER.items()]
