"""GPUs on a worker: which ones a trial gets, and how busy they are while it runs.

A worker with ``compute.gpus`` GPUs and ``compute.gpus_per_trial`` set runs one trial per
*process*, ``trials_per_worker`` processes (one ``CUDA_VISIBLE_DEVICES`` each): a SLURM job
runs them as dask-jobqueue's processes ``<job name>-<i>``, a local cluster as workers
``0 .. n-1``. :func:`assign` maps a process's slot ``i`` to its GPUs: a share ``1/k`` puts
slots ``i`` on GPU ``i // k`` (``k`` trials share each GPU), a whole number ``s`` gives
slot ``i`` the GPUs ``i*s .. i*s+s-1``.

:class:`GpuSampler` asks ``nvidia-smi`` (when there is one) every few seconds how busy the
trial's GPUs are and sends it to the driver as the metrics ``sys.gpu_util`` (mean % over
its GPUs) and ``sys.gpu_mem_mb`` (MiB used on them, summed), with the sample's number as
step; where ``nvidia-smi`` lists the trial's process, also the memory it holds on its own
GPUs (``sys.gpu_proc_mem_mb``) and on others (``sys.gpu_foreign_mem_mb``, 0 unless a trial
ran where it was not sent). Metrics named ``sys.*`` are samples, not epochs: loss curves,
early stopping and the trial's final metrics leave them out.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

SYSTEM_PREFIX = "sys."  # metrics that are samples of the machine, not the model's reports
GPU_UTIL = "sys.gpu_util"  # percent, mean over the trial's GPUs
GPU_MEMORY = "sys.gpu_mem_mb"  # MiB, summed over the trial's GPUs (every process on them)
PROCESS_MEMORY = "sys.gpu_proc_mem_mb"  # MiB the trial's process holds on its GPUs (when nvidia-smi can tell)
FOREIGN_MEMORY = "sys.gpu_foreign_mem_mb"  # MiB it holds on GPUs that are not its own (0 unless wrong)
SAMPLE_SECONDS = 5.0
QUERY = ("--query-gpu=index,utilization.gpu,memory.used,uuid", "--format=csv,noheader,nounits")
APPS_QUERY = ("--query-compute-apps=pid,gpu_uuid,used_memory", "--format=csv,noheader,nounits")


def is_system(name: str) -> bool:
    """Whether a metric is a system sample (``sys.*``), not a model's report."""
    return name.startswith(SYSTEM_PREFIX)


# ------------------------------------------------------------------ which GPUs
def per_worker(gpus: int, share: float | None) -> int:
    """Trials (processes) per worker: its GPUs over each trial's share; 1 without a share."""
    if not gpus or share is None:
        return 1
    return max(1, round(gpus / share))


def assign(visible: Sequence[str] | None, slot: int, share: float) -> list[str]:
    """The GPU ids of process ``slot`` when each trial uses ``share`` GPUs.

    ``visible`` is what the process may use (SLURM's ``CUDA_VISIBLE_DEVICES`` of the job),
    None for a machine's own indices ``0, 1, ...``. ``share < 1`` (``1/k``): slot ``i``
    gets GPU ``i // k``; ``share >= 1`` (whole): GPUs ``i*s .. i*s+s-1``. Slots beyond the
    visible GPUs wrap around (more processes than the job's GPUs hold: they share)."""
    if share <= 0 or slot < 0:
        raise ValueError(f"expected a share > 0 and a slot >= 0, got share {share} and slot {slot}")
    if share < 1:
        first, count = slot // max(1, round(1 / share)), 1
    else:
        count = max(1, round(share))
        first = slot * count
    ids = range(first, first + count)
    if visible is None:
        return [str(i) for i in ids]
    if not visible:
        return []
    return [visible[i % len(visible)] for i in ids]


def slot_of(worker_name: str | None, processes: int) -> int:
    """A worker process's slot within its job or machine: a local cluster's worker ``i``
    is slot ``i``; dask-jobqueue names the processes of one job ``<job name>-<i>`` when it
    runs several (``processes`` > 1), else the job's one process is slot 0."""
    if worker_name is None:
        return 0
    if worker_name.isdigit():
        return int(worker_name)
    if processes > 1:
        tail = worker_name.rpartition("-")[2]
        if tail.isdigit():
            return int(tail)
    return 0


