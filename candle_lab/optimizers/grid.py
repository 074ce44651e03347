"""Grid search: every point of the grid exactly once, optionally in random order."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from candle_lab.optimizers.base import Observation, Proposal
from candle_lab.space import SearchSpace, point_key


class GridSearch:
    """The full factorial grid (reals and integers discretised to ``points_per_dim``).

    With ``shuffle`` the points come in a seeded random order, as CANDLE's random grid.
    Points are produced lazily from their index, so a large grid costs no memory; a
    conditional space lists its valid combinations (each once) up front.
    """

    adaptive = False

    def __init__(self, space: SearchSpace, points_per_dim: int = 5, shuffle: bool = False, seed: int = 0) -> None:
        self._space = space
        self._axes = space.grid_values(points_per_dim)
        # A conditional grid: its valid combinations, listed (no absent parameter varies).
        self._points = list(space.grid_points(points_per_dim)) if space.conditional else None
        self.size = len(self._points) if self._points is not None else math.prod(len(a) for a in self._axes)
        self._order = np.random.default_rng(seed).permutation(self.size) if shuffle else None
        self._cursor = 0
        self._done: set[str] = set()

    def _point(self, position: int) -> dict[str, object]:
        index = int(self._order[position]) if self._order is not None else position
        if self._points is not None:
            return self._points[index]
        return self._space.grid_point(self._axes, index)

    def ask(self, n: int = 1) -> list[Proposal]:
        out: list[Proposal] = []
        while len(out) < n and self._cursor < self.size:
            point = self._point(self._cursor)
            self._cursor += 1
            if point_key(point) not in self._done:
                out.append(Proposal(point))
        return out

    def tell(self, observations: Sequence[Observation]) -> None:
        """Grid search does not learn from results."""

    def register(self, proposals: Sequence[Proposal]) -> None:
        self._done.update(point_key(p.params) for p in proposals)

    @property
    def exhausted(self) -> bool:
        return self._cursor >= self.size
