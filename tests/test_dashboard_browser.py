"""The dashboard as a researcher reads it, in a real headless Chromium (Debian's):
the objective's metric by default, one Gantt lane per worker while trials run, and the
analysis plots (importance, slices, contour, EDF, parallel coordinates) drawn with their
labels when their tab is opened. Screenshots go to ``test-artifacts/screenshots/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from browser import SHOTS, bokeh_source_column, dashboard_server, wait_until
from conftest import model_spec

from candle_lab import api

pytest.importorskip("panel")
pytest.importorskip("playwright")

SPACE = [
    {"name": "x", "type": "real", "low": 0.0, "high": 1.0},
    {"name": "lr", "type": "real", "low": 1e-5, "high": 1e-1, "log": True},
    {"name": "act", "type": "categorical", "choices": ["relu", "tanh", "elu"]},
    {"name": "epochs", "type": "constant", "value": 3},
]


@pytest.fixture(scope="module")
def finished(client: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished search whose trials report accuracy, loss and val_loss (the objective)."""
    root = tmp_path_factory.mktemp("analysis") / "experiments"
    spec = model_spec("three_metrics", SPACE, objective={"metric": "val_loss"}, budget={"max_trials": 12})
    api.run(spec, root=root, client=client)
    return root


def _open_experiment(page: Any, url: str, exp_id: str) -> None:
    page.goto(f"{url}?experiment={exp_id}")
    page.locator(".experiment-id").get_by_text(exp_id).wait_for(timeout=60_000)


def test_finished_experiment_opens_on_the_objectives_metric(page: Any, finished: Path) -> None:
    with dashboard_server(finished) as (url, _):
        _open_experiment(page, url, "EXP000")
        wait_until(lambda: len(bokeh_source_column(page, "curves", "trial_id")) == 12, 30, "the loss curves")
        assert page.get_by_label("Curve metric", exact=True).input_value() == "val_loss"
        options = page.get_by_label("Curve metric", exact=True).locator("option").all_inner_texts()
        assert options == ["accuracy", "loss", "val_loss"]
        curves = api.open_experiment("EXP000", finished).metrics
        best = api.open_experiment("EXP000", finished).best
        assert best is not None
        drawn = bokeh_source_column(page, "curves", "ys")
        assert min(min(ys) for ys in drawn) == pytest.approx(curves[curves["name"] == "val_loss"]["value"].min())
        summary = page.locator("table.summary").inner_text()
        assert "val_loss ↓" in summary and f"{best.objective:.5g}" in summary
        page.screenshot(path=SHOTS / "dashboard-finished-metric.png", full_page=True)


def test_analysis_plots_render_with_data_and_labels(page: Any, finished: Path) -> None:
    with dashboard_server(finished) as (url, _):
        _open_experiment(page, url, "EXP000")
        expected = {  # pane: its tab, words it shows
            "importance": ("Importance and EDF", ["Parameter importance", "x", "lr", "act"]),
            "edf": ("Importance and EDF", ["Distribution of val_loss", "fraction of completed trials"]),
            "slices": ("Slices", ["Slices", "lr (log scale)", "relu", "tanh"]),
            "contour": ("Contour", ["Contour of val_loss", " × "]),
            "parallel": ("Parallel coordinates", ["Parameters and val_loss", "act", "relu", "lr (log)", "val_loss"]),
        }
        for name, (tab, words) in expected.items():
            page.get_by_text(tab, exact=True).click()  # a tab is drawn when opened
            plot = page.locator(f".analysis-{name} .js-plotly-plot")
            plot.wait_for(timeout=60_000)

            def missing(plot: Any = plot, words: list[str] = words) -> list[str]:
                text = plot.evaluate("(el) => el.textContent")
                return [w for w in words if w not in text]

            wait_until(lambda: not missing(), 30, f"{name} to show {words}")
            points = plot.evaluate("(el) => el.data.map(t => (t.x || t.values || t.dimensions || []).length)")
            assert points and max(points) > 0, f"{name} has no data: {points}"
        assert "epochs" not in page.locator(".analysis-parallel .js-plotly-plot").evaluate("(el) => el.textContent")
        page.screenshot(path=SHOTS / "dashboard-analysis.png", full_page=True)


