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
import json
import logging
import math
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

TOPIC = "candle_lab"
RESULT_FILE = "result.json"
PARAMS_FILE = "params.json"
LOG_FILE = "output.log"

Reason = Literal["exception", "import", "oom", "nan", "timeout", "lost-worker", "stopped"]
RETRYABLE: frozenset[str] = frozenset({"exception", "oom", "lost-worker"})


@dataclass(frozen=True)
class TrialTask:
    """Everything a worker needs to run one attempt of one trial."""

    experiment: str
    run_dir: str
    trial_id: int
    run_id: str
    attempt: int
    params: dict[str, Any]
    model: dict[str, Any]
    metric: str
    timeout: float | None = None
    fn: Callable[..., Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class TrialOutcome:
    """What one attempt gave. ``state`` is ``completed`` or ``failed`` (with ``reason``)."""

    trial_id: int
    attempt: int
    state: Literal["completed", "failed"]
    objective: float | None
    metrics: dict[str, float]
    started: float
    ended: float
    worker: str | None = None
    host: str | None = None
    gpu: str | None = None
    reason: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialOutcome:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


@dataclass
class TrialContext:
    """The running trial, for code inside the model (metrics reporting, callbacks)."""

    task: TrialTask
    worker: Any | None
    run_dir: Path
    started: float
    step: int = 0

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


_current: contextvars.ContextVar[TrialContext | None] = contextvars.ContextVar("candle_lab_trial", default=None)


def current_trial() -> TrialContext | None:
    """The trial running in this thread, or ``None`` outside a trial."""
    return _current.get()


def report(step: int | None = None, **metrics: float) -> None:
    """Send metrics of the running trial to the driver (e.g. once per epoch)."""
    ctx = current_trial()
    if ctx is None:
        log.debug("report() outside a trial: %s", metrics)
        return
    ctx.step = ctx.step + 1 if step is None else int(step)
    values = {k: float(v) for k, v in metrics.items()}
    ctx.emit("metrics", step=ctx.step, metrics=values)


def _worker() -> Any | None:
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def classify(exc: BaseException) -> Reason:
    if isinstance(exc, ImportError):
        return "import"
    if isinstance(exc, MemoryError) or "ResourceExhausted" in type(exc).__name__ or "out of memory" in str(exc):
        return "oom"
    return "exception"


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Model prints go to the run's log (one trial per worker process at a time)."""
    with path.open("a", encoding="utf-8") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        yield


def run_trial(task: TrialTask) -> TrialOutcome:
    """Run one attempt. Never raises for a model failure: the outcome says what happened."""
    from candle_lab.models import interpret, model_runner

    worker = _worker()
    run_dir = Path(task.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RESULT_FILE).unlink(missing_ok=True)
    started = time.time()
    ctx = TrialContext(task, worker, run_dir, started)
    where = {
        "worker": getattr(worker, "name", None) if worker is not None else None,
        "host": socket.gethostname(),
        "gpu": os.environ.get("CUDA_VISIBLE_DEVICES") or None,
    }
    if worker is not None:
        where["worker"] = str(worker.name) if worker.name is not None else worker.address
    ctx.emit("start", address=getattr(worker, "address", None), **where)
    (run_dir / PARAMS_FILE).write_text(json.dumps(task.params, indent=2, default=str), encoding="utf-8")

    token = _current.set(ctx)
    objective: float | None = None
    metrics: dict[str, float] = {}
    reason: str | None = None
    error: str | None = None
    try:
        with _output_to(run_dir / LOG_FILE):
            runner = model_runner(task.model, task.fn)
            result = interpret(runner(dict(task.params)), task.metric)
        metrics = result.metrics
        if math.isfinite(result.objective):
            objective = result.objective
        else:
            reason = "nan"
            error = result.detail or f"the objective {task.metric!r} is {result.objective}"
    except Exception as exc:
        reason = classify(exc)
        error = "".join(traceback.format_exception(exc))
    finally:
        _current.reset(token)

    outcome = TrialOutcome(
        trial_id=task.trial_id,
        attempt=task.attempt,
        state="completed" if reason is None else "failed",
        objective=objective,
        metrics=metrics,
        started=started,
        ended=time.time(),
        reason=reason,
        error=error,
        **where,
    )
    tmp = run_dir / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(outcome.to_json(), indent=2, allow_nan=True, default=str), encoding="utf-8")
    tmp.replace(run_dir / RESULT_FILE)
    return outcome


def read_outcome(run_dir: Path) -> TrialOutcome | None:
    """The outcome a worker left in a run folder, if it finished."""
    try:
        return TrialOutcome.from_json(json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
