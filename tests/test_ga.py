"""Evolutionary search (``search.algorithm: ga``): DEAP's operators over every kind of
parameter, steady-state and generational on a real local dask cluster, resume, bad settings."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from conftest import TESTS, model_spec

import candle_lab
from candle_lab.errors import SpecError
from candle_lab.objectives import branin
from candle_lab.optimizers import Observation, make_optimizer
from candle_lab.optimizers.ga import GeneticSearch
from candle_lab.space import CategoricalParam, ConstantParam, IntegerParam, RealParam, SearchSpace, read_space_file
from candle_lab.spec import spec_from_dict

SPACE = SearchSpace(
    (
        RealParam(name="x1", low=-5, high=10),
        RealParam(name="x2", low=0, high=15, sigma=1.5),
        IntegerParam(name="units", low=4, high=512, log=True),
        CategoricalParam(name="act", choices=("relu", "tanh", "elu")),
        CategoricalParam(name="batch", choices=(16, 32, 64, 128), ordered=True, sigma=1),
        ConstantParam(name="epochs", value=3),
    )
)


def loss(p: dict[str, Any]) -> float:
    """Branin plus a penalty per non-optimal discrete choice: minimum 0.398 at units 64,
    act tanh, batch 32."""
    return branin(p) + abs(math.log2(p["units"]) - 6) + 3 * (p["act"] != "tanh") + abs(math.log2(p["batch"]) - 5)


def evolve(ga: GeneticSearch, trials: int, start: int = 0) -> list[tuple[Any, float]]:
    out = []
    for i in range(start, start + trials):
        (proposal,) = ga.ask(1)
        value = loss(proposal.params)
        ga.tell([Observation(proposal.params, value, f"RUN{i:03d}")])
        out.append((proposal, value))
    return out


def test_ga_improves_on_its_initial_population_and_stays_in_the_space() -> None:
    ga = GeneticSearch(SPACE, population=20, seed=3)
    history = evolve(ga, 200)
    initial = [v for p, v in history if p.origin == {"generation": 0, "operator": "initial"}]
    assert len(initial) == 20
    values = [v for _, v in history]
    assert min(values[-60:]) < min(initial) / 2  # well beyond the best random point
    assert sorted(v for _, v in history[-40:])[20] < sorted(initial)[10]  # the population moved, not one lucky child
    for proposal, _ in history:
        p = proposal.params
        assert -5 <= p["x1"] <= 10 and 0 <= p["x2"] <= 15
        assert isinstance(p["units"], int) and 4 <= p["units"] <= 512
        assert p["act"] in ("relu", "tanh", "elu") and p["batch"] in (16, 32, 64, 128) and p["epochs"] == 3
    children = [p for p, _ in history if p.origin["generation"] > 0]
    assert {c.origin["operator"] for c in children} == {"mutation", "crossover+mutation"}
    known = {f"RUN{i:03d}": p.origin["generation"] for i, (p, _) in enumerate(history)}
    for child in children:  # one more than the youngest parent, all evaluated before
        parents = child.origin["parents"]
        assert 1 <= len(parents) <= 2
        assert child.origin["generation"] == 1 + max(known[r] for r in parents)


def test_ga_repeats_with_its_seed_whatever_else_draws_from_random() -> None:
    import random

    first = [p.params for p, _ in evolve(GeneticSearch(SPACE, seed=5, population=8), 40)]
    ga = GeneticSearch(SPACE, seed=5, population=8)
    again = []
    for i in range(40):
        random.random()  # another user of Python's global generator
        again += [p.params for p, _ in evolve(ga, 1, start=i)]
    assert again == first


def test_elitism_selects_among_the_best_and_without_it_among_the_latest() -> None:
    elite = GeneticSearch(SPACE, population=5, seed=1)
    latest = GeneticSearch(SPACE, population=5, seed=1, elitism=False)
    for ga in (elite, latest):
        for i, (proposal, value) in enumerate(zip(ga.ask(12), range(12, 0, -1), strict=True)):
            ga.tell([Observation(proposal.params, float(value), f"RUN{i:03d}")])
    assert [m.loss for m in elite.pool()] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert [m.run_id for m in latest.pool()] == [f"RUN{i:03d}" for i in range(7, 12)]


def test_failed_trials_breed_nothing_and_generations_end_the_search() -> None:
    ga = GeneticSearch(SPACE, population=4, generations=2, seed=0)
    proposals = ga.ask(4)
    ga.tell([Observation(p.params, None if i % 2 else 1.0 + i, f"RUN{i}") for i, p in enumerate(proposals)])
    assert [m.run_id for m in ga.pool()] == ["RUN0", "RUN2"]
    children = ga.ask(100)  # the budget: 4 × (2 + 1) proposals in all
    assert len(children) == 8 and ga.exhausted and ga.ask(1) == []
    assert all(set(c.origin["parents"]) <= {"RUN0", "RUN2"} for c in children)


def test_candle_ga_file_is_the_native_input(tmp_path: Path) -> None:
    """CANDLE's GA JSON (with its sigmas) runs as it is; ``sigma`` is kept and exported."""
    parameters = read_space_file(TESTS / "data" / "ga_candle.json").parameters
    spec = spec_from_dict(
        {
            "model": {"ref": "candle_lab.objectives:noop"},
            "space": {"parameters": parameters},
            "search": {"algorithm": "ga", "population": 6, "generations": 3, "seed": 2},
        }
    )
    by_name = {p.name: p for p in spec.space.parameters}
    assert by_name["dropout"].sigma == 0.045 and by_name["batch_size"].sigma == 1  # type: ignore[union-attr]
    from candle_lab.space import to_ga_json

    assert {e["name"]: e.get("sigma") for e in to_ga_json(spec.space.parameters)}["dense_units"] == 50
    ga = make_optimizer(spec, seed=2)
    proposals = ga.ask(6)
    ga.tell([Observation(p.params, float(i), f"R{i}") for i, p in enumerate(proposals)])
    for child in ga.ask(18):
        assert 16 <= child.params["dense_units"] <= 1024
        assert child.params["batch_size"] in (16, 32, 64, 128, 256)
    assert ga.exhausted


