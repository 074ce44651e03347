"""Grid, random and UPF optimizers: the points they propose, built as the engine builds them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from benchmarks.common import MIXED_6D
from candle_lab.optimizers import make_optimizer
from candle_lab.optimizers.base import Observation, Proposal
from candle_lab.space import point_key
from candle_lab.spec import spec_from_dict

GRID_SPACE = [
    {"name": "a", "type": "integer", "low": 1, "high": 3},
    {"name": "b", "type": "categorical", "choices": ["x", "y"]},
    {"name": "c", "type": "real", "low": 0.0, "high": 1.0},
    {"name": "k", "type": "constant", "value": 7},
]
MIXED = MIXED_6D


def spec(space: Any, **search: Any) -> Any:
    return spec_from_dict({"model": {"ref": "m:f"}, "space": space, "search": search, "budget": {"max_trials": 10}})


def drain(opt: Any, step: int = 4) -> list[Proposal]:
    out: list[Proposal] = []
    while not opt.exhausted:
        got = opt.ask(step)
        if not got:
            break
        out += got
    return out


def expected_grid() -> set[str]:
    return {
        point_key({"a": a, "b": b, "c": c, "k": 7})
        for a in (1, 2, 3)
        for b in ("x", "y")
        for c in (0.0, 0.5, 1.0)
    }


def test_grid_covers_grid_exactly_once() -> None:
    opt = make_optimizer(spec(GRID_SPACE, algorithm="grid", grid_points=3), seed=0)
    points = drain(opt)
    keys = [point_key(p.params) for p in points]
    assert len(keys) == 18 == len(set(keys))
    assert set(keys) == expected_grid()
    assert opt.exhausted and opt.ask(3) == []


def test_shuffled_grid_same_points_other_order_reproducible() -> None:
    plain = [point_key(p.params) for p in drain(make_optimizer(spec(GRID_SPACE, algorithm="grid", grid_points=3), 0))]
    s = spec(GRID_SPACE, algorithm="grid", grid_points=3, shuffle=True)
    shuffled = [point_key(p.params) for p in drain(make_optimizer(s, seed=5))]
    again = [point_key(p.params) for p in drain(make_optimizer(s, seed=5))]
    assert sorted(shuffled) == sorted(plain) and len(set(shuffled)) == 18
    assert shuffled != plain
    assert shuffled == again


def test_grid_after_register_proposes_only_the_rest() -> None:
    s = spec(GRID_SPACE, algorithm="grid", grid_points=3, shuffle=True)
    first = make_optimizer(s, seed=2)
    done = first.ask(7)
    resumed = make_optimizer(s, seed=2)
    resumed.register(done)
    rest = drain(resumed, step=5)
    keys = [point_key(p.params) for p in done + rest]
    assert len(rest) == 11
    assert len(keys) == len(set(keys)) and set(keys) == expected_grid()


def test_random_respects_bounds_types_and_log_scale() -> None:
    opt = make_optimizer(spec(MIXED, algorithm="random"), seed=3)
    points = [p.params for p in opt.ask(2000)]
    for p in points:
        assert isinstance(p["lr"], float) and 1e-5 <= p["lr"] <= 0.1
        assert isinstance(p["dropout"], float) and 0.0 <= p["dropout"] <= 0.8
        assert isinstance(p["units"], int) and not isinstance(p["units"], bool) and 16 <= p["units"] <= 1024
        assert isinstance(p["layers"], int) and 1 <= p["layers"] <= 6
        assert p["activation"] in ("relu", "tanh", "elu") and p["batch_size"] in (16, 32, 64, 128)
    # log scale: about half of the draws below the geometric middle (1e-3), not ~1 %
    below = np.mean([p["lr"] < 1e-3 for p in points])
    assert 0.4 < below < 0.6
    assert {p["layers"] for p in points} == set(range(1, 7))
    assert {p["activation"] for p in points} == {"relu", "tanh", "elu"}


def test_random_is_seed_reproducible() -> None:
    s = spec(MIXED, algorithm="random")
    a = [p.params for p in make_optimizer(s, seed=11).ask(20)]
    b = [p.params for p in make_optimizer(s, seed=11).ask(20)]
    c = [p.params for p in make_optimizer(s, seed=12).ask(20)]
    assert a == b and a != c
    opt = make_optimizer(s, seed=1)
    opt.tell([Observation(a[0], 1.0), Observation(a[1], None)])  # learns nothing, never fails
    assert len(opt.ask(3)) == 3


def test_upf_yields_each_run_once_with_its_params() -> None:
    runs = [{"id": f"r{i}", "params": {"x": i, "name": f"n{i}"}} for i in range(5)]
    s = spec_from_dict(
        {
            "model": {"ref": "m:f"},
            "space": {"runs": runs, "parameters": [{"name": "k", "type": "constant", "value": 1}]},
            "search": {"algorithm": "upf"},
            "budget": {"max_trials": 5},
        }
    )
    opt = make_optimizer(s, seed=0)
    got = opt.ask(2) + opt.ask(10)
    assert [p.run_id for p in got] == ["r0", "r1", "r2", "r3", "r4"]
    for p, r in zip(got, runs, strict=True):
        assert p.params == {"k": 1, **r["params"]}
    assert opt.exhausted and opt.ask(1) == []
    resumed = make_optimizer(s, seed=0)
    resumed.register(got[:3])
    assert [p.run_id for p in resumed.ask(10)] == ["r3", "r4"]


def test_log_integer_spread() -> None:
    opt = make_optimizer(spec(MIXED, algorithm="random"), seed=4)
    units = [p.params["units"] for p in opt.ask(3000)]
    # log-uniform: the median sits near the geometric mean (128), far below the arithmetic one (520)
    assert 70 < float(np.median(units)) < 230
    assert math.isclose(min(units), 16, abs_tol=2)
