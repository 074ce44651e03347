"""Analysis of the trials (importance, slices, contour, EDF, parallel coordinates), the
numbers as printed, and the bounds that keep charts of 100,000 trials light."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from candle_lab import analysis, figures, formatting, monitor


def _trials(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` completed trials where lr matters most, act a little, and noise not at all."""
    rng = np.random.default_rng(seed)
    lr = 10 ** rng.uniform(-5, -1, n)
    act = rng.choice(["relu", "tanh", "elu"], n)
    noise = rng.uniform(0, 1, n)
    objective = (np.log10(lr) + 3) ** 2 + np.where(act == "relu", 0.0, 0.6) + 0.01 * noise
    return pd.DataFrame({
        "trial_id": np.arange(n), "state": "completed", "objective": objective,
        "param.lr": lr, "param.act": act, "param.noise": noise, "param.epochs": 10,
        "worker": [str(i % 4) for i in range(n)], "gpu": None,
        "queued": np.arange(n) * 1.0, "started": np.arange(n) * 1.0 + 0.5, "ended": np.arange(n) * 1.0 + 4.0,
    })


def test_importance_ranks_the_parameter_that_drives_the_objective_first() -> None:
    found = analysis.importance(_trials(300))
    assert found["parameter"].tolist() == ["lr", "act", "noise"]  # the constant epochs is left out
    assert found["importance"].sum() == pytest.approx(1.0)
    assert found["importance"].iloc[0] > 0.7 and found["importance"].iloc[2] < 0.05
    assert analysis.importance(_trials(3)).empty  # too few trials to say anything


def test_slices_contour_and_edf_keep_labels_and_stay_bounded() -> None:
    trials = _trials(20_000)
    slices = analysis.slices(trials)
    assert set(slices) == {"lr", "act", "noise"}
    lr_axis, points = slices["lr"]
    assert lr_axis.log and len(points) == analysis.MAX_POINTS
    assert points["objective"].min() == pytest.approx(trials["objective"].min())  # the best is always drawn
    act_axis = slices["act"][0]
    assert act_axis.ticks() == ([0, 1, 2], ["elu", "relu", "tanh"])

    contour = analysis.contour(trials, "lr", "act")
    assert contour is not None and contour.z.shape == (analysis.GRID, analysis.GRID)
    # between categories there is no interpolation: each row holds the nearest trials' values
    assert np.isfinite(contour.z).all()
    assert analysis.contour(trials, "lr", "epochs") is None  # a constant has no axis

    edf = analysis.edf(trials)
    assert len(edf) <= analysis.MAX_POINTS and edf["fraction"].iloc[-1] == 1.0
    assert edf["objective"].is_monotonic_increasing

    text = figures.slice_figure(slices, "loss").to_json()
    assert "lr (log scale)" in text and "relu" in text
    assert figures.contour_figure(contour, "loss").layout.title.text == "Contour of loss: lr × act"


def test_gantt_groups_finished_trials_past_its_limit_and_keeps_running_ones() -> None:
    trials = _trials(10_000)
    trials.loc[5, "state"] = "failed"
    trials.loc[9_999, ["state", "ended"]] = ["running", np.nan]
    rows = monitor.gantt_rows(trials, now=20_000.0, limit=1000)
    assert len(rows) <= 1000
    assert rows["trials"].sum() == 10_000  # every trial is in a bar
    assert set(rows["lane"]) == {"worker 0", "worker 1", "worker 2", "worker 3"}
    assert (rows.loc[rows["state"] == "running", "trials"] == 1).all() and (rows["state"] == "running").sum() == 1
    assert rows.loc[rows["trial_id"] <= 5, "state"].tolist().count("failed") == 1  # the failure still shows
    assert rows["objective"].min() == pytest.approx(trials["objective"].min())
    maximizing = monitor.gantt_rows(trials, now=20_000.0, limit=1000, direction="maximize")
    assert maximizing["objective"].max() == pytest.approx(trials["objective"].max())  # a bar shows its best
    assert (maximizing["objective"] >= rows["objective"]).all()
    whole = monitor.gantt_rows(trials, now=20_000.0)
    assert len(whole) == 10_000 and (whole["trials"] == 1).all()


def test_time_axes_share_one_origin_and_waiting_counts_as_idle() -> None:
    trials = pd.DataFrame({
        "trial_id": [0, 1], "state": ["completed", "completed"], "objective": [1.0, 0.5], "worker": ["0", "1"],
        "queued": [100.0, 100.0], "started": [110.0, 120.0], "ended": [130.0, 130.0],
    })
    assert monitor.origin(trials) == 100.0
    assert monitor.gantt_rows(trials)["start"].tolist() == [10.0, 20.0]
    assert monitor.best_so_far(trials)["ended"].tolist() == [30.0, 30.0]
    assert monitor.running_over_time(trials)["time"].iloc[0] == 10.0
    usage = monitor.utilization(trials, workers=2)
    assert usage.utilization == pytest.approx(30.0 / 60.0)  # 2 workers x 30 s, busy 20 + 10
    assert usage.core_hours_idle == pytest.approx(30.0 / 3600)


def test_best_so_far_thinned_keeps_every_improvement() -> None:
    progress = monitor.best_so_far(_trials(20_000))
    thin = monitor.thinned(progress, 500)
    assert len(thin) < 1000
    improvements = progress[progress["best"].ne(progress["best"].shift())]
    assert set(improvements["trial_id"]) <= set(thin["trial_id"])


@pytest.mark.parametrize(
    ("worker", "lane"),
    [("0", "worker 0"), ("tcp://10.0.0.5:39167", "worker 10.0.0.5:39167"), ("job 1234", "job 1234"), (None, "?")],
)
def test_one_readable_lane_name_per_worker(worker: object, lane: str) -> None:
    assert monitor.lane_name(worker) == lane


def test_numbers_as_people_read_them() -> None:
    assert formatting.number(0.0703123456) == "0.070312"
    assert formatting.number(None) == "–"
    assert [formatting.duration(s) for s in (0.4, 5.23, 52, 180, 9000)] == ["0.4 s", "5.2 s", "52 s", "3 min", "2.5 h"]
    assert formatting.params({"lr": 0.00316227766, "units": 64, "act": "relu"}) == "lr=0.003162, units=64, act=relu"


@pytest.mark.parametrize(("seconds", "text"), [(300.0, "5m"), (7200.0, "2h"), (5400.0, "90m"), (45.0, "45s"),
                                               (86400.0, "1d"), (None, "")])
def test_durations_shown_as_entered_read_back_the_same(seconds: float | None, text: str) -> None:
    from candle_lab.spec import parse_duration

    assert formatting.as_entered(seconds) == text
    assert parse_duration(text) == seconds
