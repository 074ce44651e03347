"""Trial and experiment states, as stored (the strings on disk never change)."""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.10

    class StrEnum(str, Enum):
        def __str__(self) -> str:
            return str(self.value)


class TrialState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    CANCELLED = "cancelled"


FINAL_STATES: frozenset[str] = frozenset(
    {TrialState.COMPLETED, TrialState.FAILED, TrialState.STOPPED, TrialState.CANCELLED}
)


class ExperimentState(StrEnum):
    CREATED = "created"  # stored, no driver has run it yet
    RUNNING = "running"
    COMPLETED = "completed"  # the search ended: budget, target or exhausted
    STOPPED = "stopped"  # a user asked
    FAILED = "failed"  # the driver could not run it (its message in ended_because)
    INTERRUPTED = "interrupted"  # Ctrl-C in the driver
    CRASHED = "crashed"  # read, never stored: "running" with no live driver
