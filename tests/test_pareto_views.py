"""Views of several objectives: the Pareto front figure (2-D, 3-D, scatter matrix), the
hypervolume over time, the report's front, the dashboard's panes and summary."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import model_spec

import candle_lab
from candle_lab import analysis, figures, monitor, pareto
from candle_lab.spec import ConstraintSpec, ObjectiveSpec

XY = [{"name": "x", "type": "real", "low": 0.0, "high": 1.0}, {"name": "y", "type": "real", "low": 0.0, "high": 1.0}]


def _trials(n: int, objectives: int = 2, seed: int = 0) -> pd.DataFrame:
    """A trials table as the store gives it: ZDT1-like ``m0`` against ``m1`` (and more
    random objectives), a few failed and a few infeasible trials."""
    rng = np.random.default_rng(seed)
    x, y = rng.random(n), rng.random(n)
    state = np.where(np.arange(n) % 10 == 9, "failed", "completed")
    frame = pd.DataFrame({
        "trial_id": np.arange(1, n + 1), "state": state, "queued": 1000.0 + np.arange(n),
        "ended": 1010.0 + np.arange(n), "feasible": np.where(np.arange(n) % 7 == 3, 0.0, 1.0),
        "param.x": x, "param.act": rng.choice(["relu", "tanh"], n),
        "metric.m0": x, "metric.m1": 1.0 + 9.0 * y - np.sqrt(x),
    })
    for i in range(2, objectives):
        frame[f"metric.m{i}"] = rng.random(n)
    frame.loc[state == "failed", [f"metric.m{i}" for i in range(objectives)]] = np.nan
    return frame


def _goals(k: int, maximize: int | None = None) -> list[ObjectiveSpec]:
    return [ObjectiveSpec(metric=f"m{i}", direction="maximize" if i == maximize else "minimize") for i in range(k)]


def _traces(fig: Any) -> dict[str, Any]:
    return {t.name.split(" (")[0]: t for t in fig.data}


# ------------------------------------------------------------------ figures (no dask)
def test_two_objectives_draw_the_front_as_a_step_line_over_faded_dominated_trials() -> None:
    trials = _trials(60)
    goals = _goals(2)
    fig = figures.pareto_figure(trials, goals, [ConstraintSpec(metric="memory", max=30)])
    front = pareto.front(trials, goals)
    done = trials[trials["state"] == "completed"]
    infeasible = done[done["feasible"] == 0]
    traces = _traces(fig)
    assert list(traces) == ["dominated", "infeasible", "Pareto front"]  # the front drawn last, on top
    assert fig.layout.title.text == f"Pareto front: {len(front)} of {len(done)} trials"
    on = traces["Pareto front"]
    assert list(on.customdata[:, 0]) == list(front["trial_id"]) and on.mode == "lines+markers"
    assert on.line.shape == "hv" and list(on.x) == list(front["metric.m0"])
    assert traces["dominated"].marker.opacity == figures.DOMINATED_OPACITY < 0.5
    assert len(traces["dominated"].x) == len(done) - len(infeasible) - len(front)
    assert traces["infeasible"].marker.symbol == "x" and len(traces["infeasible"].x) == len(infeasible)
    assert traces["infeasible"].name == "infeasible (memory <= 30)"
    assert not set(infeasible["trial_id"]) & set(front["trial_id"])
    assert fig.layout.xaxis.title.text == "m0 (↓ minimize)" and fig.layout.yaxis.title.text == "m1 (↓ minimize)"
    first = front.iloc[0]  # hover: trial and parameters
    assert on.customdata[0, 0] == first["trial_id"] and f"act={first['param.act']}" in on.customdata[0, 1]
    assert "trial %{customdata[0]}" in on.hovertemplate and "m1 %{y:.5g}" in on.hovertemplate


def test_a_maximised_objective_says_so_and_its_front_runs_the_other_way() -> None:
    trials = _trials(40)
    trials["metric.m1"] = -trials["metric.m1"]
    fig = figures.pareto_figure(trials, _goals(2, maximize=1))
    assert fig.layout.yaxis.title.text == "m1 (↑ maximize)"
    ys = list(_traces(fig)["Pareto front"].y)
    assert ys == sorted(ys) and len(ys) > 1  # first objective better -> second worse (higher is better)


def test_three_objectives_make_a_3d_scatter_and_four_a_scatter_matrix() -> None:
    trials = _trials(50, objectives=3)
    fig = figures.pareto_figure(trials, _goals(3))
    assert {t.type for t in fig.data} == {"scatter3d"}
    assert fig.layout.scene.zaxis.title.text == "m2 (↓ minimize)"
    assert len(_traces(fig)["Pareto front"].x) == len(pareto.front(trials, _goals(3)))
    assert _traces(fig)["dominated"].marker.opacity == figures.DOMINATED_OPACITY
    trials = _trials(50, objectives=4)
    fig = figures.pareto_figure(trials, _goals(4))
    assert {t.type for t in fig.data} == {"splom"}
    front = _traces(fig)["Pareto front"]
    assert [d.label for d in front.dimensions] == [f"m{i} (↓ minimize)" for i in range(4)]
    assert len(front.dimensions[0].values) == len(pareto.front(trials, _goals(4)))
    with pytest.raises(ValueError, match="expected 2 or more objectives, got 1"):
        figures.pareto_figure(trials, _goals(1))


def test_many_trials_send_a_bounded_sample_of_dominated_points_and_the_whole_front() -> None:
    trials = _trials(12_000)
    goals = _goals(2)
    fig = figures.pareto_figure(trials, goals)
    traces = _traces(fig)
    assert len(traces["dominated"].x) == analysis.MAX_POINTS and traces["dominated"].type == "scattergl"
    assert len(traces["Pareto front"].x) == len(pareto.front(trials, goals))
    done = int((trials["state"] == "completed").sum())
    assert fig.layout.title.text.endswith(f"of {done} trials")  # counted in full


def test_no_completed_trial_gives_an_empty_front() -> None:
    trials = _trials(5)
    trials["state"] = "running"
    fig = figures.pareto_figure(trials, _goals(2))
    assert fig.layout.title.text == "Pareto front: 0 of 0 trials"
    assert [t.name for t in fig.data] == ["Pareto front"] and len(fig.data[0].x) == 0
    empty = figures.hypervolume_figure(pareto.hypervolume_over_time(trials, _goals(2)), 0.0)
    assert len(empty.data[0].x) == 0


def test_hypervolume_figure_is_a_step_line_on_the_time_axis_of_the_other_charts() -> None:
    trials = _trials(80)
    curve = pareto.hypervolume_over_time(trials, _goals(2))
    fig = figures.hypervolume_figure(curve, monitor.origin(trials))
    (line,) = fig.data
    assert fig.layout.title.text == "Hypervolume of the front" and line.line.shape == "hv"
    assert fig.layout.xaxis.title.text == "seconds since the first trial was queued"
    assert list(line.x) == list(curve["ended"] - 1000.0) and list(line.y) == list(curve["hypervolume"])
    by_count = figures.hypervolume_figure(curve)
    assert list(by_count.data[0].x) == list(curve["trials"]) and by_count.layout.xaxis.title.text == "completed trials"


@pytest.mark.parametrize("objectives", [2, 3])
def test_hypervolume_over_time_is_that_of_each_prefix(objectives: int) -> None:
    """The curve (the front kept as it grows) equals the hypervolume of every prefix's front."""
    trials = _trials(300, objectives=objectives, seed=5)
    goals = _goals(objectives)
    curve = pareto.hypervolume_over_time(trials, goals, points=25)
    ran = trials[(trials["state"] == "completed") & (trials["feasible"] != 0)].sort_values("ended")
    matrix = pareto.loss_matrix(ran, goals)
    reference = pareto.reference_point(matrix)
    expected = [pareto.hypervolume(matrix[:k][pareto.nondominated(matrix[:k])], reference) for k in curve["trials"]]
    assert np.allclose(curve["hypervolume"], expected) and len(curve) == 25


