"""Proposal cost (tell one result + ask one point) vs the number of told points.

candle_lab's surrogates (auto, GP, RF, ET) vs plain ``skopt.Optimizer`` defaults
(10,000 candidates scored per ask) vs Optuna's TPE, on a 6-D mixed space.
Target: ≤ 25 ms median at 1000 told points for the default surrogate (auto).
"""

from __future__ import annotations

import statistics
import time
import warnings
from typing import Any

import numpy as np

from benchmarks.common import MIXED_6D, mixed_objective, mixed_space, table
from candle_lab.optimizers.base import Observation
from candle_lab.optimizers.bo import BayesOptimizer

SIZES = (10, 100, 500, 1000, 2000)
TARGET_MS = 25.0
ROUND_TARGET_MS = 50.0
LIMITS = {"GP": 500, "skopt GP": 100}  # beyond this a single proposal takes seconds to minutes


def _candle(surrogate: str, n: int, reps: int) -> float:
    space = mixed_space()
    opt = BayesOptimizer(space, surrogate=surrogate, initial_points=1, seed=0)  # type: ignore[arg-type]
    points = space.sample(np.random.default_rng(1), n)
    opt.register([])
    opt.tell([Observation(p, mixed_objective(p)) for p in points])
    times = []
    pending = opt.ask(1)
    for _ in range(reps):
        start = time.perf_counter()
        opt.tell([Observation(pending[0].params, mixed_objective(pending[0].params))])
        pending = opt.ask(1)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _skopt(estimator: str, n: int, reps: int) -> float:
    from skopt import Optimizer
    from skopt.space import Categorical, Integer, Real

    dims = [
        Real(1e-5, 0.1, prior="log-uniform"),
        Real(0.0, 0.8),
        Integer(16, 1024, prior="log-uniform"),
        Integer(1, 6),
        Categorical(["relu", "tanh", "elu"]),
        Categorical([16, 32, 64, 128]),
    ]
    names = [d["name"] for d in MIXED_6D]
    opt = Optimizer(dims, base_estimator=estimator, n_initial_points=1, random_state=0)
    xs = opt.space.rvs(n, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt.tell(xs, [mixed_objective(dict(zip(names, x, strict=True))) for x in xs])
        times = []
        x = opt.ask()
        for _ in range(reps):
            start = time.perf_counter()
            opt.tell(x, mixed_objective(dict(zip(names, x, strict=True))))
            x = opt.ask()
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _optuna(n: int, reps: int) -> float | None:
    try:
        import optuna
    except ImportError:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dist = {
        "lr": optuna.distributions.FloatDistribution(1e-5, 0.1, log=True),
        "dropout": optuna.distributions.FloatDistribution(0.0, 0.8),
        "units": optuna.distributions.IntDistribution(16, 1024, log=True),
        "layers": optuna.distributions.IntDistribution(1, 6),
        "activation": optuna.distributions.CategoricalDistribution(["relu", "tanh", "elu"]),
        "batch_size": optuna.distributions.CategoricalDistribution([16, 32, 64, 128]),
    }
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for p in mixed_space().sample(np.random.default_rng(1), n):
        study.add_trial(optuna.trial.create_trial(params=p, distributions=dist, value=mixed_objective(p)))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        trial = study.ask(dist)
        study.tell(trial, mixed_objective(trial.params))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _round(told: int, pending: int, n: int, reps: int) -> float:
    """One proposal round of ``n`` points (default surrogate) with ``told`` results and
    ``pending`` trials still running: median ms."""
    from candle_lab.optimizers.base import Proposal

    space = mixed_space()
    opt = BayesOptimizer(space, initial_points=1, seed=0)
    rng = np.random.default_rng(1)
    points = space.sample(rng, told)
    opt.register([Proposal(p) for p in points])
    opt.tell([Observation(p, mixed_objective(p)) for p in points])
    opt.register([Proposal(p) for p in space.sample(rng, pending)])
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        opt.ask(n)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def rounds(quick: bool = False) -> list[dict[str, Any]]:
    """Round cost vs told and pending points; target at 1000 told + 1024 pending."""
    reps = 3 if quick else 7
    rows = []
    for told in (100, 1000) if quick else (100, 1000, 10_000):
        for pending in (0, 64, 1024):
            rows.append(
                {"told": told, "pending": pending, **{f"n={n}": _round(told, pending, n, reps) for n in (1, 16)}}
            )
    table(
        "2b. one proposal round (default surrogate), ms: n points asked at once",
        ["told", "pending", "n=1", "n=16"],
        [[r["told"], r["pending"], r["n=1"], r["n=16"]] for r in rows],
    )
    at = next(r for r in rows if r["told"] == 1000 and r["pending"] == 1024)
    worst = max(at["n=1"], at["n=16"])
    print(
        f"  round at 1000 told + 1024 pending: {worst:.1f} ms vs target ≤ {ROUND_TARGET_MS:g} ms: "
        f"{'PASS' if worst <= ROUND_TARGET_MS else 'FAIL'}"
    )
    return rows


def measure_auto(quick: bool = False) -> dict[int, float]:
    """Median proposal cost (ms) of the default surrogate at each size (for the simulation)."""
    return {n: _candle("auto", n, 3 if quick else 7) for n in SIZES}


def main(quick: bool = False) -> list[dict[str, Any]]:
    reps = 3 if quick else 7
    sizes = SIZES[:4] if quick else SIZES
    systems: dict[str, Any] = {
        "candle_lab auto": lambda n: _candle("auto", n, reps),
        "candle_lab GP": lambda n: _candle("GP", n, reps),
        "candle_lab RF": lambda n: _candle("RF", n, reps),
        "candle_lab ET": lambda n: _candle("ET", n, reps),
        "skopt ET (defaults)": lambda n: _skopt("ET", n, 2),
        "skopt GP (defaults)": lambda n: _skopt("GP", n, 1),
        "Optuna TPE": lambda n: _optuna(n, reps),
    }
    rows = []
    for name, fn in systems.items():
        limit = LIMITS.get(name.replace("candle_lab ", "").replace(" (defaults)", ""))
        if name.startswith("skopt GP"):
            limit = LIMITS["skopt GP"]
        row: dict[str, Any] = {"system": name}
        for n in sizes:
            row[n] = None if limit is not None and n > limit else fn(n)
        rows.append(row)
    table(
        "2. proposal cost, ms (tell 1 + ask 1) vs told points; '-' = not run (seconds to minutes)",
        ["system", *map(str, sizes)],
        [[r["system"], *[r[n] for n in sizes]] for r in rows],
    )
    auto = rows[0][1000]
    print(
        f"  default surrogate at n=1000: {auto:.1f} ms; target ≤ {TARGET_MS:g} ms: "
        f"{'PASS' if auto <= TARGET_MS else 'FAIL'}"
    )
    rounds(quick)
    return rows


if __name__ == "__main__":
    main()
