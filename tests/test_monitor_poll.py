"""The dashboard's poll reads only what may have changed, and ends with the same
trials a full read gives."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

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
