"""Random search: independent samples (log-uniform where a parameter is on a log scale)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from candle_lab.optimizers.base import Observation, Proposal
from candle_lab.space import SearchSpace


class RandomSearch:
    adaptive = False
    exhausted = False

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self._space = space
        self._seed = seed
        self._rng = np.random.default_rng(seed)

    def ask(self, n: int = 1) -> list[Proposal]:
        return [Proposal(p) for p in self._space.sample(self._rng, n)]

    def tell(self, observations: Sequence[Observation]) -> None:
        """Random search does not learn from results."""

    def register(self, proposals: Sequence[Proposal]) -> None:
        # A resumed search continues on a fresh, still reproducible stream.
        self._rng = np.random.default_rng([self._seed, len(proposals)])
