"""Search quality: median regret after 50 evaluations over many seeds.

candle_lab async-bo with 4 parallel workers (constant liar; results return in random
order, a new point is asked the moment one returns) vs candle_lab random vs Optuna TPE
vs skopt gp_minimize, on Branin and Hartmann6 (known optima).
Targets (default surrogate): median regret ≤ 0.001 on Branin and ≤ 0.15 on Hartmann6.
"""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from benchmarks.common import table
from candle_lab import objectives
from candle_lab.optimizers.base import Observation
from candle_lab.optimizers.bo import BayesOptimizer
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
    space = _space(params)
    rng = np.random.default_rng(seed + 1000)
    opt = BayesOptimizer(space, seed=seed) if algorithm == "async-bo" else RandomSearch(space, seed)
    pending = opt.ask(PARALLEL)
    values: list[float] = []
    while len(values) < EVALS:
        done = pending.pop(int(rng.integers(len(pending))))  # results return in any order
        value = fn(done.params)
        values.append(value)
        opt.tell([Observation(done.params, value)])
        if len(values) + len(pending) < EVALS:
            pending += opt.ask(1)
    return min(values) - best


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
    "Optuna TPE": run_optuna,
    "skopt gp_minimize (sequential)": run_gp_minimize,
}


def _one(job: tuple[str, str, int]) -> tuple[str, str, float | None]:
    method, problem, seed = job
    return method, problem, METHODS[method](problem, seed)


def main(quick: bool = False) -> list[dict[str, Any]]:
    seeds = range(5 if quick else 20)
    jobs = [(m, p, s) for m in METHODS for p in PROBLEMS for s in seeds]
    regrets: dict[tuple[str, str], list[float]] = {}
    with ProcessPoolExecutor(2) as pool:
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
        f"4. median regret after {EVALS} evaluations, {len(seeds)} seeds (75th percentile in brackets)",
        ["method", *PROBLEMS],
        [[r["method"], *[_cell(r, p) for p in PROBLEMS]] for r in rows],
    )
    ours = rows[0]
    for problem, target in TARGETS.items():
        ok = ours[problem] is not None and ours[problem] <= target
        print(f"  {problem}: {ours[problem]:.4g} vs target ≤ {target:g}: {'PASS' if ok else 'FAIL'}")
    return rows


def _cell(row: dict[str, Any], problem: str) -> str:
    if row[problem] is None:
        return "-"
    return f"{row[problem]:.4g} ({row[f'{problem} q75']:.3g})"


if __name__ == "__main__":
    main()
