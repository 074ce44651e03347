"""Proposals off the dispatch path.

The engine never calls an adaptive optimizer on its own loop: a
:class:`BackgroundProposer` owns the optimizer on a thread, applies results as they
come, and keeps a proposal ready, so that a finished trial is replaced at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from candle_lab.optimizers.base import Observation, Optimizer, Proposal

log = logging.getLogger(__name__)


class Proposer(Protocol):
    def take(self, n: int) -> list[Proposal]:
        """Up to ``n`` proposals; fewer only when the optimizer has no more."""
        ...

    def tell(self, observations: Sequence[Observation]) -> None: ...

    @property
    def exhausted(self) -> bool: ...

    def close(self) -> None: ...


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

    def close(self) -> None:
        """Nothing runs in the background."""


class BackgroundProposer:
    """Runs the optimizer on its own thread and keeps ``ahead`` proposals ready."""

    def __init__(self, optimizer: Optimizer, ahead: int = 1) -> None:
        self.optimizer = optimizer
        self.ahead = max(1, ahead)
        self.ask_seconds: list[float] = []
        self._ready: list[Proposal] = []
        self._told: list[Observation] = []
        self._wanted = 0
        self._closed = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="candle-lab-proposer", daemon=True)
        self._thread.start()

    def take(self, n: int) -> list[Proposal]:
        if n <= 0:
            return []
        with self._cond:
            self._wanted = max(self._wanted, n)
            self._cond.notify_all()
            while len(self._ready) < n and not self._closed and self._error is None:
                if self.optimizer.exhausted and not self._told:
                    break
                self._cond.wait(0.5)
            if self._error is not None:
                raise RuntimeError("the optimizer failed") from self._error
            out, self._ready = self._ready[:n], self._ready[n:]
            self._wanted = 0
            self._cond.notify_all()
            return out

    def tell(self, observations: Sequence[Observation]) -> None:
        if not observations:
            return
        with self._cond:
            self._told.extend(observations)
            self._cond.notify_all()

    @property
    def exhausted(self) -> bool:
        with self._cond:
            return self.optimizer.exhausted and not self._ready

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._closed and not self._told and len(self._ready) >= max(self.ahead, self._wanted):
                        self._cond.wait()
                    if self._closed:
                        return
                    told, self._told = self._told, []
                    need = max(self.ahead, self._wanted) - len(self._ready)
                if told:
                    self.optimizer.tell(told)
                if need > 0 and not self.optimizer.exhausted:
                    start = time.perf_counter()
                    fresh = self.optimizer.ask(need)
                    self.ask_seconds.append(time.perf_counter() - start)
                    with self._cond:
                        self._ready.extend(fresh)
                        self._cond.notify_all()
        except BaseException as exc:  # surfaced to the engine by take()
            log.exception("optimizer thread failed")
            with self._cond:
                self._error = exc
                self._cond.notify_all()

