"""Experiment specs and search-space files: building, round trips, file formats, schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from candle_lab.errors import SpecError
from candle_lab.space import CategoricalParam, ConstantParam, IntegerParam, RealParam, read_space_file
from candle_lab.spec import ExperimentSpec, load_spec, spec_from_dict

DATA = Path(__file__).resolve().parent / "data"


def full_spec() -> ExperimentSpec:
    return spec_from_dict(
        {
            "name": "round-trip",
            "model": {"kind": "candle", "ref": "nt3_baseline", "path": "/opt/models", "config_file": "/opt/c.txt"},
            "space": [
                {"name": "lr", "type": "real", "low": 1e-4, "high": 0.1, "log": True},
                {"name": "units", "type": "integer", "low": 8, "high": 512, "log": True},
                {"name": "act", "type": "categorical", "choices": ["relu", "tanh"]},
                {"name": "layers", "type": "categorical", "choices": [1, 2, 3], "ordered": True},
                {"name": "epochs", "type": "constant", "value": 5},
            ],
            "search": {"algorithm": "batch-bo", "surrogate": "ET", "acquisition": "qLCB", "batch_size": 8, "seed": 3},
            "budget": {"max_trials": 64, "max_time": "2h", "target": 0.05},
            "objective": {"metric": "val_auc", "direction": "maximize"},
            "compute": {
                "profile": "biowulf",
                "workers": 16,
                "gpus": 1,
                "gpu_type": "v100",
                "partition": "gpu",
                "walltime": "08:00:00",
                "memory": "16GB",
            },
            "trial": {"retries": 2, "timeout": "30m", "early_stop": "asha"},
        }
    )


def test_yaml_and_json_round_trips_are_exact(tmp_path: Path) -> None:
    spec = full_spec()
    assert spec.budget.max_time == 7200 and spec.trial.timeout == 1800
    (tmp_path / "s.yaml").write_text(spec.to_yaml())
    (tmp_path / "s.json").write_text(spec.to_json())
    assert load_spec(tmp_path / "s.yaml") == spec
    assert load_spec(tmp_path / "s.json") == spec
    assert spec_from_dict(yaml.safe_load(spec.to_yaml())).to_yaml() == spec.to_yaml()


def test_replace_validates() -> None:
    spec = full_spec()
    assert spec.replace(budget={"max_trials": 5}).budget.max_trials == 5
    assert spec.replace(budget={"max_trials": 5}).budget.target == 0.05  # other fields kept
    with pytest.raises(SpecError, match=r"compute\.workers"):
        spec.replace(compute={"workers": 0})


def test_json_schema_for_forms() -> None:
    schema = ExperimentSpec.json_schema()
    json.dumps(schema)
    assert {"model", "space", "search", "budget", "objective", "compute", "trial"} <= set(schema["properties"])
    text = json.dumps(schema)
    for word in ("async-bo", "batch-bo", "qLCB", "minimize"):
        assert word in text


def test_ga_json_space_file() -> None:
    params = {p.name: p for p in spec_with_file("ga_space.json").space.parameters}
    assert isinstance(params["activation"], CategoricalParam) and params["activation"].choices[0] == "softmax"
    assert isinstance(params["learning_rate"], RealParam) and params["learning_rate"].log
    assert isinstance(params["epochs"], IntegerParam) and (params["epochs"].low, params["epochs"].high) == (2, 20)
    assert isinstance(params["batch_size"], CategoricalParam) and params["batch_size"].ordered
    assert isinstance(params["use_bias"], CategoricalParam) and set(params["use_bias"].choices) == {True, False}
    assert isinstance(params["data"], ConstantParam) and params["data"].value == "nt_train2.csv"


def test_grid_json_space_file_covers_the_lists() -> None:
    spec = spec_with_file("grid_space.json", algorithm="grid")
    space = spec.space.search_space()
    assert space.grid_size(spec.search.grid_points) == 3 * 2 * 2
    axes = space.grid_values(spec.search.grid_points)
    points = [space.grid_point(axes, i) for i in range(12)]
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 12
    assert {p["learning_rate"] for p in points} == {0.001, 0.01, 0.1}


def test_upf_file_ids_become_run_ids() -> None:
    spec = spec_with_file("runs.upf", algorithm="upf")
    assert [r.id for r in spec.space.runs] == ["lr-small", "lr-large", "long"]
    assert spec.space.runs[2].params == {"learning_rate": 0.01, "epochs": 9}


def test_upf_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.upf"
    bad.write_text('{"id": "a", "x": 1}\n{"id": "a", "x": 2}\n')
    with pytest.raises(SpecError, match=r"line 2\.id: duplicate run id 'a'"):
        read_space_file(bad, "upf")
    bad.write_text('{"id": "a", "x": 1}\n{"id": "b", "x": \n')
    with pytest.raises(SpecError, match="line 2"):
        read_space_file(bad, "upf")


def test_space_file_path_is_relative_to_the_spec(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "space.json").write_text((DATA / "ga_space.json").read_text())
    spec_file = tmp_path / "sub" / "exp.yaml"
    spec_file.write_text("model: {ref: 'm:f', path: .}\nspace: {file: space.json}\nbudget: {max_trials: 3}\n")
    spec = load_spec(spec_file)
    assert len(spec.space.parameters) == 8
    assert spec.model.path == str((tmp_path / "sub").resolve())


def spec_with_file(name: str, algorithm: str = "random") -> ExperimentSpec:
    data = {
        "model": {"ref": "m:f"},
        "space": {"file": str(DATA / name)},
        "search": {"algorithm": algorithm},
        "budget": {"max_trials": 4},
    }
    return spec_from_dict(data)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (
            {"model": {"ref": "m:f"}, "space": [{"name": "x", "type": "real", "low": "a", "high": 1}]},
            "space.parameters[0]",
        ),
        (
            {"model": {"ref": "m:f"}, "space": [{"name": "x", "type": "realish", "low": 0, "high": 1}]},
            "space.parameters[0]",
        ),
        (
            {
                "model": {"ref": "m:f"},
                "space": [{"name": "x", "type": "real", "low": 0, "high": 1}],
                "search": {"algorithm": "grid", "grid_points": 1},
            },
            "search.grid_points",
        ),
        (
            {
                "model": {"ref": "m:f"},
                "space": [{"name": "x", "type": "real", "low": 0, "high": 1}],
                "budget": {"max_trials": 0},
            },
            "budget.max_trials",
        ),
        (
            {
                "model": {"kind": "command"},
                "space": [{"name": "x", "type": "real", "low": 0, "high": 1}],
                "budget": {"max_trials": 2},
            },
            "model",
        ),
        (
            {
                "model": {"ref": "m:f"},
                "space": [{"name": "x", "type": "real", "low": 0, "high": 1}],
                "budget": {"max_trials": 2},
                "trial": {"retries": -1},
            },
            "trial.retries",
        ),
    ],
)
def test_bad_dicts_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(SpecError) as info:
        spec_from_dict(data)
    assert field in str(info.value)
    assert info.value.problems and all(isinstance(p, tuple) for p in info.value.problems)
