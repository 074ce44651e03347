"""The optimizer contract shared by every search algorithm."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Proposal:
    """A point to evaluate; ``run_id`` is set when the point has its own id (UPF);
    ``origin`` says where it came from when the algorithm tracks it (GA: generation,
    parents' run ids, operator), stored with the trial."""

    params: dict[str, Any]
    run_id: str | None = None
    origin: dict[str, Any] | None = None


@dataclass(frozen=True)
class Observation:
    """A finished evaluation. ``loss`` is the value minimised (the objective, negated
    for maximisation); ``None`` for a trial that failed and gives no value. With several
    objectives ``losses`` holds each one's; with constraints ``feasible`` says whether
    the trial satisfied them (False too for a trial that ran out of memory)."""

    params: Mapping[str, Any]
    loss: float | None
    run_id: str | None = field(default=None)
    losses: tuple[float, ...] | None = None
    feasible: bool | None = None


class Optimizer(Protocol):
    """ask/tell over one search space.

    ``ask`` may return fewer points than asked when the algorithm has no more
    (a finished grid); ``register`` tells a restarted optimizer which points an earlier
    run of the same experiment already proposed, so that they are not proposed again.
    """

    def ask(self, n: int = 1) -> list[Proposal]: ...

    def tell(self, observations: Sequence[Observation]) -> None: ...

    def register(self, proposals: Sequence[Proposal]) -> None: ...

    @property
    def exhausted(self) -> bool: ...

    @property
    def adaptive(self) -> bool:
        """True when proposals depend on results (then proposing ahead costs quality)."""
        ...
