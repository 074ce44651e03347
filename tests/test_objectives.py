"""Several objectives (a Pareto front) and constraints (infeasible trials)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import model_spec

import candle_lab
from candle_lab import pareto
from candle_lab.cli import main
from candle_lab.errors import SpecError
from candle_lab.optimizers.base import Observation
from candle_lab.optimizers.bo import BayesOptimizer
from candle_lab.space import RealParam, SearchSpace
from candle_lab.spec import ObjectiveSpec, spec_from_dict

XY = [{"name": "x", "type": "real", "low": 0.0, "high": 1.0}, {"name": "y", "type": "real", "low": 0.0, "high": 1.0}]
GOALS = [{"metric": "error"}, {"metric": "size"}]


def goals_spec(**sections: Any) -> dict[str, Any]:
    """A spec of ``two_goals`` with ``objectives`` (and no ``objective``) unless told."""
    spec = model_spec("two_goals", XY, **{"objectives": GOALS, **sections})
    if "objective" not in sections:
        del spec["objective"]
    return spec


# ------------------------------------------------------------------ the spec
@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"objectives": [{"metric": "a"}, {"metric": "a"}]}, "objectives: expected each metric once, got a"),
        ({"objective": {"metric": "b"}}, "objective: with objectives, expected none or the first of them (error)"),
        ({"objectives": [{"metric": "error", "direction": "up"}]}, "objectives[0].direction"),
        ({"constraints": [{"metric": "m"}]}, "constraints[0]: constraint on 'm': expected max, min or both"),
        ({"constraints": [{"metric": "m", "min": 3, "max": 1}]}, "expected min <= max, got min 3.0 > max 1.0"),
        ({"budget": {"max_trials": 4, "target": 0.1}}, "budget.target: a target stops"),
    ],
)
def test_bad_objectives_and_constraints_are_named(change: dict[str, Any], words: str) -> None:
    with pytest.raises(SpecError) as found:
        spec_from_dict(goals_spec(**change))
    assert words in str(found.value)


def test_objectives_alone_make_the_first_the_objective() -> None:
    spec = spec_from_dict(goals_spec())
    assert spec.objective.metric == "error" and [g.metric for g in spec.goals] == ["error", "size"]
    assert spec.multi_objective
    single = spec_from_dict(model_spec("sleepy"))
    assert [g.metric for g in single.goals] == ["loss"] and not single.multi_objective


# ------------------------------------------------------------------ fronts (no dask)
def test_the_running_front_keeps_exactly_the_non_dominated_trials() -> None:
    rng = np.random.default_rng(0)
    points = rng.random((60, 2))
    front = pareto.Front()
    joined_all: set[int] = set()
    for i, p in enumerate(points):
        joined, left = front.add(i, p)
        joined_all |= set(joined)
        assert not set(left) & set(front.ids)
    expected = {i for i, p in enumerate(points) if not ((points <= p).all(axis=1) & (points < p).any(axis=1)).any()}
    assert set(front.ids) == expected and expected <= joined_all
    reference = np.array([2.0, 2.0])
    whole = pareto.hypervolume(points, reference)
    assert whole == pytest.approx(pareto.hypervolume(points[sorted(expected)], reference))


def test_losses_and_feasibility_of_a_trial() -> None:
    goals = [ObjectiveSpec(metric="acc", direction="maximize"), ObjectiveSpec(metric="size")]
    assert pareto.losses({"acc": 0.9, "size": 3.0}, goals) == (-0.9, 3.0)
    assert pareto.losses({"acc": 0.9}, goals) is None and pareto.losses({"acc": math.nan, "size": 1}, goals) is None
    spec = spec_from_dict(model_spec("two_goals", XY, constraints=[{"metric": "memory", "max": 30}]))
    assert pareto.feasible({"memory": 12.0}, spec.constraints) is True
    assert pareto.feasible({"memory": 31.0}, spec.constraints) is False
    assert pareto.feasible({}, spec.constraints) is None and pareto.feasible({"memory": 1.0}, []) is None


# ------------------------------------------------------------------ the optimizer (no dask)
def _space() -> SearchSpace:
    return SearchSpace([RealParam(name="x", low=0.0, high=1.0), RealParam(name="y", low=0.0, high=1.0)])


def _zdt1(p: dict[str, Any]) -> tuple[float, float]:
    g = 1.0 + 9.0 * p["y"]
    return p["x"], g * (1.0 - math.sqrt(p["x"] / g))


def test_a_round_for_several_objectives_spreads_along_the_front_with_one_fit_per_objective() -> None:
    opt = BayesOptimizer(_space(), seed=1, objectives=2, initial_points=8)
    for p in opt.ask(8):
        f = _zdt1(p.params)
        opt.tell([Observation(p.params, f[0], losses=f)])
    before = sum(opt.fits.values())
    batch = opt.ask(6)
    assert sum(opt.fits.values()) - before == 2  # one GP per objective serves the whole round
    xs = sorted(p.params["x"] for p in batch)
    assert len({(p.params["x"], p.params["y"]) for p in batch}) == 6 and xs[-1] - xs[0] > 0.2  # spread out
    for _ in range(8):  # and the search moves to the front (y -> 0)
        for p in opt.ask(2):
            f = _zdt1(p.params)
            opt.tell([Observation(p.params, f[0], losses=f)])
    assert float(np.median([p.params["y"] for p in opt.ask(4)])) < 0.2


def test_constrained_proposals_go_where_trials_were_feasible() -> None:
    opt = BayesOptimizer(_space(), seed=3, initial_points=10)
    picks: list[float] = []
    for _ in range(30):
        (p,) = opt.ask(1)
        x = p.params["x"]
        picks.append(x)
        # the loss falls with x, but past 0.4 the trial breaks its memory limit (or runs out of memory)
        opt.tell([Observation(p.params, 1.0 - x if x <= 0.4 else None, feasible=x <= 0.4)])
    assert opt.fits["feasibility"] > 0
    late = picks[15:]
    assert max(late) < 0.45 and sum(x <= 0.4 for x in late) >= 0.6 * len(late), late  # at the boundary, not beyond
    assert max(x for x in picks if x <= 0.4) > 0.38  # where the best feasible loss is


def test_the_genetic_search_keeps_an_nsga2_pool_and_infeasible_ones_last() -> None:
    from candle_lab.optimizers.ga import GeneticSearch

    ga = GeneticSearch(_space(), population=12, seed=4, objectives=2)
    reference = np.array([1.1, 11.0])
    volumes = []
    for _ in range(8):  # generations
        batch = ga.ask(12)
        found = [_zdt1(p.params) for p in batch]
        ga.tell([Observation(p.params, f[0], losses=f, feasible=p.params["x"] > 0.05)
                 for p, f in zip(batch, found, strict=True)])
        pool = ga.pool()
        points = np.array([m.losses for m in pool if m.feasible])
        volumes.append(pareto.hypervolume(points[pareto.nondominated(points)], reference))
    assert volumes[-1] > volumes[0] and len(pool) == 12
    feasible = [m.feasible for m in pool]
    assert feasible == sorted(feasible, reverse=True)  # every infeasible member after the feasible ones


# ------------------------------------------------------------------ real runs on the local cluster
def test_two_objectives_and_a_constraint_end_to_end(
    client: Any, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = goals_spec(constraints=[{"metric": "memory", "max": 30}],
                      search={"algorithm": "async-bo", "initial_points": 6, "seed": 2}, budget={"max_trials": 16})
    exp = candle_lab.run(spec, client=client, root=root)
    records = exp.records()
    assert len(records) == 16
    for t in records:
        x = float(t.params["x"])
        if x > 0.95:
            assert t.state == "failed" and t.reason == "oom" and t.feasible is None  # the optimizer hears infeasible
        else:
            assert t.state == "completed" and t.feasible is (40.0 * x <= 30.0), (x, t.feasible)
    front = exp.pareto
    on_front = {t.trial_id for t in records if t.pareto}
    assert on_front == set(front["trial_id"]) and on_front  # the engine's flags are the front of the table
    assert all(t.feasible for t in records if t.trial_id in on_front)
    assert front["metric.error"].is_monotonic_increasing and front["metric.size"].is_monotonic_decreasing
    best = exp.best
    assert best is not None and best.feasible and best.trial_id in on_front  # the best error is on the front too
    volume = exp.hypervolume()["hypervolume"].to_numpy()
    assert len(volume) == sum(t.state == "completed" and t.feasible for t in records)
    assert (np.diff(volume) >= -1e-12).all() and volume[-1] > 0
    assert main(["--root", str(root), "status", exp.id]) == 0
    out = capsys.readouterr().out
    assert f"Pareto front (error ↓, size ↓): {len(front)} trials" in out


def test_an_objective_the_model_never_reports_is_named_with_what_it_did_report(client: Any, root: Path) -> None:
    spec = goals_spec(objectives=[{"metric": "error"}, {"metric": "latency"}], budget={"max_trials": 2})
    exp = candle_lab.run(spec, client=client, root=root)
    for t in exp.records():
        if t.reason == "oom":
            continue
        assert t.state == "failed" and t.reason == "nan"
        assert "objectives[1].metric 'latency': not reported" in str(t.error)
        assert "it reported: error, memory, size" in str(t.error)


def test_the_form_keeps_a_loaded_specs_objectives_and_constraints() -> None:
    from candle_lab.ui.forms import SpecForm

    spec = spec_from_dict(goals_spec(constraints=[{"metric": "memory", "max": 30}]))
    form = SpecForm()
    form.load_spec(spec)
    form.metric = "error"
    again = spec_from_dict(form.spec_dict())
    assert [g.metric for g in again.goals] == ["error", "size"] and again.constraints == spec.constraints
    assert (form.more_objectives, form.constraints) == ("size min", "memory <= 30")


def test_the_form_edits_objectives_and_constraints_and_names_what_it_cannot_read() -> None:
    from candle_lab.ui.forms import SpecForm

    form = SpecForm()
    form.load_spec(spec_from_dict(goals_spec()))
    form.param.update(more_objectives="size min, accuracy max", constraints="memory <= 30, 0.5 <= accuracy")
    spec = form.check()
    assert spec is not None, form.problems
    assert [(g.metric, g.direction) for g in spec.goals] == [("error", "minimize"), ("size", "minimize"),
                                                            ("accuracy", "maximize")]
    assert [str(c) for c in spec.constraints] == ["memory <= 30", "0.5 <= accuracy"]
    form.param.update(more_objectives="size smallest", constraints="memory < 30")
    assert form.check() is None
    assert form.problems == [
        ("objectives", '"size smallest": expected "metric min" or "metric max"'),
        ("constraints", '"memory < 30": expected "metric <= number", "metric >= number" or "number <= metric"'),
    ]
    assert form.bad_params() == {"more_objectives", "constraints"}
    form.param.update(more_objectives="", constraints="")
    spec = form.check()
    assert spec is not None and len(spec.goals) == 1 and not spec.constraints
