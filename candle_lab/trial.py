"""One trial on a worker: run the model, classify the outcome, tell the driver.

This runs inside a dask worker. It never writes the experiment database (the driver is
the only writer); it sends events (trial started, per-step metrics) to the driver over
dask's event stream and returns a :class:`TrialOutcome`. It also writes the run folder
(``RUN…/params.json``, ``output.log``, ``result.json``) so that a result survives a
driver that died meanwhile.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import io
import json
import logging
import math
import os
import socket
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

log = logging.getLogger(__name__)

TOPIC = "candle_lab"
RESULT_FILE = "result.json"
PARAMS_FILE = "params.json"
LOG_FILE = "output.log"
MODEL_FILE = "model.keras"
STARTS_DIR = "starts"  # EXP/starts/<host>-<pid>: the attempts each worker process began

Reason = Literal[
    "exception", "import", "oom", "disk-full", "nan", "timeout", "lost-worker", "stopped", "early-stop"
]
RETRYABLE: frozenset[str] = frozenset({"exception", "oom", "lost-worker"})


class TrialTimeout(Exception):
    """The model ran past the trial's timeout (raised by adapters that can enforce it)."""


@dataclass(frozen=True)
class TrialTask:
    """Everything a worker needs to run one attempt of one trial."""

    experiment: str  # unique key of this experiment's driver run (events, stop requests)
    run_dir: str
    trial_id: int
    run_id: str
    attempt: int
    params: dict[str, Any]
    model: dict[str, Any]
    metric: str
    timeout: float | None = None
    cores: int = 1
    gpus: int = 0
    save_model: bool = True
    checkpoint: bool = False
    fn: Callable[..., Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class TrialOutcome:
    """What one attempt gave: ``completed``, ``failed`` or ``stopped`` (with ``reason``)."""

    trial_id: int
    attempt: int
    state: Literal["completed", "failed", "stopped"]
    objective: float | None
    metrics: dict[str, float]
    started: float
    ended: float
    worker: str | None = None
    host: str | None = None
    gpu: str | None = None
    reason: str | None = None
    error: str | None = None
    model_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialOutcome:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


def request_stop(experiment: str, trial_id: int, reason: str = "stopped") -> bool:
    """Ask a running trial to stop at its next epoch boundary (run on its worker by the
    driver). Returns whether the trial was running here."""
    ctx = _running.get((experiment, trial_id))
    if ctx is not None:
        ctx.stop(reason)
    return ctx is not None


@dataclass
class TrialContext:
    """The running trial, for code inside the model (metrics, callbacks, stop requests)."""

    task: TrialTask
    worker: Any | None
    run_dir: Path
    started: float
    step: int = 0
    stop_reason: str | None = None
    last_metrics: dict[str, float] = field(default_factory=dict)
    _prepared: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def prepare_dir(self) -> Path:
        """The run folder with the trial's ``params.json`` (written once)."""
        with self._lock:
            if not self._prepared:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                text = json.dumps(self.task.params, indent=2, default=str)
                (self.run_dir / PARAMS_FILE).write_text(text, encoding="utf-8")
                self._prepared = True
        return self.run_dir

    def emit(self, kind: str, **data: Any) -> None:
        message = {
            "kind": kind,
            "experiment": self.task.experiment,
            "trial_id": self.task.trial_id,
            "attempt": self.task.attempt,
            "time": time.time(),
            **data,
        }
        if self.worker is not None:
            self.worker.log_event(TOPIC, message)

    @property
    def should_stop(self) -> bool:
        return self.stop_reason is not None

    def stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason

    def time_left(self) -> float | None:
        if self.task.timeout is None:
            return None
        return self.task.timeout - (time.time() - self.started)


_current: contextvars.ContextVar[TrialContext | None] = contextvars.ContextVar("candle_lab_trial", default=None)
_running: dict[tuple[str, int], TrialContext] = {}

# "Trial started" events are sent once a trial has run START_DELAY seconds (or reports
# earlier): trials shorter than that cost the scheduler no event at all.
START_DELAY = 0.1
_unannounced: dict[tuple[str, int], tuple[TrialContext, dict[str, Any]]] = {}
_announce_lock = threading.Lock()
_announcer: threading.Thread | None = None


def _announce(key: tuple[str, int]) -> None:
    with _announce_lock:
        item = _unannounced.pop(key, None)
    if item is not None:
        ctx, data = item
        ctx.emit("start", **data)
        try:
            ctx.prepare_dir()
        except OSError as exc:  # the model meets the same error and says so in its outcome
            log.warning("could not write the run folder %s: %s", ctx.run_dir, exc)


def _announce_loop() -> None:
    while True:
        time.sleep(START_DELAY / 2)
        now = time.time()
        with _announce_lock:
            due = [k for k, (ctx, _) in _unannounced.items() if now - ctx.started >= START_DELAY]
        for key in due:
            _announce(key)


def _schedule_start_event(ctx: TrialContext, data: dict[str, Any]) -> None:
    global _announcer
    with _announce_lock:
        _unannounced[(ctx.task.experiment, ctx.task.trial_id)] = (ctx, data)
        if _announcer is None:
            _announcer = threading.Thread(target=_announce_loop, name="candle-lab-announcer", daemon=True)
            _announcer.start()


def current_trial() -> TrialContext | None:
    """The trial running in this thread, or ``None`` outside a trial."""
    return _current.get()


def report(step: int | None = None, **metrics: float) -> bool:
    """Send metrics of the running trial to the driver (e.g. once per epoch).

    Returns True when the trial should stop (the driver or the user asked): a model
    that reports can end its training loop there."""
    ctx = current_trial()
    if ctx is None:
        log.debug("report() outside a trial: %s", metrics)
        return False
    _announce((ctx.task.experiment, ctx.task.trial_id))
    ctx.step = ctx.step + 1 if step is None else int(step)
    values = {k: float(v) for k, v in metrics.items()}
    ctx.last_metrics.update(values)
    ctx.emit("metrics", step=ctx.step, metrics=values)
    return ctx.should_stop


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


class _LazyLog(io.TextIOBase):
    """The run's log file, created on the first write (most fast models print nothing)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: io.TextIOWrapper | None = None
        _open_logs.add(self)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self._file is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self._path.open("a", encoding="utf-8")
        return self._file.write(text)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None  # TextIOBase.close() flushes: nothing left to flush
        _open_logs.discard(self)
        super().close()


_open_logs: weakref.WeakSet[_LazyLog] = weakref.WeakSet()


def _flush_logs() -> None:
    """Before a model forks (``multiprocessing``, data loaders): what its log holds is
    written now, so that the child does not write it a second time."""
    for out in list(_open_logs):
        with contextlib.suppress(Exception):
            out.flush()


os.register_at_fork(before=_flush_logs)


_output: contextvars.ContextVar[_LazyLog | None] = contextvars.ContextVar("candle_lab_trial_output", default=None)
_routing = threading.Lock()


class _Router(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of a process that runs trials: a write goes to the log
    of the trial running in the writer's thread (context), anything else where it went
    before. With worker threads (``Client(processes=False)``) the host program's own
    prints stay the host's; never is the stream swapped for the whole process per trial."""

    def __init__(self, fallback: Any) -> None:
        self.fallback = fallback

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return int((_output.get() or self.fallback).write(text))

    def flush(self) -> None:
        (_output.get() or self.fallback).flush()

    # What callers ask of a terminal stream is the host stream's answer.
    @property
    def encoding(self) -> Any:  # type: ignore[override]
        return getattr(self.fallback, "encoding", "utf-8")

    @property
    def errors(self) -> Any:  # type: ignore[override]
        return getattr(self.fallback, "errors", None)

    def fileno(self) -> int:
        return int(self.fallback.fileno())

    def isatty(self) -> bool:
        return _output.get() is None and bool(self.fallback.isatty())

    def close(self) -> None:
        """A model that closes ``sys.stdout`` closes nothing: the stream is shared by the
        other trials of this process and by the host."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fallback, name)


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Model prints in this thread go to the run's log."""
    with _routing:
        for name in ("stdout", "stderr"):
            if not isinstance(getattr(sys, name), _Router):
                setattr(sys, name, _Router(getattr(sys, name)))
    with _LazyLog(path) as out:
        token = _output.set(out)
        try:
            yield
        finally:
            _output.reset(token)


def configure_resources(task: TrialTask, worker_name: str | None) -> str | None:
    """Thread pools sized to the trial's cores; its own GPU(s), with memory growth on.

    Environment variables are read by TensorFlow when it starts in this worker process,
    which is during the first trial (one trial per worker at a time). Returns the GPUs
    the trial sees."""
    for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(task.cores))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", str(min(2, task.cores)))
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if task.gpus > 0 and "SLURM_JOB_ID" not in os.environ and worker_name is not None and worker_name.isdigit():
        # Local cluster on a GPU machine: worker i gets GPUs i*g .. i*g+g-1.
        first = int(worker_name) * task.gpus
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(first + i) for i in range(task.gpus))
    elif task.gpus == 0 and "CUDA_VISIBLE_DEVICES" not in os.environ:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # a CPU trial must not grab a GPU
    return os.environ.get("CUDA_VISIBLE_DEVICES") or None


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
    from candle_lab.models import interpret, run_model

    worker = _worker()
    run_dir = Path(task.run_dir)
    started = time.time()
    ctx = TrialContext(task, worker, run_dir, started)
    _journal_start(task)
    name = None if worker is None else str(worker.name if worker.name is not None else worker.address)
    gpu = configure_resources(task, name)
    if "SLURM_JOB_ID" in os.environ:  # one worker per SLURM job: the job names its Gantt lane
        name = f"job {os.environ['SLURM_JOB_ID']}"
    where = {"worker": name, "host": socket.gethostname(), "gpu": gpu}
    key = (task.experiment, task.trial_id)
    if worker is not None:
        # dask's scheduler sets "worker" of every event to the worker's address: the lane
        # name travels as "lane", so that a trial keeps one worker from start to end.
        start = {"address": worker.address, "started": started, "lane": name, "host": where["host"], "gpu": gpu}
        _schedule_start_event(ctx, start)

    token = _current.set(ctx)
    _running[key] = ctx
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
        with _output_to(run_dir / LOG_FILE):
            raw = run_model(task, run_dir)
            result = interpret(raw, task.metric)
            if task.save_model:
                model_file = _save_model(raw, ctx.prepare_dir())
        metrics = {**ctx.last_metrics, **result.metrics}
        if math.isfinite(result.objective):
            objective = result.objective
        elif ctx.stop_reason is None:
            reason = "nan"
            error = result.detail or f"the objective {task.metric!r} is {result.objective}"
    except Exception as exc:
        reason = classify(exc)
        error = "".join(traceback.format_exception(exc))
        metrics = dict(ctx.last_metrics)
    finally:
        _current.reset(token)
        _running.pop(key, None)
        with _announce_lock:
            _unannounced.pop(key, None)

    state: Literal["completed", "failed", "stopped"] = "completed" if reason is None else "failed"
    if ctx.stop_reason is not None and reason in (None, "nan"):
        state, reason = "stopped", ctx.stop_reason
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


def started_attempts(exp_dir: Path) -> set[tuple[int, int]]:
    """The (trial id, attempt) pairs some worker began, from ``EXP/starts/``."""
    began: set[tuple[int, int]] = set()
    with contextlib.suppress(OSError):
        for path in (exp_dir / STARTS_DIR).iterdir():
            with contextlib.suppress(OSError, UnicodeDecodeError):
                for line in path.read_text(encoding="utf-8").splitlines():
                    trial_id, _, attempt = line.partition(" ")
                    if trial_id.isdigit() and attempt.isdigit():
                        began.add((int(trial_id), int(attempt)))
    return began


def read_outcome(run_dir: Path) -> TrialOutcome | None:
    """The outcome a worker left in a run folder, if it finished."""
    try:
        return TrialOutcome.from_json(json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
