"""The CANDLE gallery: each benchmark module reads its default model, its experiment spec
validates, every searched value builds a model, and a default run learns."""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import candle_lab
from candle_lab.models.candle import LIBRARY_DEFAULTS, read_default_model

GALLERY = Path(__file__).resolve().parent.parent / "gallery"

MODULES = {
    "digits_mlp": "digits_mlp_baseline",
    "nt3": "nt3_baseline",
    "p3b1": "p3b1_baseline",
    "unet_nuclei": "unet_nuclei_baseline",
}

# Parameters (beyond the searched ones) that each default model must define, with their types.
EXPECTED_TYPES: dict[str, dict[str, type | tuple[type, ...]]] = {
    "digits_mlp": {"dense": list, "activation": str, "dropout": float, "optimizer": str, "learning_rate": float,
                   "batch_size": int, "epochs": int},
    "nt3": {"conv": list, "pool": list, "dense": list, "activation": str, "dropout": float, "learning_rate": float,
            "batch_size": int, "epochs": int, "samples": int, "features": int},
    "p3b1": {"shared_nnet_spec": str, "ind_nnet_spec": str, "activation": str, "dropout": float, "optimizer": str,
             "learning_rate": float, "batch_size": int, "epochs": int, "feature_names": str},
    "unet_nuclei": {"depth": int, "filters": int, "kernel_size": int, "dropout": float, "activation": str,
                    "learning_rate": float, "batch_size": int, "epochs": int, "image_size": int},
}  # fmt: skip

# Most seconds a default run may train here (2 cores); the runs take ~2-8 s.
TRAIN_LIMIT_S = 25.0


@pytest.fixture(scope="module", autouse=True)
def _few_threads() -> None:
    """One inter-op and two intra-op threads: no oversubscription on a 2-core machine."""
    import tensorflow as tf

    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(2)
    except RuntimeError:  # TensorFlow already initialised by an earlier test in this process
        pass


@pytest.fixture(scope="module")
def modules() -> Iterator[dict[str, ModuleType]]:
    saved = list(sys.path)
    sys.path[:0] = [str(GALLERY / folder) for folder in MODULES]
    try:
        yield {folder: importlib.import_module(name) for folder, name in MODULES.items()}
    finally:
        sys.path[:] = saved


def _builders(mod: ModuleType, folder: str) -> Callable[[dict[str, Any]], Any]:
    """``params -> keras.Model`` for one gallery model (each takes its own input shape)."""
    if folder == "digits_mlp":
        return lambda p: mod.build_model(p, 64, 10)
    if folder == "nt3":
        return lambda p: mod.build_model(p, int(p["features"]), 2)
    if folder == "p3b1":
        return lambda p: mod.build_model(p, int(p["vocabulary"]))
    return lambda p: mod.build_model(p, int(p["image_size"]))


def _arrays(data: tuple[Any, ...]) -> list[Any]:
    """The arrays of a ``load_data()`` tuple (P3B1's labels come as one list per task)."""
    out: list[Any] = []
    for value in data:
        out.extend(value if isinstance(value, list) else [value])
    return out


def test_gallery_folders_are_complete() -> None:
    for folder, name in MODULES.items():
        for file in (f"{name}.py", "default_model.txt", "space.json", "experiment.yaml"):
            assert (GALLERY / folder / file).is_file(), f"gallery/{folder}/{file} is missing"


