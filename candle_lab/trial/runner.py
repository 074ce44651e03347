"""One attempt of one trial on a dask worker: run the model, classify the outcome, tell
the driver.

This never writes the experiment database (the driver is the only writer): it sends
events over dask's event stream, returns a :class:`TrialOutcome` and writes the run folder
(``params.json``, ``output.log``, ``result.json``) so that a result survives a driver that
died meanwhile.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import shutil
import socket
import threading
import time
import traceback
from pathlib import Path
from typing import IO, Any, Literal

from candle_lab import settings
from candle_lab.models import interpret, run_model
from candle_lab.store.layout import LOG_FILE, MODEL_FILE, RESULT_FILE, RESUME_DIR, STARTS_DIR
from candle_lab.trial.context import (
    TrialContext,
    TrialTimeout,
    _current,
    _running,
    announce,
    forget,
    schedule_start_event,
)
from candle_lab.trial.gpus import GpuSampler, assign, parse_visible, per_worker, slot_of
from candle_lab.trial.output import configure_native_logs, output_to
from candle_lab.trial.protocol import MetricsEvent, Reason, StartEvent, TrialOutcome, TrialTask

log = logging.getLogger(__name__)


def _worker() -> Any | None:
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def classify(exc: BaseException) -> Reason:
    if isinstance(exc, TrialTimeout):
        return "timeout"
    if isinstance(exc, ImportError):
        return "import"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk-full"
    text = str(exc).lower()
    if isinstance(exc, MemoryError) or "ResourceExhausted" in type(exc).__name__ or "out of memory" in text:
        return "oom"
    return "exception"


# CUDA_VISIBLE_DEVICES as this worker process found it (its SLURM job's GPUs), before
# configure_resources narrowed it to the trial's: read once, on the first trial.
_given: list[list[str] | None] = []


def trial_gpus(task: TrialTask, worker_name: str | None) -> list[str] | None:
    """The GPUs of this worker process's trials (:func:`candle_lab.trial.gpus.assign`), or
    None to leave ``CUDA_VISIBLE_DEVICES`` as it is. A local cluster's worker ``i`` is slot
    ``i`` of the machine's GPUs (those of ``CUDA_VISIBLE_DEVICES`` when set); a SLURM job's
    process ``<job>-<i>`` is slot ``i`` of the job's GPUs, which SLURM set; a job's only
    process keeps them all."""
    if task.gpus <= 0 or worker_name is None:
        return None
    if not _given:
        _given.append(parse_visible(os.environ.get("CUDA_VISIBLE_DEVICES")))
    processes = per_worker(task.gpus, task.gpu_share)
    local = worker_name.isdigit()
    if not local and processes == 1:
        return None  # a SLURM job's one worker: the GPUs SLURM gave it
    share = float(task.gpus if task.gpu_share is None else task.gpu_share)
    return assign(_given[0], slot_of(worker_name, processes), share)


def missing_metrics(metrics: dict[str, float], required: tuple[tuple[str, str], ...]) -> str | None:
    """What a completed trial failed to report of the metrics the spec names besides the
    objective (other objectives, constrained metrics), and what it did report; None if
    nothing is missing."""
    absent = [f"{field} {metric!r}" for metric, field in required
              if metric not in metrics or not math.isfinite(float(metrics[metric]))]
    if not absent:
        return None
    known = ", ".join(sorted(metrics)) or "nothing"
    return f"{'; '.join(absent)}: not reported by the model, or not a number (it reported: {known})"


def configure_resources(task: TrialTask, worker_name: str | None) -> str | None:
    """Thread pools sized to the trial's cores; its own GPU(s) (:func:`trial_gpus`), with
    memory growth on.

    Environment variables are read by TensorFlow when it starts in this worker process,
    which is during the first trial (one trial per worker process at a time: the same
    GPUs each time). Returns the GPUs the trial sees."""
    for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(task.cores))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", str(min(2, task.cores)))
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    configure_native_logs()  # TensorFlow's notices: none unless --verbose
    gpus = trial_gpus(task, worker_name)
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    elif task.gpus == 0 and "CUDA_VISIBLE_DEVICES" not in os.environ:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # a CPU trial must not grab a GPU
    return os.environ.get("CUDA_VISIBLE_DEVICES") or None


def _sampler(ctx: TrialContext, gpu: str | None) -> GpuSampler:
    """Samples of the trial's GPUs as ``sys.*`` metrics (none without nvidia-smi)."""
    task = ctx.task

    def send(step: int, values: dict[str, float]) -> None:
        announce((task.experiment, task.trial_id))  # the start event first
        ctx.emit(MetricsEvent(task.trial_id, task.attempt, time.time(), step, values))

    own = parse_visible(gpu) if task.gpus > 0 and ctx.worker is not None else None
    return GpuSampler(own or [], send, task.gpu_sample)


def _own_process(worker: Any) -> bool:
    """Whether this process runs one trial at a time, on its own: a dask worker process
    (started by a nanny) with one thread. Its descriptors 1 and 2 may then be the trial's."""
    if worker is None or not getattr(worker, "nanny", None):
        return False  # worker threads in the host program: its descriptors are the host's
    state = getattr(worker, "state", None)
    return getattr(state, "nthreads", 0) == 1


