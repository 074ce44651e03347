"""Evolutionary search (CANDLE's GA workflow) with DEAP's operators.

Each parameter is a gene: reals and integers by value (by log value on a log scale),
ordered choices by position, unordered choices by index. A child comes from two parents
picked by tournament among the *pool* — the ``population`` best individuals evaluated so
far (``elitism``), or the latest ``population`` (without it) — mixed by crossover with
probability ``crossover_rate`` (simulated binary crossover for numbers, uniform swap for
choices) and mutated gene by gene with probability ``mutation_rate`` (Gaussian with the
parameter's ``sigma`` when it has one, as CANDLE's GA files give it, else bounded
polynomial; a fresh draw for unordered choices).

Steady state by default: a child is made the moment a worker frees up, from whatever has
been evaluated. The engine runs ``generational`` searches in rounds of ``population``,
each waiting for the last (CANDLE's barrier). Every proposal carries its generation (one
more than its youngest parent's) and its parents' run ids, which the store keeps.

With several objectives the pool is chosen by NSGA-II (DEAP's ``selNSGA2``: fronts of
non-dominated sorting, then crowding distance) and parents by tournament on front rank,
then crowding. With constraints, infeasible individuals come after every feasible one.

DEAP draws from Python's global ``random``; the search keeps its own state of that
generator and swaps it in only while its operators run, so a seeded search repeats.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from candle_lab.errors import MissingDependency
from candle_lab.optimizers.base import Observation, Proposal
from candle_lab.space import CategoricalParam, IntegerParam, RealParam, SearchSpace, point_key

SBX_ETA = 15.0  # simulated binary crossover: children near their parents (DEAP's usual 10-20)
POLY_ETA = 20.0  # polynomial mutation: small steps, now and then a long one
FRESH_TRIES = 20  # draws of a child before one already proposed is accepted again


def _deap() -> Any:
    try:
        from deap import base, tools
    except ImportError:  # pragma: no cover - the ga extra is installed in CI
        raise MissingDependency("deap", "ga", "search.algorithm 'ga'") from None
    return base, tools


@dataclass(frozen=True)
class _Gene:
    """How one parameter is coded: ``kind`` real | integer | ordered | choice."""

    name: str
    kind: str
    low: float
    high: float
    log: bool = False
    sigma: float | None = None
    choices: tuple[Any, ...] = ()

    @staticmethod
    def of(p: RealParam | IntegerParam | CategoricalParam) -> _Gene:
        if isinstance(p, CategoricalParam):
            top = float(len(p.choices) - 1)
            kind = "ordered" if p.ordered and len(p.choices) > 1 else "choice"
            return _Gene(p.name, kind, 0.0, top, sigma=p.sigma, choices=tuple(p.choices))
        kind = "integer" if isinstance(p, IntegerParam) else "real"
        log = p.log and p.sigma is None  # a sigma is in the parameter's own units
        low, high = (math.log(p.low), math.log(p.high)) if log else (float(p.low), float(p.high))
        return _Gene(p.name, kind, low, high, log, p.sigma)

    def encode(self, value: Any) -> float:
        if self.choices:
            keys = [point_key({"v": c}) for c in self.choices]
            key = point_key({"v": value})
            return float(keys.index(key)) if key in keys else 0.0
        number = float(value)
        return math.log(number) if self.log else number

    def decode(self, gene: float) -> Any:
        gene = min(self.high, max(self.low, gene))
        if self.choices:
            return self.choices[round(gene)]
        if self.kind == "integer":
            value = round(math.exp(gene)) if self.log else round(gene)
            low, high = (round(math.exp(self.low)), round(math.exp(self.high))) if self.log else (self.low, self.high)
            return int(min(high, max(low, value)))
        return float(math.exp(gene) if self.log else gene)


@dataclass(frozen=True)
class _Member:
    """An evaluated individual: its genes, loss (minimised), run id and generation."""

    genes: tuple[float, ...]
    loss: float
    run_id: str | None
    generation: int
    order: int  # when it was told (the latest pool without elitism)
    losses: tuple[float, ...] = ()  # several objectives: each one's loss
    feasible: bool = True


class GeneticSearch:
    adaptive = True

    def __init__(
        self,
        space: SearchSpace,
        *,
        population: int = 20,
        generations: int | None = None,
        mutation_rate: float = 0.2,
        crossover_rate: float = 0.8,
        tournament_size: int = 3,
        elitism: bool = True,
        seed: int = 0,
        objectives: int = 1,
    ) -> None:
        self._base, self._tools = _deap()
        self._space = space
        self._genes = [_Gene.of(p) for p in space.searchable]
        self.population = population
        self.generations = generations
        self.mutation_rate = mutation_rate
        self.crossover_rate = crossover_rate
        self.tournament_size = tournament_size
        self.elitism = elitism
        self._rng = np.random.default_rng(seed)
        self._random = random.Random(seed).getstate()
        self._members: list[_Member] = []
        self._generation: dict[str, int] = {}  # run id or point key -> generation it was proposed in
        self._seen: set[str] = set()  # points proposed so far
        self._proposed = 0

        self._objectives = objectives

        class Fitness(self._base.Fitness):  # type: ignore[name-defined]
            weights = (-1.0,) * objectives  # losses are minimised

        self._fitness = Fitness

    # ------------------------------------------------------------------ contract
    @property
    def exhausted(self) -> bool:
        return self.generations is not None and self._proposed >= self.population * (self.generations + 1)

    def ask(self, n: int = 1) -> list[Proposal]:
        if self.generations is not None:
            n = min(n, self.population * (self.generations + 1) - self._proposed)
        out: list[Proposal] = []
        with self._own_random():
            for _ in range(max(0, n)):
                out.append(self._next())
        return out

    def tell(self, observations: Sequence[Observation]) -> None:
        for obs in observations:
            if obs.loss is None or not math.isfinite(obs.loss):
                continue  # a failed trial breeds nothing
            params = self._space.flat(obs.params)
            genes = tuple(g.encode(params[g.name]) for g in self._genes if g.name in params)
            if len(genes) != len(self._genes):
                continue
            losses = tuple(obs.losses) if obs.losses is not None else (float(obs.loss),)
            if len(losses) != self._objectives or not all(math.isfinite(v) for v in losses):
                continue
            generation = self._generation.get(obs.run_id or "", self._generation.get(point_key(obs.params), 0))
            self._members.append(_Member(genes, float(obs.loss), obs.run_id, generation, len(self._members), losses,
                                         obs.feasible is not False))

    def register(self, proposals: Sequence[Proposal]) -> None:
        """An earlier run's proposals: their generations, and the count toward the budget."""
        for p in proposals:
            self._note(p)
        self._rng = np.random.default_rng([int(self._rng.integers(1 << 31)), len(proposals)])
        self._random = random.Random(int(self._rng.integers(1 << 31))).getstate()

    # ------------------------------------------------------------------ breeding
    def pool(self) -> list[_Member]:
        """Who may be a parent now."""
        if not self.elitism:
            return self._members[-self.population :]
        if self._objectives == 1:
            return sorted(self._members, key=lambda m: (not m.feasible, m.loss, m.order))[: self.population]
        pool: list[_Member] = []
        for feasible in (True, False):  # NSGA-II among the feasible, then (if room) the infeasible
            group = [self._individual(m) for m in self._members if m.feasible is feasible]
            room = min(self.population - len(pool), len(group))
            if room > 0:
                pool += [ind.member for ind in self._tools.selNSGA2(group, room)]
        return pool

    def _next(self) -> Proposal:
        pool = self.pool()
        if self._proposed < self.population or not pool:
            # The initial generation, or nothing evaluated yet to breed from.
            point = self._space.sample(self._rng, 1)[0]
            return self._note(Proposal(point, origin={"generation": 0, "operator": "initial"}))
        for _ in range(FRESH_TRIES):
            genes, parents, operator = self._child(pool)
            point = self._space.finish(self._decode(genes))
            if point_key(point) not in self._seen:
                break
        generation = 1 + max(p.generation for p in parents)
        origin = {
            "generation": generation,
            "parents": [p.run_id for p in parents if p.run_id],
            "operator": operator,
        }
        return self._note(Proposal(point, origin=origin))

    def _child(self, pool: list[_Member]) -> tuple[list[float], list[_Member], str]:
        tools = self._tools
        individuals = [self._individual(m) for m in pool]
        size = min(self.tournament_size, len(individuals))
        if self._objectives == 1:
            picked = tools.selTournament(individuals, 2, size)
        else:
            picked = self._by_rank(individuals, size)
        first, second = (list(p) for p in picked)
        parents = [p.member for p in picked]
        operator = "mutation"
        if len(pool) > 1 and random.random() < self.crossover_rate:
            self._crossover(first, second)
            operator = "crossover+mutation"
            if parents[0] is parents[1]:
                parents = parents[:1]
        else:
            parents = parents[:1]
        self._mutate(first)
        return first, parents, operator

    def _individual(self, member: _Member) -> list[float]:
        individual = _Individual(member.genes)
        individual.fitness = self._fitness(member.losses or (member.loss,))
        individual.member = member
        return individual

    def _by_rank(self, individuals: list[Any], size: int) -> list[Any]:
        """Two tournament winners by NSGA-II's order: feasibility, front rank, then the
        larger crowding distance (DEAP's non-dominated sorting and crowding)."""
        tools = self._tools
        rank: dict[int, tuple[int, int, float]] = {}
        for feasible in (True, False):
            group = [ind for ind in individuals if ind.member.feasible is feasible]
            for level, front in enumerate(tools.sortNondominated(group, len(group))):
                tools.emo.assignCrowdingDist(front)
                for ind in front:
                    rank[id(ind)] = (int(not feasible), level, -ind.fitness.crowding_dist)
        return [min(random.sample(individuals, size), key=lambda ind: rank[id(ind)]) for _ in range(2)]

    def _crossover(self, a: list[float], b: list[float]) -> None:
        tools = self._tools
        with self._subset(a, b, self._indices("real", "integer", "ordered")) as (xa, xb, genes):
            if xa:
                tools.cxSimulatedBinaryBounded(xa, xb, SBX_ETA, [g.low for g in genes], [g.high for g in genes])
        with self._subset(a, b, self._indices("choice")) as (xa, xb, _):
            if xa:
                tools.cxUniform(xa, xb, 0.5)

    def _decode(self, genes: Sequence[float]) -> dict[str, Any]:
        return {g.name: g.decode(x) for g, x in zip(self._genes, genes, strict=True)}

    def _mutate(self, a: list[float]) -> None:
        """Mutate the genes of the parameters the child has (a conditional space: those
        whose conditions hold; the others wait unchanged until a crossover brings them in)."""
        tools, rate = self._tools, self.mutation_rate
        present = self._space.active(self._decode(a)) if self._space.conditional else None
        numeric = self._indices("real", "integer", "ordered", among=present)
        gaussian = [i for i in numeric if self._genes[i].sigma is not None]
        polynomial = [i for i in numeric if self._genes[i].sigma is None and self._genes[i].high > self._genes[i].low]
        with self._subset(a, a, gaussian) as (xa, _, genes):
            if xa:
                tools.mutGaussian(xa, [0.0] * len(xa), [g.sigma for g in genes], rate)
        with self._subset(a, a, polynomial) as (xa, _, genes):
            if xa:
                tools.mutPolynomialBounded(xa, POLY_ETA, [g.low for g in genes], [g.high for g in genes], rate)
        with self._subset(a, a, self._indices("choice", among=present)) as (xa, _, genes):
            if xa:
                tools.mutUniformInt(xa, [0] * len(xa), [len(g.choices) - 1 for g in genes], rate)
        for i, g in enumerate(self._genes):
            a[i] = min(g.high, max(g.low, a[i]))

    @contextlib.contextmanager
    def _subset(
        self, a: list[float], b: list[float], indices: Sequence[int]
    ) -> Iterator[tuple[list[float], list[float], list[_Gene]]]:
        """The genes at ``indices`` of two individuals as lists that an operator changes
        in place (written back after), with how those genes are coded."""
        xa, xb = [a[i] for i in indices], [b[i] for i in indices]
        yield xa, xb, [self._genes[i] for i in indices]
        for j, i in enumerate(indices):
            b[i] = xb[j]
            a[i] = xa[j]  # after b: a mutation passes the same individual twice

    def _indices(self, *kinds: str, among: Mapping[str, Any] | None = None) -> list[int]:
        """The genes of these kinds (``among``: of these parameters only)."""
        return [i for i, g in enumerate(self._genes) if g.kind in kinds and (among is None or g.name in among)]

    def _note(self, proposal: Proposal) -> Proposal:
        key = point_key(proposal.params)
        generation = int((proposal.origin or {}).get("generation", 0))
        self._generation[proposal.run_id or key] = generation
        self._generation.setdefault(key, generation)
        self._seen.add(key)
        self._proposed += 1
        return proposal

    @contextlib.contextmanager
    def _own_random(self) -> Iterator[None]:
        outside = random.getstate()
        random.setstate(self._random)
        try:
            yield
        finally:
            self._random = random.getstate()
            random.setstate(outside)


class _Individual(list[float]):
    """What DEAP's operators take: a list of genes with a ``fitness``."""

    fitness: Any
    member: _Member

