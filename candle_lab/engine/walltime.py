"""Walltime-aware placement: how long a trial will run, and which workers have that long (pure).

A SLURM worker winds down ``notice`` seconds before its job's end (SLURM's ``--signal``
asks its trial to stop at the next epoch boundary; its staggered retirement begins): its
usable time is ``end - notice - now``. A trial goes only to workers whose usable time
holds its predicted duration plus a slack (:func:`slack`); where none does, the engine
asks for a fresh worker instead. Predictions come from the experiment's own completed
trials (:class:`DurationModel`).
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Mapping
from typing import Any

MIN_COMPLETED = 2  # completed trials before durations are predicted
SLACK_MIN = 30.0  # seconds: slurmctld checks --signal times every 30 s, so a notice may come that early
SLACK_SHARE = 0.1  # ... and predictions err: 10 % of the predicted time
EPOCHS = "epochs"  # the parameter that says how many epochs a trial trains


def _epochs(params: Mapping[str, Any]) -> float | None:
    value = params.get(EPOCHS)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)


class DurationModel:
    """Predicted run time of a trial from the completed ones (a bounded window).

    With an ``epochs`` parameter: the median seconds per epoch × the trial's epochs; else
    the median duration. None until :data:`MIN_COMPLETED` trials completed."""

    def __init__(self, window: int = 256) -> None:
        self._per_epoch: deque[float] = deque(maxlen=window)
        self._durations: deque[float] = deque(maxlen=window)
        self._medians: tuple[float | None, float | None] | None = None

    def add(self, duration: float, params: Mapping[str, Any]) -> None:
        """A completed attempt that ran from its first epoch (resumed ones ran part of it)."""
        if duration < 0:
            return
        self._durations.append(duration)
        epochs = _epochs(params)
        if epochs is not None:
            self._per_epoch.append(duration / epochs)
        self._medians = None

    @property
    def completed(self) -> int:
        return len(self._durations)

    def predict(self, params: Mapping[str, Any]) -> float | None:
        if self._medians is None:
            self._medians = (
                statistics.median(self._per_epoch) if len(self._per_epoch) >= MIN_COMPLETED else None,
                statistics.median(self._durations) if len(self._durations) >= MIN_COMPLETED else None,
            )
        per_epoch, duration = self._medians
        epochs = _epochs(params)
        if per_epoch is not None and epochs is not None:
            return per_epoch * epochs
        return duration


def slack(predicted: float) -> float:
    """Time kept free beyond a prediction: max(:data:`SLACK_MIN`, 10 % of it)."""
    return max(SLACK_MIN, SLACK_SHARE * predicted)


def usable(ends: float, notice: float, now: float) -> float:
    """Seconds a worker whose job ends at ``ends`` still runs trials."""
    return ends - notice - now


def fits(remaining: float, predicted: float, margin: float) -> bool:
    """Whether a trial predicted to take ``predicted`` seconds, plus ``margin``, fits in ``remaining``."""
    return remaining >= predicted + margin


def fitting(
    ends: Mapping[str, float | None], predicted: float, now: float, notice: float,
    free_at: Mapping[str, float] | None = None,
) -> list[str]:
    """The workers (of ``address -> job end``) a trial predicted to take ``predicted`` fits
    on; a worker whose end is unknown fits. A busy worker starts the trial only once it is
    free (``free_at``: address -> when its trials are predicted to end)."""
    margin, free_at = slack(predicted), free_at or {}
    return [
        a for a, end in ends.items()
        if end is None or fits(usable(end, notice, max(now, free_at.get(a, now))), predicted, margin)
    ]