def _save_model(result: Any, run_dir: Path) -> str | None:
    """Keep a Keras model returned (or carried by a History) in the run folder."""
    model = getattr(result, "model", None) if hasattr(result, "history") else result
    if model is None or not callable(getattr(model, "save", None)) or not hasattr(model, "layers"):
        return None
    path = run_dir / MODEL_FILE
    try:
        model.save(path)
    except Exception:
        log.warning("could not save the model of %s", run_dir, exc_info=True)
        return None
    return str(path)


def run_trial(task: TrialTask) -> TrialOutcome:
    """Run one attempt. Never raises for a model failure: the outcome says what happened."""
    worker = _worker()
    run_dir = Path(task.run_dir)
    started = time.time()
    ctx = TrialContext(task, worker, run_dir, started)
    _journal_start(task)
    name = None if worker is None else str(worker.name if worker.name is not None else worker.address)
    gpu = configure_resources(task, name)
    if "SLURM_JOB_ID" in os.environ:  # the job names its Gantt lane ...
        processes = per_worker(task.gpus, task.gpu_share)
        slot = f"/{slot_of(name, processes)}" if processes > 1 else ""  # ... with its process when several
        name = f"job {os.environ['SLURM_JOB_ID']}{slot}"
    where = {"worker": name, "host": socket.gethostname(), "gpu": gpu}
    if worker is not None:
        start = StartEvent(task.trial_id, task.attempt, started, started, worker.address, name, where["host"], gpu)
        schedule_start_event(ctx, start)

    token = _current.set(ctx)
    _running[(task.experiment, task.trial_id)] = ctx
    sampler = _sampler(ctx, gpu).start()
    objective: float | None = None
    metrics: dict[str, float] = {}
    reason: str | None = None
    error: str | None = None
    model_file: str | None = None
    try:
        if task.attempt > 1:
            (run_dir / RESULT_FILE).unlink(missing_ok=True)
        if task.attempt > 1 or (task.fn is None and task.model.get("kind") != "callable"):
            ctx.prepare_dir()  # models that use their run folder; callables get it once they last
        # The model's output, native (TensorFlow's C++ log, CUDA) included, is the run's;
        # with --verbose native output stays where it was (the terminal, driver.log).
        with output_to(run_dir / LOG_FILE, native=_own_process(worker) and not settings.verbose()):
            raw = run_model(task, run_dir)
            result = interpret(raw, task.metric)
            if task.save_model:
                model_file = _save_model(raw, ctx.prepare_dir())
        metrics = {**ctx.last_metrics, **result.metrics}
        missing = missing_metrics(metrics, task.required)
        if math.isfinite(result.objective) and not missing:
            objective = result.objective
        elif ctx.stopped_early() is None:
            reason = "nan"
            error = result.detail or missing or f"the objective {task.metric!r} is {result.objective}"
    except Exception as exc:
        reason = classify(exc)
        error = "".join(traceback.format_exception(exc))
        metrics = dict(ctx.last_metrics)
    finally:
        sampler.stop()
        _current.reset(token)
        forget(ctx)

    state: Literal["completed", "failed", "stopped"] = "completed" if reason is None else "failed"
    if ctx.stopped_early() is not None and reason in (None, "nan"):
        state, reason = "stopped", ctx.stop_reason
    if state == "completed" or (state == "stopped" and reason != "walltime"):
        shutil.rmtree(run_dir / RESUME_DIR, ignore_errors=True)  # no attempt will resume from it
    outcome = TrialOutcome(
        trial_id=task.trial_id,
        attempt=task.attempt,
        state=state,
        objective=objective,
        metrics=metrics,
        started=started,
        ended=time.time(),
        reason=reason,
        error=error,
        model_file=model_file,
        **where,
    )
    # The driver records the outcome from the task's result; this file is for a driver
    # that died meanwhile. A half-written file reads as "not finished": resume re-runs it.
    # It holds the parameters too: a trial shorter than START_DELAY has no params.json.
    data = {**outcome.to_json(), "params": task.params}
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / RESULT_FILE).write_text(json.dumps(data, allow_nan=True, default=str), encoding="utf-8")
    except OSError as exc:  # a full disk: the driver still records the outcome it is handed
        log.warning("could not write %s: %s", run_dir / RESULT_FILE, exc)
    return outcome


_journals: dict[Path, IO[str]] = {}
_journal_lock = threading.Lock()


def _journal_start(task: TrialTask) -> None:
    """Note on disk, before the model runs, that this attempt began (one line in this
    process's file of ``EXP/starts/``). When a worker dies, the driver reads it to tell
    the trial that ran there from those that only waited behind it."""
    folder = Path(task.run_dir).parent / STARTS_DIR
    try:
        with _journal_lock:
            out = _journals.get(folder)
            if out is None:
                folder.mkdir(exist_ok=True)
                out = _journals[folder] = (folder / f"{socket.gethostname()}-{os.getpid()}").open("a", encoding="utf-8")
            out.write(f"{task.trial_id} {task.attempt}\n")
            out.flush()  # in the kernel's hands: it outlives this process
    except OSError as exc:
        log.warning("could not note the start of trial %d in %s: %s", task.trial_id, folder, exc)

