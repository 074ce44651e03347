"""The Panel app's state classes, without a browser: form <-> spec, checks, polling."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import TESTS, model_spec

from candle_lab import api
from candle_lab.clusters import resolve
from candle_lab.errors import SpecError
from candle_lab.gallery import gallery_models
from candle_lab.spec import ComputeSpec, load_spec, spec_from_dict
from candle_lab.ui.forms import SpecForm, parameters_to_rows, parse_choices, rows_to_parameters
from candle_lab.ui.state import ExperimentBrowser, ExperimentMonitor

pytest.importorskip("panel")


@pytest.mark.parametrize("name", sorted(gallery_models()))
def test_every_gallery_spec_round_trips_through_the_form(name: str) -> None:
    form = SpecForm()
    form.load_gallery(name)
    assert form.build() == load_spec(gallery_models()[name].spec_file)
    assert form.check() is not None and form.problems == []


def test_form_saves_a_spec_file_that_loads_back_unchanged(tmp_path: Path) -> None:
    form = SpecForm()
    form.load_gallery("digits_mlp")
    form.param.update(workers=3, max_trials=5, timeout="10m", surrogate="GP")
    saved = form.save(tmp_path / "edited.yaml")
    assert saved is not None
    other = SpecForm()
    other.load_file(saved)
    assert other.build() == form.build()
    spec = load_spec(saved)
    assert (spec.compute.workers, spec.budget.max_trials, spec.trial.timeout) == (3, 5, 600)
    assert spec.search.surrogate == "GP"


def test_space_table_cells_become_parameters() -> None:
    rows = pd.DataFrame(
        [
            {"name": "lr", "type": "real", "low": 1e-4, "high": 0.1, "log": True},
            {"name": "units", "type": "integer", "low": 8.0, "high": 64.0, "log": False},
            {"name": "act", "type": "categorical", "choices": "relu, tanh"},
            {"name": "batch", "type": "ordered", "choices": "16, 32, 64"},
            {"name": "spec", "type": "categorical", "choices": '"64", "128, 128"'},
            {"name": "epochs", "type": "constant", "value": "5"},
            {"name": "", "type": "real"},  # a blank row is skipped
        ]
    )
    params = rows_to_parameters(rows)
    assert params == [
        {"name": "lr", "type": "real", "low": 1e-4, "high": 0.1, "log": True},
        {"name": "units", "type": "integer", "low": 8, "high": 64, "log": False},
        {"name": "act", "type": "categorical", "choices": ["relu", "tanh"]},
        {"name": "batch", "type": "categorical", "choices": [16, 32, 64], "ordered": True},
        {"name": "spec", "type": "categorical", "choices": ["64", "128, 128"]},
        {"name": "epochs", "type": "constant", "value": 5},
    ]
    assert parse_choices("[512, 512], [256]") == [[512, 512], [256]]


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ({"name": "lr", "type": "real", "low": None, "high": 1.0}, "space.parameters[0] (lr).low", "expected a number"),
        ({"name": "lr", "type": "real", "low": "abc", "high": 1.0}, "space.parameters[0] (lr).low", "'abc'"),
        ({"name": "lr", "type": "gaussian", "low": 0, "high": 1}, "space.parameters[0] (lr).type", "'gaussian'"),
    ],
)
def test_bad_space_cells_are_named(row: dict, field: str, words: str) -> None:
    form = SpecForm()
    form.space = pd.DataFrame([row])
    assert form.check() is None
    fields = [f for f, _ in form.problems]
    assert field in fields, form.problems
    assert any(words in m for _, m in form.problems)


def test_low_above_high_in_the_table_gives_the_core_message() -> None:
    form = SpecForm()
    form.space = pd.DataFrame([{"name": "x", "type": "real", "low": 2.0, "high": 1.0, "log": False}])
    assert form.check() is None
    assert any("low must be less than high, got low=2.0, high=1.0" in m for m in form.problems_for("space"))


def test_invalid_compute_is_flagged_with_the_core_message() -> None:
    form = SpecForm()
    form.load_gallery("digits_sklearn")
    form.profile = "lab"
    assert form.param.partition.objects == ["", "gpu", "cpu"]
    form.gpus = 3
    assert form.param.gpu_type.objects == ["", "any"]
    assert form.check() is None
    with pytest.raises(SpecError) as core:
        resolve(ComputeSpec(profile="lab", gpus=3, workers=2))
    assert form.problems == core.value.problems
    assert form.problems_for("compute") == ["compute.gpus: a 'gpu' node has 2 any GPUs, asked for 3 per worker"]
    form.gpus = 1
    assert form.check() is not None and form.problems == []


def test_edited_default_model_value_is_fixed_for_every_trial() -> None:
    form = SpecForm()
    form.load_gallery("digits_mlp")
    defaults = form.defaults.copy()
    defaults.loc[defaults["parameter"] == "rng_seed", "value"] = "123"
    form.defaults = defaults
    spec = form.build()
    fixed = {p.name: p for p in spec.space.parameters}["rng_seed"]
    assert fixed.type == "constant" and fixed.value == 123
    again = SpecForm()
    again.load_spec(spec)
    assert again.build() == spec
    assert again.defaults.set_index("parameter").loc["rng_seed", "value"] == "123"


def test_space_import_and_export(tmp_path: Path) -> None:
    form = SpecForm()
    form.load_gallery("p3b1")
    exported = tmp_path / "space.json"
    exported.write_text(form.export("ga"))
    before = form.build().space.parameters
    form.space = parameters_to_rows([])
    form.import_space(exported)
    after = form.build().space.parameters  # the same, with the mutation sigmas CANDLE's GA needs written in
    assert [p.model_dump(exclude={"sigma"}) for p in after] == [p.model_dump(exclude={"sigma"}) for p in before]
    upf = tmp_path / "runs.upf"
    upf.write_text('{"id": "a", "x": 1}\n{"id": "b", "x": 2}\n')
    form.import_space(upf)
    assert form.algorithm == "upf" and [r.id for r in form.upf_runs] == ["a", "b"]
    assert form.check() is not None
    assert json.loads(form.export("upf").splitlines()[1]) == {"id": "b", "x": 2}
    assert "algorithm: upf" in form.export("yaml")


def test_bad_spec_file_is_reported_not_raised(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: {algorithm: bayes}\n")
    form = SpecForm()
    with pytest.raises(SpecError, match=r"search\.algorithm"):
        form.load_file(bad)


def test_monitor_polls_the_store_and_reads_only_what_changed(client, root: Path) -> None:
    spec = model_spec("curve", budget={"max_trials": 4})
    exp = api.run(spec, root=root, client=client)
    monitor = ExperimentMonitor(path=str(exp.path))
    assert monitor.version >= 1
    assert len(monitor.trials) == 4 and monitor.status.completed == 4
    assert len(monitor.metrics) == 12  # 3 steps per trial
    assert monitor.refresh() is False  # nothing new
    rows = monitor.gantt()
    assert len(rows) == 4 and set(rows["state"]) == {"completed"}
    assert sorted(monitor.curves()) == sorted(monitor.trials["trial_id"])
    monitor.top_k = 2
    assert len(monitor.table()) == 2 and len(monitor.curves()) == 2
    best = monitor.best_row()
    assert best is not None and best["objective"] == min(monitor.trials["objective"])
    assert not monitor.status.driver_alive and monitor.can_resume()
    monitor.close()


def test_monitor_sees_a_running_experiment_grow_and_stops_a_trial(root: Path) -> None:
    spec = model_spec(
        "epochs",
        space=[{"name": "x", "type": "real", "low": 0.0, "high": 1.0},
               {"name": "epoch_seconds", "type": "constant", "value": 0.5},
               {"name": "epochs", "type": "constant", "value": 20}],
        objective={"metric": "loss"},
        budget={"max_trials": 2},
    )
    exp = api.run(spec, root=root, wait=False)  # a detached driver, as the form starts it
    monitor = ExperimentMonitor(path=str(exp.path))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (len(monitor.metrics) and monitor.running_trials()):
        time.sleep(0.3)
        monitor.refresh()
    assert monitor.status.driver_alive and monitor.running_trials(), monitor.status
    victim = monitor.running_trials()[0]
    monitor.stop_trial(victim)
    while time.monotonic() < deadline and monitor.trials.set_index("trial_id").loc[victim, "state"] != "stopped":
        time.sleep(0.3)
        monitor.refresh()
    assert monitor.trials.set_index("trial_id").loc[victim, "state"] == "stopped"
    monitor.stop()
    exp.wait(timeout=60)
    monitor.refresh()
    assert monitor.status.state == "stopped" and not monitor.status.driver_alive
    monitor.close()


def test_browser_lists_experiments_and_compares_two(client, root: Path) -> None:
    for seed in (1, 2):
        api.run(model_spec("curve", budget={"max_trials": 2}, search={"seed": seed}), root=root, client=client)
    browser = ExperimentBrowser(root=str(root))
    browser.refresh()
    assert list(browser.table["id"]) == ["EXP001", "EXP000"]  # newest first
    assert list(browser.table["completed"]) == [2, 2]
    pair = browser.compare(["EXP000", "EXP001"])
    assert set(pair) == {"EXP000", "EXP001"} and all(len(m.best_curve()) == 2 for m in pair.values())



def test_charts_draw_what_the_monitor_reads() -> None:
    from candle_lab.ui.charts import GanttChart, ParallelChart

    trials = pd.DataFrame(
        {
            "trial_id": [0, 1, 2, 3],
            "state": ["completed", "completed", "failed", "completed"],
            "objective": [0.5, 0.2, None, 0.9],
            "param.lr": [1e-4, 1e-3, 1e-2, 1e-1],
            "param.act": ["relu", "tanh", "relu", "elu"],
            "worker": ["w1", "w1", "w2", "w1"],
            "gpu": [None] * 4,
            "started": [0.0, 10.0, 0.0, 20.0],
            "ended": [10.0, 20.0, 5.0, 30.0],
        }
    )
    parallel = ParallelChart()
    parallel.update(trials, "minimize")
    data = parallel.source.data
    assert len(data["x0"]) == 3 * 2  # 3 completed trials, 2 gaps between lr | act | objective
    assert list(data["objective"][:2]) == [0.5, 0.5] and list(data["y0"][:2]) == [0.0, 0.5]  # lr on a log axis
    assert list(parallel.labels.data["text"]) == ["lr", "act", "objective"]

    from candle_lab.monitor import gantt_rows

    gantt = GanttChart()
    gantt.update(gantt_rows(trials, now=40.0))
    bars = gantt.source.data
    assert len(bars["trial_id"]) == 4
    on_w1 = [c for c, lane in zip(bars["colour"], bars["lane"], strict=True) if lane == "w1"]
    assert on_w1[0] != on_w1[1] and on_w1[0] == on_w1[2]  # neighbours in contrasting shades


def test_loss_curves_show_every_epoch_even_the_first() -> None:
    from candle_lab.ui.charts import CurvesChart

    chart = CurvesChart()
    chart.update({3: pd.DataFrame({"step": [1], "value": [0.9]}),
                  5: pd.DataFrame({"step": [1, 2, 3], "value": [0.8, 0.5, 0.4]})}, "loss")
    assert list(chart.source.data["trial_id"]) == [3, 5]
    assert list(chart.points.data["trial_id"]) == [3, 5, 5, 5]  # a one-epoch trial is a visible dot
    assert chart.figure.title.text == "loss per epoch"


def test_submitted_experiment_runs_in_its_own_process_session(root: Path) -> None:
    import os

    form = SpecForm(root=str(root))
    form.load_spec(spec_from_dict(model_spec("sleepy", budget={"max_trials": 2})))
    exp = form.submit()
    assert exp is not None and form.message == f"started {exp.id}"
    deadline = time.monotonic() + 60
    while exp.meta().get("driver_pid") is None:
        assert time.monotonic() < deadline, exp.meta()
        time.sleep(0.2)
    pid = int(exp.meta()["driver_pid"])
    assert pid != os.getpid() and os.getsid(pid) != os.getsid(0)  # closing the app (its session) leaves it running
    assert exp.wait(timeout=120).completed == 2


def test_ga_and_pbt_settings_and_hidden_fields_go_through_the_form(tmp_path: Path) -> None:
    form = SpecForm()
    form.load_gallery("digits_mlp")
    form.import_space(TESTS / "data" / "ga_candle.json")  # CANDLE's GA file: sigmas per parameter
    form.param.update(algorithm="ga", population=8, generations=3, mutation_rate=0.3, generational=True)
    spec = form.build()
    assert (spec.search.population, spec.search.generations, spec.search.generational) == (8, 3, True)
    assert spec.search.mutation_rate == 0.3
    sigmas = {p.name: getattr(p, "sigma", None) for p in spec.space.parameters}
    assert sigmas["dropout"] == 0.045 and sigmas["dense_units"] == 50  # kept though the table has no column
    rows = form.space.copy()
    rows.loc[rows["name"] == "learning_rate", "mutable"] = True
    form.space = rows
    form.param.update(algorithm="pbt", interval_epochs=2, intervals=4, truncation=0.5)
    spec = form.build()
    assert (spec.search.interval_epochs, spec.search.intervals, spec.search.truncation) == (2, 4, 0.5)
    assert [p.name for p in spec.space.parameters if getattr(p, "mutable", False)] == ["learning_rate"]
    form.load_spec(spec)
    assert form.build() == spec
