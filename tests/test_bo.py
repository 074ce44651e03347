"""BayesOptimizer: proposals in the space, distinct under pending points, qLCB batches,
learning on a simple quadratic, failed trials, and resuming without re-proposing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from benchmarks.common import MIXED_6D
from candle_lab.optimizers import make_optimizer
from candle_lab.optimizers.base import Observation, Proposal
from candle_lab.optimizers.bo import BayesOptimizer
from candle_lab.space import point_key
from candle_lab.spec import spec_from_dict

MIXED = [*MIXED_6D, {"name": "epochs", "type": "constant", "value": 3}]
QUAD = [{"name": f"x{i}", "type": "real", "low": -1.0, "high": 1.0} for i in range(2)]


def spec(space: Any, **search: Any) -> Any:
    return spec_from_dict({"model": {"ref": "m:f"}, "space": space, "search": search, "budget": {"max_trials": 50}})


def loss(p: dict[str, Any]) -> float:
    act = {"relu": 0.0, "tanh": 0.3, "elu": 0.1}[p["activation"]]
    return (np.log10(p["lr"]) + 3) ** 2 + (p["dropout"] - 0.2) ** 2 + (p["layers"] - 3) ** 2 / 9 + act


def quad(p: dict[str, Any]) -> float:
    return (p["x0"] - 0.3) ** 2 + (p["x1"] + 0.2) ** 2


def in_space(p: dict[str, Any]) -> None:
    assert isinstance(p["lr"], float) and 1e-5 <= p["lr"] <= 0.1
    assert 0.0 <= p["dropout"] <= 0.8
    assert isinstance(p["units"], int) and 16 <= p["units"] <= 1024
    assert isinstance(p["layers"], int) and 1 <= p["layers"] <= 6
    assert p["activation"] in ("relu", "tanh", "elu") and p["batch_size"] in (16, 32, 64, 128)
    assert p["epochs"] == 3


@pytest.mark.parametrize("surrogate", ["auto", "ET", "RF"])
def test_proposals_inside_space_and_distinct_with_pending(surrogate: str) -> None:
    opt = make_optimizer(spec(MIXED, algorithm="async-bo", surrogate=surrogate, initial_points=5), seed=1)
    pending = opt.ask(4)
    seen = [point_key(p.params) for p in pending]
    for _ in range(14):
        done = pending.pop(0)
        opt.tell([Observation(done.params, loss(done.params))])
        new = opt.ask(1)
        assert len(new) == 1
        in_space(new[0].params)
        key = point_key(new[0].params)
        assert key not in {point_key(p.params) for p in pending}  # never a point still running
        seen.append(key)
        pending += new
    assert len(seen) == len(set(seen))


def test_qlcb_batch_returns_n_distinct_points() -> None:
    opt = make_optimizer(spec(MIXED, algorithm="batch-bo", initial_points=6), seed=2)
    first = opt.ask(6)
    opt.tell([Observation(p.params, loss(p.params)) for p in first])
    batch = opt.ask(8)
    keys = {point_key(p.params) for p in batch}
    assert len(batch) == 8 and len(keys) == 8
    assert not keys & {point_key(p.params) for p in first}
    for p in batch:
        in_space(p.params)


def run(opt: Any, n: int = 20) -> float:
    best = float("inf")
    pending = opt.ask(2)
    for _ in range(n):
        done = pending.pop(0)
        value = quad(done.params)
        best = min(best, value)
        opt.tell([Observation(done.params, value)])
        pending += opt.ask(1)
    return best


def test_bo_beats_random_on_a_quadratic() -> None:
    bo = [run(make_optimizer(spec(QUAD, algorithm="async-bo", initial_points=5), seed=s)) for s in range(3)]
    rnd = [run(make_optimizer(spec(QUAD, algorithm="random"), seed=s)) for s in range(3)]
    assert np.median(bo) < 1e-3
    assert np.median(bo) < np.median(rnd) / 5


def test_failed_trials_are_skipped() -> None:
    opt = BayesOptimizer(spec(QUAD).space.search_space(), initial_points=3, seed=0)
    first = opt.ask(3)
    opt.tell([Observation(first[0].params, None), Observation(first[1].params, float("nan"))])
    assert opt.told == 0
    opt.tell([Observation(first[2].params, 1.0)])
    assert opt.told == 1
    more = opt.ask(2)  # one told point: still works (random or model)
    assert len(more) == 2
    opt.tell([Observation(p.params, None) for p in more])
    assert opt.told == 1 and len(opt.ask(1)) == 1


def test_register_avoids_reproposing() -> None:
    s = spec(MIXED, algorithm="async-bo", initial_points=6)
    first = make_optimizer(s, seed=4)
    earlier = first.ask(6)
    resumed = make_optimizer(s, seed=4)
    resumed.register(earlier)
    again = resumed.ask(6)
    assert not {point_key(p.params) for p in again} & {point_key(p.params) for p in earlier}
    # register + tell: results of the earlier run feed the model, still no repeats
    resumed.tell([Observation(p.params, loss(p.params)) for p in earlier])
    later = resumed.ask(3)
    keys = {point_key(p.params) for p in earlier + again}
    assert len(later) == 3 and not {point_key(p.params) for p in later} & keys


def test_tell_of_unknown_point_is_accepted() -> None:
    opt = BayesOptimizer(spec(QUAD).space.search_space(), initial_points=2, seed=0)
    opt.tell([Observation({"x0": 0.1, "x1": -0.1}, 0.2), Observation({"x0": 0.9, "x1": 0.9}, 2.0)])
    assert opt.told == 2
    assert isinstance(opt.ask(1)[0], Proposal)



def test_the_gp_sees_heavy_tailed_values_through_a_monotone_warp() -> None:
    """Losses spread over four orders of magnitude (a few trainings diverged): standardized,
    the twenty best collapse next to the worst; warped, their order is kept and they spread."""
    from candle_lab.optimizers.bo import warp

    y = np.exp(np.linspace(0.0, 10.0, 30))[np.random.default_rng(0).permutation(30)]
    z = (y - y.mean()) / y.std()
    w = warp(y)
    assert (np.argsort(w) == np.argsort(y)).all()
    best = np.argsort(y)[:20]
    spread = lambda v: float(np.ptp(v[best]) / np.ptp(v))  # noqa: E731
    assert spread(z) < 0.04 and spread(w) > 0.2, (spread(z), spread(w))
    np.testing.assert_allclose(warp(y[:5]), (y[:5] - y[:5].mean()) / y[:5].std())  # too few: standardized only


def test_the_trust_region_grows_on_improvements_shrinks_on_stalls_and_starts_again() -> None:
    from candle_lab.optimizers.bo import TrustRegion

    region = TrustRegion().told(10.0, patience=5)  # the first value only sets the best
    assert (region.length, region.best) == (0.8, 10.0)
    for value in (9.0, 8.0, 7.0):  # three improvements in a row: the side doubles
        region = region.told(value, patience=5)
    assert region.length == 1.6 and region.best == 7.0
    assert region.told(6.0, 5).told(5.0, 5).told(4.0, 5).length == 1.6  # never past LONGEST
    for _ in range(5):  # five values without an improvement (6.999 is within the 0.1 % margin): it halves
        region = region.told(6.999, patience=5)
    assert region.length == 0.8 and region.best == 6.999
    for _ in range(5 * 7):  # after seven more halvings it is below SHORTEST: it starts again
        region = region.told(8.0, patience=5)
    assert region.length == TrustRegion.START


def test_half_the_candidates_lie_in_the_trust_region_around_the_best_point() -> None:
    opt = BayesOptimizer(spec(MIXED).space.search_space(), initial_points=4, seed=1)
    rng = np.random.default_rng(0)
    X, y = rng.random((12, opt._width)), rng.random(12)
    opt._region = opt._region.__class__(length=0.1, best=float(y.min()))
    pool = opt._candidates(X, y, 400)
    box = pool[:200]
    best = X[np.argmin(y)]
    for col in opt._columns:
        if col.kind != "cat":  # within half a side of the best point (integers snapped onto their lattice)
            slack = 0.05 + (0.5 / col.steps if col.steps else 0.0)
            assert (np.abs(box[:, col.start] - best[col.start]) <= slack + 1e-9).all(), col.param.name
    assert np.ptp(pool[200:, opt._columns[0].start]) > 0  # the other half: perturbations, not all one point
