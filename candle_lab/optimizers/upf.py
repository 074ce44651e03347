"""Unrolled parameter file: the listed runs, in file order, each under its own run id."""

from __future__ import annotations

from collections.abc import Sequence

from candle_lab.optimizers.base import Observation, Proposal
from candle_lab.space import SearchSpace, UpfRun


class UnrolledRuns:
    adaptive = False

    def __init__(self, runs: Sequence[UpfRun], space: SearchSpace | None = None) -> None:
        constants = space.constants if space else {}
        self._runs = [Proposal({**constants, **r.params}, r.id) for r in runs]
        self._cursor = 0
        self._done: set[str] = set()

    def ask(self, n: int = 1) -> list[Proposal]:
        out: list[Proposal] = []
        while len(out) < n and self._cursor < len(self._runs):
            run = self._runs[self._cursor]
            self._cursor += 1
            if run.run_id not in self._done:
                out.append(run)
        return out

    def tell(self, observations: Sequence[Observation]) -> None:
        """The runs are fixed in advance."""

    def register(self, proposals: Sequence[Proposal]) -> None:
        self._done.update(p.run_id for p in proposals if p.run_id is not None)

    @property
    def exhausted(self) -> bool:
        return self._cursor >= len(self._runs)