# ------------------------------------------------------------------ a real two-objective run
@pytest.fixture(scope="module")
def two_goals(client: Any, tmp_path_factory: pytest.TempPathFactory) -> candle_lab.Experiment:
    """10 trials of ``two_goals`` (error against size, memory <= 30: x > 0.75 infeasible)."""
    root = tmp_path_factory.mktemp("pareto") / "experiments"
    spec = model_spec("two_goals", XY, objectives=[{"metric": "error"}, {"metric": "size"}],
                      constraints=[{"metric": "memory", "max": 30}], budget={"max_trials": 10},
                      search={"algorithm": "random", "seed": 3})
    del spec["objective"]
    return candle_lab.run(spec, client=client, root=root)


def test_report_shows_the_front_its_table_and_hypervolume(two_goals: candle_lab.Experiment) -> None:
    from candle_lab.html_report import write_report

    front = two_goals.pareto
    trials = two_goals.trials
    infeasible = int((trials["feasible"] == 0).sum())
    assert len(front) > 0 and infeasible > 0
    text = write_report(two_goals, plotly="cdn").read_text()
    assert f"Pareto front: {len(front)} of " in text and "Hypervolume of the front" in text
    assert f"<h2>Pareto front ({len(front)} trials)</h2>" in text
    assert "<th>objectives</th><td>error ↓, size ↓</td>" in text
    assert f"memory &lt;= 30: {infeasible} of {len(trials)} trials infeasible" in text
    table = text.split("<h2>Pareto front")[1].split("</table>")[0]
    assert table.count("<tr") == len(front) + 1 and "error ↓" in table and "<th>x</th>" in table


def test_dashboard_draws_the_front_once_per_change_and_says_so_in_the_summary(
    two_goals: candle_lab.Experiment,
) -> None:
    pytest.importorskip("panel")
    from candle_lab.ui.app import DashboardView, _summary_html
    from candle_lab.ui.state import ExperimentMonitor

    m = ExperimentMonitor(path=str(two_goals.path))
    try:
        view = DashboardView(m)
        held = m.pareto()
        assert held is not None and m.multi_objective
        assert m.pareto() is held  # nothing changed: not computed again
        assert list(held.front["trial_id"]) == list(two_goals.pareto["trial_id"])
        assert view.objectives.visible
        drawn = view.front.object
        front_trace = next(t for t in drawn.data if t.name == "Pareto front")
        assert len(front_trace.x) == len(held.front)
        assert view.hypervolume.object.layout.title.text == "Hypervolume of the front"
        m.version += 1  # a redraw with the same data keeps the figures
        assert view.front.object is drawn
        summary = _summary_html(m, m.usage())
        assert f"Pareto front: {len(held.front)} trials</b> (error ↓, size ↓)" in summary
        assert f"{held.infeasible} infeasible</span> (memory &lt;= 30)" in summary and held.infeasible > 0
    finally:
        m.close()


def test_notebook_dashboard_shows_the_front_with_several_objectives(two_goals: candle_lab.Experiment) -> None:
    widgets = pytest.importorskip("candle_lab.widgets")

    board = widgets.dashboard(two_goals, interval=60)
    try:
        assert board.front in board.widget.children
        front = next(t for t in board.front.data if t.name == "Pareto front")
        assert len(front.x) == len(two_goals.pareto)
        assert f"Pareto front: {len(two_goals.pareto)} trials" in board.summary.value
    finally:
        board.close()