def parse_visible(text: str | None) -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` as a list (None when unset: every GPU is visible)."""
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


# ------------------------------------------------------------------ how busy
@dataclass(frozen=True)
class GpuSample:
    """One GPU in one ``nvidia-smi --query-gpu`` answer."""

    index: str
    util: float  # percent
    memory_mb: float  # MiB used (every process on it)
    uuid: str = ""


def parse_query(text: str) -> list[GpuSample]:
    """Rows of ``nvidia-smi --query-gpu=index,utilization.gpu,memory.used[,uuid]
    --format=csv,noheader,nounits``; rows it cannot read ("[N/A]", blank) are skipped."""
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3 or not parts[0]:
            continue
        try:
            util, memory = float(parts[1]), float(parts[2])
        except ValueError:
            continue
        if math.isfinite(util) and math.isfinite(memory):
            out.append(GpuSample(parts[0], util, memory, parts[3] if len(parts) > 3 else ""))
    return out


def parse_apps(text: str, pid: int) -> list[tuple[str, float]]:
    """(GPU uuid, MiB) of each GPU on which process ``pid`` holds memory, from
    ``nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader,nounits``
    (empty when it is not listed: no GPU memory yet, or a container that hides the host's
    process ids)."""
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3 and parts[0] == str(pid):
            try:
                out.append((parts[1], float(parts[2])))
            except ValueError:
                continue
    return out


def summarize(samples: Sequence[GpuSample], own: Sequence[str],
              apps: Sequence[tuple[str, float]] = ()) -> dict[str, float]:
    """The trial's metrics from one sample of every GPU: mean utilization and summed
    memory over its GPUs ``own`` (indices or uuids, as ``CUDA_VISIBLE_DEVICES`` names
    them); with its process's GPU memory ``apps`` (:func:`parse_apps`), what it holds on
    its own GPUs (``sys.gpu_proc_mem_mb``) and on any other (``sys.gpu_foreign_mem_mb``:
    more than 0 means it ran where it was not sent). Empty when none of its GPUs was
    sampled."""
    wanted = set(own)
    mine = [s for s in samples if s.index in wanted or (s.uuid and s.uuid in wanted)]
    if not mine:
        return {}
    out = {GPU_UTIL: sum(s.util for s in mine) / len(mine), GPU_MEMORY: sum(s.memory_mb for s in mine)}
    if apps:
        uuids = {s.uuid for s in mine}
        out[PROCESS_MEMORY] = sum(mb for uuid, mb in apps if uuid in uuids)
        out[FOREIGN_MEMORY] = sum(mb for uuid, mb in apps if uuid not in uuids)
    return out


def gpu_memory_total(index: str, command: str = "nvidia-smi") -> float | None:
    """Total memory (MiB) of GPU ``index`` from ``nvidia-smi``; None when unknown."""
    if shutil.which(command) is None:
        return None
    args = [command, f"--id={index}", "--query-gpu=memory.total", "--format=csv,noheader,nounits"]
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
        return float(result.stdout.strip().splitlines()[0]) if result.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


CAP_SHARE = 0.9  # of a trial's share of its GPU's memory: room for the CUDA context and fragmentation


def memory_caps(share: float | None, visible: Sequence[str] | None, command: str = "nvidia-smi") -> list[int | None]:
    """Per visible GPU (TensorFlow's order), the memory (MiB) one trial may use when trials
    share GPUs (``share`` < 1): total × share × 0.9; None where the total is unknown or
    the trial has the GPU to itself."""
    if share is None or share >= 1 or not visible:
        return [None] * len(visible or [])
    caps: list[int | None] = []
    for index in visible:
        total = gpu_memory_total(index, command)
        caps.append(None if total is None else int(total * share * CAP_SHARE))
    return caps


class GpuSampler:
    """Samples the GPUs ``own`` every ``interval`` seconds on a thread and hands each
    sample's metrics to ``send(step, metrics)`` (step: 1, 2, ...). Does nothing when
    ``nvidia-smi`` is not on the PATH or the trial has no GPU."""

    def __init__(
        self,
        own: Sequence[str],
        send: Callable[[int, dict[str, float]], None],
        interval: float = SAMPLE_SECONDS,
        command: str = "nvidia-smi",
    ) -> None:
        self.own = list(own)
        self.send = send
        self.interval = interval
        self.command = shutil.which(command) if own else None
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self.command is not None

    def start(self) -> GpuSampler:
        if self.command is not None and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="candle-lab-gpu-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval + 10)
            self._thread = None

    def sample(self) -> dict[str, float]:
        """One sample of the trial's GPUs (empty when ``nvidia-smi`` fails)."""
        samples = parse_query(self._query(QUERY))
        if not summarize(samples, self.own):
            return {}
        return summarize(samples, self.own, parse_apps(self._query(APPS_QUERY), os.getpid()))

    def _query(self, args: Sequence[str]) -> str:
        assert self.command is not None
        try:
            result = subprocess.run([self.command, *args], capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            log.debug("nvidia-smi failed: %s", exc)
            return ""
        if result.returncode != 0:
            log.debug("nvidia-smi failed (%d): %s", result.returncode, result.stderr.strip())
            return ""
        return result.stdout

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            values = self.sample()
            if values and not self._stop.is_set():
                self.samples += 1
                try:
                    self.send(self.samples, values)
                except Exception:  # the worker closing: the trial goes on
                    log.debug("could not send a GPU sample", exc_info=True)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))
