"""Search algorithms behind one small ask/tell contract."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from candle_lab.optimizers.base import Observation, Optimizer, Proposal
from candle_lab.optimizers.proposer import BackgroundProposer, DirectProposer, Proposer
from candle_lab.space import point_key
from candle_lab.spec import ExperimentSpec

__all__ = [
    "BackgroundProposer",
    "DirectProposer",
    "Enqueued",
    "Observation",
    "Optimizer",
    "Proposal",
    "Proposer",
    "make_optimizer",
]


class Enqueued:
    """``search.enqueue``: these configurations first, as they were given, then the
    wrapped optimizer's proposals (which knows of them as proposed: a BO design or a GA
    population counts them)."""

    def __init__(self, inner: Optimizer, configs: Sequence[dict[str, Any]]) -> None:
        self._inner = inner
        self._queue = list(configs)

    def ask(self, n: int = 1) -> list[Proposal]:
        first = [Proposal(self._queue.pop(0), origin={"enqueued": True}) for _ in range(min(n, len(self._queue)))]
        if first:
            self._inner.register(first)
        return first + (self._inner.ask(n - len(first)) if len(first) < n else [])

    def tell(self, observations: Sequence[Observation]) -> None:
        self._inner.tell(observations)

    def register(self, proposals: Sequence[Proposal]) -> None:
        """An earlier run's proposals: the configurations among them are not run again."""
        done = {point_key(p.params) for p in proposals}
        self._queue = [c for c in self._queue if point_key(c) not in done]
        self._inner.register(proposals)

    @property
    def exhausted(self) -> bool:
        return not self._queue and self._inner.exhausted

    @property
    def adaptive(self) -> bool:
        return self._inner.adaptive

    def __getattr__(self, name: str) -> Any:  # the wrapped optimizer's extras (degrade, fits, ...)
        return getattr(self._inner, name)


def make_optimizer(spec: ExperimentSpec, seed: int) -> Optimizer:
    """The optimizer the spec's ``search`` section asks for (after its enqueued configurations)."""
    optimizer = _optimizer(spec, seed)
    if spec.search.enqueue:
        space = spec.space.search_space()
        return Enqueued(optimizer, [space.finish(space.flat(c)) for c in spec.search.enqueue])
    return optimizer


def _optimizer(spec: ExperimentSpec, seed: int) -> Optimizer:
    search = spec.search
    space = spec.space.search_space()
    if search.algorithm == "grid":
        from candle_lab.optimizers.grid import GridSearch

        return GridSearch(space, search.grid_points, search.shuffle, seed)
    if search.algorithm == "random":
        from candle_lab.optimizers.random_search import RandomSearch

        return RandomSearch(space, seed)
    if search.algorithm == "ga":
        from candle_lab.optimizers.ga import GeneticSearch

        return GeneticSearch(
            space,
            population=search.population,
            generations=search.generations,
            mutation_rate=search.mutation_rate,
            crossover_rate=search.crossover_rate,
            tournament_size=search.tournament_size,
            elitism=search.elitism,
            seed=seed,
            objectives=len(spec.goals),
        )
    if search.algorithm == "pbt":
        from candle_lab.optimizers.pbt import PopulationBasedTraining

        return PopulationBasedTraining(
            space,
            population=search.population,
            intervals=search.intervals,
            truncation=search.truncation,
            perturb=search.perturb,
            resample_probability=search.resample_probability,
            seed=seed,
        )
    if search.algorithm == "ensemble" and spec.ensemble is not None:
        from candle_lab.optimizers.ensemble import EnsembleRuns

        return EnsembleRuns(spec.ensemble)
    if search.algorithm == "upf":
        from candle_lab.optimizers.upf import UnrolledRuns

        return UnrolledRuns(spec.space.runs, space)
    from candle_lab.optimizers.bo import BayesOptimizer

    acquisition = search.acquisition
    if acquisition == "auto":
        acquisition = "qLCB" if search.algorithm == "batch-bo" else "EI"
    return BayesOptimizer(
        space,
        surrogate=search.surrogate,
        acquisition=acquisition,
        kappa=search.kappa,
        xi=search.xi,
        initial_points=search.initial_points,
        seed=seed,
        objectives=len(spec.goals),
    )
