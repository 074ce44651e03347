"""The proposer's contract without a cluster: one fit per proposal round, exact kriging
believer updates, a ``take`` that never waits on the optimizer, and the fallback when
proposals cannot keep up; then the same on the engine with a real local cluster."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from conftest import model_spec
from test_bo import MIXED, QUAD, loss, quad, spec
from test_engine import exp_events

import candle_lab
from candle_lab.engine import driver as engine_module
from candle_lab.optimizers import make_optimizer
from candle_lab.optimizers.base import Observation, Proposal
from candle_lab.optimizers.bo import BayesOptimizer, PickRule, _GPPicker
from candle_lab.optimizers.proposer import BackgroundProposer, Starvation


def told_optimizer(space: Any, n: int, surrogate: str = "auto", fn: Any = loss) -> BayesOptimizer:
    opt = make_optimizer(spec(space, algorithm="async-bo", surrogate=surrogate, initial_points=5), seed=3)
    assert isinstance(opt, BayesOptimizer)
    points = spec(space).space.search_space().sample(np.random.default_rng(3), n)
    opt.register([Proposal(p) for p in points])  # as a resumed run: the initial design is used up
    opt.tell([Observation(p, fn(p)) for p in points])
    return opt


@pytest.mark.parametrize("surrogate", ["GP", "ET"])
def test_a_round_of_many_points_costs_one_fit(surrogate: str) -> None:
    opt = told_optimizer(MIXED, 40, surrogate)
    opt.ask(16)  # trials now running: 16 pending points
    before = dict(opt.fits)
    points = opt.ask(24)
    grown = {k: v - before.get(k, 0) for k, v in opt.fits.items() if v != before.get(k, 0)}
    assert len(points) == 24 and len({str(p.params) for p in points}) == 24
    if surrogate == "GP":  # one GP (hyperparameters or Cholesky only) + one conditioning on the pending
        assert sum(v for k, v in grown.items() if k != "GP-condition") == 1 and grown["GP-condition"] == 1, grown
    else:
        assert grown == {"ET": 1}


def test_gp_hyperparameters_refit_on_a_schedule_not_every_round() -> None:
    opt = told_optimizer(QUAD, 100, "GP", quad)
    before = opt.fits["GP-hyper"]
    for _ in range(8):
        p = opt.ask(1)[0]
        opt.tell([Observation(p.params, quad(p.params))])
    assert opt.fits["GP-hyper"] - before <= 1  # 100 -> 108 told: grew by less than a tenth
    assert opt.fits["GP-fixed"] >= 7


def test_kriging_believer_update_equals_conditioning_on_the_pick() -> None:
    """The rank-one variance update after a pick is the posterior of a GP that has the
    pick as one more (believed) observation."""
    opt = told_optimizer(QUAD, 8, "GP", quad)
    X, y = np.array(opt._X), np.array(opt._y)
    model = opt._gp(X, y)
    pool = np.random.default_rng(0).random((200, 2))
    picker = _GPPicker(model, pool)
    first = picker.pick(float(y.min()), PickRule("EI", 1.96, 0.01), set())
    second = picker.pick(float(y.min()), PickRule("EI", 1.96, 0.01), set())
    assert first is not None and second is not None
    refit = opt._condition(model, np.vstack([first, second]))
    _, std = refit.predict(pool, return_std=True)
    var = picker._var * picker._scale**2
    np.testing.assert_allclose(var, std**2, rtol=1e-3, atol=1e-3 * float(var.max()))
    assert var.max() > 10 * var[pool.tolist().index(first.tolist())]  # the picks' own variance collapsed
    # the mean is the model's: a believer changes only the variance
    np.testing.assert_allclose(picker._mu, model.predict(pool), rtol=1e-6, atol=1e-9)


def test_the_round_cost_stays_flat_in_pending_trials() -> None:
    """Trees with 1000 told points: a round costs about the same with 1024 trials running."""
    space = [{"name": f"x{i}", "type": "real", "low": 0.0, "high": 1.0} for i in range(6)]
    opt = make_optimizer(spec(space, algorithm="async-bo", initial_points=5), seed=0)
    rng = np.random.default_rng(0)
    xs = [{f"x{i}": float(v) for i, v in enumerate(row)} for row in rng.random((1000, 6))]
    opt.register([Proposal(p) for p in xs])
    opt.tell([Observation(p, sum(p.values())) for p in xs])

    def round_seconds() -> float:
        start = time.perf_counter()
        opt.ask(4)
        return time.perf_counter() - start

    alone = min(round_seconds() for _ in range(3))
    opt.register([Proposal({f"x{i}": float(v) for i, v in enumerate(row)}) for row in rng.random((1024, 6))])
    crowded = min(round_seconds() for _ in range(3))
    assert crowded < 3 * alone + 0.05, (alone, crowded)


class SlowOptimizer:
    """An optimizer whose rounds take ``seconds``; counts its rounds."""

    adaptive = True
    exhausted = False

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.rounds: list[int] = []
        self.degraded = 0
        self._n = 0

    def ask(self, n: int = 1) -> list[Proposal]:
        time.sleep(self.seconds)
        self.rounds.append(n)
        self._n += n
        return [Proposal({"x": self._n - i}) for i in range(n)]

    def tell(self, observations: Any) -> None:
        pass

    def register(self, proposals: Any) -> None:
        pass

    def degrade(self) -> str | None:
        self.degraded += 1
        self.seconds = 0.0
        return "faster" if self.degraded == 1 else None


def test_take_never_waits_for_a_slow_round() -> None:
    woken = threading.Event()
    opt = SlowOptimizer(0.5)
    proposer = BackgroundProposer(opt, capacity=8, on_ready=woken.set)
    try:
        start = time.perf_counter()
        assert proposer.take(3) == []  # nothing ready yet: the engine goes on at once
        assert time.perf_counter() - start < 0.1
        assert woken.wait(5)
        got = proposer.take(3)
        deadline = time.monotonic() + 5
        while sum(opt.rounds) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        got += proposer.take(3 - len(got))
        assert len(got) == 3
        # the thread had started a round of one (one proposal always ready); the rest of
        # the demand was served by one more round, not one round per point
        assert opt.rounds == [1, 2]
    finally:
        proposer.close()


def test_reserve_grows_with_the_completion_rate() -> None:
    now = [100.0]
    proposer = BackgroundProposer(SlowOptimizer(0.0), capacity=256, clock=lambda: now[0])
    try:
        proposer._recent_rounds.extend([0.1, 0.5, 0.2])  # the slowest recent round counts
        assert proposer.reserve(now[0]) == 0
        for _ in range(20):  # 20 results a second for 5 s
            now[0] += 0.05
            proposer.tell([Observation({"x": 0}, 1.0)])
        assert proposer.reserve(now[0]) == 80  # 20/s x (0.5 s round + its pause: 2 s) x 2
        proposer._recent_rounds.append(100.0)
        assert proposer.reserve(now[0]) == 256  # never more than the workers
    finally:
        proposer.close()


def test_rounds_are_spaced_unless_the_engine_waits() -> None:
    """100 completions a second, rounds of 50 ms: fewer, larger rounds (the thread busy
    about a quarter of the time), and the engine still finds a proposal ready."""
    opt = SlowOptimizer(0.05)
    proposer = BackgroundProposer(opt, capacity=64)
    try:
        got = missed = 0
        start = time.monotonic()
        while time.monotonic() < start + 3.0:
            taken = proposer.take(1)
            if time.monotonic() > start + 1.0:  # after the rate is known
                got += len(taken)
                missed += not taken
            proposer.tell([Observation(p.params, 1.0) for p in taken])
            time.sleep(0.01)
        busy = 0.05 * len(opt.rounds) / 3.0
        assert busy < 0.4, (len(opt.rounds), opt.rounds)  # about 0.25; one round per result would be ~1
        assert max(opt.rounds) > 5  # a round serves many results
        assert missed < 0.1 * (got + missed), (got, missed)
    finally:
        proposer.close()


def test_starvation_share_is_slot_seconds_over_the_window() -> None:
    s = Starvation(window=10.0)
    s.wanted(4, 0.0)
    s.wanted(0, 1.0)  # 4 slots waited 1 s
    assert s.share(8, 5.0) == pytest.approx(4 / 80)
    assert s.share(8, 20.0) == 0.0  # out of the window
    s.wanted(2, 20.0)
    assert s.share(2, 25.0) == pytest.approx(10 / 20)


def test_slow_proposals_fall_back_to_a_cheaper_optimizer_and_say_so() -> None:
    opt = SlowOptimizer(0.3)
    proposer = BackgroundProposer(opt, capacity=4)
    try:
        deadline = time.monotonic() + 10
        while not opt.degraded and time.monotonic() < deadline:
            got = proposer.take(4)
            proposer.tell([Observation(p.params, 1.0) for p in got] or [Observation({"x": 0}, 1.0)])
            time.sleep(0.05)
        assert opt.degraded == 1
        notice = next(n for n in proposer.notices() if n.kind == "proposer-fallback")
        assert notice.detail["change"] == "faster" and notice.detail["idle_share"] > 0.01
        assert notice.detail["proposals_per_s"] is not None and notice.detail["completions_per_s"] > 0
        assert proposer.notices() == []  # handed over once
    finally:
        proposer.close()


class SlowBayes(BayesOptimizer):
    """The real optimizer, with rounds slowed down until it is asked to degrade."""

    slow = 1.5
    asks: ClassVar[list[tuple[float, float]]] = []

    def ask(self, n: int = 1) -> list[Proposal]:
        start = time.monotonic()
        if self.told >= 2 and not self._cheap:
            time.sleep(self.slow)
        out = super().ask(n)
        SlowBayes.asks.append((start, time.monotonic()))
        return out


def test_engine_records_results_during_a_slow_round_and_the_fallback(
    client: Any, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow_optimizer(spec: Any, seed: int) -> Any:
        return SlowBayes(spec.space.search_space(), initial_points=2, seed=seed)

    monkeypatch.setattr(engine_module, "make_optimizer", slow_optimizer)
    SlowBayes.asks = []
    progress: list[tuple[float, int]] = []
    spec = model_spec(
        "sleepy",
        space=[{"name": "x", "type": "real", "low": 0, "high": 1}, {"name": "sleep", "type": "constant", "value": 0.2}],
        search={"algorithm": "async-bo", "initial_points": 2},
        budget={"max_trials": 12},
    )
    exp = candle_lab.run(
        spec, client=client, root=root, observer=lambda p: progress.append((time.monotonic(), p.finished))
    )
    assert (exp.trials["state"] == "completed").all() and len(exp.trials) == 12
    slow = [(a, b) for a, b in SlowBayes.asks if b - a >= SlowBayes.slow]
    assert slow, "no slow round happened"
    # the engine loop went on while the optimizer was busy: results arrived and were recorded
    a, b = slow[0]
    assert any(a < t < b for t, _ in progress), (slow[0], progress)
    events = [e for e in exp_events(exp) if e[1] == "proposer-fallback"]
    assert len(events) == 1 and events[0][3]["change"] == "surrogate GP -> ET"
