"""Search algorithms behind one small ask/tell contract."""

from __future__ import annotations

from candle_lab.optimizers.base import Observation, Optimizer, Proposal
from candle_lab.optimizers.proposer import BackgroundProposer, DirectProposer, Proposer
from candle_lab.spec import ExperimentSpec

__all__ = [
    "BackgroundProposer",
    "DirectProposer",
    "Observation",
    "Optimizer",
    "Proposal",
    "Proposer",
    "make_optimizer",
]


def make_optimizer(spec: ExperimentSpec, seed: int) -> Optimizer:
    """The optimizer the spec's ``search`` section asks for."""
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
