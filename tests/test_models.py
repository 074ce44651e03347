"""Model adapters end to end through the engine: CANDLE modules (real TensorFlow),
scripts, callables; live metrics; failure classes."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import TESTS, model_spec

import candle_lab
from candle_lab.models.candle import finalize_parameters, read_default_model

BENCH = TESTS / "candle_bench"
SCRIPT = TESTS / "trial_script.py"


def candle_spec(**sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "tiny-candle",
        "model": {"kind": "candle", "ref": "tiny_bench", "path": str(BENCH)},
        "space": [
            {"name": "learning_rate", "type": "real", "low": 0.005, "high": 0.05, "log": True},
            {"name": "overridden_by_trial", "type": "constant", "value": "trial"},
        ],
        "objective": {"metric": "val_loss"},
        "search": {"algorithm": "random", "seed": 4},
        "budget": {"max_trials": 2},
        "compute": {"workers": 2},
    }
    data.update(sections)
    return data


def test_default_model_file_values_are_literals() -> None:
    values = read_default_model(BENCH / "default_model.txt")
    assert values["units"] == 8 and values["learning_rate"] == 0.01 and values["activation"] == "relu"
    assert values["timeout"] == 1800  # every section is read
    final = finalize_parameters(BENCH / "default_model.txt", BENCH / "config.txt", {"overridden_by_trial": "t"})
    assert (final["from_default"], final["overridden_by_config"], final["overridden_by_trial"]) == (
        "default",
        "config",
        "t",
    )
    assert final["rng_seed"] == 7102  # library default


def test_candle_module_runs_unchanged_with_candle_precedence(client: Any, tmp_path: Path) -> None:
    spec = candle_spec(
        model={"kind": "candle", "ref": "tiny_bench", "path": str(BENCH), "config_file": str(BENCH / "config.txt")}
    )
    exp = candle_lab.run(spec, client=client, root=tmp_path)
    records = exp.records()
    assert [t.state for t in records] == ["completed", "completed"], [t.error for t in records]
    import json

    final = json.loads((exp.path / records[0].run_id / "final_params.json").read_text())
    assert final["from_default"] == "default"
    assert final["overridden_by_config"] == "config"
    assert final["overridden_by_trial"] == "trial"
    assert final["learning_rate"] == records[0].params["learning_rate"]
    assert final["output_dir"] == str(exp.path / records[0].run_id) and final["experiment_id"] == exp.id
    metrics = exp.metrics
    val = metrics[(metrics.trial_id == records[0].trial_id) & (metrics.name == "val_loss")].sort_values("step")
    assert list(val["step"]) == [1, 2, 3, 4]  # every epoch, reported by the injected callback
    assert records[0].objective == pytest.approx(val["value"].iloc[-1])  # last value of val_loss
    best = exp.best
    assert best is not None and (exp.path / "best" / "model.keras").is_file()
    assert not any((exp.path / t.run_id / "model.keras").exists() for t in records if t.trial_id != best.trial_id)


def test_live_metrics_reach_the_store_while_the_trial_runs(client: Any, tmp_path: Path) -> None:
    spec = candle_spec(
        space=[
            {"name": "epoch_sleep", "type": "constant", "value": 0.7},
            {"name": "epochs", "type": "constant", "value": 6},
            {"name": "learning_rate", "type": "real", "low": 0.01, "high": 0.02},
        ],
        budget={"max_trials": 1},
    )
    exp = candle_lab.run(spec, client=client, root=tmp_path, wait=False)
    deadline = time.monotonic() + 90
    seen_live = False
    while exp.driver_alive() and time.monotonic() < deadline:
        records = exp.records()
        if records and records[0].state == "running" and len(exp.metrics):
            seen_live = True
            break
        time.sleep(0.1)
    exp.wait(timeout=90)
    assert seen_live, "no metric was stored while the trial was running"
    assert exp.records()[0].state == "completed"


def test_missing_metric_fails_the_trial_as_nan(client: Any, tmp_path: Path) -> None:
    exp = candle_lab.run(
        candle_spec(objective={"metric": "val_auc"}, budget={"max_trials": 1}), client=client, root=tmp_path
    )
    trial = exp.records()[0]
    assert trial.state == "failed" and trial.reason == "nan"
    assert "val_auc" in (trial.error or "") and "val_loss" in (trial.error or "")


def script_spec(mode: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": f"script-{mode}",
        "model": {"kind": "command", "command": [sys.executable, str(SCRIPT), "--mode", mode], **extra},
        "space": [{"name": "x", "type": "categorical", "choices": [0.25, 0.75]}],
        "objective": {"metric": "objective" if "result_file" not in extra else "val_loss"},
        "search": {"algorithm": "grid"},
        "compute": {"workers": 2},
        "trial": {"retries": 0},
    }


def test_script_model_improve_result_line(client: Any, tmp_path: Path) -> None:
    exp = candle_lab.run(script_spec("ok"), client=client, root=tmp_path)
    by_x = {t.params["x"]: t for t in exp.records()}
    assert by_x[0.25].objective == 0.0 and by_x[0.75].objective == pytest.approx(0.25)
    log = (exp.path / by_x[0.25].run_id / "output.log").read_text()
    assert "training..." in log and "--x 0.25" in log


def test_script_model_result_file(client: Any, tmp_path: Path) -> None:
    exp = candle_lab.run(script_spec("file", result_file="result.txt"), client=client, root=tmp_path)
    by_x = {t.params["x"]: t for t in exp.records()}
    assert by_x[0.75].objective == 0.75 and by_x[0.75].metrics == {"val_loss": 0.75, "val_acc": 0.25}


@pytest.mark.parametrize(
    ("mode", "reason", "text"),
    [
        ("garbage", "nan", "not a number"),
        ("fail", "exception", "about to fail"),
    ],
)
def test_script_model_failures(client: Any, tmp_path: Path, mode: str, reason: str, text: str) -> None:
    exp = candle_lab.run(script_spec(mode), client=client, root=tmp_path)
    for trial in exp.records():
        assert trial.state == "failed" and trial.reason == reason and text in (trial.error or "")


def test_script_timeout_kills_the_process_group(client: Any, tmp_path: Path) -> None:
    spec = script_spec("hang")
    spec["trial"] = {"retries": 0, "timeout": 2}
    start = time.monotonic()
    exp = candle_lab.run(spec, client=client, root=tmp_path)
    assert time.monotonic() - start < 30
    for trial in exp.records():
        assert trial.state == "failed" and trial.reason == "timeout"
        child = int((exp.path / trial.run_id / "child.pid").read_text())
        assert not alive(child)  # the script's own child was killed too


def alive(pid: int) -> bool:
    """Running (a killed child whose parent died may stay a zombie until reaped)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def test_import_error_and_out_of_memory_are_classified(client: Any, tmp_path: Path) -> None:
    spec = model_spec("sleepy", budget={"max_trials": 1}, trial={"retries": 2})
    spec["model"] = {"ref": "no_such_module_here:f"}
    trial = candle_lab.run(spec, client=client, root=tmp_path).records()[0]
    assert trial.state == "failed" and trial.reason == "import" and trial.attempt == 1  # not retried
    oom = candle_lab.run(
        model_spec("out_of_memory", budget={"max_trials": 1}, trial={"retries": 0}), client=client, root=tmp_path
    ).records()[0]
    assert oom.state == "failed" and oom.reason == "oom"


