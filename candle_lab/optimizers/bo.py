"""Bayesian optimization on scikit-optimize: the only module that imports skopt.

skopt provides the dimensions and their transforms, the Latin hypercube design, the
surrogate models (GP, random forest, extra trees) and the acquisition functions. This
adapter drives them itself instead of through ``skopt.Optimizer``, for speed:

* candidate points are drawn directly in the transformed unit space (no per-point
  transforms), half uniformly and half as perturbations of the best points so far;
* the surrogate adapts to the data (``auto``): a Gaussian process while the data is
  small, where it finds optima precisely, then a small bagged extra-trees forest whose
  fit and scoring cost stays at a few tens of milliseconds at thousands of points;
* trials still running are in the data, so parallel proposals spread out: with a GP at
  the GP's own prediction (kriging believer), with trees as constant liars (the best
  value so far);
* qLCB proposes a whole batch from one fit, each point with its own exploration weight
  drawn from an exponential distribution, as mlrMBO's qLCB does.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from candle_lab.optimizers.base import Observation, Proposal
from candle_lab.space import CategoricalParam, IntegerParam, RealParam, SearchSpace, point_key

log = logging.getLogger(__name__)

Surrogate = Literal["auto", "GP", "RF", "ET"]
Acquisition = Literal["LCB", "EI", "PI", "qLCB"]

GP_MAX_POINTS = 150  # auto: GP while told + pending points stay below this
TREES = 12
TREE_MAX_SAMPLES = 384  # bagged trees see at most this many points each


@dataclass(frozen=True)
class _Column:
    """Where one searched parameter lives in the transformed (unit) space."""

    param: RealParam | IntegerParam | CategoricalParam
    start: int
    width: int
    kind: Literal["real", "int", "cat"]
    steps: int = 0  # int: number of steps between low and high (for snapping)


class BayesOptimizer:
    """Asynchronous / batch Bayesian optimization over a :class:`SearchSpace`."""

    adaptive = True
    exhausted = False

    def __init__(
        self,
        space: SearchSpace,
        *,
        surrogate: Surrogate = "auto",
        acquisition: Acquisition = "EI",
        kappa: float = 1.96,
        xi: float = 0.01,
        initial_points: int = 10,
        seed: int = 0,
        n_candidates: int = 1000,
    ) -> None:
        from skopt.space import Categorical, Integer, Real, Space

        self._space = space
        self._surrogate = surrogate
        self._acq = acquisition
        self._kappa = kappa
        self._xi = xi
        self._n_initial = initial_points
        self._n_candidates = n_candidates
        self._rng = np.random.default_rng(seed)
        self._seed = seed

        dims: list[Any] = []
        self._columns: list[_Column] = []
        self._fixed: dict[str, Any] = {}
        start = 0
        for p in space.searchable:
            if isinstance(p, CategoricalParam) and len(p.choices) == 1:
                self._fixed[p.name] = p.choices[0]
                continue
            if isinstance(p, RealParam):
                dim = Real(
                    p.low, p.high, prior="log-uniform" if p.log else "uniform", transform="normalize", name=p.name
                )
                col = _Column(p, start, 1, "real")
            elif isinstance(p, IntegerParam):
                prior = "log-uniform" if p.log else "uniform"
                dim = Integer(p.low, p.high, prior=prior, transform="normalize", name=p.name)
                col = _Column(p, start, 1, "real" if p.log else "int", steps=p.high - p.low)
            elif p.ordered:
                dim = Integer(0, len(p.choices) - 1, transform="normalize", name=p.name)
                col = _Column(p, start, 1, "int", steps=len(p.choices) - 1)
            else:
                dim = Categorical([str(i) for i in range(len(p.choices))], transform="onehot", name=p.name)
                col = _Column(p, start, dim.transformed_size, "cat")
            dims.append(dim)
            self._columns.append(col)
            start += col.width
        self._skspace = Space(dims) if dims else None
        self._width = start
        self._has_cat = any(c.kind == "cat" for c in self._columns)

        self._X: list[np.ndarray] = []  # transformed told points
        self._y: list[float] = []
        self._pending: dict[str, np.ndarray] = {}
        self._design = self._initial_design(initial_points)

    # ------------------------------------------------------------------ protocol
    def ask(self, n: int = 1) -> list[Proposal]:
        rows: list[np.ndarray] = []
        while len(rows) < n and self._design:
            rows.append(self._design.pop(0))
        if len(rows) < n and (len(self._y) < self._n_initial or self._skspace is None):
            rows.extend(self._random_rows(n - len(rows)))
        if len(rows) < n:
            rows.extend(self._propose(n - len(rows)))
        proposals = []
        for row in rows:
            params = self._to_params(row)
            self._pending[point_key(params)] = row
            proposals.append(Proposal(params))
        return proposals

    def tell(self, observations: Sequence[Observation]) -> None:
        for obs in observations:
            row = self._pending.pop(point_key(dict(obs.params)), None)
            if obs.loss is None or not math.isfinite(obs.loss):
                continue
            self._X.append(row if row is not None else self._to_row(obs.params))
            self._y.append(float(obs.loss))

    def register(self, proposals: Sequence[Proposal]) -> None:
        for p in proposals:
            self._pending[point_key(p.params)] = self._to_row(p.params)
        # The design of a resumed run continues where the first one stopped.
        self._design = self._design[len(proposals) :]

    @property
    def told(self) -> int:
        return len(self._y)

    def surrogate_for(self, n_points: int) -> str:
        if self._surrogate != "auto":
            return self._surrogate
        return "GP" if n_points <= GP_MAX_POINTS and self._width <= 24 else "ET"

    # ------------------------------------------------------------------ encoding
    def _to_params(self, row: np.ndarray) -> dict[str, Any]:
        point: dict[str, Any] = dict(self._fixed)
        for col in self._columns:
            p = col.param
            if col.kind == "cat":
                assert isinstance(p, CategoricalParam)
                point[p.name] = (
                    p.choices[int(np.argmax(row[col.start : col.start + col.width]))]
                    if col.width > 1
                    else (p.choices[int(round(row[col.start]))])
                )
                continue
            u = float(np.clip(row[col.start], 0.0, 1.0))
            if isinstance(p, RealParam):
                value = (
                    math.exp(math.log(p.low) + u * (math.log(p.high) - math.log(p.low)))
                    if p.log
                    else (p.low + u * (p.high - p.low))
                )
                point[p.name] = float(min(p.high, max(p.low, value)))
            elif isinstance(p, IntegerParam):
                if p.log:
                    value = math.exp(math.log(p.low) + u * (math.log(p.high) - math.log(p.low)))
                else:
                    value = p.low + u * (p.high - p.low)
                point[p.name] = int(min(p.high, max(p.low, round(value))))
            else:  # ordered categorical
                assert isinstance(p, CategoricalParam)
                point[p.name] = p.choices[int(round(u * (len(p.choices) - 1)))]
        return self._space.with_constants(point)

    def _to_row(self, params: Any) -> np.ndarray:
        row = np.zeros(self._width)
        for col in self._columns:
            p = col.param
            value = params[p.name]
            if isinstance(p, CategoricalParam):
                index = next(i for i, c in enumerate(p.choices) if point_key({"v": c}) == point_key({"v": value}))
                if col.kind == "cat":
                    if col.width > 1:
                        row[col.start + index] = 1.0
                    else:
                        row[col.start] = float(index)
                else:
                    row[col.start] = index / max(1, len(p.choices) - 1)
            elif p.log:
                row[col.start] = (math.log(value) - math.log(p.low)) / (math.log(p.high) - math.log(p.low))
            else:
                row[col.start] = (value - p.low) / (p.high - p.low)
        return row

    def _snap(self, rows: np.ndarray) -> np.ndarray:
        """Put candidate rows back onto the lattice of integer and categorical values."""
        for col in self._columns:
            if col.kind == "int" and col.steps > 0:
                rows[:, col.start] = np.round(rows[:, col.start] * col.steps) / col.steps
        return rows

    # ------------------------------------------------------------------ sampling
    def _initial_design(self, n: int) -> list[np.ndarray]:
        if self._skspace is None or n <= 0:
            return []
        from skopt.sampler import Lhs

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            points = Lhs(criterion="maximin", iterations=200).generate(
                self._skspace.dimensions, n, random_state=int(self._rng.integers(2**31))
            )
        return [self._skspace_row(p) for p in points]

    def _skspace_row(self, values: Sequence[Any]) -> np.ndarray:
        params = dict(self._fixed)
        for col, value in zip(self._columns, values, strict=True):
            p = col.param
            if isinstance(p, CategoricalParam):
                params[p.name] = p.choices[int(value)]
            else:
                params[p.name] = value
        return self._to_row(params)

    def _random_rows(self, n: int) -> list[np.ndarray]:
        return list(self._uniform(n))

    def _uniform(self, n: int) -> np.ndarray:
        rows = self._rng.random((n, self._width))
        for col in self._columns:
            if col.kind == "cat":
                block = np.zeros((n, col.width))
                if col.width > 1:
                    block[np.arange(n), self._rng.integers(0, col.width, n)] = 1.0
                else:
                    block[:, 0] = self._rng.integers(0, 2, n)
                rows[:, col.start : col.start + col.width] = block
        return self._snap(rows)

    def _local(self, centres: np.ndarray, n: int) -> np.ndarray:
        """Perturbations of the best points: the fine search an optimum needs."""
        picks = centres[self._rng.integers(0, len(centres), n)]
        scale = self._rng.choice([0.005, 0.02, 0.08, 0.2], size=(n, 1))
        rows = picks + self._rng.normal(0.0, 1.0, picks.shape) * scale
        rows = np.clip(rows, 0.0, 1.0)
        for col in self._columns:
            if col.kind == "cat":
                block = picks[:, col.start : col.start + col.width].copy()
                flip = self._rng.random(n) < 0.15
                if flip.any():
                    fresh = self._uniform(int(flip.sum()))[:, col.start : col.start + col.width]
                    block[flip] = fresh
                rows[:, col.start : col.start + col.width] = block
        return self._snap(rows)

    # ------------------------------------------------------------------ proposing
    def _fit(self, X: np.ndarray, y: np.ndarray, kind: str) -> Any:
        from skopt.learning import ExtraTreesRegressor, RandomForestRegressor
        from skopt.utils import cook_estimator

        seed = int(self._rng.integers(2**31))
        if kind == "GP":
            from skopt.space import Space

            model = cook_estimator("GP", space=Space([(0.0, 1.0)] * self._width), random_state=seed, noise="gaussian")
        else:
            cls = ExtraTreesRegressor if kind == "ET" else RandomForestRegressor
            max_samples = None if len(y) <= TREE_MAX_SAMPLES else TREE_MAX_SAMPLES
            model = cls(
                n_estimators=TREES,
                min_samples_leaf=2 if kind == "ET" else 3,
                bootstrap=max_samples is not None or kind == "RF",
                random_state=seed,
            )
            # Bagged subsamples keep the fit cheap at thousands of points (skopt's
            # wrappers do not take the argument; scikit-learn reads the attribute).
            model.max_samples = max_samples
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y)
        return model

    def _propose(self, n: int) -> list[np.ndarray]:
        if not self._y:
            return self._random_rows(n)
        X = np.array(self._X)
        y = np.array(self._y)
        lie = float(y.min())
        pending = list(self._pending.values())
        chosen: list[np.ndarray] = []
        if self._acq == "qLCB":
            # One fit; each point with its own exploration weight (mlrMBO's qLCB).
            model, kind = self._model_with(X, y, pending, lie)
            kappas = self._rng.exponential(self._kappa, size=n)
            for kappa in kappas:
                chosen.append(self._best_candidate(model, kind, y, "LCB", {"kappa": float(kappa)}, X=X, taken=chosen))
            return chosen
        for _ in range(n):
            model, kind = self._model_with(X, y, pending + chosen, lie)
            kwargs = {"kappa": self._kappa} if self._acq == "LCB" else {"xi": self._xi}
            chosen.append(self._best_candidate(model, kind, y, self._acq, kwargs, X=X, taken=chosen))
        return chosen

    def _model_with(self, X: np.ndarray, y: np.ndarray, liars: list[np.ndarray], lie: float) -> tuple[Any, str]:
        """The surrogate with trials still running in the data. A GP believes its own
        prediction there (kriging believer: the posterior narrows at pending points but
        the fitted surface is not bent towards a made-up value); the cheap tree models
        take the constant liar (the best value so far)."""
        kind = self.surrogate_for(len(y) + len(liars))
        if liars:
            pending = np.array(liars)
            believed = self._fit(X, y, kind).predict(pending) if kind == "GP" else np.full(len(liars), lie)
            X = np.vstack([X, pending])
            y = np.concatenate([y, believed])
        return self._fit(X, y, kind), kind

    def _best_candidate(
        self,
        model: Any,
        kind: str,
        y: np.ndarray,
        acq: str,
        kwargs: dict[str, float],
        *,
        X: np.ndarray,
        taken: list[np.ndarray],
    ) -> np.ndarray:
        from skopt.acquisition import _gaussian_acquisition

        n_local = self._n_candidates // 2
        top = X[np.argsort(y)[: max(1, min(5, len(y)))]]
        cands = np.vstack([self._uniform(self._n_candidates - n_local), self._local(top, n_local)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = _gaussian_acquisition(cands, model, y_opt=float(y.min()), acq_func=acq, acq_func_kwargs=kwargs)
        order = np.argsort(scores)
        if kind == "GP" and not self._has_cat:
            polished = self._polish(model, cands[order[:5]], float(y.min()), acq, kwargs)
            if polished is not None:
                cands = np.vstack([polished, cands[order]])
                order = np.arange(len(cands))
        seen = {row.tobytes() for row in taken} | {row.tobytes() for row in X}
        seen |= {row.tobytes() for row in self._pending.values()}
        for i in order:
            if cands[i].tobytes() not in seen:
                return cands[i]
        return self._uniform(1)[0]

    def _polish(
        self, model: Any, starts: np.ndarray, y_opt: float, acq: str, kwargs: dict[str, float]
    ) -> np.ndarray | None:
        """L-BFGS on the GP's acquisition from the best candidates (continuous spaces)."""
        from scipy.optimize import fmin_l_bfgs_b
        from skopt.acquisition import gaussian_acquisition_1D

        best: list[tuple[float, np.ndarray]] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for x0 in starts:
                x, f, _ = fmin_l_bfgs_b(
                    gaussian_acquisition_1D,
                    x0,
                    args=(model, y_opt, acq, kwargs),
                    bounds=[(0.0, 1.0)] * self._width,
                    approx_grad=False,
                    maxiter=50,
                )
                best.append((float(np.ravel(f)[0]), x))
        if not best:
            return None
        best.sort(key=lambda t: t[0])
        return self._snap(np.array([x for _, x in best]))