@pytest.mark.parametrize(
    ("search", "field", "words"),
    [
        ({"population": 0}, "search.population", "greater than or equal to 2"),
        ({"population": 4, "tournament_size": 5}, "search.tournament_size", "expected at most population (4), got 5"),
        ({"mutation_rate": 1.5}, "search.mutation_rate", "less than or equal to 1"),
        ({"generations": 0}, "search.generations", "greater than or equal to 1"),
    ],
)
def test_bad_ga_settings_are_named(search: dict[str, Any], field: str, words: str) -> None:
    data = {"model": {"ref": "candle_lab.objectives:noop"}, "space": [{"name": "x", "type": "real", "low": 0,
                                                                       "high": 1}],
            "search": {"algorithm": "ga", **search}, "budget": {"max_trials": 10}}
    with pytest.raises(SpecError) as err:
        spec_from_dict(data)
    assert any(f == field and words in m for f, m in err.value.problems), err.value.problems


def test_ga_needs_a_budget_or_generations_and_sigma_only_on_ordered_choices() -> None:
    base = {"model": {"ref": "candle_lab.objectives:noop"}, "space": [{"name": "x", "type": "real", "low": 0,
                                                                       "high": 1}]}
    with pytest.raises(SpecError, match=r"set budget.max_trials or budget.max_time \(or search.generations\)"):
        spec_from_dict({**base, "search": {"algorithm": "ga"}})
    assert spec_from_dict({**base, "search": {"algorithm": "ga", "generations": 2}}).search.generations == 2
    bad = [{"name": "act", "type": "categorical", "choices": ["a", "b"], "sigma": 1}]
    with pytest.raises(SpecError) as err:
        spec_from_dict({**base, "space": bad, "search": {"algorithm": "ga", "generations": 2}})
    assert "sigma applies to ordered choices only" in str(err.value)


# ------------------------------------------------------------------ the engine
BRANIN_SPACE = [
    {"name": "x1", "type": "real", "low": -5, "high": 10},
    {"name": "x2", "type": "real", "low": 0, "high": 15},
]


def test_steady_state_ga_on_the_local_cluster_stores_generations_and_parents(client: Any, root: Path) -> None:
    spec = {
        "name": "ga-steady",
        "model": {"ref": "candle_lab.objectives:branin"},
        "space": BRANIN_SPACE,
        "objective": {"metric": "objective"},
        "search": {"algorithm": "ga", "population": 6, "seed": 4},
        "budget": {"max_trials": 30},
        "compute": {"workers": 2},
    }
    exp = candle_lab.run(spec, client=client, root=root)
    records = exp.records()
    assert len(records) == 30 and all(t.state == "completed" for t in records)
    run_ids = {t.run_id: t for t in records}
    children = [t for t in records if t.origin and t.origin["generation"] > 0]
    assert len(children) == 24 and [t.round for t in records[:6]] == [0] * 6
    for child in children:
        parents = [run_ids[r] for r in child.origin["parents"]]  # type: ignore[index]
        assert child.round == child.origin["generation"] == 1 + max(p.round or 0 for p in parents)
        assert all(p.ended is not None and p.ended <= (child.queued or 0) + 1e-3 for p in parents)
    frame = exp.trials
    assert "origin.parents" in frame and frame["origin.generation"].max() >= 2


def test_generational_ga_waits_for_each_generation(client: Any, root: Path) -> None:
    spec = model_spec(
        "sleepy",
        space=[{"name": "x", "type": "real", "low": 0, "high": 1}, {"name": "sleep", "type": "constant", "value": 0.1}],
        search={"algorithm": "ga", "population": 3, "generations": 2, "generational": True, "seed": 1},
        budget={},
    )
    spec["budget"] = {}
    exp = candle_lab.run(spec, client=client, root=root)
    trials = exp.trials
    assert list(trials.groupby("round").size()) == [3, 3, 3]
    for r in (1, 2):
        previous, current = trials[trials["round"] == r - 1], trials[trials["round"] == r]
        assert current["queued"].min() >= previous["ended"].max()
    assert exp.status().ended_because == "exhausted"
