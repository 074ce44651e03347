"""Proposals off the dispatch path.

The engine never waits on an adaptive optimizer. A :class:`BackgroundProposer` owns the
optimizer on a thread: it applies results as they come and proposes in rounds, one
round for all the points wanted at that moment (one surrogate fit), plus a reserve
sized from the measured completion rate and round time, so that a trial that ends is
replaced at once. Rounds are spaced so that the optimizer's thread is busy at most
``MAX_DUTY`` of the time unless the workers wait: a round costs about the same for one
point as for fifty, and the scheduler shares the driver's process, so at hundreds of
completions a second fewer, larger rounds keep the workers busier. ``take`` hands over
what is ready and never blocks; the engine is woken when more is ready. When workers
wait for proposals for more than a small share of their time, the proposer makes the
optimizer cheaper (``degrade``) and says so in a :class:`Notice` the engine records.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from candle_lab.optimizers.base import Observation, Optimizer, Proposal

log = logging.getLogger(__name__)

STARVED_SHARE = 0.01  # workers may wait for proposals this share of their time ...
STARVED_WINDOW = 10.0  # ... measured over this many seconds, before proposals get cheaper
RATE_WINDOW = 30.0  # completion rate: results told over the last this many seconds
RECENT_ROUNDS = 5  # the reserve covers the slowest of the last rounds ...
RESERVE_MARGIN = 2.0  # ... this many times over
MAX_DUTY = 0.25  # rounds not needed by waiting workers keep the thread busy at most this share


class Proposer(Protocol):
    def take(self, n: int) -> list[Proposal]:
        """Up to ``n`` proposals."""
        ...

    def tell(self, observations: Sequence[Observation]) -> None: ...

    @property
    def exhausted(self) -> bool: ...

    def notices(self) -> list[Notice]:
        """What happened that the store should record (then forgotten here)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Notice:
    """Something the proposer did or saw, for the experiment's event log."""

    kind: str  # "proposer-fallback" or "proposer-slow"
    detail: dict[str, Any] = field(default_factory=dict)


class DirectProposer:
    """Calls the optimizer in the caller's thread (cheap or batch algorithms)."""

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer
        self.ask_seconds: list[float] = []

    def take(self, n: int) -> list[Proposal]:
        if n <= 0:
            return []
        start = time.perf_counter()
        out = self.optimizer.ask(n)
        self.ask_seconds.append(time.perf_counter() - start)
        return out

    def tell(self, observations: Sequence[Observation]) -> None:
        if observations:
            self.optimizer.tell(observations)

    @property
    def exhausted(self) -> bool:
        return self.optimizer.exhausted

    def notices(self) -> list[Notice]:
        return []

    def close(self) -> None:
        """Nothing runs in the background."""


class Starvation:
    """Slot-seconds that free workers waited for proposals, over a sliding window.

    Pure bookkeeping: ``wanted`` is called with the shortfall each time it changes."""

    def __init__(self, window: float = STARVED_WINDOW) -> None:
        self.window = window
        self._shortfall = 0
        self._since = 0.0
        self._spans: deque[tuple[float, float]] = deque()  # (end time, slot-seconds)

    def wanted(self, shortfall: int, now: float) -> None:
        if self._shortfall:
            self._spans.append((now, self._shortfall * (now - self._since)))
        self._shortfall, self._since = max(0, shortfall), now

    def share(self, slots: int, now: float) -> float:
        """Waited slot-seconds over the window, as a share of ``slots`` × window."""
        while self._spans and self._spans[0][0] < now - self.window:
            self._spans.popleft()
        waited = sum(s for _, s in self._spans) + self._shortfall * (now - self._since)
        return waited / (max(1, slots) * self.window)