def test_callable_returning_keras_history(client: Any, tmp_path: Path) -> None:
    spec = model_spec(
        "keras_history",
        space=[{"name": "x", "type": "real", "low": 0.01, "high": 0.1}],
        objective={"metric": "val_loss"},
        budget={"max_trials": 2},
    )
    exp = candle_lab.run(spec, client=client, root=tmp_path)
    assert all(t.state == "completed" and t.objective is not None for t in exp.records())
    assert set(exp.metrics["step"]) == {1, 2, 3}


def test_trial_resources_threads_and_no_gpu_for_cpu_trials(client: Any, tmp_path: Path) -> None:
    exp = candle_lab.run(model_spec("tf_resources", budget={"max_trials": 1}), client=client, root=tmp_path)
    trial = exp.records()[0]
    assert trial.state == "completed", trial.error
    assert trial.metrics is not None
    assert trial.metrics["intra_threads"] == 1 and trial.metrics["omp_threads"] == 1  # compute.cores
    assert trial.metrics["cuda_hidden"] == 1 and trial.metrics["visible_gpus"] == 0  # a CPU trial sees no GPU


def test_checkpoints_keep_each_runs_best_epoch(client: Any, tmp_path: Path) -> None:
    spec = candle_spec(trial={"checkpoints": True, "keep_models": "all"}, budget={"max_trials": 1})
    exp = candle_lab.run(spec, client=client, root=tmp_path)
    run = exp.path / exp.records()[0].run_id
    assert (run / "checkpoint.keras").is_file() and (run / "model.keras").is_file()


def test_keras_callback_stops_before_the_timeout(client: Any, tmp_path: Path) -> None:
    spec = candle_spec(
        space=[
            {"name": "epoch_sleep", "type": "constant", "value": 0.6},
            {"name": "epochs", "type": "constant", "value": 30},
            {"name": "learning_rate", "type": "real", "low": 0.01, "high": 0.02},
        ],
        budget={"max_trials": 1},
        trial={"timeout": 4, "retries": 0},
    )
    exp = candle_lab.run(spec, client=client, root=tmp_path)
    trial = exp.records()[0]
    # Ended by the callback at an epoch boundary (not killed): its last metrics are kept.
    assert trial.state == "stopped" and trial.reason == "timeout", (trial.state, trial.reason, trial.error)
    assert trial.objective is not None and trial.metrics and "val_loss" in trial.metrics
    assert trial.ended - trial.started < 6  # the driver kills at timeout + 2 s grace; it never had to
    assert 1 <= exp.metrics["step"].max() < 30
