"""Conditional spaces: a network's shape and its optimizer's settings, where half the
parameters exist only for some choices (``when:``, ``type: layers``). 60 evaluations,
4 in flight (results return in random order, a new point is asked the moment one
returns).

candle_lab async-bo (absent parameters imputed at the middle of their range) vs Optuna TPE on
the same problem written define-by-run (``multivariate=True, group=True,
constant_liar=True``: its way with conditional spaces) vs random, and an ablation of
candle_lab without the imputation (absent parameters left as noise). The loss is 0 at its
optimum: the figure is the median over seeds of the best loss found (lower is better).
Target: candle_lab's median ≤ Optuna TPE's.
"""

from __future__ import annotations

import math
import statistics
import warnings
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from benchmarks.common import in_flight, one_thread, table
from candle_lab.optimizers.base import Observation
from candle_lab.optimizers.bo import BayesOptimizer
from candle_lab.optimizers.random_search import RandomSearch
from candle_lab.spec import spec_from_dict

EVALS = 60
PARALLEL = 4
OPTIMIZERS = ["sgd", "adam", "rmsprop"]
BATCHES = [16, 32, 64, 128, 256]
SPACE = [
    {"name": "optimizer", "type": "categorical", "choices": OPTIMIZERS},
    {"name": "lr", "type": "real", "low": 1e-5, "high": 0.1, "log": True},
    {"name": "momentum", "type": "real", "low": 0.0, "high": 0.99, "when": "optimizer in [sgd, rmsprop]"},
    {"name": "nesterov", "type": "categorical", "choices": [True, False], "when": "optimizer == sgd"},
    {"name": "dense", "type": "layers", "min_layers": 1, "max_layers": 4,
     "units": {"low": 16, "high": 1024, "log": True}},
    {"name": "dropout", "type": "real", "low": 0.0, "high": 0.7, "when": "dense.layers >= 2"},
    {"name": "batch_size", "type": "categorical", "choices": BATCHES, "ordered": True},
]
IDEAL = [512, 256, 128]
METHODS = ("candle_lab async-bo", "Optuna TPE (group)", "random", "candle_lab async-bo, no imputation (ablation)")


def loss(p: dict[str, Any]) -> float:
    """0 at sgd, lr 0.01, momentum 0.9, Nesterov, layers 512-256-128, dropout 0.3, batch 64."""
    opt = p["optimizer"]
    value = {"sgd": 0.0, "adam": 0.1, "rmsprop": 0.2}[opt]
    value += (math.log10(p["lr"]) - {"sgd": -2.0, "adam": -3.0, "rmsprop": -3.5}[opt]) ** 2 / 4
    if opt in ("sgd", "rmsprop"):
        value += 2 * (p["momentum"] - 0.9) ** 2
    if opt == "sgd" and not p["nesterov"]:
        value += 0.05
    dense = p["dense"]
    value += 0.15 * abs(len(dense) - len(IDEAL))
    value += sum(abs(math.log2(u) - math.log2(IDEAL[k])) / 8 for k, u in enumerate(dense[: len(IDEAL)]))
    if len(dense) >= 2:
        value += (p["dropout"] - 0.3) ** 2
    return value + abs(math.log2(p["batch_size"]) - 6) / 20


class _NoImputation(BayesOptimizer):
    """Ablation: absent parameters keep whatever values their columns hold (a random
    candidate's, or a told point's default) instead of one imputed value."""

    def _impute(self, rows: np.ndarray) -> np.ndarray:
        return rows


def candle(seed: int, algorithm: str) -> float:
    """The optimizer a user's spec builds, asked as the engine asks."""
    space = spec_from_dict({"model": {"ref": "m:f"}, "space": SPACE, "budget": {"max_trials": 1}}).space.search_space()
    opt: Any = {"async-bo": BayesOptimizer, "ablation": _NoImputation}[algorithm](space, seed=seed) \
        if algorithm != "random" else RandomSearch(space, seed)

    def finish(done: Any) -> float:
        value = loss(done.params)
        opt.tell([Observation(done.params, value)])
        return value

    return min(in_flight(opt.ask, finish, evals=EVALS, parallel=PARALLEL, seed=seed))


def optuna_run(seed: int) -> float | None:
    try:
        import optuna
    except ImportError:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)
    study = optuna.create_study(sampler=sampler)

    def ask() -> tuple[Any, dict[str, Any]]:
        t = study.ask()
        p: dict[str, Any] = {"optimizer": t.suggest_categorical("optimizer", OPTIMIZERS),
                             "lr": t.suggest_float("lr", 1e-5, 0.1, log=True)}
        if p["optimizer"] in ("sgd", "rmsprop"):
            p["momentum"] = t.suggest_float("momentum", 0.0, 0.99)
        if p["optimizer"] == "sgd":
            p["nesterov"] = t.suggest_categorical("nesterov", [True, False])
        layers = t.suggest_int("dense.layers", 1, 4)
        p["dense"] = [t.suggest_int(f"dense.{k}", 16, 1024, log=True) for k in range(1, layers + 1)]
        if layers >= 2:
            p["dropout"] = t.suggest_float("dropout", 0.0, 0.7)
        p["batch_size"] = t.suggest_categorical("batch_size", BATCHES)
        return t, p

    def finish(done: tuple[Any, dict[str, Any]]) -> float:
        value = loss(done[1])
        study.tell(done[0], value)
        return value

    return min(in_flight(lambda n: [ask() for _ in range(n)], finish, evals=EVALS, parallel=PARALLEL, seed=seed))


def _one(job: tuple[str, int]) -> tuple[str, float | None]:
    method, seed = job
    warnings.simplefilter("ignore")
    if method.startswith("Optuna"):
        return method, optuna_run(seed)
    return method, candle(seed, "ablation" if "ablation" in method else "async-bo" if "bo" in method else "random")



def main(quick: bool = False) -> dict[str, Any]:
    seeds = range(3 if quick else 9)
    best: dict[str, list[float]] = {}
    with ProcessPoolExecutor(2, initializer=one_thread) as pool:
        for method, value in pool.map(_one, [(m, s) for m in METHODS for s in seeds]):
            if value is not None:
                best.setdefault(method, []).append(value)
    tpe = best.get(METHODS[1])

    def row(method: str) -> list[str]:
        values = best.get(method)
        if not values:
            return [method, "-", "-", "-"]
        med = statistics.median(values)
        ratio = f"{med / statistics.median(tpe):.2f}x" if tpe else "-"
        return [method, f"{med:.3f}", f"{min(values):.3f}-{max(values):.3f}", ratio]

    table(f"conditional. best loss after {EVALS} evaluations, {PARALLEL} in flight, {len(seeds)} seeds "
          "(7 parameters, 3 of them conditional, a layer list of 1-4; 0 is the optimum; lower is better)",
          ["method", "median", "range", "vs Optuna TPE"], [row(m) for m in METHODS])
    ours = best.get(METHODS[0])
    if ours and tpe:
        a, b = statistics.median(ours), statistics.median(tpe)
        print(f"  candle_lab {a:.3f} vs Optuna TPE {b:.3f}: {'PASS' if a <= b else 'FAIL'}")
    return {m: v for m, v in best.items()}


if __name__ == "__main__":
    import sys

    main(quick="--quick" in sys.argv)
