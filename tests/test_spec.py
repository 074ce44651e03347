"""Experiment specs: building, round trips, schema, space files in specs, and error messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from candle_lab.errors import SpecError
from candle_lab.space import CategoricalParam, ConstantParam, IntegerParam, RealParam, UpfRun, read_space_file
from candle_lab.spec import (
    ALGORITHMS,
    BudgetSpec,
    ComputeSpec,
    ExperimentSpec,
    ModelSpec,
    SearchSpec,
    SpaceSpec,
    load_spec,
    parse_duration,
    spec_from_dict,
)

DATA = Path(__file__).resolve().parent / "data"
BAD_SPECS = sorted((DATA / "bad_specs").glob("*.yaml"))


def full_spec() -> ExperimentSpec:
    return spec_from_dict(
        {
            "name": "round-trip",
            "description": "every section set",
            "model": {"kind": "candle", "ref": "nt3_baseline", "path": "/opt/models", "config_file": "/opt/c.txt"},
            "space": [
                {"name": "lr", "type": "real", "low": 1e-4, "high": 0.1, "log": True},
                {"name": "units", "type": "integer", "low": 8, "high": 512, "log": True},
                {"name": "act", "type": "categorical", "choices": ["relu", "tanh"]},
                {"name": "layers", "type": "categorical", "choices": [1, 2, 3], "ordered": True},
                {"name": "dense", "type": "categorical", "choices": [[1000, 500], [500, 250]]},
                {"name": "flag", "type": "categorical", "choices": ["yes", "True", "null", True]},
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


# ------------------------------------------------------------------------------ building
def test_build_from_python_objects() -> None:
    spec = ExperimentSpec(
        model=ModelSpec(ref="trial_models:quadratic"),
        space=SpaceSpec(
            parameters=(
                RealParam(name="x", low=-1, high=1),
                IntegerParam(name="n", low=1, high=4),
                CategoricalParam(name="act", choices=("relu", "tanh")),
            )
        ),
        search=SearchSpec(algorithm="grid", grid_points=3),
    )
    assert spec.name == "experiment" and spec.search.algorithm == "grid"
    assert spec.objective.metric == "val_loss" and spec.objective.direction == "minimize"
    assert spec.compute.workers == 2 and spec.trial.retries == 1
    assert spec.space.search_space().grid_size(3) == 3 * 3 * 2
    # the same spec from a plain dict
    assert spec_from_dict(spec.to_dict()) == spec


def test_spec_is_frozen() -> None:
    spec = full_spec()
    with pytest.raises(Exception, match="frozen"):
        spec.name = "other"  # type: ignore[misc]


def test_load_yaml_file_resolves_relative_paths() -> None:
    spec = load_spec(DATA / "spec_ok.yaml")
    assert spec.name == "nt3-ga" and spec.model.kind == "candle" and spec.model.ref == "nt3_baseline"
    assert spec.model.path == str(DATA / "models")
    assert spec.model.default_model == str(DATA / "models" / "nt3_default_model.txt")
    assert spec.space.source == str(DATA / "ga_candle.json")
    assert len(spec.space.parameters) == 10
    assert spec.budget.max_time == 5400  # YAML reads 1:30:00 as base-60 seconds
    assert spec.compute.walltime == "12:00:00"  # ... and 12:00:00 as 43200
    assert spec.compute.memory == "8GB" and spec.trial.timeout == 1800 and spec.trial.early_stop == "median"


def test_load_json_file_resolves_relative_paths() -> None:
    spec = load_spec(DATA / "spec_ok.json")
    assert spec.model.path == str(DATA.parent)
    assert spec.space.source == str(DATA / "grid_space.json")
    assert spec.search.algorithm == "grid" and spec.search.shuffle
    assert spec.space.search_space().grid_size(spec.search.grid_points) == 12


def test_space_file_path_is_relative_to_the_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "space.json").write_text((DATA / "ga_space.json").read_text())
    spec_file = tmp_path / "sub" / "exp.yaml"
    spec_file.write_text(
        "model: {ref: 'm:f', path: .}\nspace: {file: space.json, format: ga}\nbudget: {max_trials: 3}\n"
    )
    monkeypatch.chdir(tmp_path)  # not the spec's folder
    spec = load_spec(spec_file)
    assert len(spec.space.parameters) == 8
    assert spec.space.source == str((tmp_path / "sub" / "space.json").resolve())
    assert spec.model.path == str((tmp_path / "sub").resolve())
    # the saved copy is self-contained: it holds the parameters, not the file
    saved = tmp_path / "saved.yaml"
    saved.write_text(spec.to_yaml())
    (tmp_path / "sub" / "space.json").unlink()
    assert load_spec(saved) == spec


@pytest.mark.parametrize(
    ("name", "algorithm", "count"),
    [("ga_space.json", "random", 8), ("grid_space.json", "grid", 3), ("runs.upf", "upf", 0)],
)
def test_space_files_in_a_spec(name: str, algorithm: str, count: int) -> None:
    spec = spec_from_dict(
        {
            "model": {"ref": "m:f"},
            "space": {"file": name},
            "search": {"algorithm": algorithm},
            "budget": {"max_trials": 4},
        },
        base_dir=DATA,
    )
    assert len(spec.space.parameters) == count
    if algorithm == "upf":
        assert [r.id for r in spec.space.runs] == ["lr-small", "lr-large", "long"]
        assert spec.space.runs[2] == UpfRun(id="long", params={"learning_rate": 0.01, "epochs": 9})


def test_ga_json_space_file() -> None:
    spec = spec_from_dict(
        {"model": {"ref": "m:f"}, "space": {"file": "ga_space.json", "format": "ga"}, "budget": {"max_trials": 4}},
        base_dir=DATA,
    )
    params = {p.name: p for p in spec.space.parameters}
    assert isinstance(params["activation"], CategoricalParam) and params["activation"].choices[0] == "softmax"
    assert isinstance(params["learning_rate"], RealParam) and params["learning_rate"].log
    assert isinstance(params["epochs"], IntegerParam) and (params["epochs"].low, params["epochs"].high) == (2, 20)
    assert isinstance(params["batch_size"], CategoricalParam) and params["batch_size"].ordered
    assert isinstance(params["use_bias"], CategoricalParam) and set(params["use_bias"].choices) == {True, False}
    assert isinstance(params["data"], ConstantParam) and params["data"].value == "nt_train2.csv"
    assert spec.space.search_space().constants == {"data": "nt_train2.csv"}


# ------------------------------------------------------------------------------ round trips
def test_yaml_and_json_round_trips_are_exact(tmp_path: Path) -> None:
    spec = full_spec()
    assert spec.budget.max_time == 7200 and spec.trial.timeout == 1800
    (tmp_path / "s.yaml").write_text(spec.to_yaml())
    (tmp_path / "s.json").write_text(spec.to_json())
    assert load_spec(tmp_path / "s.yaml") == spec
    assert load_spec(tmp_path / "s.json") == spec
    assert spec_from_dict(yaml.safe_load(spec.to_yaml())).to_yaml() == spec.to_yaml()
    assert spec_from_dict(json.loads(spec.to_json())).to_json() == spec.to_json()
    flag = next(p for p in load_spec(tmp_path / "s.yaml").space.parameters if p.name == "flag")
    assert isinstance(flag, CategoricalParam)
    assert [type(c) for c in flag.choices] == [str, str, str, bool]  # 'yes', 'True', 'null' stay strings


def test_round_trip_of_specs_read_from_files(tmp_path: Path) -> None:
    for source in (DATA / "spec_ok.yaml", DATA / "spec_ok.json"):
        spec = load_spec(source)
        for suffix, text in ((".yaml", spec.to_yaml()), (".json", spec.to_json())):
            copy = tmp_path / f"copy{suffix}"
            copy.write_text(text)
            assert load_spec(copy) == spec


def test_upf_spec_round_trip(tmp_path: Path) -> None:
    spec = spec_from_dict(
        {"model": {"ref": "m:f"}, "space": {"file": "upf-1.txt"}, "search": {"algorithm": "upf"}}, base_dir=DATA
    )
    assert [r.id for r in spec.space.runs] == ["dropout1", "dropout2", "dropout3"]
    (tmp_path / "s.yaml").write_text(spec.to_yaml())
    assert load_spec(tmp_path / "s.yaml") == spec


def test_replace_validates() -> None:
    spec = full_spec()
    assert spec.replace(budget={"max_trials": 5}).budget.max_trials == 5
    assert spec.replace(budget={"max_trials": 5}).budget.target == 0.05  # other fields kept
    assert spec.replace(budget=BudgetSpec(max_trials=7)).budget.max_trials == 7
    with pytest.raises(SpecError, match=r"compute\.workers"):
        spec.replace(compute={"workers": 0})


# ------------------------------------------------------------------------------ schema
def test_json_schema_for_forms() -> None:
    import jsonschema
    schema = ExperimentSpec.json_schema()
    text = json.dumps(schema)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert {"model", "space", "search", "budget", "objective", "compute", "trial"} <= set(schema["properties"])
    assert set(schema["required"]) == {"model", "space"}
    search = schema["$defs"]["SearchSpec"]["properties"]["algorithm"]
    assert list(ALGORITHMS) == ["grid", "random", "upf", "async-bo", "batch-bo", "ga", "pbt"]
    assert search["enum"] == [*ALGORITHMS, "ensemble"]  # made by candle-lab ensemble, not offered in forms
    assert search["default"] == "async-bo"
    for word in ("qLCB", "minimize", "maximize", "RealParam", "CategoricalParam"):
        assert word in text
    # a valid spec's dump validates against the schema, a broken one does not
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors(full_spec().to_dict()))
    broken = full_spec().to_dict()
    broken["search"]["algorithm"] = "hill-climb"
    assert list(validator.iter_errors(broken))


# ------------------------------------------------------------------------------ errors
def expectations(path: Path) -> tuple[str, str]:
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# expect: "), f"{path.name}: first line must be '# expect: <field>'"
    given = lines[1].removeprefix("# given: ") if lines[1].startswith("# given: ") else ""
    return lines[0].removeprefix("# expect: ").strip(), given.strip()


def test_there_are_enough_bad_specs() -> None:
    assert len(BAD_SPECS) >= 12


@pytest.mark.parametrize("path", BAD_SPECS, ids=[p.stem for p in BAD_SPECS])
def test_bad_spec_files(path: Path) -> None:
    field, given = expectations(path)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert field in message, message
    assert given in message, message
    assert message.startswith(f"invalid {path}"), message  # names the file
    assert info.value.source == str(path)
    assert info.value.problems and all(isinstance(f, str) and m for f, m in info.value.problems)


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {ref: 'm:f'}\nspace:\n  - name: x\n   type: real\n")
    with pytest.raises(SpecError, match=r"line 4, column \d+: not valid YAML"):
        load_spec(bad)
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": {"ref": "m:f"},\n "space": [,]}\n')
    with pytest.raises(SpecError, match=r"line 2, column \d+: not valid JSON"):
        load_spec(bad)
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "missing.yaml")


X = [{"name": "x", "type": "real", "low": 0, "high": 1}]
M = {"ref": "m:f"}
B = {"max_trials": 3}


def spec(**sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"model": M, "space": X, "budget": B}
    data.update(sections)
    return {k: v for k, v in data.items() if v is not None}


BAD_DICTS: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "low not a number",
        spec(space=[{"name": "x", "type": "real", "low": "a", "high": 1}]),
        "space.parameters[0].low",
        "got 'a'",
    ),
    (
        "unknown param type",
        spec(space=[{"name": "x", "type": "realish", "low": 0, "high": 1}]),
        "space.parameters[0] (x)",
        "got 'realish'",
    ),
    (
        "low > high",
        spec(space=[{"name": "u", "type": "integer", "low": 9, "high": 3}]),
        "space.parameters[0] (u)",
        "got low=9, high=3",
    ),
    (
        "low == high",
        spec(space=[{"name": "u", "type": "real", "low": 1, "high": 1}]),
        "space.parameters[0] (u)",
        "less than high",
    ),
    (
        "log low <= 0",
        spec(space=[{"name": "lr", "type": "real", "low": -1, "high": 1, "log": True}]),
        "(lr)",
        "log scale needs low > 0, got low=-1.0",
    ),
    (
        "integer bound 2.5",
        spec(space=[{"name": "n", "type": "integer", "low": 1, "high": 2.5}]),
        "space.parameters[0].high",
        "(2.5)",
    ),
    ("not finite", spec(space=[{"name": "x", "type": "real", "low": 0, "high": float("inf")}]), "(x)", "finite"),
    (
        "no choices",
        spec(space=[{"name": "c", "type": "categorical", "choices": []}]),
        "space.parameters[0] (c)",
        "got an empty list",
    ),
    (
        "choices not a list",
        spec(space=[{"name": "c", "type": "categorical", "choices": "abc"}]),
        "space.parameters[0].choices",
        "got 'abc'",
    ),
    (
        "duplicate choices",
        spec(space=[{"name": "c", "type": "categorical", "choices": [1, 1]}]),
        "(c)",
        "got duplicates 1",
    ),
    (
        "bad name",
        spec(space=[{"name": "a b", "type": "real", "low": 0, "high": 1}]),
        "space.parameters[0] (a b)",
        "got 'a b'",
    ),
    (
        "duplicate names",
        spec(space=[*X, {"name": "x", "type": "integer", "low": 0, "high": 3}]),
        "space",
        "got 'x' more than once",
    ),
    ("empty space", spec(space=[]), "space", "expected at least one parameter to search, got none"),
    ("constants only", spec(space=[{"name": "c", "type": "constant", "value": 1}]), "space", "got none"),
    ("space not a list", spec(space="x"), "space", "got 'x'"),
    ("unknown space format", spec(space={"file": "grid_space.json", "format": "csv"}), "space.format", "got 'csv'"),
    ("space file not a path", spec(space={"file": ["a.json"]}), "space.file", "got ['a.json']"),
    ("space file missing", spec(space={"file": "nowhere/space.json"}), "space.file", "file not found"),
    ("missing model", spec(model=None), "model", "required field is missing"),
    ("callable without colon", spec(model={"ref": "train"}), "model.ref", "got 'train'"),
    ("candle bad module", spec(model={"kind": "candle", "ref": "nt3-baseline"}), "model.ref", "got 'nt3-baseline'"),
    ("command without command", spec(model={"kind": "command"}), "model.command", "got nothing"),
    ("unknown model kind", spec(model={"kind": "docker", "ref": "m:f"}), "model.kind", "got 'docker'"),
    ("unknown algorithm", spec(search={"algorithm": "bayes"}), "search.algorithm", "got 'bayes'"),
    ("algorithm typo", spec(search={"algorithm": "batchbo"}), "search.algorithm", "(did you mean 'batch-bo'?)"),
    (
        "unknown top field",
        spec(objectve={"metric": "loss"}),
        "objectve",
        "unknown field (did you mean 'objective'?)",
    ),
    ("objectives not a list", spec(objectives={"metric": "loss"}), "objectives", "expected a valid list, got {"),
    ("unknown search field", spec(search={"algoritm": "grid"}), "search.algoritm", "(did you mean 'algorithm'?)"),
    (
        "unknown param field",
        spec(space=[{"name": "c", "type": "categorical", "choice": [1]}]),
        "space.parameters[0].choice",
        "(did you mean 'choices'?)",
    ),
    ("upf without runs", spec(search={"algorithm": "upf"}), "space", "algorithm 'upf' needs runs"),
    ("runs without upf", spec(space={"runs": [{"id": "a", "params": {}}]}), "space", "got 'async-bo'"),
    (
        "random without budget",
        spec(search={"algorithm": "random"}, budget=None),
        "budget",
        "set budget.max_trials or budget.max_time",
    ),
    ("bo without budget", spec(budget={"target": 0.1}), "budget", "async-bo search does not end on its own"),
    (
        "grid too large",
        spec(
            space=[{"name": f"x{i}", "type": "real", "low": 0, "high": 1} for i in range(10)],
            search={"algorithm": "grid"},
        ),
        "space",
        "the grid has 9,765,625 points",
    ),
    (
        "grid points too many",
        spec(search={"algorithm": "grid", "grid_points": 10**9}),
        "search.grid_points",
        "got 1000000000",
    ),
    ("grid points 1", spec(search={"grid_points": 1}), "search.grid_points", "got 1"),
    ("zero trials", spec(budget={"max_trials": 0}), "budget.max_trials", "got 0"),
    ("negative workers", spec(compute={"workers": -1}), "compute.workers", "got -1"),
    ("workers as text", spec(compute={"workers": "four"}), "compute.workers", "got 'four'"),
    ("negative gpus", spec(compute={"gpus": -1}), "compute.gpus", "got -1"),
    ("bad duration", spec(budget={"max_time": "two hours"}), "budget.max_time", "got 'two hours'"),
    ("negative duration", spec(budget={"max_time": -5}), "budget.max_time", "got -5"),
    ("nan duration", spec(budget={"max_time": float("nan")}), "budget.max_time", "got nan"),
    ("bad clock", spec(budget={"max_time": "1:75"}), "budget.max_time", "got '1:75'"),
    ("bad timeout", spec(trial={"timeout": "soon"}), "trial.timeout", "got 'soon'"),
    ("bad walltime", spec(compute={"walltime": "4h"}), "compute.walltime", "got '4h'"),
    ("bad memory", spec(compute={"memory": "a lot"}), "compute.memory", "got 'a lot'"),
    ("memory unit", spec(compute={"memory": "4 parsecs"}), "compute.memory", "got '4 parsecs'"),
    ("unsafe partition", spec(compute={"partition": "gpu; rm -rf /"}), "compute.partition", "got 'gpu; rm -rf /'"),
    ("direction typo", spec(objective={"direction": "maximise"}), "objective.direction", "(did you mean 'maximize'?)"),
    ("empty metric", spec(objective={"metric": ""}), "objective.metric", "got ''"),
    ("negative retries", spec(trial={"retries": -1}), "trial.retries", "got -1"),
    ("early stop typo", spec(trial={"early_stop": "ashah"}), "trial.early_stop", "(did you mean 'asha'?)"),
    ("section wrong type", spec(search=["grid"]), "search", "got ['grid']"),
    ("bad command quoting", spec(model={"kind": "command", "command": "run 'x"}), "model.command", 'got "run \'x"'),
]


@pytest.mark.parametrize(("data", "field", "given"), [c[1:] for c in BAD_DICTS], ids=[c[0] for c in BAD_DICTS])
def test_bad_dicts_name_field_expected_and_given(data: dict[str, Any], field: str, given: str) -> None:
    with pytest.raises(SpecError) as info:
        spec_from_dict(data, base_dir=DATA)
    message = str(info.value)
    assert field in message, message
    assert given in message, message
    assert info.value.problems and all(isinstance(f, str) and m for f, m in info.value.problems)


def test_several_problems_are_listed_together() -> None:
    with pytest.raises(SpecError) as info:
        spec_from_dict(spec(compute={"workers": 0, "cores": "x"}, trial={"retries": -2}))
    fields = [f for f, _ in info.value.problems]
    assert fields == ["compute.workers", "compute.cores", "trial.retries"]
    assert "(3 problems)" in str(info.value)


@pytest.mark.parametrize("data", [None, 3, "model: x", ["model"]])
def test_not_a_mapping(data: Any) -> None:
    with pytest.raises(SpecError, match="expected a mapping of sections"):
        spec_from_dict(data)


def test_bad_space_file_inside_a_spec_names_the_file_and_line(tmp_path: Path) -> None:
    upf = tmp_path / "runs.upf"
    upf.write_text('{"id": "a", "lr": 0.1}\n{"lr": 0.2}\n')
    with pytest.raises(SpecError, match=r"runs\.upf line 2\.id: expected an \"id\""):
        spec_from_dict({"model": M, "space": {"file": "runs.upf"}, "search": {"algorithm": "upf"}}, base_dir=tmp_path)
    with pytest.raises(SpecError, match=r"line 2"):
        read_space_file(upf, "upf")


# ------------------------------------------------------------------------------ durations and resources
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90.0),
        (1.5, 1.5),
        ("90", 90.0),
        ("90s", 90.0),
        ("30m", 1800.0),
        ("30 min", 1800.0),
        ("2h", 7200.0),
        ("1.5h", 5400.0),
        ("1d", 86400.0),
        ("01:30:00", 5400.0),
        ("1:30", 90.0),  # SLURM: minutes:seconds
        ("1-00:00:00", 86400.0),
        ("1-12:00", 129600.0),  # SLURM: days-hours:minutes
        (None, None),
        ("", None),
    ],
)
def test_parse_duration(text: Any, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


def test_walltime_and_memory_forms() -> None:
    assert ComputeSpec(walltime=" 04:00:00 ").walltime == "04:00:00"
    assert ComputeSpec(walltime="1-00:00:00").walltime == "1-00:00:00"
    assert ComputeSpec(walltime=14400).walltime == "04:00:00"  # YAML's reading of an unquoted 4:00:00
    assert ComputeSpec(walltime=90000).walltime == "25:00:00"
    assert ComputeSpec(memory=" 500MB").memory == "500MB"
    assert ComputeSpec(memory="4GiB").memory == "4GiB"
    assert yaml.safe_load("w: 12:00:00")["w"] == 43200  # why the conversion is needed
