"""Search quality: median regret over many seeds, with trials in flight.

In every run results return in random order and a new point is asked the moment one
returns, as on a cluster.

4a. Branin and Hartmann6, 50 evaluations, 4 in flight: candle_lab async-bo vs candle_lab
    random vs candle_lab ga (steady state, population = evaluations / 5) vs Optuna TPE vs
    skopt gp_minimize (sequential). Targets (default surrogate): median regret ≤ 0.001 on
    Branin and ≤ 0.15 on Hartmann6.
4b. Hartmann6, 200 evaluations, 64 in flight: candle_lab async-bo vs Optuna TPE
    (``multivariate=True, constant_liar=True``, 64 trials running, as ``n_jobs=64``) vs
    random vs ga. Target: candle_lab's median ≤ TPE's.
4c. A broad public suite: BBOB (the COCO platform's ``bbob`` suite, package
    ``coco-experiment``), 5-D, 60 evaluations, 4 in flight, functions from all five BBOB
    classes, instances 1–5 as seeds: candle_lab (async-bo, ga) vs random vs sequential Optuna TPE.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from benchmarks.common import in_flight as asked_in_flight
from benchmarks.common import one_thread, table
from candle_lab import objectives
from candle_lab.optimizers.base import Observation
from candle_lab.optimizers.bo import BayesOptimizer
from candle_lab.optimizers.ga import GeneticSearch
from candle_lab.optimizers.random_search import RandomSearch
from candle_lab.spec import spec_from_dict

EVALS = 50
PARALLEL = 4
TARGETS = {"branin": 0.001, "hartmann6": 0.15}
PROBLEMS: dict[str, tuple[Callable[[dict[str, Any]], float], list[dict[str, Any]], float]] = {
    "branin": (objectives.branin, objectives.BRANIN_SPACE, objectives.BRANIN_MIN),
    "hartmann6": (objectives.hartmann6, objectives.HARTMANN6_SPACE, objectives.HARTMANN6_MIN),
}


def _space(params: list[dict[str, Any]]) -> Any:
    return spec_from_dict({"model": {"ref": "m:f"}, "space": params, "budget": {"max_trials": 1}}).space.search_space()


def run_candle(problem: str, seed: int, algorithm: str = "async-bo") -> float:
    fn, params, best = PROBLEMS[problem]
    return in_flight(fn, params, seed, algorithm, evals=EVALS, parallel=PARALLEL) - best


def in_flight(
    fn: Callable[[dict[str, Any]], float],
    params: list[dict[str, Any]],
    seed: int,
    algorithm: str,
    *,
    evals: int,
    parallel: int,
) -> float:
    """Best value found by candle_lab with ``parallel`` trials in flight."""
    opt = _optimizer(_space(params), algorithm, seed, evals)

    def finish(done: Any) -> float:
        value = fn(done.params)
        opt.tell([Observation(done.params, value)])
        return value

    return min(asked_in_flight(opt.ask, finish, evals=evals, parallel=parallel, seed=seed))


def _optimizer(space: Any, algorithm: str, seed: int, evals: int) -> Any:
    if algorithm == "async-bo":
        return BayesOptimizer(space, seed=seed)
    if algorithm == "ga":  # the steady-state GA with its default operators, 5 populations' worth
        return GeneticSearch(space, population=max(4, evals // 5), seed=seed)
    return RandomSearch(space, seed)


def optuna_in_flight(
    fn: Callable[[dict[str, Any]], float], params: list[dict[str, Any]], seed: int, evals: int, parallel: int
) -> float | None:
    """Best value found by Optuna TPE (multivariate, constant liar) with ``parallel``
    trials running, results returning in random order (``n_jobs=parallel`` without
    the threads, so that runs repeat exactly)."""
    try:
        import optuna
    except ImportError:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=parallel > 1)
    study = optuna.create_study(sampler=sampler)

    def ask() -> tuple[Any, dict[str, float]]:
        trial = study.ask()
        return trial, {p["name"]: trial.suggest_float(p["name"], p["low"], p["high"]) for p in params}

    def finish(done: tuple[Any, dict[str, float]]) -> float:
        value = fn(done[1])
        study.tell(done[0], value)
        return value

    return min(asked_in_flight(lambda n: [ask() for _ in range(n)], finish, evals=evals, parallel=parallel,
                               seed=seed))


def run_optuna(problem: str, seed: int) -> float | None:
    try:
        import optuna
    except ImportError:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fn, params, best = PROBLEMS[problem]
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(
        lambda t: fn({p["name"]: t.suggest_float(p["name"], p["low"], p["high"]) for p in params}), n_trials=EVALS
    )
    return study.best_value - best


def run_gp_minimize(problem: str, seed: int) -> float:
    from skopt import gp_minimize

    fn, params, best = PROBLEMS[problem]
    names = [p["name"] for p in params]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gp_minimize(
            lambda x: fn(dict(zip(names, x, strict=True))),
            [(p["low"], p["high"]) for p in params],
            n_calls=EVALS,
            random_state=seed,
        )
    return float(res.fun) - best


METHODS: dict[str, Callable[[str, int], float | None]] = {
    "candle_lab async-bo (4 workers)": run_candle,
    "candle_lab random": lambda p, s: run_candle(p, s, "random"),
    "candle_lab ga": lambda p, s: run_candle(p, s, "ga"),
    "Optuna TPE": run_optuna,
    "skopt gp_minimize (sequential)": run_gp_minimize,
}


def _one(job: tuple[str, str, int]) -> tuple[str, str, float | None]:
    method, problem, seed = job
    return method, problem, METHODS[method](problem, seed)


# ---------------------------------------------------------------------- 4b. 64 in flight
WIDE_EVALS = 200
WIDE_PARALLEL = 64
WIDE: dict[str, Callable[[int], float | None]] = {
    "candle_lab async-bo": lambda s: in_flight(
        objectives.hartmann6, objectives.HARTMANN6_SPACE, s, "async-bo", evals=WIDE_EVALS, parallel=WIDE_PARALLEL
    ),
    "Optuna TPE (multivariate, constant liar)": lambda s: optuna_in_flight(
        objectives.hartmann6, objectives.HARTMANN6_SPACE, s, WIDE_EVALS, WIDE_PARALLEL
    ),
    "candle_lab random": lambda s: in_flight(
        objectives.hartmann6, objectives.HARTMANN6_SPACE, s, "random", evals=WIDE_EVALS, parallel=WIDE_PARALLEL
    ),
    "candle_lab ga": lambda s: in_flight(
        objectives.hartmann6, objectives.HARTMANN6_SPACE, s, "ga", evals=WIDE_EVALS, parallel=WIDE_PARALLEL
    ),
}


def _wide(job: tuple[str, int]) -> tuple[str, float | None]:
    method, seed = job
    value = WIDE[method](seed)
    return method, None if value is None else value - objectives.HARTMANN6_MIN


# ---------------------------------------------------------------------- 4c. BBOB
BBOB_DIM = 5
BBOB_EVALS = 60
# two functions from each BBOB class: separable; low/moderate conditioning; high
# conditioning; multimodal with global structure; multimodal, weak global structure
BBOB_FUNCTIONS = {
    1: "sphere",
    3: "Rastrigin",
    6: "attractive sector",
    8: "Rosenbrock",
    10: "ellipsoid",
    13: "sharp ridge",
    15: "Rastrigin (rotated)",
    17: "Schaffer F7",
    21: "Gallagher 101 peaks",
    22: "Gallagher 21 peaks",
}
BBOB_SPACE = [{"name": f"x{i}", "type": "real", "low": -5.0, "high": 5.0} for i in range(BBOB_DIM)]
_problems: dict[tuple[int, int], tuple[Any, float]] = {}


def bbob(function: int, instance: int) -> tuple[Callable[[dict[str, Any]], float], float]:
    """A BBOB problem as a function of a parameter dict, and its optimal value."""
    import os
    import tempfile

    if (function, instance) not in _problems:
        import cocoex

        suite = cocoex.Suite("bbob", "", f"dimensions:{BBOB_DIM} instance_indices:{instance}")
        problem = suite.get_problem_by_function_dimension_instance(function, BBOB_DIM, instance)
        here = os.getcwd()
        with tempfile.TemporaryDirectory() as tmp:  # COCO writes the optimum to a file
            os.chdir(tmp)
            try:
                problem._best_parameter("print")
                x_opt = np.loadtxt("._bbob_problem_best_parameter.txt")
            finally:
                os.chdir(here)
        _problems[(function, instance)] = (problem, float(problem(x_opt)))
    problem, f_opt = _problems[(function, instance)]
    return (lambda p: float(problem([p[f"x{i}"] for i in range(BBOB_DIM)]))), f_opt


BBOB_METHODS: dict[str, Callable[[Callable[[dict[str, Any]], float], int], float | None]] = {
    "candle_lab async-bo (4 workers)": lambda fn, s: in_flight(
        fn, BBOB_SPACE, s, "async-bo", evals=BBOB_EVALS, parallel=PARALLEL
    ),
    "candle_lab random": lambda fn, s: in_flight(fn, BBOB_SPACE, s, "random", evals=BBOB_EVALS, parallel=PARALLEL),
    "Optuna TPE (sequential)": lambda fn, s: optuna_in_flight(fn, BBOB_SPACE, s, BBOB_EVALS, 1),
    "candle_lab ga": lambda fn, s: in_flight(fn, BBOB_SPACE, s, "ga", evals=BBOB_EVALS, parallel=PARALLEL),
}


def _bbob_one(job: tuple[str, int, int]) -> tuple[str, int, float | None]:
    method, function, instance = job
    fn, f_opt = bbob(function, instance)
    value = BBOB_METHODS[method](fn, instance)
    return method, function, None if value is None else value - f_opt


def _median_cell(values: list[float] | None) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.4g} ({float(np.quantile(values, 0.75)):.3g})"



def main(quick: bool = False, parts: str = "abc") -> dict[str, Any]:
    out: dict[str, Any] = {}
    # One BLAS thread per process: two processes of two threads each on two cores spin
    # against each other (a 4c run took 3x as long).
    with ProcessPoolExecutor(2, initializer=one_thread) as pool:
        if "a" in parts:
            out["4a"] = _main_a(pool, quick)
        if "b" in parts:
            out["4b"] = _main_b(pool, quick)
        if "c" in parts:
            out["4c"] = _main_c(pool, quick)
    return out


def _main_a(pool: ProcessPoolExecutor, quick: bool) -> list[dict[str, Any]]:
    seeds = range(5 if quick else 20)
    jobs = [(m, p, s) for m in METHODS for p in PROBLEMS for s in seeds]
    regrets: dict[tuple[str, str], list[float]] = {}
    for method, problem, value in pool.map(_one, jobs):
        if value is not None:
            regrets.setdefault((method, problem), []).append(value)
    rows = []
    for method in METHODS:
        row: dict[str, Any] = {"method": method}
        for problem in PROBLEMS:
            values = regrets.get((method, problem))
            row[problem] = statistics.median(values) if values else None
            row[f"{problem} q75"] = float(np.quantile(values, 0.75)) if values else None
        rows.append(row)
    table(
        f"4a. median regret after {EVALS} evaluations, {PARALLEL} in flight, {len(seeds)} seeds "
        "(75th percentile in brackets)",
        ["method", *PROBLEMS],
        [[r["method"], *[_median_cell(regrets.get((r["method"], p))) for p in PROBLEMS]] for r in rows],
    )
    ours = rows[0]
    for problem, target in TARGETS.items():
        ok = ours[problem] is not None and ours[problem] <= target
        print(f"  {problem}: {ours[problem]:.4g} vs target ≤ {target:g}: {'PASS' if ok else 'FAIL'}")
    return rows


def _main_b(pool: ProcessPoolExecutor, quick: bool) -> dict[str, list[float]]:
    seeds = range(5 if quick else 10)
    regrets: dict[str, list[float]] = {}
    for method, value in pool.map(_wide, [(m, s) for m in WIDE for s in seeds]):
        if value is not None:
            regrets.setdefault(method, []).append(value)
    table(
        f"4b. Hartmann6, median regret after {WIDE_EVALS} evaluations, {WIDE_PARALLEL} in flight, "
        f"{len(seeds)} seeds (75th percentile)",
        ["method", "hartmann6"],
        [[m, _median_cell(regrets.get(m))] for m in WIDE],
    )
    ours, tpe = regrets.get("candle_lab async-bo"), regrets.get("Optuna TPE (multivariate, constant liar)")
    if ours and tpe:
        a, b = statistics.median(ours), statistics.median(tpe)
        print(f"  candle_lab {a:.4g} vs Optuna TPE {b:.4g} (ratio {a / b:.2f}): {'PASS' if a <= b else 'FAIL'}")
    return regrets


def _main_c(pool: ProcessPoolExecutor, quick: bool) -> dict[str, Any]:
    try:
        import cocoex  # noqa: F401
    except ImportError:
        print("\n== 4c. BBOB: needs the bench extra (coco-experiment); not measured")
        return {}
    instances = range(1, 4 if quick else 6)
    jobs = [(m, f, i) for m in BBOB_METHODS for f in BBOB_FUNCTIONS for i in instances]
    regrets: dict[tuple[str, int], list[float]] = {}
    for method, function, value in pool.map(_bbob_one, jobs):
        if value is not None:
            regrets.setdefault((method, function), []).append(value)
    methods = list(BBOB_METHODS)
    table(
        f"4c. BBOB {BBOB_DIM}-D, median regret after {BBOB_EVALS} evaluations, {len(instances)} instances; "
        "ratio = candle_lab / TPE",
        ["function", *methods, "ratio"],
        [
            [
                f"f{f} {name}",
                *[_median_cell(regrets.get((m, f))) for m in methods],
                _ratio(regrets.get((methods[0], f)), regrets.get((methods[2], f))),
            ]
            for f, name in BBOB_FUNCTIONS.items()
        ],
    )
    wins = sum(_med(regrets.get((methods[0], f))) <= _med(regrets.get((methods[2], f))) for f in BBOB_FUNCTIONS)
    worse = [f for f in BBOB_FUNCTIONS if _med(regrets.get((methods[0], f))) > _med(regrets.get((methods[1], f)))]
    print(
        f"  candle_lab at or below TPE on {wins} of {len(BBOB_FUNCTIONS)} functions; "
        f"worse than random on {len(worse)} ({', '.join(f'f{f}' for f in worse) or 'none'})"
    )
    return {f"{m} f{f}": v for (m, f), v in regrets.items()}


def _med(values: list[float] | None) -> float:
    return statistics.median(values) if values else math.inf


def _ratio(ours: list[float] | None, theirs: list[float] | None) -> str:
    if not ours or not theirs or _med(theirs) <= 0:
        return "-"
    return f"{_med(ours) / _med(theirs):.2f}"


if __name__ == "__main__":
    import sys

    main(quick="--quick" in sys.argv, parts=next((a for a in sys.argv[1:] if not a.startswith("-")), "abc"))
