"""Conditional spaces: ``when:`` conditions, the ``layers`` type, and how every search
and every form treats parameters that do not always exist."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TESTS, model_spec

import candle_lab
from candle_lab.errors import SpecError
from candle_lab.optimizers.base import Observation
from candle_lab.optimizers.bo import INACTIVE, BayesOptimizer
from candle_lab.optimizers.ga import GeneticSearch
from candle_lab.optimizers.grid import GridSearch
from candle_lab.space import SearchSpace, parse_ga_json, to_ga_json, to_grid_json
from candle_lab.spec import SpaceSpec, spec_from_dict
from candle_lab.ui.forms import parameters_to_rows, read_space_rows

OPT = {"name": "optimizer", "type": "categorical", "choices": ["sgd", "adam"]}
MOMENTUM = {"name": "momentum", "type": "real", "low": 0.5, "high": 0.99, "when": {"optimizer": ["sgd"]}}
DENSE = {"name": "dense", "type": "layers", "max_layers": 3, "units": {"low": 16, "high": 256, "log": True}}
DROPOUT = {"name": "dropout", "type": "real", "low": 0.0, "high": 0.5, "when": "dense.layers >= 2"}


def space(*params: dict[str, Any]) -> SearchSpace:
    return SpaceSpec(parameters=list(params)).search_space()


def problems(*params: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as caught:
        spec_from_dict(model_spec("sleepy", space=list(params)))
    return caught.value.problems


# ------------------------------------------------------------------ conditions checked, never eval'ed
def test_every_bad_condition_is_named_at_once() -> None:
    real = {"type": "real", "low": 0, "high": 1}
    found = dict(problems(
        OPT,
        {"name": "a", **real, "when": "optimizr == sgd"},
        {"name": "b", **real, "when": "optimizer == sdg"},
        {"name": "c", **real, "when": "optimizer > 2"},
        {"name": "d", **real, "when": "a >= big"},
        {"name": "e", **real, "when": "e < 0.5"},
        DENSE,
        {"name": "f", **real, "when": "dense >= 2"},
    ))
    assert "no parameter is named 'optimizr' (did you mean 'optimizer'?)" in found["space.parameters[1] (a).when"]
    assert "'sdg' is never a value of 'optimizer' (its values: sgd, adam)" in found["space.parameters[2] (b).when"]
    assert "'>' compares numbers and 'optimizer' is not numeric" in found["space.parameters[3] (c).when"]
    assert "'a' is a number, got 'big'" in found["space.parameters[4] (d).when"]
    assert "refers to 'e' itself" in found["space.parameters[5] (e).when"]
    assert "its number of layers is 'dense.layers'" in found["space.parameters[7] (f).when"]


def test_a_cycle_and_bad_syntax_are_named() -> None:
    real = {"type": "real", "low": 0, "high": 1}
    ((field, message),) = problems({"name": "a", **real, "when": "b > 0.5"}, {"name": "b", **real, "when": "a > 0.5"})
    assert field == "space.parameters[0] (a).when" and message.endswith("cycle: a -> b -> a")
    ((field, message),) = problems({"name": "a", **real, "when": "__import__('os').system('true')"})
    assert field == "space.parameters[0] (a).when" and message.startswith("expected NAME OP VALUE")  # not run
    ((field, message),) = problems({"name": "a", **real, "when": "x in 3"}, {"name": "x", **real})
    assert "'in' needs a list like [a, b]" in message


def test_a_condition_reads_a_constant_and_chains_through_absent_parameters() -> None:
    s = space({"name": "mode", "type": "constant", "value": "deep"}, OPT, MOMENTUM,
              {"name": "nesterov", "type": "categorical", "choices": [True, False], "when": "momentum > 0.8"},
              {"name": "depth", "type": "integer", "low": 2, "high": 9, "when": "mode == deep"})
    for point in s.sample(np.random.default_rng(1), 40):
        assert ("momentum" in point) == (point["optimizer"] == "sgd")
        assert ("nesterov" in point) == ("momentum" in point and point["momentum"] > 0.8)  # absent parent: absent
        assert "depth" in point and point["mode"] == "deep"


# ------------------------------------------------------------------ the layers type
def test_layers_become_the_list_the_model_takes_and_back() -> None:
    s = space(OPT, MOMENTUM, DENSE, DROPOUT)
    assert [p.name for p in s.searchable] == ["optimizer", "momentum", "dense.layers", "dense.1", "dense.2",
                                              "dense.3", "dropout"]
    points = s.sample(np.random.default_rng(0), 60)
    assert {len(p["dense"]) for p in points} == {1, 2, 3}
    for p in points:
        assert all(isinstance(u, int) and 16 <= u <= 256 for u in p["dense"])
        assert ("dropout" in p) == (len(p["dense"]) >= 2)
        assert not any(k.startswith("dense.") for k in p)
        assert s.finish(s.flat(p)) == p
    text = space({**DENSE, "format": "text", "min_layers": 2})
    (point,) = text.sample(np.random.default_rng(0), 1)
    assert isinstance(point["dense"], str) and len(point["dense"].split()) in (2, 3)


# ------------------------------------------------------------------ each search
def test_grid_enumerates_only_the_valid_combinations_once() -> None:
    s = space(OPT, MOMENTUM, {"name": "lr", "type": "categorical", "choices": [0.1, 0.01]})
    grid = GridSearch(s, points_per_dim=3)
    points = [p.params for p in grid.ask(100)]
    assert grid.size == len(points) == 2 * 3 + 2  # sgd: 3 momenta x 2 lr; adam: 2 lr, no momentum
    assert len({json.dumps(p, sort_keys=True) for p in points}) == len(points)
    assert sum("momentum" not in p for p in points) == 2
    assert s.grid_size(3) == 8


def test_bayesian_optimization_imputes_absent_parameters() -> None:
    s = space(OPT, MOMENTUM, DENSE)
    bo = BayesOptimizer(s, initial_points=6, seed=3)
    column = {c.param.name: c for c in bo._columns}
    for _ in range(4):
        proposals = bo.ask(4)
        for p in proposals:
            row = bo._pending[json.dumps(p.params, sort_keys=True, default=str)]
            if "momentum" not in p.params:
                assert row[column["momentum"].start] == INACTIVE  # one value for "absent", not noise
            if len(p.params["dense"]) < 3:
                assert row[column["dense.3"].start] == INACTIVE
            assert bo._to_params(row) == p.params  # the parameters present keep their values
        bo.tell([Observation(p.params, loss=_loss(p.params)) for p in proposals])
    candidates = bo._uniform(200)
    absent = [r for r in candidates if bo._to_params(r)["optimizer"] == "adam"]
    assert absent and all(r[column["momentum"].start] == INACTIVE for r in absent)


def _loss(params: dict[str, Any]) -> float:
    shape = sum(abs(math.log2(u) - 6) for u in params["dense"]) + abs(len(params["dense"]) - 2)
    return shape + (abs(params["momentum"] - 0.9) if params["optimizer"] == "sgd" else 0.5)


def test_bayesian_optimization_beats_random_on_a_conditional_problem() -> None:
    """Median best loss over 5 seeds after 40 evaluations (4 in flight)."""
    s = space(OPT, MOMENTUM, DENSE)
    best: dict[str, list[float]] = {"bo": [], "random": []}
    for seed in range(5):
        bo = BayesOptimizer(s, initial_points=8, seed=seed)
        found = math.inf
        for _ in range(10):
            ps = bo.ask(4)
            losses = [_loss(p.params) for p in ps]
            bo.tell([Observation(p.params, loss=v) for p, v in zip(ps, losses, strict=True)])
            found = min(found, *losses)
        best["bo"].append(found)
        best["random"].append(min(_loss(p) for p in s.sample(np.random.default_rng(seed), 40)))
    assert np.median(best["bo"]) < np.median(best["random"]), best


def test_the_ga_mutates_only_the_genes_a_child_has() -> None:
    s = space(OPT, MOMENTUM, {"name": "lr", "type": "real", "low": 0.001, "high": 0.1, "log": True})
    ga = GeneticSearch(s, population=4, mutation_rate=1.0, crossover_rate=0.0, seed=2)
    genes = {g.name: i for i, g in enumerate(ga._genes)}
    child = [float(ga._genes[genes["optimizer"]].encode("adam")), 0.7, math.log(0.01)]
    with ga._own_random():
        for _ in range(30):
            before = list(child)
            ga._mutate(child)
            assert child[genes["momentum"]] == before[genes["momentum"]] == 0.7  # adam: momentum is absent
            child[genes["optimizer"]] = before[genes["optimizer"]]
    ga.tell([Observation({"optimizer": "adam", "lr": 0.01}, loss=1.0, run_id="r0")])
    assert len(ga._members) == 1  # a trial without its absent parameters still breeds
    for p in ga.ask(12):
        assert ("momentum" in p.params) == (p.params["optimizer"] == "sgd")


# ------------------------------------------------------------------ files and forms
def test_ga_json_keeps_conditions_and_layers(tmp_path: Path) -> None:
    params = SpaceSpec(parameters=[OPT, MOMENTUM, DENSE, DROPOUT]).parameters
    exported = to_ga_json(params)
    assert exported[1]["when"] == {"optimizer": ["sgd"]} and exported[2]["type"] == "layers"
    again = SpaceSpec(parameters=parse_ga_json(json.loads(json.dumps(exported)))).parameters
    assert again[1].when == {"optimizer": ["sgd"]} and again[2] == params[2] and again[3].when == DROPOUT["when"]
    with pytest.raises(SpecError, match="grid format cannot hold a condition"):
        to_grid_json(params)


def test_the_space_table_edits_conditions_and_layers() -> None:
    params = SpaceSpec(parameters=[OPT, MOMENTUM, {**DENSE, "format": "text"}, DROPOUT]).parameters
    rows = parameters_to_rows(params)
    assert rows.loc[1, "when"] == "optimizer in [sgd]" and rows.loc[3, "when"] == "dense.layers >= 2"
    assert (rows.loc[2, "type"], rows.loc[2, "low"], rows.loc[2, "high"], rows.loc[2, "value"]) == (
        "layers", "16", "256", "1-3")
    table = read_space_rows(rows)
    assert not table.problems
    back = SpaceSpec(parameters=table.parameters).search_space()
    assert back.conditions.keys() == space(OPT, MOMENTUM, DENSE, DROPOUT).conditions.keys()
    rows.loc[2, "value"] = "lots"
    rows.loc[3, "when"] = "dense.layers >= two"
    table = read_space_rows(rows)
    assert table.cells == [(2, "value")] and "1-4 or 3" in table.problems[0][1]


# ------------------------------------------------------------------ end to end
def test_a_conditional_search_runs_on_the_local_cluster(client: Any, root: Path) -> None:
    spec = model_spec("layered", space=[OPT, {**MOMENTUM, "when": "optimizer == sgd"}, DENSE],
                      objective={"metric": "loss"}, search={"algorithm": "async-bo", "initial_points": 4},
                      budget={"max_trials": 8})
    exp = candle_lab.run(spec, client=client, root=root)
    records = exp.records()
    assert [t.state for t in records] == ["completed"] * 8, [t.error for t in records]
    assert all(isinstance(t.params["dense"], list) for t in records)
    assert all(("momentum" in t.params) == (t.params["optimizer"] == "sgd") for t in records)


def test_a_candle_module_keeps_its_default_for_an_absent_parameter(client: Any, root: Path) -> None:
    spec = {
        "name": "candle-when",
        "model": {"kind": "candle", "ref": "tiny_bench", "path": str(TESTS / "candle_bench")},
        "space": [{"name": "activation", "type": "categorical", "choices": ["relu", "tanh"]},
                  {"name": "units", "type": "integer", "low": 2, "high": 4, "when": "activation == tanh"},
                  {"name": "epochs", "type": "constant", "value": 1}],
        "objective": {"metric": "val_loss"},
        "search": {"algorithm": "grid"},
        "compute": {"workers": 2},
    }
    exp = candle_lab.run(spec_from_dict(spec), client=client, root=root)
    records = exp.records()
    assert len(records) == 4 and all(t.state == "completed" for t in records), [t.error for t in records]
    for t in records:
        final = json.loads((exp.path / t.run_id / "final_params.json").read_text())
        assert final["units"] == (t.params["units"] if t.params["activation"] == "tanh" else 8)  # 8: default
        assert ("units" in t.params) == (t.params["activation"] == "tanh")
