"""Several objectives: hypervolume of the front found on ZDT1 and ZDT2 (6-D input, two
objectives), 100 evaluations, 4 in flight (results return in random order, a new point
is asked the moment one returns, as on a cluster).

candle_lab async-bo (ParEGO: random Chebyshev weights per point on one surrogate per
objective) and candle_lab ga (NSGA-II selection, DEAP) vs Optuna's NSGA-II and
multi-objective TPE (``multivariate=True, constant_liar=True``) vs random. One reference
point for all: (1.1, 11). Target: candle_lab async-bo's median hypervolume ≥ Optuna TPE's.
"""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from benchmarks.common import in_flight, one_thread, table
from candle_lab import objectives, pareto
from candle_lab.optimizers.base import Observation
from candle_lab.optimizers.bo import BayesOptimizer
from candle_lab.optimizers.ga import GeneticSearch
from candle_lab.optimizers.random_search import RandomSearch
from candle_lab.spec import spec_from_dict

EVALS = 100
PARALLEL = 4
REFERENCE = np.array([1.1, 11.0])
PROBLEMS: dict[str, Callable[[dict[str, Any]], dict[str, float]]] = {"zdt1": objectives.zdt1, "zdt2": objectives.zdt2}
METHODS = ("candle_lab async-bo", "candle_lab ga", "Optuna TPE (multi-objective)", "Optuna NSGA-II", "random")


def volume(points: list[tuple[float, float]]) -> float:
    found = np.array(points)
    return pareto.hypervolume(found[pareto.nondominated(found)], REFERENCE)


def candle(problem: str, seed: int, algorithm: str) -> float:
    """The optimizer a user's spec builds (``objectives:`` of two), asked as the engine asks."""
    fn = PROBLEMS[problem]
    space = spec_from_dict({"model": {"ref": "m:f"}, "space": objectives.ZDT_SPACE,
                            "budget": {"max_trials": 1}}).space.search_space()
    if algorithm == "async-bo":
        opt: Any = BayesOptimizer(space, seed=seed, objectives=2)
    elif algorithm == "ga":
        opt = GeneticSearch(space, population=20, seed=seed, objectives=2)
    else:
        opt = RandomSearch(space, seed)

    def finish(done: Any) -> tuple[float, float]:
        f = fn(done.params)
        opt.tell([Observation(done.params, f["f1"], losses=(f["f1"], f["f2"]))])
        return f["f1"], f["f2"]

    return volume(in_flight(opt.ask, finish, evals=EVALS, parallel=PARALLEL, seed=seed))


def optuna_run(problem: str, seed: int, sampler_name: str) -> float | None:
    try:
        import optuna
    except ImportError:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler_name == "tpe":
        sampler: Any = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    else:
        sampler = optuna.samplers.NSGAIISampler(seed=seed)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    fn = PROBLEMS[problem]

    def ask() -> tuple[Any, dict[str, float]]:
        trial = study.ask()
        return trial, {p["name"]: trial.suggest_float(p["name"], p["low"], p["high"]) for p in objectives.ZDT_SPACE}

    def finish(done: tuple[Any, dict[str, float]]) -> tuple[float, float]:
        f = fn(done[1])
        study.tell(done[0], [f["f1"], f["f2"]])
        return f["f1"], f["f2"]

    return volume(in_flight(lambda n: [ask() for _ in range(n)], finish, evals=EVALS, parallel=PARALLEL, seed=seed))


def _one(job: tuple[str, str, int]) -> tuple[str, str, float | None]:
    method, problem, seed = job
    warnings.simplefilter("ignore")
    if method.startswith("Optuna"):
        return method, problem, optuna_run(problem, seed, "tpe" if "TPE" in method else "nsga2")
    algorithm = {"candle_lab async-bo": "async-bo", "candle_lab ga": "ga"}.get(method, "random")
    return method, problem, candle(problem, seed, algorithm)



def main(quick: bool = False) -> dict[str, Any]:
    seeds = range(3 if quick else 7)
    jobs = [(m, p, s) for m in METHODS for p in PROBLEMS for s in seeds]
    volumes: dict[tuple[str, str], list[float]] = {}
    with ProcessPoolExecutor(2, initializer=one_thread) as pool:
        for method, problem, value in pool.map(_one, jobs):
            if value is not None:
                volumes.setdefault((method, problem), []).append(value)

    def cell(method: str, problem: str) -> str:
        values = volumes.get((method, problem))
        if not values:
            return "-"
        tpe = volumes.get((METHODS[2], problem))
        ratio = f" ({statistics.median(values) / statistics.median(tpe):.2f}x TPE)" if tpe else ""
        return f"{statistics.median(values):.2f}{ratio}"

    table(f"pareto. median hypervolume after {EVALS} evaluations, {PARALLEL} in flight, {len(seeds)} seeds "
          f"(reference {tuple(float(v) for v in REFERENCE)}; higher is better)",
          ["method", *PROBLEMS], [[m, *[cell(m, p) for p in PROBLEMS]] for m in METHODS])
    for problem in PROBLEMS:
        ours, tpe = volumes.get((METHODS[0], problem)), volumes.get((METHODS[2], problem))
        if ours and tpe:
            a, b = statistics.median(ours), statistics.median(tpe)
            print(f"  {problem}: candle_lab {a:.2f} vs Optuna TPE {b:.2f}: {'PASS' if a >= b else 'FAIL'}")
    return {f"{m} {p}": v for (m, p), v in volumes.items()}


if __name__ == "__main__":
    import sys

    main(quick="--quick" in sys.argv)
