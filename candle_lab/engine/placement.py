"""Where the next trials of an adaptive search go, and whether to queue one ahead per worker.

An adaptive search proposes each trial at the last moment, when a worker slot frees.
The slot then waits one driver round trip (completion -> tell -> propose -> submit ->
start), tens of milliseconds: nothing beside minute-long GPU trials, but a percent of a
5-s trial at hundreds of workers. ``Turnaround`` measures that wait against the trials'
duration; once it costs more than ``AHEAD_SHARE`` of the time, the engine keeps one
trial queued on each worker process (``placements``), so that a freed slot starts its
next trial at once, on that worker, without the round trip. Pure bookkeeping: no dask.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Mapping
from typing import Any

AHEAD_SHARE = 0.002  # queue ahead once freed slots wait more than 0.2 % of a trial's time
MIN_SAMPLES = 16


class Turnaround:
    """How long freed slots wait for their next trial, against how long trials run.

    ``freed(address, ended)`` when a trial's result arrives, ``started(address, when)``
    when a new trial starts there; the two are paired first in, first out per worker.
    ``queue_ahead`` latches: once on it stays on (queued trials make the wait vanish).
    """

    def __init__(self, window: int = 64, share: float = AHEAD_SHARE, min_samples: int = MIN_SAMPLES) -> None:
        self.share = share
        self.min_samples = min_samples
        self._freed: dict[str, deque[float]] = {}
        self._gaps: deque[float] = deque(maxlen=window)
        self._durations: deque[float] = deque(maxlen=window)
        self._on = False

    def freed(self, address: str | None, ended: float, duration: float) -> None:
        self._durations.append(max(0.0, duration))
        if address is not None:
            self._freed.setdefault(address, deque()).append(ended)

    def started(self, address: str | None, when: float) -> None:
        waiting = self._freed.get(address) if address is not None else None
        if waiting:
            self._gaps.append(max(0.0, when - waiting.popleft()))

    @property
    def queue_ahead(self) -> bool:
        if not self._on and len(self._gaps) >= self.min_samples and len(self._durations) >= self.min_samples:
            self._on = statistics.median(self._gaps) > self.share * statistics.median(self._durations)
        return self._on

    def figures(self) -> dict[str, float]:
        """The medians behind the decision (for the event that records it)."""
        return {
            "median_wait_s": round(statistics.median(self._gaps), 4) if self._gaps else 0.0,
            "median_trial_s": round(statistics.median(self._durations), 3) if self._durations else 0.0,
        }


def slots(workers: Mapping[str, Mapping[str, Any]], need: Mapping[str, float] | None) -> dict[str, int]:
    """Trials each worker runs at once: its threads, fewer where a trial's resources run out.

    ``workers`` is ``Client.scheduler_info()["workers"]``.
    """
    out = {}
    for address, info in workers.items():
        n = int(info.get("nthreads", 1))
        have = info.get("resources") or {}
        for name, amount in (need or {}).items():
            if amount > 0:
                n = min(n, int(float(have.get(name, 0)) // amount))
        if n > 0:
            out[address] = n
    return out


def placements(slots: Mapping[str, int], in_flight: Mapping[str, int], unplaced: int, n: int) -> list[str]:
    """Addresses for up to ``n`` new trials: every worker filled to its slots plus one queued.

    ``in_flight`` counts the trials submitted to (or running on) each worker; ``unplaced``
    those whose worker is not known yet, which take room somewhere. The emptiest worker
    is served first.
    """
    room = {a: s + 1 - in_flight.get(a, 0) for a, s in slots.items()}
    budget = min(n, sum(max(0, r) for r in room.values()) - unplaced)
    out: list[str] = []
    while len(out) < budget:
        address = max(room, key=room.__getitem__)
        if room[address] <= 0:
            break
        room[address] -= 1
        out.append(address)
    return out
