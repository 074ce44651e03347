"""Bayesian optimization on scikit-optimize: the only module that imports skopt.

skopt provides the dimensions and their transforms, the Latin hypercube design, the
surrogate models (GP, random forest, extra trees) and the acquisition functions. This
adapter drives them itself instead of through ``skopt.Optimizer``, for speed:

* candidate points are drawn directly in the transformed unit space (no per-point
  transforms), half uniformly and half as perturbations of the best points so far;
* the surrogate adapts to the data (``auto``): a Gaussian process while the data is
  small, where it finds optima precisely, then a small bagged extra-trees forest whose
  fit and scoring cost stays at a few tens of milliseconds at thousands of points;
* one proposal round is one surrogate fit, whatever the number of points wanted: the
  GP's hyperparameters are refit on a schedule (warm-started), trials still running
  enter by conditioning the fitted GP on them at its own prediction (kriging believer,
  no refit), and the round's points are picked one after the other from that model,
  its variance updated after each pick; trees take the running trials as constant
  liars (the best value so far) and spread a round by passing over candidates that
  share leaves with the points already picked;
* qLCB gives each point of a round its own exploration weight, drawn from an
  exponential distribution, as mlrMBO's qLCB does;
* a trust region (TuRBO's rule, over the told values in the order they came): half of
  the candidates are drawn uniformly in a box around the best point, whose side doubles
  after three improvements in a row and halves after ``max(4, dimensions)`` told points
  without one, so that the search closes in where the surrogate's fit is poor (rugged,
  asymmetric landscapes) instead of spreading over the whole space;
* the GP models the told values through a power transform fitted to them (Yeo-Johnson,
  as HEBO does), so that a few huge values (diverged trainings, narrow valleys) do not
  flatten the rest of the landscape;
* several objectives (ParEGO): one multi-output extra-trees fit per round on the
  normalised losses; each point of a round scalarises the trees' predictions with its
  own Chebyshev weights, drawn at random, so that a round spreads along the front;
* constraints: a tree classifier of feasibility (constraints met, no out-of-memory)
  on every told point; the acquisition is weighed by its probability of feasibility;
* conditional spaces: every told point and every candidate puts the parameters its
  conditions leave out at the middle of their range (imputed, all zeros for one-hot
  columns), so the surrogates see one fixed point where a parameter does not exist, not
  noise (``python -m benchmarks --only conditional``: the middle did better than a value
  outside the range, which stretched the GP's distances, and than leaving them as noise).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, NamedTuple

import numpy as np

from candle_lab.optimizers.base import Observation, Proposal
from candle_lab.space import CategoricalParam, IntegerParam, RealParam, SearchSpace, point_key

log = logging.getLogger(__name__)

Surrogate = Literal["auto", "GP", "RF", "ET"]
Acquisition = Literal["LCB", "EI", "PI", "qLCB"]

GP_MAX_TOLD = 150  # auto: a GP while at most this many points are told ...
GP_MAX_CONDITIONED = 400  # ... and told + pending stay at most this many (cost ~ N² per candidate)
HYPER_ALWAYS = 60  # GP hyperparameters refit every round up to this many told points ...
HYPER_GROWTH = 0.1  # ... then each time the told points grew by this share
RESTART_GROWTH = 2.0  # a hyperparameter fit restarts from random points when the data doubled
POLISH_STARTS = 3  # L-BFGS polishes the acquisition from this many of the best candidates
WARP_MIN_POINTS = 10  # the GP sees told values through a fitted power transform from this many on
MIN_CANDIDATES = 250  # the cheapest proposals still score this many candidates
TREES = 12
TREE_MAX_SAMPLES = 384  # bagged trees see at most this many points each
LIKELY = 0.5  # constraints: candidates less likely feasible than this are passed over while others are not
PAREGO_RHO = 0.05  # the augmented Chebyshev scalarisation's weight of the sum
INACTIVE = 0.5  # conditional spaces: where an absent parameter sits in the unit space (its middle)


@dataclass(frozen=True)
class TrustRegion:
    """The side of the box (in the unit space) around the best point that half of each
    round's candidates are drawn from, kept over the told values in the order they came
    (TuRBO's rule: Eriksson et al., 2019)."""

    length: float = 0.8
    best: float = math.inf
    wins: int = 0  # improvements in a row
    losses: int = 0  # told values in a row that did not improve

    START, LONGEST, SHORTEST, WINS = 0.8, 1.6, 0.5**7, 3

    def seen(self, value: float) -> TrustRegion:
        """A value that sets the best without counting (the initial design's)."""
        return replace(self, best=min(self.best, value))

    def told(self, value: float, patience: int) -> TrustRegion:
        """After one more told value: the side doubles after WINS improvements in a row,
        halves after ``patience`` values without one, and starts again below SHORTEST."""
        if not math.isfinite(self.best):
            return self.seen(value)
        if value < self.best - 1e-3 * abs(self.best):
            wins, losses = self.wins + 1, 0
        else:
            wins, losses = 0, self.losses + 1
        length = self.length
        if wins >= self.WINS:
            length, wins = min(2 * length, self.LONGEST), 0
        if losses >= patience:
            length, losses = length / 2, 0
        if length < self.SHORTEST:
            length = self.START
        return TrustRegion(length, min(self.best, value), wins, losses)


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
        objectives: int = 1,
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
        self._objectives = objectives
        self._Y: list[tuple[float, ...]] = []  # several objectives: each told point's losses
        self._Xc: list[np.ndarray] = []  # points whose feasibility is known ...
        self._c: list[bool] = []  # ... and whether they were feasible
        self._pending: dict[str, np.ndarray] = {}
        self._design = self._initial_design(initial_points)
        self._region = TrustRegion()
        self._cheap = False  # degraded: proposals could not keep up with the workers
        self._kernel: Any = None  # the GP kernel of the last hyperparameter fit (warm start)
        self._kernel_told = 0
        self._restart_told = 0  # told points at the last hyperparameter fit with restarts
        self.fits: Counter[str] = Counter()  # surrogate fits by kind (tests, benchmarks)

    # ------------------------------------------------------------------ protocol
    def ask(self, n: int = 1) -> list[Proposal]:
        rows: list[np.ndarray] = []
        while len(rows) < n and self._design:
            rows.append(self._design.pop(0))
        if len(rows) < n and (len(self._y) + self._c.count(False) < self._n_initial or self._skspace is None):
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
            if row is None:
                row = self._to_row(obs.params)
            if obs.feasible is not None:
                self._Xc.append(row)
                self._c.append(obs.feasible)
            if obs.loss is None or not math.isfinite(obs.loss):
                continue
            if self._objectives > 1:
                if obs.losses is None or not all(math.isfinite(v) for v in obs.losses):
                    continue
                self._Y.append(tuple(obs.losses))
            self._X.append(row)
            self._y.append(float(obs.loss))
            self._region = (self._region.seen(obs.loss) if len(self._y) <= self._n_initial
                            else self._region.told(obs.loss, max(4, self._width)))
        if len(self._y) >= self._n_initial:  # enough data (e.g. a warm start): no more design points
            self._design.clear()

    def register(self, proposals: Sequence[Proposal]) -> None:
        for p in proposals:
            self._pending[point_key(p.params)] = self._to_row(p.params)
        # The design of a resumed run continues where the first one stopped.
        self._design = self._design[len(proposals) :]

    @property
    def told(self) -> int:
        return len(self._y)

    def surrogate_for(self, told: int, pending: int = 0) -> str:
        if self._cheap:
            return "ET" if self._surrogate in ("auto", "GP") else self._surrogate
        if self._surrogate != "auto":
            return self._surrogate
        small = told <= GP_MAX_TOLD and told + pending <= GP_MAX_CONDITIONED
        return "GP" if small and self._width <= 24 else "ET"

    # ------------------------------------------------------------------ encoding
    def _to_params(self, row: np.ndarray) -> dict[str, Any]:
        return self._space.finish(self._decode(row))

    def _decode(self, row: np.ndarray) -> dict[str, Any]:
        """Every searched parameter's value at ``row`` (present or not)."""
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
        return point

    def _to_row(self, params: Any) -> np.ndarray:
        row = np.zeros(self._width)
        if self._space.conditional:
            params = self._space.flat(params)
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
        return self._impute(row[None, :])[0] if self._space.conditional else row

    def _snap(self, rows: np.ndarray) -> np.ndarray:
        """Put candidate rows back onto the lattice of integer and categorical values."""
        for col in self._columns:
            if col.kind == "int" and col.steps > 0:
                rows[:, col.start] = np.round(rows[:, col.start] * col.steps) / col.steps
        return self._impute(rows) if self._space.conditional else rows

    def _impute(self, rows: np.ndarray) -> np.ndarray:
        """Rows with each absent parameter's columns at one fixed value (INACTIVE, all
        zeros for one-hot), so that the surrogates see one point, not noise, where a
        parameter does not exist."""
        for row in rows:
            present = self._space.active(self._decode(row))
            for col in self._columns:
                if col.param.name not in present:
                    row[col.start : col.start + col.width] = 0.0 if col.width > 1 else INACTIVE
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

    def _uniform(self, n: int, around: np.ndarray | None = None, side: float = 1.0) -> np.ndarray:
        """Uniform rows; ``around``: in the box of that ``side`` centred there (categories
        are drawn from all their choices)."""
        rows = self._rng.random((n, self._width))
        if around is not None:
            rows = np.clip(around + (rows - 0.5) * side, 0.0, 1.0)
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
    def degrade(self) -> str | None:
        """Make proposals cheaper (the proposer asks when workers wait for them): a GP
        gives way to extra trees, then fewer candidates are scored. Returns what changed,
        or None when nothing cheaper is left."""
        if not self._cheap and self._surrogate in ("auto", "GP"):
            self._cheap = True
            return "surrogate GP -> ET"
        if self._n_candidates > MIN_CANDIDATES:
            before = self._n_candidates
            self._n_candidates = max(MIN_CANDIDATES, before // 2)
            return f"candidates {before} -> {self._n_candidates}"
        return None

    def _propose(self, n: int) -> list[np.ndarray]:
        """One proposal round: one surrogate fit serves all ``n`` points."""
        if not self._y:
            return self._random_rows(n)
        X = np.array(self._X)
        y = np.array(self._y)
        pending = np.array(list(self._pending.values())) if self._pending else np.empty((0, self._width))
        if self._objectives > 1:
            return self._propose_pareto(X, np.array(self._Y), pending, n)
        kind = self.surrogate_for(len(y), len(pending))
        pool = self._candidates(X, y, max(self._n_candidates, 4 * n))
        y_opt = float(y.min())
        picker: _GPPicker | _TreePicker
        xi = self._xi
        feasibility = self._feasibility()
        if kind == "GP":
            xi /= float(y.std()) or 1.0  # xi is in the objective's units: the same margin after the warp
            y = warp(y)
            y_opt = float(y.min())
            model = self._condition(self._gp(X, y), pending)
            picker = _GPPicker(model, pool)
            if not self._has_cat and not self._cheap and feasibility is None:
                first = self._rule(self._kappa, xi)
                starts = pool[np.argsort(picker.scores(y_opt, first))[:POLISH_STARTS]]
                picker.extend(self._polish(model, starts, y_opt, first))
        else:
            liars = np.full(len(pending), y_opt)  # constant liar: the best value so far
            model = self._fit(np.vstack([X, pending]), np.concatenate([y, liars]), kind)
            picker = _TreePicker(model, pool)
        picker.feasibility = feasibility
        seen = {row.tobytes() for row in X} | {row.tobytes() for row in pending}
        kappas = self._rng.exponential(self._kappa, size=n) if self._acq == "qLCB" else np.full(n, self._kappa)
        chosen: list[np.ndarray] = []
        for kappa in kappas:
            row = picker.pick(y_opt, self._rule(float(kappa), xi), seen)
            if row is None:
                row = self._uniform(1)[0]
            seen.add(row.tobytes())
            chosen.append(row)
        return chosen

    def _propose_pareto(self, X: np.ndarray, Y: np.ndarray, pending: np.ndarray, n: int) -> list[np.ndarray]:
        """Several objectives (ParEGO): one multi-output tree fit on the losses scaled to
        [0, 1]; each point its own random Chebyshev weights."""
        from candle_lab.pareto import nondominated

        low, high = Y.min(axis=0), Y.max(axis=0)
        scaled = (Y - low) / np.where(high > low, high - low, 1.0)
        weights = self._rng.dirichlet(np.ones(Y.shape[1]), size=n)
        pool = np.vstack([self._uniform(self._n_candidates - self._n_candidates // 2),
                          self._local(X[nondominated(Y)], self._n_candidates // 2)])
        picker: _ParetoPicker | _ParetoGPPicker
        if self.surrogate_for(len(Y), len(pending)) == "GP":  # one GP per objective
            models = [self._gp_fresh(X, warp(column)) for column in scaled.T]
            picker = _ParetoGPPicker(models, pool, np.column_stack([warp(c) for c in scaled.T]), pending, self._rng)
        else:
            model = self._fit(X, scaled, "RF" if self._surrogate == "RF" else "ET")
            picker = _ParetoPicker(model, pool, scaled, pending)
        picker.feasibility = self._feasibility()
        seen = {row.tobytes() for row in X} | {row.tobytes() for row in pending}
        chosen: list[np.ndarray] = []
        rule = self._rule(self._kappa, self._xi)
        for w in weights:
            row = picker.pick_for(w, rule, seen)
            if row is None:
                row = self._uniform(1)[0]
            seen.add(row.tobytes())
            chosen.append(row)
        return chosen

    def _gp_fresh(self, X: np.ndarray, y: np.ndarray) -> Any:
        """A GP with its hyperparameters fitted to ``y`` (one objective of several)."""
        from skopt.space import Space
        from skopt.utils import cook_estimator

        model = cook_estimator("GP", space=Space([(0.0, 1.0)] * self._width),
                               random_state=int(self._rng.integers(2**31)), noise="gaussian")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y)
        self.fits["GP-hyper"] += 1
        return model

    def _feasibility(self) -> Any | None:
        """The probability that a point is feasible, from a tree classifier of the told
        points' feasibility; None while all of them agree (or none is known)."""
        if len(set(self._c)) < 2:
            return None
        from sklearn.ensemble import ExtraTreesClassifier

        model = ExtraTreesClassifier(n_estimators=2 * TREES, min_samples_leaf=1,
                                     random_state=int(self._rng.integers(2**31)))
        model.fit(np.array(self._Xc), np.array(self._c, dtype=bool))
        self.fits["feasibility"] += 1
        feasible = list(model.classes_).index(True)
        return lambda rows: model.predict_proba(rows)[:, feasible]

    def _rule(self, kappa: float, xi: float) -> PickRule:
        """The acquisition of one pick: qLCB is LCB with the pick's own kappa."""
        return PickRule("LCB" if self._acq == "qLCB" else self._acq, kappa, xi)

    def _candidates(self, X: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
        """Half uniform in the trust region's box around the best point (categories drawn
        from all), half perturbations of the five best points."""
        n_local = n // 2
        top = X[np.argsort(y)[: max(1, min(5, len(y)))]]
        return np.vstack([self._uniform(n - n_local, top[0], self._region.length), self._local(top, n_local)])

    def _gp(self, X: np.ndarray, y: np.ndarray) -> Any:
        """A GP on the told points. Its hyperparameters are refit every round while the
        data is small, then each time the told points grew by a tenth, warm-started from
        the last fit (with random restarts too each time the data doubled); in between
        only the (cheap) Cholesky factor is recomputed."""
        from skopt.learning import GaussianProcessRegressor
        from skopt.space import Space
        from skopt.utils import cook_estimator

        seed = int(self._rng.integers(2**31))
        n = len(y)
        if self._kernel is None:
            model = cook_estimator("GP", space=Space([(0.0, 1.0)] * self._width), random_state=seed, noise="gaussian")
        elif n <= HYPER_ALWAYS or n >= self._kernel_told * (1 + HYPER_GROWTH):
            restarts = 2 if n >= self._restart_told * RESTART_GROWTH else 0
            model = GaussianProcessRegressor(
                kernel=self._kernel, normalize_y=True, noise="gaussian", n_restarts_optimizer=restarts,
                random_state=seed,
            )
        else:
            model = GaussianProcessRegressor(kernel=self._kernel, normalize_y=True, noise="gaussian", optimizer=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y)
        if model.optimizer is None:
            self.fits["GP-fixed"] += 1
        else:
            self.fits["GP-hyper"] += 1
            self._kernel, self._kernel_told = _kernel_with_noise(model), n
            if model.n_restarts_optimizer:
                self._restart_told = n
        return model

    def _condition(self, model: Any, pending: np.ndarray) -> Any:
        """Kriging believer without refitting: the GP with its hyperparameters kept,
        conditioned on the pending points at its own predictions there. Its mean is the
        same; its variance shrinks around trials still running."""
        if not len(pending):
            return model
        from skopt.learning import GaussianProcessRegressor

        mean, std = model.y_train_mean_, model.y_train_std_
        believed = (model.predict(pending) - mean) / std
        cond = GaussianProcessRegressor(kernel=self._kernel, normalize_y=False, noise="gaussian", optimizer=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cond.fit(np.vstack([model.X_train_, pending]), np.concatenate([model.y_train_, believed]))
        cond.y_train_mean_, cond.y_train_std_ = mean, std  # predictions in the told points' units
        self.fits["GP-condition"] += 1
        return cond

    def _fit(self, X: np.ndarray, y: np.ndarray, kind: str) -> Any:
        from skopt.learning import ExtraTreesRegressor, RandomForestRegressor

        seed = int(self._rng.integers(2**31))
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
        self.fits[kind] += 1
        return model

    def _polish(self, model: Any, starts: np.ndarray, y_opt: float, rule: PickRule) -> np.ndarray:
        """L-BFGS on the GP's acquisition from the best candidates (continuous spaces)."""
        from scipy.optimize import fmin_l_bfgs_b
        from skopt.acquisition import gaussian_acquisition_1D

        kwargs = {"kappa": rule.kappa} if rule.acq == "LCB" else {"xi": rule.xi}
        found: list[tuple[float, np.ndarray]] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for x0 in starts:
                x, f, _ = fmin_l_bfgs_b(
                    gaussian_acquisition_1D,
                    x0,
                    args=(model, y_opt, rule.acq, kwargs),
                    bounds=[(0.0, 1.0)] * self._width,
                    approx_grad=False,
                    maxiter=50,
                )
                found.append((float(np.ravel(f)[0]), x))
        found.sort(key=lambda t: t[0])
        return self._snap(np.array([x for _, x in found]).reshape(-1, self._width))


def _kernel_with_noise(model: Any) -> Any:
    """The fitted kernel with its noise term restored (skopt zeroes it after a fit)."""
    import copy

    from skopt.learning.gaussian_process.kernels import Sum, WhiteKernel

    kernel = copy.deepcopy(model.kernel_)
    if isinstance(kernel, Sum) and isinstance(kernel.k2, WhiteKernel) and model.noise_ is not None:
        kernel.k2 = WhiteKernel(noise_level=model.noise_, noise_level_bounds=kernel.k2.noise_level_bounds)
    return kernel


def warp(y: np.ndarray) -> np.ndarray:
    """Told values on a scale a GP fits well: standardized, then a Yeo-Johnson power
    transform fitted to them (monotone: the best point stays the best), which makes
    skewed values (a few diverged trainings, narrow valleys, rare deep optima) closer to
    the Gaussian a GP assumes."""
    from scipy.stats import yeojohnson

    z = (y - y.mean()) / (y.std() or 1.0)
    if len(z) < WARP_MIN_POINTS:
        return z
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        out = np.asarray(yeojohnson(z)[0], dtype=float)
    return out if np.all(np.isfinite(out)) and np.ptp(out) > 0 else z


class PickRule(NamedTuple):
    """How one point is picked: the acquisition and its parameters."""

    acq: str  # "EI", "PI" or "LCB"
    kappa: float
    xi: float


def acquisition(mu: np.ndarray, std: np.ndarray, y_opt: float, rule: PickRule) -> np.ndarray:
    """Acquisition values to minimise (skopt's conventions: -EI, -PI, LCB)."""
    if rule.acq == "LCB":
        return mu - rule.kappa * std
    from scipy.special import ndtr

    std = np.maximum(std, 1e-12)
    improvement = y_opt - rule.xi - mu
    z = improvement / std
    if rule.acq == "PI":
        return -ndtr(z)
    return -(improvement * ndtr(z) + std * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi))


def constrained(scores: np.ndarray, pof: np.ndarray | None, rule: PickRule) -> np.ndarray:
    """Acquisition values (to minimise) weighed by each candidate's probability of
    feasibility: an expected improvement shrinks with it; an LCB value moves back by as
    much as the values' spread where feasibility is unlikely."""
    if pof is None:
        return scores
    if (pof >= LIKELY).any():  # where feasibility is likely, if anywhere: a tree classifier's
        pof = np.where(pof >= LIKELY, pof, 0.0)  # probabilities are rough, and improvements large beyond
    if rule.acq in ("EI", "PI"):  # where no improvement is expected any more, feasibility still ranks
        return scores * pof - 1e-9 * pof
    return scores + (1.0 - pof) * (float(np.ptp(scores)) + 1e-12)


def scalarise(losses: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ParEGO's augmented Chebyshev scalarisation of losses (last axis: objectives)."""
    weighted = losses * weights
    return weighted.max(axis=-1) + PAREGO_RHO * weighted.sum(axis=-1)


class _GPPicker:
    """Picks a round's points from one conditioned GP: after each pick the posterior
    variance over the candidates is updated as if the pick had been observed at the
    GP's prediction (sequential kriging believer as rank-one updates, no refit)."""

    def __init__(self, model: Any, pool: np.ndarray) -> None:
        self._model = model
        self._scale = float(np.ravel(model.y_train_std_)[0])
        self._offset = float(np.ravel(model.y_train_mean_)[0])
        self._noise = float(model.noise_ or 0.0)
        self.pool = np.empty((0, pool.shape[1]))
        self._K = self._B = np.empty((0, len(model.X_train_)))
        self._mu = self._var = np.empty(0)
        self._updates: list[np.ndarray] = []
        self.feasibility: Any | None = None  # rows -> probability of feasibility, with constraints
        self._pof: np.ndarray | None = None
        self.extend(pool)

    def extend(self, rows: np.ndarray) -> None:
        """More candidates (before the first pick)."""
        m = self._model
        K = m.kernel_(rows, m.X_train_)
        B = K @ m.K_inv_
        self.pool = np.vstack([self.pool, rows])
        self._K, self._B = np.vstack([self._K, K]), np.vstack([self._B, B])
        self._mu = np.concatenate([self._mu, K @ m.alpha_ * self._scale + self._offset])
        var = m.kernel_.diag(rows) - np.einsum("ij,ij->i", B, K)
        self._var = np.concatenate([self._var, np.maximum(var, 0.0)])

    def scores(self, y_opt: float, rule: PickRule) -> np.ndarray:
        if self.feasibility is not None and (self._pof is None or len(self._pof) != len(self.pool)):
            self._pof = self.feasibility(self.pool)
        return constrained(acquisition(self._mu, np.sqrt(self._var) * self._scale, y_opt, rule), self._pof, rule)

    def pick(self, y_opt: float, rule: PickRule, seen: set[bytes]) -> np.ndarray | None:
        for i in np.argsort(self.scores(y_opt, rule)):
            if self.pool[i].tobytes() not in seen:
                self._observe(int(i))
                return self.pool[i]
        return None

    def _observe(self, i: int) -> None:
        if self._var[i] <= 1e-12:
            return  # a point the model already knows: observing it changes nothing
        cov = self._model.kernel_(self.pool, self.pool[i : i + 1])[:, 0] - self._B @ self._K[i]
        for u in self._updates:
            cov -= u * u[i]
        # |cov| <= sqrt(var_c * var_i) holds exactly; clipping keeps round-off from growing
        limit = np.sqrt(self._var)
        u = np.clip(cov / math.sqrt(self._var[i] + self._noise), -limit, limit)
        self._var = np.maximum(self._var - u * u, 0.0)
        self._updates.append(u)


class _Crowding:
    """Picks from scored tree-model candidates: after each pick, candidates that share a
    leaf with it in most trees are passed over, so that a round spreads out."""

    def __init__(self, model: Any, pool: np.ndarray) -> None:
        self.pool = pool
        self._leaves = model.apply(pool)
        self._keys = [row.tobytes() for row in pool]
        self._crowded = np.zeros(len(pool), dtype=bool)
        self.feasibility: Any | None = None  # rows -> probability of feasibility, with constraints
        self._pof: np.ndarray | None = None

    def _choose(self, scores: np.ndarray, rule: PickRule, seen: set[bytes]) -> np.ndarray | None:
        """The best-scored candidate not seen and not crowded (else the best not seen)."""
        if self.feasibility is not None and self._pof is None:
            self._pof = self.feasibility(self.pool)
        first: int | None = None
        for j in np.argsort(constrained(scores, self._pof, rule)):
            if self._keys[j] in seen:
                continue
            first = int(j) if first is None else first
            if not self._crowded[j]:
                first = int(j)
                break
        if first is None:
            return None
        self._crowded |= (self._leaves == self._leaves[first]).mean(axis=1) >= 0.5
        return self.pool[first]


class _TreePicker(_Crowding):
    """Picks a round's points from one tree ensemble (one objective)."""

    def __init__(self, model: Any, pool: np.ndarray) -> None:
        super().__init__(model, pool)
        self._mu, self._std = model.predict(pool, return_std=True)

    def pick(self, y_opt: float, rule: PickRule, seen: set[bytes]) -> np.ndarray | None:
        return self._choose(acquisition(self._mu, self._std, y_opt, rule), rule, seen)


class _ParetoPicker(_Crowding):
    """Picks a round's points for several objectives from one multi-output tree ensemble
    of the losses scaled to [0, 1]: each pick scalarises every tree's predictions with its
    own weights (the spread over trees is the uncertainty); candidates that share leaves
    with running trials or earlier picks are passed over."""

    def __init__(self, model: Any, pool: np.ndarray, scaled: np.ndarray, pending: np.ndarray) -> None:
        super().__init__(model, pool)
        per_tree = np.stack([tree.predict(pool) for tree in model.estimators_])
        self._per_tree = per_tree if per_tree.ndim == 3 else per_tree[..., None]  # trees x candidates x objectives
        self._told = scaled
        if len(pending):
            leaves = model.apply(pending)
            for row in leaves:
                self._crowded |= (self._leaves == row).mean(axis=1) >= 0.5

    def pick_for(self, weights: np.ndarray, rule: PickRule, seen: set[bytes]) -> np.ndarray | None:
        values = scalarise(self._per_tree, weights)  # trees x candidates
        y_opt = float(scalarise(self._told, weights).min())
        return self._choose(acquisition(values.mean(axis=0), values.std(axis=0), y_opt, rule), rule, seen)


class _ParetoGPPicker:
    """Picks a round's points for several objectives from one GP per objective: each pick
    scalarises Monte Carlo draws of the objectives at every candidate with its own
    weights and takes the largest expected improvement of the scalarised value;
    candidates close to running trials or earlier picks are passed over."""

    SAMPLES = 64

    def __init__(self, models: list[Any], pool: np.ndarray, told: np.ndarray, pending: np.ndarray,
                 rng: np.random.Generator) -> None:
        self.pool = pool
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "predicted variances smaller than 0" at told points: set to 0
            stats = [m.predict(pool, return_std=True) for m in models]
        mu = np.column_stack([s[0] for s in stats])
        std = np.column_stack([s[1] for s in stats])
        self._draws = mu + std * rng.standard_normal((self.SAMPLES, *mu.shape))  # samples x candidates x objectives
        self._told = told
        self._keys = [row.tobytes() for row in pool]
        self._radius = 0.05 * math.sqrt(pool.shape[1])
        self._near = np.zeros(len(pool), dtype=bool)
        for row in pending:
            self._crowd(row)
        self.feasibility: Any | None = None
        self._pof: np.ndarray | None = None

    def _crowd(self, row: np.ndarray) -> None:
        self._near |= np.linalg.norm(self.pool - row, axis=1) < self._radius

    def pick_for(self, weights: np.ndarray, rule: PickRule, seen: set[bytes]) -> np.ndarray | None:
        values = scalarise(self._draws, weights)  # samples x candidates
        y_opt = float(scalarise(self._told, weights).min())
        scores = -np.maximum(y_opt - values, 0.0).mean(axis=0)  # -E[improvement]
        if self.feasibility is not None and self._pof is None:
            self._pof = self.feasibility(self.pool)
        scores = constrained(scores, self._pof, PickRule("EI", rule.kappa, rule.xi))
        first: int | None = None
        for j in np.argsort(scores):
            if self._keys[j] in seen:
                continue
            first = int(j) if first is None else first
            if not self._near[j]:
                first = int(j)
                break
        if first is None:
            return None
        self._crowd(self.pool[first])
        return self.pool[first]
