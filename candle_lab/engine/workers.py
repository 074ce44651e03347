"""The workers as the driver sees them: who joined and left, each one's job and its end.

:class:`WorkerWatch` reads the scheduler's worker list on a thread of its own every few
seconds (one poll serves the worker events, the slots of placed trials and walltime-aware
placement), asks each new SLURM worker for its job id (one ``client.run`` per batch of new
workers) and ``squeue`` for the job's submission and end, and looks up how a job ended
(``sacct``/``scontrol``, :mod:`candle_lab.clusters.jobs`) for a worker that left or a
trial lost with its worker. What it learns goes to the driver's queue as
``("worker", Joined | Left)`` and ``("job", JobAnswer)``; the loop stays the store's only
writer and never waits for SLURM.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from candle_lab.clusters.profiles import Resolved, walltime_notice
from candle_lab.engine.placement import slots
from candle_lab.engine.retry import ENDED_STATES
from candle_lab.trial.gpus import slot_of

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0  # the scheduler's worker list is read this often
HURRY_SECONDS = 1.0  # ... and this often while trials wait for a fresh worker, or job states are due
JOB_STATE_WAIT = 15.0  # a job's state is asked again until it ended, this long at most
JOB_ID_WAIT = 5.0  # a worker asked for its job id answers within this, or is asked at the next poll ...
JOB_ID_TRIES = 3  # ... this many times (a worker that is closing may never answer)


@dataclass(frozen=True)
class SlurmWorkers:
    """What the driver knows of its SLURM worker jobs (None for other clusters)."""

    notice: float | None  # seconds before a job's walltime ends at which its worker winds down
    memory: str | None  # what each worker asks for (compute.memory or the profile's default)
    partition: str | None
    node_memory: str | None  # the partition's memory per node


@dataclass(frozen=True)
class WorkerInfo:
    address: str
    lane: str  # as trials name their worker: "job <SLURM job id>" on SLURM, else the dask worker's name
    threads: int
    gpus: float
    job: str | None = None
    submitted: float | None = None  # epoch seconds
    ends: float | None = None  # when its job's walltime ends
    name: str = ""  # the dask worker's name (dask-jobqueue's job name)

    def joined_detail(self) -> dict[str, Any]:
        return {"lane": self.lane, "address": self.address, "gpus": self.gpus, "threads": self.threads,
                "job": self.job, "submitted": self.submitted, "ends": self.ends}


@dataclass(frozen=True)
class Joined:
    info: WorkerInfo
    time: float


@dataclass(frozen=True)
class Left:
    info: WorkerInfo
    time: float
    state: str | None  # how its SLURM job ended, when it did


@dataclass(frozen=True)
class JobAnswer:
    """How ``job`` stands (``state``: None when SLURM would not say), for ``payload``."""

    job: str
    state: str | None
    reason: str | None
    payload: Any


@dataclass
class _Pending:
    job: str
    due: float  # asked until then
    left: Left | None = None  # a worker that left, or ...
    payload: Any = None  # ... a lost trial
    state: str | None = None
    reason: str | None = None


def lane_of(address: str, info: Mapping[str, Any], job: str | None, processes: int = 1) -> str:
    """The lane trials record (see :func:`candle_lab.trial.runner.run_trial`): "job 12", or
    "job 12/1" for the process 1 of a job that runs several (``compute.gpus_per_trial``)."""
    if job:
        name = info.get("name")
        slot = f"/{slot_of(str(name), processes)}" if processes > 1 and name is not None else ""
        return f"job {job}{slot}"
    name = info.get("name")
    return address if name is None else str(name)


class WorkerWatch:
    """Polls the workers on a thread; answers through ``put(kind, payload)``."""

    def __init__(
        self,
        client: Any,
        put: Callable[[tuple[str, Any]], None],
        *,
        slurm: bool,
        gpus: float,
        resources: Mapping[str, float] | None,
        interval: float = POLL_SECONDS,
        processes: int = 1,
    ) -> None:
        self.client = client
        self.put = put
        self.slurm = slurm
        self.gpus = gpus
        self.resources = resources
        self.interval = interval
        self.processes = processes  # worker processes per SLURM job (compute.trials_per_worker)
        self.hurry = False  # the driver waits for a fresh worker: poll more often
        self.slots: dict[str, int] = {}  # trials each worker runs at once (the last poll's)
        self.workers: dict[str, WorkerInfo] = {}  # the workers of the last poll (replaced, never changed)
        self._known: dict[str, WorkerInfo] = {}
        self._asked: dict[str, int] = {}  # new workers whose job id is not known yet -> times asked
        self._pending: list[_Pending] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._poke = False
        self._thread: threading.Thread | None = None
        self._jobs: Any = None  # clusters.jobs.JobQuery, on SLURM

    def start(self) -> None:
        if self.slurm:
            from candle_lab.clusters.jobs import JobQuery

            self._jobs = JobQuery()
        self._thread = threading.Thread(target=self._run, name="candle-lab-workers", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)

    def poke(self, address: str | None) -> None:
        """A trial started on ``address``: read the workers now if it is a new one (a worker
        cancelled soon after its first trial started still has its events)."""
        if address and address not in self.workers:
            self._poke = True
            self._wake.set()

    def lookup(self, job: str, payload: Any) -> None:
        """Ask how ``job`` ended; the answer comes as ``("job", JobAnswer)``."""
        with self._lock:
            self._pending.append(_Pending(job, time.time() + JOB_STATE_WAIT, payload=payload))
        self._wake.set()

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        next_poll = 0.0
        while not self._closed:
            now = time.time()
            if now >= next_poll or self._poke:
                self._poke = False
                next_poll = now + (HURRY_SECONDS if self.hurry else self.interval)
                try:
                    self._poll(now)
                except Exception:  # the scheduler going away at the end, a SLURM hiccup
                    log.debug("reading the workers failed", exc_info=True)
            if self._pending:
                try:
                    self._ask_states(time.time())
                except Exception:
                    log.debug("asking SLURM about jobs failed", exc_info=True)
            wait = next_poll - time.time()
            if self._pending:
                wait = min(wait, HURRY_SECONDS)
            self._wake.wait(max(0.05, wait))
            self._wake.clear()

    def _poll(self, now: float) -> None:
        workers = self.client.scheduler_info()["workers"]
        self.slots = slots(workers, self.resources)
        new = [a for a in workers if a not in self._known]
        gone = [a for a in self._known if a not in workers]
        self._asked = {a: n for a, n in self._asked.items() if a in workers}
        jobs: dict[str, str] = {}
        times: dict[str, Any] = {}
        if new and self.slurm:
            jobs = self._job_ids(workers, new)
            for address in [a for a in new if a not in jobs]:  # asked again at the next poll, a few times
                self._asked[address] = self._asked.get(address, 0) + 1
                if self._asked[address] < JOB_ID_TRIES:
                    new.remove(address)
            times = self._jobs.times(jobs.values())
        for address in new:
            self._asked.pop(address, None)
            info = workers[address]
            job = jobs.get(address)
            when = times.get(job) if job else None
            have = info.get("resources") or {}
            found = WorkerInfo(
                address,
                lane_of(address, info, job, self.processes),
                int(info.get("nthreads", 1)),
                float(have.get("GPU", self.gpus)),
                job,
                when.submitted if when else None,
                when.ends if when else None,
                str(info.get("name", "")),
            )
            self._known[address] = found
            self.put(("worker", Joined(found, now)))
        alive = {w.job for a, w in self._known.items() if a not in gone}
        for address in gone:
            left = self._known.pop(address)
            if left.job is None or left.job in alive:
                self.put(("worker", Left(left, now, None)))  # not SLURM, or its job lives on (a restart)
            else:  # the event says how its job ended, once SLURM does
                with self._lock:
                    self._pending.append(_Pending(left.job, now + JOB_STATE_WAIT, left=Left(left, now, None)))
        if new or gone:
            self.workers = dict(self._known)
            self.put(("workers", None))

    def _job_ids(self, workers: Mapping[str, Mapping[str, Any]], addresses: list[str]) -> dict[str, str]:
        """The SLURM jobs of new workers: dask-jobqueue's jobs by worker name, else each
        worker's ``SLURM_JOB_ID`` (asked on a thread: a closing worker may never answer)."""
        found: dict[str, str] = {}
        jobs = getattr(getattr(self.client, "cluster", None), "workers", None)  # name -> SLURMJob
        if isinstance(jobs, Mapping):
            with contextlib.suppress(RuntimeError):  # changed on dask's thread meanwhile: asked below
                by_name = {str(name): getattr(job, "job_id", None) for name, job in list(jobs.items())}
                for address in addresses:
                    name = str(workers[address].get("name"))  # a job's name, or "<job's name>-<process>"
                    job = by_name.get(name) or (by_name.get(name.rsplit("-", 1)[0]) if self.processes > 1 else None)
                    if job:
                        found[address] = str(job)
        ask = [a for a in addresses if a not in found]
        if not ask:
            return found
        from candle_lab.trial.walltime import job_id

        answers: dict[str, Any] = {}

        def run() -> None:
            answers.update(self.client.run(job_id, workers=ask, on_error="return"))

        asking = threading.Thread(target=run, name="candle-lab-job-ids", daemon=True)
        asking.start()
        asking.join(JOB_ID_WAIT)
        found.update({a: v for a, v in dict(answers).items() if isinstance(v, str) and v})
        return found

    def _ask_states(self, now: float) -> None:
        with self._lock:
            pending = list(self._pending)
        states = self._jobs.states(p.job for p in pending) if self._jobs is not None else {}
        done = []
        for p in pending:
            info = states.get(p.job)
            if info is not None:
                p.state, p.reason = info.state, info.reason
            if p.state in ENDED_STATES or now >= p.due:
                done.append(p)
                if p.left is not None:
                    ended = p.state if p.state in ENDED_STATES else None
                    self.put(("worker", Left(p.left.info, p.left.time, ended)))
                else:
                    self.put(("job", JobAnswer(p.job, p.state, p.reason, p.payload)))
        finished = {id(p) for p in done}
        with self._lock:
            self._pending = [p for p in self._pending if id(p) not in finished]


def slurm_workers(resolved: Resolved) -> SlurmWorkers | None:
    """What the driver needs to know of a resolved compute section's SLURM workers."""
    if resolved.profile.scheduler != "slurm":
        return None
    part = resolved.profile.partitions.get(resolved.partition or "")
    return SlurmWorkers(walltime_notice(resolved), resolved.memory, resolved.partition, part.memory if part else None)