def test_gantt_has_one_lane_per_worker_while_trials_run(page: Any, tmp_path: Path) -> None:
    root = tmp_path / "experiments"
    space = [{"name": "x", "type": "real", "low": 0.0, "high": 1.0}, {"name": "epochs", "type": "constant", "value": 8},
             {"name": "epoch_seconds", "type": "constant", "value": 1.0}]
    spec = model_spec("epochs", space, objective={"metric": "loss"}, budget={"max_trials": 6})
    exp = api.run(spec, root=root, wait=False)
    try:
        with dashboard_server(root) as (url, _):
            _open_experiment(page, url, exp.id)
            seen: list[set[str]] = []  # the lanes on screen at each look while trials run

            def look() -> bool:
                states = bokeh_source_column(page, "gantt", "state")
                lanes = bokeh_source_column(page, "gantt", "lane")
                if "running" in states:
                    seen.append({lane for lane in lanes if lane != "queued"})
                return exp.status().state not in ("created", "running")

            try:
                wait_until(look, 180, "the end of the search")
            finally:
                page.screenshot(path=SHOTS / "dashboard-lanes.png", full_page=True)
            assert len(seen) >= 3, seen
            assert all(lanes <= {"worker 0", "worker 1"} for lanes in seen), seen  # never more lanes than workers
            assert set().union(*seen) == {"worker 0", "worker 1"}, seen
            table = page.locator(".tabulator", has_text="run_id").first.inner_text()
            assert "tcp://" not in table and "worker 0" in table
    finally:
        exp.stop()


def test_what_if_planner_answers_on_the_dashboard(page: Any, finished: Path) -> None:
    """The what-if card: a bad worker list is named; a good one gives the real run, the
    model of it and one row per workers × mode."""
    with dashboard_server(finished) as (url, _):
        _open_experiment(page, url, "EXP000")
        page.get_by_text("What-if: other allocations and modes").click()
        workers = page.get_by_placeholder("e.g. 8,32,128", exact=False)
        workers.fill("4,zero")
        workers.press("Enter")
        page.get_by_role("button", name="Plan").click()
        problem = page.get_by_text("invalid input: workers: expected comma-separated whole numbers")
        problem.wait_for(timeout=30_000)  # next to the controls, naming the field
        assert "got '4,zero'" in problem.inner_text()
        workers.fill("1,4")
        workers.press("Enter")
        page.get_by_role("button", name="Plan").click()
        table = page.locator(".tabulator", has_text="speed-up")
        wait_until(lambda: table.count() == 1 and "what-if" in table.inner_text(), 60, "the plan's table")
        text = table.inner_text()
        assert "measured" in text and "model (" in text and "worker-hours" in text
        assert text.count("what-if") == 4  # 1 and 4 workers, async and batch (2 async is the model row)
        assert page.get_by_text("EXP000: 12 trials, median").count() == 1  # what it was measured from
        assert problem.count() == 0  # the message went with the problem
        page.screenshot(path=SHOTS / "dashboard-plan.png", full_page=True)


def test_two_objectives_show_their_front_and_hypervolume(page: Any, client: Any, tmp_path: Path) -> None:
    """Several objectives: the Pareto front pane has the front's trials, the hypervolume
    pane its curve, and the summary gives the front instead of one best."""
    root = tmp_path / "experiments"
    spec = model_spec("two_goals", [{"name": "x", "type": "real", "low": 0.0, "high": 1.0},
                                    {"name": "y", "type": "real", "low": 0.0, "high": 1.0}],
                      objectives=[{"metric": "error"}, {"metric": "size"}], budget={"max_trials": 10},
                      search={"algorithm": "random", "seed": 3})
    del spec["objective"]
    exp = api.run(spec, root=root, client=client)
    front = exp.pareto
    with dashboard_server(root) as (url, _):
        _open_experiment(page, url, exp.id)
        plot = page.locator(".pareto-front .js-plotly-plot")
        plot.wait_for(timeout=60_000)
        counts = "(el) => Object.fromEntries(el.data.map(t => [t.name, (t.x || []).length]))"
        wait_until(lambda: plot.evaluate(counts).get("Pareto front") == len(front), 30, "the front's points")
        drawn = plot.evaluate("(el) => el.data.find(t => t.name === 'Pareto front').customdata.map(c => c[0])")
        assert drawn == [int(t) for t in front["trial_id"]]
        assert f"Pareto front: {len(front)} of" in plot.evaluate("(el) => el.textContent")
        hv = page.locator(".pareto-hypervolume .js-plotly-plot")
        hv.wait_for(timeout=30_000)
        assert "Hypervolume of the front" in hv.evaluate("(el) => el.textContent")
        assert hv.evaluate("(el) => el.data[0].y.length") == len(exp.hypervolume())
        summary = page.locator("table.summary").inner_text()
        assert f"Pareto front: {len(front)} trials (error ↓, size ↓)" in summary
        page.screenshot(path=SHOTS / "dashboard-pareto.png", full_page=True)
