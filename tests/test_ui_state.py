"""The Panel app's state classes, without a browser: form <-> spec, checks, polling."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

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
        ({"name": "lr", "type": "real", "low": None, "high": 1.0}, "space row 1 (lr), low", "expected a number"),
        ({"name": "lr", "type": "real", "low": "abc", "high": 1.0}, "space row 1 (lr), low", '"abc" is not a number'),
        ({"name": "lr", "type": "gaussian", "low": 0, "high": 1}, "space row 1 (lr), type", '"gaussian" is not a'),
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
    assert [f for f, _ in form.problems] == [f for f, _ in core.value.problems] == ["compute.gpus"]
    # the core counts the partition's first GPU type; the researcher chose none, so none is named
    assert form.problems_for("compute") == ["compute.gpus: a 'gpu' node has 2 GPUs, asked for 3 per worker"]
    form.gpu_type = "any"  # chosen: then the message may name it
    assert form.check() is None
    assert form.problems_for("compute") == ["compute.gpus: a 'gpu' node has 2 any GPUs, asked for 3 per worker"]
    form.gpu_type = ""
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


def _edited(form: SpecForm, **cells: tuple[str, str]) -> None:
    """Type into the space table: ``learning_rate=("low", "abc")``."""
    rows = form.space.copy()
    for name, (column, text) in cells.items():
        rows.loc[rows["name"] == name, column] = text
    form.space = rows


def test_form_lists_every_problem_at_once() -> None:
    form = SpecForm()
    form.load_gallery("digits_mlp")
    _edited(form, learning_rate=("low", "abc"), dropout=("high", ""), optimizer=("type", "gaussian"))
    form.param.update(max_time="soon", profile="lab", gpus=3)
    assert form.check() is None
    assert form.problems == [
        ("space row 3 (dropout), high", "expected a number, got nothing"),
        ("space row 4 (optimizer), type",
         '"gaussian" is not a parameter type; expected one of real, integer, categorical, ordered, constant, layers'),
        ("space row 5 (learning_rate), low", '"abc" is not a number'),
        ("budget.max_time", "expected a duration like 3600, '30m', '2h' or '01:30:00', got 'soon'"),
        ("compute.gpus", "a 'gpu' node has 2 GPUs, asked for 3 per worker"),
    ]
    assert form.bad_cells == [(2, "high"), (3, "type"), (4, "low")]  # table rows from 0, as the frame holds them
    assert form.bad_params() == {"max_time", "gpus"}
    with pytest.raises(SpecError) as err:  # build names the same spec problems (the compute check is check's)
        form.build()
    assert err.value.problems == form.problems[:-1]
    _edited(form, learning_rate=("low", "1e-4"), dropout=("high", "0.5"), optimizer=("type", "categorical"))
    form.param.update(max_time="2h", gpus=1)
    assert form.check() is not None and form.problems == [] and form.bad_cells == [] and form.bad_params() == set()


def test_rejected_text_is_quoted_and_rows_are_numbered_as_the_table_shows_them() -> None:
    form = SpecForm()
    form.load_gallery("digits_sklearn")
    rows = pd.DataFrame(
        [
            {"name": "", "type": "real"},  # a blank row: skipped, but still row 1 of the table
            {"name": "learning_rate", "type": "real", "low": "abc", "high": "0.1"},
            {"name": "units", "type": "integer", "low": "64", "high": "8"},
            {"name": "alpha", "type": "real", "low": "0.5", "high": "[1, 2]"},
        ]
    )
    form.space = rows
    assert form.check() is None
    assert form.problems_for("space") == [
        'space row 2 (learning_rate), low: "abc" is not a number',
        'space row 4 (alpha), high: "[1, 2]" is not a number',
        "space row 3 (units): low must be less than high, got low=64, high=8",  # the core's check, same numbering
    ]
    assert form.bad_cells == [(1, "low"), (3, "high"), (2, None)]
    assert form.space.loc[1, "low"] == "abc"  # the typed text is kept, not blanked
    shown = parameters_to_rows(load_spec(gallery_models()["digits_mlp"].spec_file).space.parameters)
    assert shown.set_index("name").loc["learning_rate", ["low", "high"]].tolist() == ["0.0001", "0.05"]
    assert {str(t) for t in shown.dtypes[["name", "low", "high", "choices", "value"]]} == {"object"}


def test_each_problem_is_reported_once_under_one_section(tmp_path: Path) -> None:
    form = SpecForm()
    form.load_gallery("digits_mlp")
    form.default_model = str(tmp_path / "missing.txt")  # read when set, reported by every later check too
    _edited(form, learning_rate=("high", "x"))
    form.param.update(profile="lab", gpus=3, max_time="soon")
    for _ in range(2):
        assert form.check() is None
    fields = [f for f, _ in form.problems]
    assert len(fields) == len(set(form.problems)) == 4, form.problems
    assert fields[:2] == ["space row 5 (learning_rate), high", "model.default_model"]
    sections = [("model",), ("space",), ("search", "budget", "objective", "trial", "name"), ("compute",)]
    shown = [line for prefixes in sections for line in form.problems_for(*prefixes)]
    assert sorted(shown) == sorted(form.problems_for()) and len(shown) == 4  # each under exactly one section
    assert form.problems_outside(*(p for prefixes in sections for p in prefixes)) == []


def test_default_values_are_text_even_from_an_empty_start() -> None:
    from bokeh.document import Document

    from candle_lab.ui.app import FormView

    form = SpecForm()
    form.load_gallery("digits_sklearn")  # no default model file: an empty table
    assert list(form.defaults.dtypes.astype(str)) == ["object", "object"]
    view = FormView(form)
    root = view.defaults.get_root(Document())
    assert [type(c.formatter).__name__ for c in root.columns] == ["StringFormatter", "StringFormatter"]
    form.load_gallery("digits_mlp")
    values = view.defaults.value.set_index("parameter")["value"]
    assert values["activation"] == "relu" and values["dense"] == "[512, 512]" and values["epochs"] == "5"
    assert [type(c.formatter).__name__ for c in root.columns] == ["StringFormatter", "StringFormatter"]
    space = view.space.get_root(Document())
    text = {c.field: type(c.formatter).__name__ for c in space.columns}
    assert all(text[c] == "StringFormatter" for c in ("name", "type", "low", "high", "choices", "value"))


def test_submit_is_disabled_while_the_form_is_invalid() -> None:
    from candle_lab.ui.app import FormView

    form = SpecForm()
    form.load_gallery("digits_mlp")
    view = FormView(form)
    assert not view.submit.disabled and view.summary.object == ""
    _edited(form, learning_rate=("low", "abc"))
    form.max_time = "soon"
    assert view.submit.disabled
    assert "2 problems to fix" in view.summary.object
    assert view.fields["max_time"].css_classes == ["invalid"] and view.fields["metric"].css_classes == []
    styles = view._cell_styles(view.space.value).reset_index(drop=True)
    assert [(r, c) for (r, c), style in styles.stack().items() if style] == [(4, "low")]
    assert not view.all_problems.visible  # both show with their sections only
    _edited(form, learning_rate=("low", "0.0001"))
    form.max_time = "2h"
    assert not view.submit.disabled and view.fields["max_time"].css_classes == []


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


def test_browser_lists_experiments_and_compares_several_on_one_chart(client, root: Path) -> None:
    from candle_lab.ui.app import BrowserView

    for seed in (1, 2, 3):
        api.run(model_spec("curve", budget={"max_trials": 2}, search={"seed": seed}), root=root, client=client)
    browser = ExperimentBrowser(root=str(root))
    browser.refresh()
    assert list(browser.table["id"]) == ["EXP002", "EXP001", "EXP000"]  # newest first
    assert list(browser.table["completed"]) == [2, 2, 2]
    assert list(browser.table["algorithm"]) == ["random"] * 3
    best = api.open_experiment("EXP000", root).best
    assert best is not None and browser.table["best"].iloc[-1] == f"objective ↓ {best.objective:.5g}"
    assert browser.table["duration"].iloc[-1].endswith(" s")

    view = BrowserView(browser, on_open=lambda _: None)
    browser.selected = ["EXP000", "EXP001", "EXP002"]
    view._compare()
    chart, summaries = view.comparison.objects
    lines = [r for r in chart.object.renderers if r.data_source.name and r.data_source.name.startswith("compare-")]
    assert len(lines) == 3 and all(len(r.data_source.data["best"]) == 2 for r in lines)
    assert len(summaries.objects) == 3
    report = view._report().read().decode()
    assert "<h1>candle_lab report: EXP000</h1>" in report and view.report.filename == "EXP000-report.html"


def test_charts_draw_what_the_monitor_reads() -> None:
    from candle_lab import analysis, figures
    from candle_lab.monitor import gantt_rows
    from candle_lab.ui.charts import GanttChart

    trials = pd.DataFrame(
        {
            "trial_id": [0, 1, 2, 3],
            "state": ["completed", "completed", "failed", "completed"],
            "objective": [0.5, 0.2, None, 0.9],
            "param.lr": [1e-4, 1e-3, 1e-2, 1e-1],
            "param.act": ["relu", "tanh", "relu", "elu"],
            "param.epochs": [5, 5, 5, 5],
            "worker": ["0", "0", "1", "0"],
            "gpu": [None] * 4,
            "started": [0.0, 10.0, 0.0, 20.0],
            "ended": [10.0, 20.0, 5.0, 30.0],
        }
    )
    fig = figures.parallel_figure(*analysis.parallel(trials), "loss", "minimize")
    dims = fig.data[0].dimensions
    assert [d.label for d in dims] == ["lr (log)", "act", "loss"]  # the constant epochs is hidden
    assert list(dims[0].values) == [-3.0, -4.0, -1.0]  # best first; log10 of the learning rates
    assert list(dims[0].ticktext) == ["0.0001", "0.001", "0.01", "0.1"]
    assert list(dims[1].ticktext) == ["elu", "relu", "tanh"] and list(dims[1].values) == [2.0, 1.0, 0.0]
    assert list(dims[2].values) == [0.2, 0.5, 0.9] and fig.data[0].line.showscale

    gantt = GanttChart()
    gantt.update(gantt_rows(trials, now=40.0))
    bars = gantt.source.data
    assert len(bars["trial_id"]) == 4
    assert set(bars["lane"]) == {"worker 0", "worker 1"}
    on_w0 = [c for c, lane in zip(bars["colour"], bars["lane"], strict=True) if lane == "worker 0"]
    assert on_w0[0] != on_w0[1] and on_w0[0] == on_w0[2]  # neighbours in contrasting shades


def test_the_experiments_list_is_read_while_its_tab_shows(root: Path, monkeypatch) -> None:
    """Each experiment's status is a query (50 ms at 100,000 trials): a dashboard page does
    not read the list it does not show."""
    from candle_lab.ui.app import EXPERIMENTS_TAB, App

    app = App(root=str(root))
    reads: list[int] = []
    monkeypatch.setattr(app.browser, "refresh", lambda: reads.append(1))
    app.tabs.active = 1
    app._list_experiments()
    assert reads == []
    app.tabs.active = EXPERIMENTS_TAB
    app._list_experiments()
    assert reads == [1, 1]  # on showing the tab, and at its next poll
    assert app.dashboard.below.objects  # without a browser session, the whole dashboard at once


def test_a_redraw_sends_only_the_columns_that_changed() -> None:
    """A tick of a running experiment moves the ends of the running bars: only that column
    goes to the browser; a chart whose data did not change sends nothing."""
    from bokeh.document import Document

    from candle_lab.monitor import gantt_rows
    from candle_lab.ui.charts import GanttChart

    trials = pd.DataFrame({"trial_id": [0, 1], "state": ["completed", "running"], "objective": [0.5, None],
                           "worker": ["0", "1"], "gpu": [None, None], "started": [0.0, 5.0], "ended": [10.0, None]})
    gantt = GanttChart()
    doc = Document()
    doc.add_root(gantt.figure)
    gantt.update(gantt_rows(trials, now=20.0))
    sent: list[Any] = []
    doc.on_change(lambda event: sent.append(getattr(event, "cols", "all")))
    gantt.update(gantt_rows(trials, now=21.0))
    assert sent == [["end"]] and list(gantt.source.data["end"]) == [10.0, 21.0]
    sent.clear()
    gantt.update(gantt_rows(trials, now=21.0))
    assert sent == []
    gantt.update(gantt_rows(trials.assign(ended=[10.0, 22.0], state=["completed", "completed"]), now=30.0))
    assert sorted(sent[0]) == ["colour", "end", "state"]


def test_a_gantt_of_many_workers_names_them_in_its_hover() -> None:
    from candle_lab.ui.charts import GANTT_NAMED_LANES, GanttChart

    def rows(workers: int) -> pd.DataFrame:
        return pd.DataFrame({"trial_id": range(workers), "lane": [f"worker {i}" for i in range(workers)],
                             "start": 0.0, "end": 1.0, "state": "completed", "shade": 0, "objective": 1.0, "trials": 1})

    gantt = GanttChart()
    gantt.update(rows(GANTT_NAMED_LANES))
    assert gantt.figure.yaxis[0].visible and gantt.figure.title.text == "Trials per worker"
    gantt.update(rows(1024))  # 1,024 names on a 900 px axis: none, and the hover names each bar's worker
    assert not gantt.figure.yaxis[0].visible and "1,024" in gantt.figure.title.text
    assert ("worker", "@lane") in gantt.figure.hover[0].tooltips


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