class BackgroundProposer:
    """Runs the optimizer on its own thread; ``take`` returns what is ready, at once."""

    def __init__(
        self,
        optimizer: Optimizer,
        capacity: int = 1,
        on_ready: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.optimizer = optimizer
        self.capacity = max(1, capacity)
        self.on_ready = on_ready
        self.clock = clock
        self.ask_seconds: list[float] = []  # seconds of each proposal round
        self.round_sizes: list[int] = []
        self._ready: list[Proposal] = []
        self._told: list[Observation] = []
        self._told_at: deque[tuple[float, int]] = deque()
        self._wanted = 0  # proposals the engine asked for and did not get
        self._recent_rounds: deque[float] = deque(maxlen=RECENT_ROUNDS)
        self._next_round = -math.inf  # a round nobody waits for starts no earlier than this
        self._starved = Starvation()
        self._slow_said = -math.inf
        self._notices: list[Notice] = []
        self.optimizer_told = False  # a first result has arrived
        self._closed = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="candle-lab-proposer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ engine side
    def take(self, n: int) -> list[Proposal]:
        with self._cond:
            if self._error is not None:
                raise RuntimeError("the optimizer failed") from self._error
            n = max(0, n)
            out, self._ready = self._ready[:n], self._ready[n:]
            self._wanted = n - len(out)
            self._starved.wanted(self._wanted, self.clock())
            self._cond.notify_all()
            return out

    def tell(self, observations: Sequence[Observation]) -> None:
        if not observations:
            return
        with self._cond:
            self._told.extend(observations)
            self.optimizer_told = True
            self._told_at.append((self.clock(), len(observations)))
            self._cond.notify_all()

    @property
    def exhausted(self) -> bool:
        with self._cond:
            return self.optimizer.exhausted and not self._ready and not self._told

    def notices(self) -> list[Notice]:
        with self._cond:
            out, self._notices = self._notices, []
            return out

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    # ------------------------------------------------------------------ decisions
    def completion_rate(self, now: float) -> float:
        """Results told per second over the recent window."""
        while self._told_at and self._told_at[0][0] < now - RATE_WINDOW:
            self._told_at.popleft()
        if not self._told_at:
            return 0.0
        span = max(now - self._told_at[0][0], 1.0)
        return sum(k for _, k in self._told_at) / span

    @property
    def round_seconds(self) -> float:
        """The slowest of the recent proposal rounds."""
        return max(self._recent_rounds, default=0.0)

    def _expected(self, now: float) -> float:
        """Trials expected to end from one round to the next, with a margin."""
        return self.completion_rate(now) * self.round_seconds / MAX_DUTY * RESERVE_MARGIN

    def reserve(self, now: float) -> int:
        """Proposals kept ready beyond what is wanted, so that no trial that ends waits
        for a round (never more than the workers)."""
        return min(self.capacity, math.ceil(self._expected(now)))

    def _need(self, now: float) -> int:
        return max(self._wanted, 1 if not self._ready else 0) + self.reserve(now) - len(self._ready)

    def _due(self, now: float) -> int:
        """Points to propose now: what is needed, once the pause after the last round is
        over; at once when the engine waits, or when a reserve as large as the workers
        could not cover the pause anyway."""
        need = self._need(now)
        if need <= 0:
            return 0
        waiting = self._wanted > 0 and not self._ready
        uncovered = self._expected(now) > self.capacity
        return need if waiting or uncovered or now >= self._next_round else 0

    # ------------------------------------------------------------------ thread
    def _loop(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._closed and not self._told and not self._due(self.clock()):
                        pause = self._next_round - self.clock()
                        self._cond.wait(min(1.0, pause) if pause > 0 and self._need(self.clock()) > 0 else 1.0)
                    if self._closed:
                        return
                    told, self._told = self._told, []
                    need = self._due(self.clock())
                if told:
                    self.optimizer.tell(told)
                if need > 0 and not self.optimizer.exhausted:
                    self._round(need)
        except BaseException as exc:  # surfaced to the engine by take()
            log.exception("optimizer thread failed")
            with self._cond:
                self._error = exc
                self._cond.notify_all()
            if self.on_ready is not None:
                self.on_ready()

    def _round(self, need: int) -> None:
        start = time.perf_counter()
        fresh = self.optimizer.ask(need)
        seconds = time.perf_counter() - start
        self.ask_seconds.append(seconds)
        self.round_sizes.append(len(fresh))
        with self._cond:
            self._recent_rounds.append(seconds)
            self._next_round = self.clock() + seconds * (1 / MAX_DUTY - 1)
            self._ready.extend(fresh)
            wanted = self._wanted
            self._check_starvation(seconds, len(fresh))
            self._cond.notify_all()
        if wanted and self.on_ready is not None:
            self.on_ready()

    def _check_starvation(self, seconds: float, made: int) -> None:
        if not self.optimizer_told:
            return  # the first round (initial design) is the ramp-up, not a shortfall
        now = self.clock()
        share = self._starved.share(self.capacity, now)
        if share <= STARVED_SHARE:
            return
        detail = {
            "idle_share": round(share, 4),
            "completions_per_s": round(self.completion_rate(now), 3),
            "proposals_per_s": round(made / seconds, 3) if seconds > 0 else None,
            "round_seconds": round(seconds, 4),
        }
        degrade = getattr(self.optimizer, "degrade", None)
        change = degrade() if degrade is not None else None
        if change is not None:
            log.warning("proposals cannot keep up with the workers (%s); falling back: %s", detail, change)
            self._notices.append(Notice("proposer-fallback", {**detail, "change": change}))
            self._starved = Starvation()
        elif now - self._slow_said > 60.0:
            log.warning("proposals cannot keep up with the workers (%s); nothing cheaper is left", detail)
            self._notices.append(Notice("proposer-slow", detail))
            self._slow_said = now
