"""Search-space parameters, the space file formats (GA JSON, grid JSON, UPF) and grid enumeration."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from candle_lab.errors import SpecError
from candle_lab.space import (
    CategoricalParam,
    ConstantParam,
    IntegerParam,
    RealParam,
    SearchSpace,
    UpfRun,
    detect_format,
    grid_axis,
    iter_grid,
    parse_ga_json,
    parse_grid_json,
    parse_upf,
    point_key,
    read_space_file,
    to_ga_json,
    to_grid_json,
    to_upf,
)
from candle_lab.spec import SpaceSpec, spec_from_dict

DATA = Path(__file__).resolve().parent / "data"


def space_of(path: Path, fmt: str = "auto") -> SpaceSpec:
    """Read a space file the way a spec does (``space: {file: ..., format: ...}``)."""
    return SpaceSpec.model_validate({"file": str(path), "format": fmt})


def by_name(spec: SpaceSpec) -> dict[str, Any]:
    return {p.name: p for p in spec.parameters}


# ------------------------------------------------------------------------------ GA JSON
def test_candle_ga_json_types() -> None:
    params = by_name(space_of(DATA / "ga_candle.json"))
    assert list(params) == [
        "activation",
        "optimizer",
        "dropout",
        "learning_rate",
        "dense_units",
        "batch_size",
        "momentum",
        "epochs",
        "batch_normalization",
        "train_data",
    ]
    act = params["activation"]
    assert isinstance(act, CategoricalParam) and not act.ordered
    assert act.choices[:3] == ("softmax", "elu", "softplus") and len(act.choices) == 9

    dropout = params["dropout"]
    assert isinstance(dropout, RealParam) and (dropout.low, dropout.high, dropout.log) == (0.0, 0.9, False)
    lr = params["learning_rate"]
    assert isinstance(lr, RealParam) and (lr.low, lr.high, lr.log) == (1e-5, 0.1, True)
    units = params["dense_units"]
    assert isinstance(units, IntegerParam) and (units.low, units.high, units.log) == (16, 1024, True)
    epochs = params["epochs"]
    assert isinstance(epochs, IntegerParam) and (epochs.low, epochs.high, epochs.log) == (2, 20, False)

    batch = params["batch_size"]
    assert isinstance(batch, CategoricalParam) and batch.ordered and batch.choices == (16, 32, 64, 128, 256)
    assert all(type(c) is int for c in batch.choices)
    momentum = params["momentum"]
    assert isinstance(momentum, CategoricalParam) and momentum.ordered
    assert momentum.choices == (0.0, 0.5, 0.9, 0.99) and all(type(c) is float for c in momentum.choices)

    bn = params["batch_normalization"]
    assert isinstance(bn, CategoricalParam) and bn.choices == (True, False)
    assert all(type(c) is bool for c in bn.choices)
    data = params["train_data"]
    assert isinstance(data, ConstantParam) and data.value == "nt_train2.csv"


def test_ga_json_is_detected_and_the_log_key_is_accepted() -> None:
    text = (DATA / "ga_space.json").read_text()
    assert detect_format(DATA / "ga_space.json", text) == "ga"
    assert detect_format(DATA / "ga_candle.json", (DATA / "ga_candle.json").read_text()) == "ga"
    lr = by_name(space_of(DATA / "ga_space.json"))["learning_rate"]
    assert isinstance(lr, RealParam) and lr.log  # "log": true, as well as "use_log_scale": true


@pytest.mark.parametrize("name", ["ga_candle.json", "ga_space.json"])
def test_ga_json_round_trip(tmp_path: Path, name: str) -> None:
    first = space_of(DATA / name, "ga")
    exported = to_ga_json(first.parameters)
    kinds = {e["name"]: e["type"] for e in exported}
    assert {"int", "float", "categorical", "ordered", "logical", "constant"} <= set(kinds.values())
    out = tmp_path / "again.json"
    out.write_text(json.dumps(exported, indent=1))
    second = space_of(out)  # auto-detected as GA again
    # the same, but for the mutation sigma CANDLE's GA needs, written where the space had none
    assert _dumps(second.parameters, sigma=False) == _dumps(first.parameters, sigma=False)
    for before, after in zip(first.parameters, second.parameters, strict=True):
        assert getattr(before, "sigma", None) in (None, getattr(after, "sigma", None))
    # and the exported entries carry CANDLE's keys
    lr = next(e for e in exported if e["name"] == "learning_rate")
    assert lr["use_log_scale"] is True and lr["sigma"] > 0 and lr["lower"] == pytest.approx(1e-5)


def test_ga_export_keeps_the_order_of_boolean_choices(tmp_path: Path) -> None:
    params = (
        CategoricalParam(name="flip", choices=(False, True)),
        CategoricalParam(name="flag", choices=(True, False)),
        RealParam(name="x", low=-1, high=1),
    )
    exported = to_ga_json(params)
    assert exported[1] == {"name": "flag", "type": "logical"}
    assert _dumps(_params(parse_ga_json(exported)), sigma=False) == _dumps(params, sigma=False)


def _dumps(params: Any, sigma: bool = True) -> list[dict[str, Any]]:
    return [p.model_dump(exclude=None if sigma else {"sigma"}) for p in params]


def _params(dicts: list[dict[str, Any]]) -> tuple[Any, ...]:
    return SpaceSpec.model_validate({"parameters": dicts}).parameters


@pytest.mark.parametrize(
    ("data", "where", "fragment"),
    [
        ({"name": "x"}, "ga", "expected a non-empty list"),
        ([], "ga", "expected a non-empty list"),
        (["x"], "ga[0]", "got 'x'"),
        ([{"type": "int", "lower": 1, "upper": 2}], "ga[0].name", "required field is missing"),
        ([{"name": "x", "type": "double"}], "ga[0] (x).type", "got 'double'"),
        ([{"name": "x", "type": "float", "lower": 0}], "ga[0] (x).upper", "required for type float"),
        ([{"name": "x", "type": "ordered", "values": []}], "ga[0] (x).values", "got []"),
        ([{"name": "x", "type": "constant"}], "ga[0] (x).value", "required for type constant"),
    ],
)
def test_bad_ga_json_names_the_entry(data: Any, where: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_ga_json(data, "ga")
    assert f"{where}:" in str(info.value) and fragment in str(info.value)


def test_bad_ga_bounds_name_the_parameter(tmp_path: Path) -> None:
    bad = tmp_path / "ga.json"
    spec = {"model": {"ref": "m:f"}, "space": {"file": str(bad)}, "budget": {"max_trials": 2}}
    bad.write_text(json.dumps([{"name": "lr", "type": "float", "lower": 0, "upper": 1, "use_log_scale": True}]))
    with pytest.raises(SpecError, match=r"space\.parameters\[0\] \(lr\): log scale needs low > 0, got low=0"):
        spec_from_dict(spec)
    bad.write_text(json.dumps([{"name": "n", "type": "int", "lower": 10, "upper": 2}]))
    with pytest.raises(SpecError, match=r"\(n\): low must be less than high, got low=10, high=2"):
        spec_from_dict(spec)
    bad.write_text(json.dumps([{"name": "n", "type": "int", "lower": 0.5, "upper": 2}]))
    with pytest.raises(SpecError, match=r"space\.parameters\[0\]\.low: expected a valid integer.*\(0\.5\)"):
        spec_from_dict(spec)


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "ga.json"
    bad.write_text('[\n  {"name": "x", "type": "float", "lower": 0, "upper": 1},\n  {"name": "y" "type": "int"}\n]\n')
    with pytest.raises(SpecError, match=r"line 3, column \d+: not valid JSON"):
        read_space_file(bad, "ga")


# ------------------------------------------------------------------------------ grid JSON
def test_grid_json_of_lists() -> None:
    params = by_name(space_of(DATA / "grid_space.json"))
    lr, batch, act = params["learning_rate"], params["batch_size"], params["activation"]
    assert isinstance(lr, CategoricalParam) and lr.ordered and lr.choices == (0.001, 0.01, 0.1)
    assert isinstance(batch, CategoricalParam) and batch.ordered and batch.choices == (32, 64)
    assert isinstance(act, CategoricalParam) and not act.ordered and act.choices == ("relu", "tanh")


def test_grid_json_round_trip(tmp_path: Path) -> None:
    first = space_of(DATA / "grid_space.json")
    out = tmp_path / "grid.json"
    out.write_text(json.dumps(to_grid_json(first.parameters)))
    assert json.loads(out.read_text()) == json.loads((DATA / "grid_space.json").read_text())
    assert space_of(out, "grid").parameters == first.parameters
    assert space_of(out).parameters == first.parameters  # auto-detected


def test_grid_json_export_discretises_numbers() -> None:
    params = (
        RealParam(name="lr", low=1e-4, high=1e-1, log=True),
        IntegerParam(name="units", low=1, high=3),
        ConstantParam(name="epochs", value=7),
    )
    grid = to_grid_json(params, points_per_dim=4)
    assert grid["lr"] == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])
    assert grid["units"] == [1, 2, 3]
    assert grid["epochs"] == [7]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ([1, 2], "expected an object of lists"),
        ({}, "expected an object of lists"),
        ({"lr": 0.1}, "grid.lr: expected a non-empty list of values, got 0.1"),
        ({"lr": []}, "grid.lr: expected a non-empty list of values, got []"),
    ],
)
def test_bad_grid_json(data: Any, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_grid_json(data, "grid")
    assert fragment in str(info.value)


# ------------------------------------------------------------------------------ UPF
def test_upf_ids_become_run_ids() -> None:
    spec = space_of(DATA / "runs.upf")
    assert spec.parameters == ()
    assert [r.id for r in spec.runs] == ["lr-small", "lr-large", "long"]
    assert spec.runs[0].params == {"learning_rate": 0.001, "epochs": 3}
    assert spec.source == str(DATA / "runs.upf")


def test_supervisor_upf_txt_is_detected_by_content() -> None:
    content = read_space_file(DATA / "upf-1.txt")
    assert content.format == "upf"
    assert [r["id"] for r in content.runs] == ["dropout1", "dropout2", "dropout3"]
    assert content.runs[2]["params"] == {"dropout": 0.3, "epochs": 2, "optimizer": "sgd"}


def test_one_line_upf_is_detected(tmp_path: Path) -> None:
    one = tmp_path / "upf-one.txt"
    one.write_text('{"id": "only", "lr": 0.5}\n')
    content = read_space_file(one)
    assert content.format == "upf" and content.runs == [{"id": "only", "params": {"lr": 0.5}}]


def test_upf_round_trip(tmp_path: Path) -> None:
    first = space_of(DATA / "runs.upf")
    text = to_upf(first.runs)
    assert len(text.splitlines()) == 3 and all(json.loads(line)["id"] for line in text.splitlines())
    out = tmp_path / "again.upf"
    out.write_text(text)
    assert space_of(out).runs == first.runs
    runs = [UpfRun(id=r["id"], params=r["params"]) for r in parse_upf(text)]
    assert tuple(runs) == first.runs


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        ('{"id": "a", "x": 1}\n{"x": 2}\n', "line 2.id", "got None"),
        ('# header\n\n{"id": "a", "x": 1}\n{"id": "b", "x": \n', "line 4", "not a JSON object"),
        ('{"id": "a"}\n[1, 2]\n', "line 2", "expected a JSON object, got [1, 2]"),
        ('{"id": "a", "x": 1}\n{"id": "a", "x": 2}\n', "line 2.id", "duplicate run id 'a'"),
        ('{"id": "a b"}\n', "line 1.id", "got 'a b'"),
        ("# nothing here\n\n", "runs.upf", "holds no runs"),
    ],
)
def test_bad_upf_names_the_line(text: str, where: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_upf(text, "runs.upf")
    message = str(info.value)
    assert f"runs.upf {where}:" in message or (where == "runs.upf" and message.startswith("invalid input: runs.upf"))
    assert fragment in message


def test_numeric_upf_ids_become_strings() -> None:
    assert [r["id"] for r in parse_upf('{"id": 1, "x": 0}\n{"id": 2, "x": 1}\n')] == ["1", "2"]


# ------------------------------------------------------------------------------ parameters
def test_parameter_validation_messages() -> None:
    with pytest.raises(ValueError, match=r"low must be less than high, got low=1\.0, high=1\.0"):
        RealParam(name="x", low=1, high=1)
    with pytest.raises(ValueError, match="log scale needs low > 0"):
        IntegerParam(name="n", low=0, high=4, log=True)
    with pytest.raises(ValueError, match="choices must be distinct"):
        CategoricalParam(name="c", choices=("a", "a"))
    with pytest.raises(ValueError, match="name must start with a letter"):
        RealParam(name="1x", low=0, high=1)


def test_friendly_type_spellings() -> None:
    params = _params(
        [
            {"name": "a", "type": "float", "low": 0, "high": 1},
            {"name": "b", "type": "int", "low": 0, "high": 3},
            {"name": "c", "type": "ordered", "values": [1, 2, 4]},
            {"name": "d", "type": "logical"},
            {"name": "e", "type": "Categorical", "values": ["x", "y"]},
        ]
    )
    assert [type(p) for p in params] == [RealParam, IntegerParam, CategoricalParam, CategoricalParam, CategoricalParam]
    assert params[2].ordered and params[3].choices == (True, False) and params[4].choices == ("x", "y")


def test_sampling_stays_in_bounds_and_uses_log_scale() -> None:
    space = SearchSpace(
        (
            RealParam(name="lr", low=1e-5, high=1e-1, log=True),
            IntegerParam(name="units", low=8, high=1024, log=True),
            IntegerParam(name="layers", low=1, high=3),
            CategoricalParam(name="act", choices=("relu", "tanh")),
            ConstantParam(name="epochs", value=3),
        )
    )
    points = space.sample(np.random.default_rng(0), 2000)
    assert all(list(p) == ["lr", "units", "layers", "act", "epochs"] for p in points)
    lrs = np.array([p["lr"] for p in points])
    assert lrs.min() >= 1e-5 and lrs.max() <= 1e-1
    # log-uniform: about a quarter of the points in each decade
    assert 0.2 < np.mean(lrs < 1e-4) < 0.3
    units = [p["units"] for p in points]
    assert min(units) >= 8 and max(units) <= 1024 and all(type(u) is int for u in units)
    assert np.median(units) < 200  # log scale: the median is near sqrt(8 * 1024) = 90
    assert {p["layers"] for p in points} == {1, 2, 3}
    assert {p["act"] for p in points} == {"relu", "tanh"} and {p["epochs"] for p in points} == {3}


# ------------------------------------------------------------------------------ grid
def mixed_space() -> SearchSpace:
    return SearchSpace(
        (
            RealParam(name="lr", low=1e-3, high=1e-1, log=True),
            ConstantParam(name="epochs", value=4),
            IntegerParam(name="units", low=1, high=4),
            CategoricalParam(name="act", choices=("relu", "tanh", "elu")),
            IntegerParam(name="wide", low=0, high=100),
            CategoricalParam(name="bn", choices=(True, False)),
        )
    )


@pytest.mark.parametrize("points", [2, 3, 5])
def test_grid_enumerates_every_combination_once(points: int) -> None:
    space = mixed_space()
    axes = space.grid_values(points)
    assert [len(a) for a in axes] == [points, min(4, points), 3, points, 2]
    size = space.grid_size(points)
    assert size == math.prod(len(a) for a in axes)
    seen = [space.grid_point(axes, i) for i in range(size)]
    keys = [point_key(p) for p in seen]
    assert len(set(keys)) == size  # each point once
    expected = {
        point_key({"lr": a, "epochs": 4, "units": b, "act": c, "wide": d, "bn": e})
        for a, b, c, d, e in itertools.product(*axes)
    }
    assert set(keys) == expected  # every combination
    assert all(list(p) == ["lr", "epochs", "units", "act", "wide", "bn"] for p in seen)
    # row-major: the last parameter changes fastest, the first slowest
    assert [p["bn"] for p in seen[:2]] == [True, False]
    assert seen[0]["lr"] == seen[size // len(axes[0]) - 1]["lr"] != seen[-1]["lr"]
    assert list(iter_grid(space, points)) == seen


def test_grid_axes() -> None:
    assert grid_axis(IntegerParam(name="n", low=2, high=5), 10) == [2, 3, 4, 5]
    assert grid_axis(IntegerParam(name="n", low=0, high=100), 3) == [0, 50, 100]
    assert grid_axis(IntegerParam(name="n", low=1, high=1000, log=True), 4) == [1, 10, 100, 1000]
    assert grid_axis(RealParam(name="x", low=0, high=1), 5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert grid_axis(RealParam(name="x", low=1e-4, high=1, log=True), 5) == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1])
    # integer axes never repeat a value even when rounding would
    axis = grid_axis(IntegerParam(name="n", low=1, high=20, log=True), 19)
    assert axis == sorted(set(axis)) and axis[0] == 1 and axis[-1] == 20


def test_grid_in_a_shuffled_order_still_covers_everything() -> None:
    space = mixed_space()
    size = space.grid_size(3)
    order = np.random.default_rng(1).permutation(size)
    shuffled = [point_key(p) for p in iter_grid(space, 3, order)]
    assert sorted(shuffled) == sorted(point_key(p) for p in iter_grid(space, 3))


def test_grid_of_a_grid_json_file() -> None:
    space = space_of(DATA / "grid_space.json").search_space()
    size = space.grid_size(5)
    assert size == 3 * 2 * 2
    points = list(iter_grid(space, 5))
    assert len({point_key(p) for p in points}) == 12
    assert {(p["learning_rate"], p["batch_size"], p["activation"]) for p in points} == set(
        itertools.product([0.001, 0.01, 0.1], [32, 64], ["relu", "tanh"])
    )
