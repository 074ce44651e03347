"""The dashboard's poll reads only what may have changed, and ends with the same
trials a full read gives."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from candle_lab import api
from candle_lab.store import DB_NAME, Store
from candle_lab.ui.state import ExperimentMonitor

SPEC = {
    "model": {"ref": "candle_lab.objectives:noop"},
    "space": [{"name": "x", "type": "real", "low": 0, "high": 1}],
    "objective": {"metric": "objective"},
    "budget": {"max_trials": 100},
}


def test_incremental_poll_equals_a_full_read(tmp_path: Path) -> None:
    path = api.create_experiment(SPEC, tmp_path)
    monitor = ExperimentMonitor(path=str(path))
    read: list[int] = []
    with Store(path / DB_NAME) as store:
        for i in range(50):
            store.add_trial(i, f"RUN{i:03d}", {"x": i / 100}, queued=1000.0 + i)
            if i < 45:
                store.mark_running(i, 1, worker="w", host="h", gpu=None, started=1001.0 + i)
            if i < 40:
                store.finish_trial(i, "completed", objective=i / 10, metrics={"objective": i / 10}, started=1001.0 + i,
                                   ended=1002.0 + i)
        store.commit()
        monitor.refresh()
        # trials 40..44 finish, 45 is sent again (attempt 2), two new ones appear; 46..49
        # are running as before and 50.. were never seen
        for i in range(40, 45):
            store.finish_trial(i, "failed", reason="exception", started=1001.0 + i, ended=1003.0 + i)
        store.requeue(45, 2, "lost-worker", "worker lost")
        store.add_trial(50, "RUN050", {"x": 0.5}, queued=1100.0)
        store.add_trial(51, "RUN051", {"x": 0.51}, queued=1100.0)
        store.commit()
    reader = monitor._store
    assert reader is not None
    original = reader._trial_rows
    reader._trial_rows = lambda *a, **k: read.append(len(rows := original(*a, **k))) or rows  # type: ignore[method-assign]
    assert monitor.refresh()
    with Store(path / DB_NAME, readonly=True) as other:
        full = other.trials_frame()
    assert read == [8]  # the 6 trials that moved since the last poll and the 2 new ones, not all 52
    got = monitor.trials
    pd.testing.assert_frame_equal(got[full.columns].reset_index(drop=True), full, )
    assert monitor.status.failed == 5 and monitor.status.completed == 40
    assert got.set_index("trial_id").loc[45, "attempt"] == 2
    # A second poll: what the first one read as live is followed on (45 runs its second
    # attempt, 46 and 50 finish, 52 appears), the trials final before are not asked again.
    with Store(path / DB_NAME) as store:
        store.mark_running(45, 2, worker="w", host="h", gpu=None, started=1200.0)
        store.finish_trial(46, "completed", objective=4.6, started=1047.0, ended=1201.0)
        store.finish_trial(50, "failed", reason="exception", started=1101.0, ended=1202.0)
        store.add_trial(52, "RUN052", {"x": 0.52}, queued=1203.0)
        store.commit()
    read.clear()
    assert monitor.refresh()
    assert read == [4]
    with Store(path / DB_NAME, readonly=True) as other:
        full = other.trials_frame()
    pd.testing.assert_frame_equal(monitor.trials[full.columns].reset_index(drop=True), full)
    assert list(monitor.trials["trial_id"]) == list(range(53))


def test_a_second_session_starts_from_the_first_ones_read(tmp_path: Path, monkeypatch) -> None:
    """A page opened again (another session of the same server process) reads only what
    changed since the last session's read, shares the views computed from the same trials,
    and a store made again in the same folder is read in full."""
    path = api.create_experiment(SPEC, tmp_path)
    with Store(path / DB_NAME) as store:
        for i in range(30):
            store.add_trial(i, f"RUN{i:03d}", {"x": i / 100}, queued=1000.0 + i)
            store.mark_running(i, 1, worker="w", host="h", gpu=None, started=1001.0 + i)
            if i < 25:
                store.finish_trial(i, "completed", objective=i / 10, started=1001.0 + i, ended=1002.0 + i)
        store.commit()
    first = ExperimentMonitor(path=str(path))
    with Store(path / DB_NAME) as store:
        store.finish_trial(25, "failed", reason="exception", started=1026.0, ended=1030.0)
        store.add_trial(30, "RUN030", {"x": 0.3}, queued=1031.0)
        store.commit()
    read: list[int] = []
    original = Store._trial_rows
    monkeypatch.setattr(Store, "_trial_rows", lambda self, *a, **k: read.append(len(rows := original(self, *a, **k)))
                        or rows)
    second = ExperimentMonitor(path=str(path))
    assert read == [2]  # the one of the 5 live at the first read that failed since, and the new one: not 31
    with Store(path / DB_NAME, readonly=True) as other:
        full = other.trials_frame()
    pd.testing.assert_frame_equal(second.trials[full.columns].reset_index(drop=True), full)
    third = ExperimentMonitor(path=str(path))  # nothing changed since the second's read
    assert third.trials is second.trials and third.best_curve() is second.best_curve()
    for monitor in (first, second, third):
        monitor.close()

    read.clear()
    (path / DB_NAME).unlink()
    with Store(path / DB_NAME) as store:  # the folder's store made again: nothing of the old one is reused
        store.add_trial(0, "RUN000", {"x": 0.5}, queued=2000.0)
        store.commit()
    again = ExperimentMonitor(path=str(path))
    assert read == [1] and list(again.trials["trial_id"]) == [0]
    again.close()


def test_the_polls_summaries_agree_with_pandas_on_ties_gaps_and_both_directions() -> None:
    """``top_trials``, ``state_counts`` and ``elapsed`` run on numpy arrays (a poll at
    100,000 trials); they give what the plain pandas expressions give."""
    import numpy as np

    from candle_lab import monitor

    rng = np.random.default_rng(3)
    n = 400
    state = rng.choice(["completed", "failed", "running", "queued"], n, p=[0.7, 0.1, 0.1, 0.1])
    objective = np.where(state == "completed", rng.integers(0, 20, n).astype(float), np.nan)  # many ties
    objective[rng.choice(np.flatnonzero(state == "completed"), 5)] = np.nan  # completed without a value
    started = np.where(state == "queued", np.nan, 100.0 + np.arange(n))
    ended = np.where(np.isin(state, ["completed", "failed"]), started + 5, np.nan)
    trials = pd.DataFrame({"trial_id": np.arange(n), "state": pd.array(state, dtype="str"), "objective": objective,
                           "queued": 99.0 + np.arange(n), "started": started, "ended": ended},
                          index=pd.RangeIndex(10, 10 + n))
    done = trials["objective"][trials["state"] == "completed"].dropna()
    for direction, pick in (("minimize", done.nsmallest), ("maximize", done.nlargest)):
        for k in (1, 3, 50):
            top = monitor.top_trials(trials, k, direction)
            assert list(top.index) == list(pick(k).index), (direction, k)
    assert monitor.state_counts(trials) == {s: int((state == s).sum()) for s in monitor.STATE_ORDER}
    assert monitor.elapsed(trials, now=10_000.0) == 10_000.0 - 99.0  # a running trial ends "now"
    assert monitor.elapsed(trials[trials["state"] == "queued"]) is None
    assert monitor.top_trials(trials[trials["state"] == "failed"], 1).empty


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_polls_keep_counts_and_best_as_a_full_read_gives(tmp_path: Path, direction: str) -> None:
    """Many polls of a search whose trials start, finish, fail, are sent again and appear
    out of order: after each, the trials, the counts per state and the best trial are
    those of a full read (the poll counts only the trials that reached a final state)."""
    import random

    from candle_lab import monitor as summaries

    rng = random.Random(7)
    path = api.create_experiment({**SPEC, "objective": {"metric": "objective", "direction": direction}}, tmp_path)
    monitor = ExperimentMonitor(path=str(path))
    state: dict[int, str] = {}
    attempt: dict[int, int] = {}
    clock = 1000.0
    with Store(path / DB_NAME) as store:
        for _ in range(25):
            for _ in range(rng.randint(0, 6)):  # new trials
                t = len(state)
                store.add_trial(t, f"RUN{t:03d}", {"x": rng.random()}, queued=clock)
                state[t], attempt[t] = "queued", 1
            for t in [t for t, s in state.items() if s in ("queued", "running")]:
                clock += 1.0
                roll = rng.random()
                if state[t] == "queued" and roll < 0.6:
                    store.mark_running(t, attempt[t], worker="w", host="h", gpu=None, started=clock)
                    state[t] = "running"
                elif state[t] == "running" and roll < 0.3:
                    value = round(rng.random(), 1)  # ties
                    store.finish_trial(t, "completed", objective=value, started=clock - 1, ended=clock)
                    state[t] = "completed"
                elif state[t] == "running" and roll < 0.4:
                    attempt[t] += 1
                    store.requeue(t, attempt[t], "lost-worker", "worker lost")
                    state[t] = "queued"
                elif state[t] == "running" and roll < 0.45:
                    store.finish_trial(t, "failed", reason="exception", started=clock - 1, ended=clock)
                    state[t] = "failed"
            store.commit()
            monitor.refresh()
            with Store(path / DB_NAME, readonly=True) as other:
                full = other.trials_frame()
            # the same values (a column with no value yet holds None or NaN, as in a full read)
            got = monitor.trials[full.columns].reset_index(drop=True)
            pd.testing.assert_frame_equal(*(f.astype(object).where(f.notna(), None) for f in (got, full)))
            counts = summaries.state_counts(full)
            status = monitor.status
            assert (status.completed, status.failed, status.running) == (
                counts["completed"], counts["failed"], counts["running"])
            top = summaries.top_trials(full, 1, direction)
            best = monitor.best_row()
            if top.empty:
                assert best is None and status.best is None
            else:
                assert best is not None and best["objective"] == top["objective"].iloc[0] == status.best
    assert status.completed > 10 and status.failed > 0  # the walk reached each kind of change
    monitor.close()
