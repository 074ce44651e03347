"""Trials: the driver–worker contract (:mod:`.protocol`), what model code sees
(:mod:`.context`), per-trial output (:mod:`.output`) and the runner on the worker
(:mod:`.runner`, which imports the model adapters; import it from there).
"""

from candle_lab.trial.context import TrialContext, TrialTimeout, current_trial, report, request_stop
from candle_lab.trial.protocol import (
    RETRYABLE,
    TOPIC,
    MetricsEvent,
    Reason,
    StartEvent,
    TrialOutcome,
    TrialTask,
    WorkerEvent,
    parse_event,
    read_outcome,
    started_attempts,
)

__all__ = [
    "RETRYABLE",
    "TOPIC",
    "MetricsEvent",
    "Reason",
    "StartEvent",
    "TrialContext",
    "TrialOutcome",
    "TrialTask",
    "TrialTimeout",
    "WorkerEvent",
    "current_trial",
    "parse_event",
    "read_outcome",
    "report",
    "request_stop",
    "started_attempts",
]