@pytest.mark.parametrize("folder", list(MODULES))
def test_initialize_parameters_reads_literals(
    folder: str, modules: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # the default model is found next to the module, not in the cwd
    params = modules[folder].initialize_parameters()
    for key, value in LIBRARY_DEFAULTS.items():
        if key != "timeout":
            assert params[key] == value, key
    assert params["timeout"] == 600  # from [Monitor_Params]
    assert params == {**LIBRARY_DEFAULTS, **read_default_model(GALLERY / folder / "default_model.txt")}
    for key, kind in EXPECTED_TYPES[folder].items():
        assert isinstance(params[key], kind), f"{folder}: {key} = {params[key]!r} is not {kind}"
    assert 1 <= params["epochs"] <= 10  # small: a default run takes seconds


def test_initialize_parameters_precedence(modules: dict[str, ModuleType], tmp_path: Path) -> None:
    config = tmp_path / "config.txt"
    config.write_text("[Global_Params]\ndense = [32]\nepochs = 2\n", encoding="utf-8")
    params = modules["digits_mlp"].initialize_parameters(config_file=str(config), overrides={"epochs": 1})
    assert params["dense"] == [32]
    assert params["epochs"] == 1
    assert params["activation"] == "relu"


@pytest.mark.parametrize("folder", list(MODULES))
def test_experiment_spec_validates(folder: str, modules: dict[str, ModuleType]) -> None:
    spec = candle_lab.load_spec(GALLERY / folder / "experiment.yaml")
    assert spec.model.kind == "candle"
    assert spec.model.ref == MODULES[folder]
    assert Path(spec.model.path or "") == GALLERY / folder
    assert spec.objective.metric == "val_loss"
    assert spec.objective.direction == "minimize"
    assert spec.search.algorithm == "async-bo"
    assert spec.budget.max_trials is not None and spec.budget.max_trials <= 16
    assert spec.compute.workers == 2
    assert spec.trial.timeout is not None

    raw = json.loads((GALLERY / folder / "space.json").read_text(encoding="utf-8"))
    names = [p.name for p in spec.space.parameters]
    assert names == [entry["name"] for entry in raw]
    assert spec.space.search_space().searchable
    defaults = modules[folder].initialize_parameters()
    unknown = sorted(set(names) - set(defaults))
    assert not unknown, f"{folder}: space.json sets parameters the model does not define: {unknown}"


@pytest.mark.parametrize("folder", list(MODULES))
def test_every_searched_value_builds_a_model(folder: str, modules: dict[str, ModuleType]) -> None:
    """Each value of each searched parameter (bounds for numbers), one at a time, builds."""
    import keras

    mod = modules[folder]
    build = _builders(mod, folder)
    defaults = mod.initialize_parameters()
    spec = candle_lab.load_spec(GALLERY / folder / "experiment.yaml")
    for param in spec.space.parameters:
        if param.name in ("batch_size", "epochs", "learning_rate", "dropout"):
            continue  # training settings; they do not change the model's shape
        data = param.model_dump()
        values = data.get("choices") or [data[k] for k in ("low", "high") if k in data] or [data.get("value")]
        for value in values:
            model = build({**defaults, param.name: value})
            assert model.count_params() > 0, (folder, param.name, value)
            keras.backend.clear_session()


@pytest.mark.parametrize("folder", list(MODULES))
def test_default_run_learns(folder: str, modules: dict[str, ModuleType]) -> None:
    mod = modules[folder]
    params = mod.initialize_parameters()
    mod.load_data()  # data generation is timed separately: it must be quick and cached
    start = time.perf_counter()
    history = mod.run(params)
    seconds = time.perf_counter() - start
    val_loss = history.history["val_loss"]
    assert len(val_loss) == params["epochs"]
    assert val_loss[-1] < 0.9 * val_loss[0], f"{folder}: val_loss {val_loss} did not fall by 10%"
    assert seconds < TRAIN_LIMIT_S, f"{folder}: a default run took {seconds:.1f} s"


@pytest.mark.parametrize("folder", list(MODULES))
def test_data_is_deterministic_quick_and_cached(folder: str, modules: dict[str, ModuleType]) -> None:
    import numpy as np

    load = modules[folder].load_data
    load.cache_clear()
    start = time.perf_counter()
    first = load()
    assert time.perf_counter() - start < 2.0
    assert load() is first  # cached in memory
    load.cache_clear()
    again = load()
    for x, y in zip(_arrays(first), _arrays(again), strict=True):
        np.testing.assert_array_equal(x, y)


def test_p3b1_layer_spec_accepts_candle_strings_and_lists(modules: dict[str, ModuleType]) -> None:
    spec = modules["p3b1"].layer_spec
    assert spec("1200, 1200:1200, 1200:1200, 1200") == [[1200, 1200]] * 3
    assert spec("128") == [[128]]
    assert spec(64) == [[64]]
    assert spec([128, 64]) == [[128, 64]]
    assert spec([[64], [32, 16], 8]) == [[64], [32, 16], [8]]


def test_p3b1_val_loss_is_the_total_of_the_tasks(modules: dict[str, ModuleType]) -> None:
    mod = modules["p3b1"]
    history = mod.run({**mod.initialize_parameters(), "epochs": 1})
    logs = {k: v[-1] for k, v in history.history.items()}
    tasks = sum(logs[f"val_{task}_loss"] for task, _ in mod.TASKS)
    assert logs["val_loss"] == pytest.approx(tasks, rel=1e-3)


@pytest.mark.parametrize("name", ["digits_mlp", "nt3", "p3b1", "unet_nuclei"])
def test_gallery_experiment_runs_through_the_engine_and_learns(name: str, client: Any, tmp_path: Path) -> None:
    """The gallery's own spec, on the local cluster, with a tiny budget: trials complete,
    report every epoch live, and the best trial ends clearly below its first epoch."""
    spec = candle_lab.load_spec(GALLERY / name / "experiment.yaml")
    spec = spec.replace(budget={"max_trials": 4}, search={"initial_points": 4})
    exp = candle_lab.run(spec, client=client, root=tmp_path)
    records = exp.records()
    assert [t.state for t in records] == ["completed"] * 4, [t.error for t in records]
    best = exp.best
    assert best is not None
    curve = exp.metrics
    curve = curve[(curve.trial_id == best.trial_id) & (curve.name == "val_loss")].sort_values("step")
    assert len(curve) >= 2
    assert best.objective < 0.9 * curve["value"].iloc[0]
    assert (exp.path / "best" / "model.keras").is_file()
    if name in ("digits_mlp", "nt3"):  # CANDLE's UQ workflow: a bootstrap ensemble of the best
        ensemble = candle_lab.ensemble(exp, members=2, client=client)
        assert [t.state for t in ensemble.records()] == ["completed"] * 2, [t.error for t in ensemble.records()]
        (config,) = ensemble.uncertainty()
        assert config.trial_id == best.trial_id and config.members == 2
        summary = config.summary
        assert len(summary) == {"digits_mlp": 450, "nt3": 120}[name] and summary["std"].max() > 0
        assert summary["mean"].between(0, 1).all()  # the probability each gives the true class
