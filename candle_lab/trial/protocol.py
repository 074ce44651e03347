"""The contract between the driver and its workers: what a worker is asked to run
(:class:`TrialTask`), what it hands back (:class:`TrialOutcome`), the events it sends while
the trial runs (:class:`StartEvent`, :class:`MetricsEvent`) and what it leaves on disk.

Plain data: nothing here runs a model or talks to dask.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from candle_lab.store.layout import RESULT_FILE, STARTS_DIR

TOPIC = "candle_lab"  # dask event topic of the workers' events

Reason = Literal[
    "exception", "import", "oom", "disk-full", "nan", "timeout", "lost-worker", "stopped", "early-stop",
    "walltime", "preempted", "node-fail", "cancelled",  # SLURM ended the worker's job (or is about to)
]
RETRYABLE: frozenset[str] = frozenset(
    {"exception", "oom", "lost-worker", "walltime", "preempted", "node-fail", "cancelled"}
)
# Not the trial's doing (its job's walltime, a preemption, a node failure): retried without
# counting against trial.retries (candle_lab.engine.retry).
FREE_RETRY: frozenset[str] = frozenset({"walltime", "preempted", "node-fail"})


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
    gpus: int = 0  # the worker's GPUs (compute.gpus)
    gpu_share: float | None = None  # GPUs of one trial when set (compute.gpus_per_trial): one per worker process
    gpu_sample: float = 5.0  # seconds between samples of the trial's GPUs (candle_lab.trial.gpus)
    save_model: bool = True
    checkpoint: bool = False
    resume: bool = False  # save each epoch and start an attempt from the last saved (trial.resume)
    required: tuple[tuple[str, str], ...] = ()  # (metric, spec field): other objectives, constrained metrics
    interval: tuple[int, int] | None = None  # PBT: train from epoch [0] to epoch [1] ...
    restore_from: str | None = None  # ... starting from the checkpoint in this run folder
    uq: dict[str, Any] | None = None  # ensemble member: method, seed, passes (candle_lab.uq)
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


# ------------------------------------------------------------------ worker events
@dataclass(frozen=True)
class StartEvent:
    """The attempt began on a worker (sent once it has run a moment, or first reports)."""

    kind: ClassVar[str] = "start"
    trial_id: int
    attempt: int
    time: float
    started: float
    address: str | None  # the dask worker's address (to reach it with stop requests)
    lane: str | None  # the worker's name as the Gantt chart shows it
    host: str | None
    gpu: str | None


@dataclass(frozen=True)
class MetricsEvent:
    """Metrics of one step (epoch) of a running attempt."""

    kind: ClassVar[str] = "metrics"
    trial_id: int
    attempt: int
    time: float
    step: int
    metrics: dict[str, float]


WorkerEvent = StartEvent | MetricsEvent
_EVENTS: dict[str, type[StartEvent] | type[MetricsEvent]] = {"start": StartEvent, "metrics": MetricsEvent}


def to_message(experiment: str, event: WorkerEvent) -> dict[str, Any]:
    """An event as dask carries it (a plain dict tagged with its experiment). dask's
    scheduler overwrites a ``worker`` key with the worker's address: hence ``lane``."""
    return {"kind": event.kind, "experiment": experiment, **asdict(event)}


def parse_event(message: Any, experiment: str) -> WorkerEvent | None:
    """The typed event of ``experiment`` in a dask event, or None (another experiment's, or
    not one of ours)."""
    if isinstance(message, tuple) and len(message) == 2:  # (time, message) as dask hands it
        message = message[1]
    if not isinstance(message, dict) or message.get("experiment") != experiment:
        return None
    kind = _EVENTS.get(str(message.get("kind")))
    if kind is None:
        return None
    try:
        return kind(**{f.name: message[f.name] for f in dataclasses.fields(kind)})
    except (KeyError, TypeError):
        return None


# ------------------------------------------------------------------ what workers leave on disk
def read_outcome(run_dir: Path) -> TrialOutcome | None:
    """The outcome a worker left in a run folder, if it finished."""
    try:
        return TrialOutcome.from_json(json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


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
