"""Population based training (CANDLE's PBT workflow), asynchronous.

``population`` members train in intervals of ``interval_epochs`` epochs; each interval is
one trial, run id ``M<member>_I<interval>``, that starts from a checkpoint — its member's
last one, or, after an exploit, another member's — and leaves its own in its run folder
(see :mod:`candle_lab.trial.checkpoint`). When a member's interval ends and its latest
loss ranks in the bottom ``truncation`` fraction of the population's latest losses, its
next interval copies a member of the top fraction (exploit: that member's checkpoint and
hyperparameters, and its place in training: the next interval is the donor's) and
perturbs the mutable hyperparameters (explore: each is multiplied
by one of the ``perturb`` factors, or moved one choice along for ordered choices, or,
with probability ``resample_probability``, drawn afresh). A member waits for nobody:
ranks use what the others reported last, as Ray Tune's PBT does.

Each proposal's ``origin`` holds the member, the interval, the run it starts from and,
after an exploit, the member it copied: the lineage the store keeps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from candle_lab.optimizers.base import Observation, Proposal
from candle_lab.space import CategoricalParam, IntegerParam, RealParam, SearchSpace, sample_param


@dataclass
class _Member:
    index: int
    params: dict[str, Any] = field(default_factory=dict)
    intervals: int = 0  # intervals completed
    loss: float | None = None  # of its latest completed interval
    last_run: str | None = None  # the run holding its latest checkpoint
    current: str | None = None  # the run of the interval in flight
    failed: bool = False  # its last interval failed: it copies a better member next


def run_id(member: int, interval: int, again: int = 0) -> str:
    """``M003_I0005``; ``M003_I0005_2`` for the third try of an interval that failed."""
    base = f"M{member:03d}_I{interval:04d}"
    return f"{base}_{again}" if again else base


class PopulationBasedTraining:
    adaptive = False  # a proposal waits for its member's interval: nothing to propose ahead

    def __init__(
        self,
        space: SearchSpace,
        *,
        population: int,
        intervals: int | None = None,
        truncation: float = 0.25,
        perturb: tuple[float, float] = (0.8, 1.2),
        resample_probability: float = 0.25,
        seed: int = 0,
    ) -> None:
        self._space = space
        self._mutable = [p for p in space.searchable if p.mutable]
        self.intervals = intervals
        self.truncation = truncation
        self.perturb = perturb
        self.resample_probability = resample_probability
        self._rng = np.random.default_rng(seed)
        self.members = [_Member(i) for i in range(population)]
        self._by_run: dict[str, tuple[int, int]] = {}  # run id -> (member, interval)
        self._tries: dict[tuple[int, int], int] = {}  # (member, interval) -> proposals made

    # ------------------------------------------------------------------ contract
    @property
    def exhausted(self) -> bool:
        if self.intervals is None:
            return False
        return all(self._reached(m) >= self.intervals for m in self.members)

    def _reached(self, member: _Member) -> int:
        """Intervals the member has once the one in flight (if any) ends."""
        if member.current is None:
            return member.intervals
        return max(member.intervals, self._by_run[member.current][1] + 1)

    def ask(self, n: int = 1) -> list[Proposal]:
        out: list[Proposal] = []
        for member in self.members:
            if len(out) >= n:
                break
            if member.current is not None or (self.intervals is not None and member.intervals >= self.intervals):
                continue
            out.append(self._next(member))
        return out

    def tell(self, observations: Sequence[Observation]) -> None:
        for obs in observations:
            where = self._by_run.get(obs.run_id or "")
            if where is None:
                continue
            member = self.members[where[0]]
            if obs.run_id == member.current:
                member.current = None
                member.failed = obs.loss is None or not math.isfinite(obs.loss)
            if obs.loss is not None and math.isfinite(obs.loss) and where[1] + 1 > member.intervals:
                member.intervals, member.loss, member.last_run = where[1] + 1, float(obs.loss), obs.run_id
                member.params = dict(obs.params)

    def register(self, proposals: Sequence[Proposal]) -> None:
        """An earlier run's intervals: each member's latest is in flight until told."""
        for p in proposals:
            origin = p.origin or {}
            if p.run_id is None or "member" not in origin:
                continue
            index, interval = int(origin["member"]), int(origin["interval"])
            if index >= len(self.members):
                continue
            self._by_run[p.run_id] = (index, interval)
            self._tries[(index, interval)] = self._tries.get((index, interval), 0) + 1
            member = self.members[index]
            member.current, member.params = p.run_id, dict(p.params)
        self._rng = np.random.default_rng([int(self._rng.integers(1 << 31)), len(proposals)])

    # ------------------------------------------------------------------ exploit and explore
    def _next(self, member: _Member) -> Proposal:
        interval = member.intervals
        origin: dict[str, Any] = {"member": member.index}
        donor = self._donor(member) if member.params else None
        if not member.params:  # its first interval: a random start
            params = self._space.sample(self._rng, 1)[0]
        elif donor is None:
            params = member.params
            origin["from"] = member.last_run
        else:  # the donor's weights, and where it is in training
            params = self.explore(donor.params)
            interval = donor.intervals
            origin.update({"from": donor.last_run, "exploit": donor.index})
        origin["interval"] = interval
        tries = self._tries.get((member.index, interval), 0)
        self._tries[(member.index, interval)] = tries + 1
        run = run_id(member.index, interval, tries)
        self._by_run[run] = (member.index, interval)
        member.current, member.params = run, dict(params)
        if origin.get("from") is None:
            origin.pop("from", None)
        return Proposal(params, run, origin)

    def ranking(self) -> list[_Member]:
        """Members with a result, best (lowest latest loss) first."""
        return sorted((m for m in self.members if m.loss is not None), key=lambda m: (m.loss, m.index))

    def _donor(self, member: _Member) -> _Member | None:
        """The top member this one copies, when it ranks in the bottom fraction (or its
        last interval failed); None to go on from its own checkpoint."""
        ranked = self.ranking()
        cut = max(1, math.floor(len(ranked) * self.truncation))
        top = [m for m in ranked[:cut] if self._may_copy(member, m)]
        if member.failed:
            top = top or [m for m in ranked if self._may_copy(member, m)][:1]
        elif len(ranked) < 2 or member not in ranked[-cut:]:
            return None
        return top[int(self._rng.integers(len(top)))] if top else None

    def _may_copy(self, member: _Member, donor: _Member) -> bool:
        """Another member at least as far along (training never goes back) that has an
        interval left (else the copy would have nothing to train)."""
        finished = self.intervals is not None and donor.intervals >= self.intervals
        return donor is not member and not finished and donor.intervals >= member.intervals

    def explore(self, params: dict[str, Any]) -> dict[str, Any]:
        """The donor's hyperparameters with every mutable one perturbed."""
        out = dict(params)
        for p in self._mutable:
            if p.name not in out:  # absent (its condition fails): stays so
                continue
            if self._rng.random() < self.resample_probability:
                out[p.name] = sample_param(p, self._rng, 1)[0]
            else:
                out[p.name] = self._perturbed(p, out[p.name])
        return out

    def _perturbed(self, p: RealParam | IntegerParam | CategoricalParam, value: Any) -> Any:
        factor = self.perturb[int(self._rng.integers(2))]
        if isinstance(p, CategoricalParam):
            if not p.ordered:
                return p.choices[int(self._rng.integers(len(p.choices)))]
            i = next((k for k, c in enumerate(p.choices) if c == value), 0)
            return p.choices[min(len(p.choices) - 1, max(0, i + (1 if factor > 1 else -1)))]
        moved = float(value) * factor
        if isinstance(p, IntegerParam):
            step = round(moved)
            if step == value and factor != 1:  # small integers still move
                step = value + (1 if factor > 1 else -1)
            return int(min(p.high, max(p.low, step)))
        return float(min(p.high, max(p.low, moved)))
