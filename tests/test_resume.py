"""Epoch checkpoints: an attempt cut off resumes from its last saved epoch (trial.resume)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from conftest import model_spec

import candle_lab
from candle_lab import monitor
from candle_lab.store.db import Store
from candle_lab.store.layout import RESUME_DIR
from candle_lab.trial.checkpoint import Checkpoint, latest_saved, resume_checkpoint
from candle_lab.trial.context import TrialContext, _current
from candle_lab.trial.protocol import MetricsEvent, TrialTask


# ------------------------------------------------------------------ the checkpoint folder (no dask)
def test_an_epoch_becomes_the_latest_only_once_written(tmp_path: Path) -> None:
    ckpt = resume_checkpoint(tmp_path)
    assert (ckpt.initial_epoch, ckpt.restore_dir, ckpt.is_interval) == (0, None, False)
    with ckpt.saving(1) as folder:
        (folder / "state").write_text("one")
    assert latest_saved(tmp_path / RESUME_DIR) == (1, tmp_path / RESUME_DIR / "epoch-0001")
    try:
        with ckpt.saving(2) as folder:
            (folder / "state").write_text("half")
            raise KeyboardInterrupt  # killed while writing epoch 2
    except KeyboardInterrupt:
        pass
    again = resume_checkpoint(tmp_path)
    assert again.initial_epoch == 1 and again.restore_dir is not None
    assert (again.restore_dir / "state").read_text() == "one"
    with again.saving(2) as folder:
        (folder / "state").write_text("two")
    assert sorted(p.name for p in (tmp_path / RESUME_DIR).iterdir()) == ["epoch-0002", "latest"]  # older removed


def test_the_attempt_that_resumes_sends_again_the_metrics_saved_with_its_epoch(tmp_path: Path) -> None:
    """An attempt killed just after reporting an epoch may not have delivered it: the
    checkpoint keeps the epoch's metrics and the next attempt sends them as the first
    attempt's, which the store keeps once."""
    sent: list[Any] = []

    def attempt(n: int) -> TrialContext:
        ctx = TrialContext(TrialTask("exp", str(tmp_path), 7, "RUN7", n, {}, {"kind": "callable"}, "loss"),
                           None, tmp_path, 0.0)
        ctx.emit = sent.append  # type: ignore[method-assign]
        return ctx

    token = _current.set(attempt(1))
    with resume_checkpoint(tmp_path).saving(3, {"loss": 0.25}):
        pass
    _current.reset(token)
    token = _current.set(attempt(2))
    try:
        resume_checkpoint(tmp_path).resend()
    finally:
        _current.reset(token)
    ((event),) = sent
    assert isinstance(event, MetricsEvent)
    assert (event.trial_id, event.attempt, event.step, event.metrics) == (7, 1, 3, {"loss": 0.25})

    store = Store(tmp_path / "store.db")
    store.add_metrics(7, 1, 3, {"loss": 0.25}, 1.0)  # it had arrived after all
    store.add_metrics(7, 1, 3, {"loss": 0.25}, 2.0, only_new=True)
    store.add_metrics(7, 1, 2, {"loss": 0.5}, 2.0, only_new=True)
    rows = store.metrics_frame()
    assert sorted(zip(rows["step"], rows["value"], strict=True)) == [(2, 0.5), (3, 0.25)]


def test_a_pbt_interval_saves_in_place(tmp_path: Path) -> None:
    interval = Checkpoint(3, 6, None, tmp_path / "pbt")
    with interval.saving(6) as folder:
        (folder / "x").write_text("1")
    assert interval.is_interval and (tmp_path / "pbt" / "x").is_file()


# ------------------------------------------------------------------ views of resumed trials (no dask)
def _rows(*rows: tuple[int, int, int, float]) -> pd.DataFrame:
    return pd.DataFrame([(t, a, s, "loss", v) for t, a, s, v in rows],
                        columns=["trial_id", "attempt", "step", "name", "value"])


def test_loss_curves_join_a_resumed_attempt_to_the_epochs_before_it() -> None:
    metrics = _rows(
        (1, 1, 1, 1.0), (1, 1, 2, 0.9), (1, 1, 3, 0.8),  # cut off after epoch 3 (saved at 2)
        (1, 2, 3, 0.7), (1, 2, 4, 0.6),                   # resumed from epoch 2
        (2, 1, 1, 5.0), (2, 1, 2, 4.0), (2, 2, 1, 3.0),   # trial 2 started again from scratch
    )
    curves = monitor.loss_curves(metrics, "loss")
    assert curves[1]["step"].tolist() == [1, 2, 3, 4]
    assert curves[1]["value"].tolist() == [1.0, 0.9, 0.7, 0.6]  # epoch 3 as the later attempt ran it
    assert curves[2]["step"].tolist() == [1] and curves[2]["value"].tolist() == [3.0]


def test_the_gantt_keeps_the_segment_that_was_cut_off() -> None:
    trials = pd.DataFrame({
        "trial_id": [0], "worker": ["job 8"], "gpu": ["1"], "state": ["completed"], "objective": [0.5],
        "started": [110.0], "ended": [150.0], "queued": [100.0],
    })
    events = [(108.0, "retry", 0, {"attempt": 1, "reason": "lost-worker", "worker": "job 7", "gpu": "0",
                                    "started": 101.0, "ended": 108.0}),
              (109.0, "driver-start", None, {})]
    earlier = monitor.earlier_attempts(events)
    rows = monitor.gantt_rows(trials, now=200.0, earlier=earlier)
    assert sorted(zip(rows["lane"], rows["state"], rows["trial_id"], strict=True)) == [
        ("job 7 · GPU 0", "interrupted", 0), ("job 8 · GPU 1", "completed", 0)
    ]
    cut = rows[rows["state"] == "interrupted"].iloc[0]
    assert (cut["start"], cut["end"]) == (1.0, 8.0)  # seconds from the first trial queued


# ------------------------------------------------------------------ real runs on the local cluster
X = {"name": "x", "type": "real", "low": 0.0, "high": 1.0}


def _steps(exp: candle_lab.Experiment, trial_id: int) -> list[tuple[int, int]]:
    m = exp.metrics
    m = m[(m["trial_id"] == trial_id) & (m["name"] == "loss")]
    return sorted(zip(m["attempt"].astype(int), m["step"].astype(int), strict=True))


def test_a_keras_trial_whose_worker_dies_resumes_after_its_last_epoch(client: Any, root: Path) -> None:
    """Unchanged Keras code: the first attempt dies as epoch 4 begins; the second restores
    weights and optimizer state and trains epochs 4-6 only, the step count continuing."""
    spec = model_spec("keras_resume", space=[X, {"name": "epochs", "type": "constant", "value": 6}],
                      objective={"metric": "loss"}, budget={"max_trials": 1}, trial={"retries": 1})
    exp = candle_lab.run(spec, client=client, root=root)
    (t,) = exp.records()
    assert t.state == "completed" and t.attempt == 2, t.error
    assert _steps(exp, 0) == [(1, 1), (1, 2), (1, 3), (2, 4), (2, 5), (2, 6)]  # contiguous, not restarted
    assert t.metrics is not None and t.metrics["epochs_trained"] == 3
    assert t.metrics["iterations"] == 6 * 4  # 4 batches an epoch, over all 6 epochs: the optimizer's state came back
    assert [e[3] for e in exp.events(["resumed"])] == [{"attempt": 2, "epoch": 3}]
    assert not (exp.path / t.run_id / RESUME_DIR).exists()  # a completed trial leaves no checkpoint behind
    curve = monitor.loss_curves(exp.metrics, "loss")[0]
    assert curve["step"].tolist() == [1, 2, 3, 4, 5, 6]


def test_resume_off_starts_again_from_epoch_one(client: Any, root: Path) -> None:
    """Without a checkpoint nothing sends the last epoch again if the kill caught its
    metrics in flight (the resumed test covers that): this attempt lets them leave first."""
    spec = model_spec("keras_resume", space=[X, {"name": "epochs", "type": "constant", "value": 4},
                                             {"name": "die_at", "type": "constant", "value": 2},
                                             {"name": "settle", "type": "constant", "value": 1.0}],
                      objective={"metric": "loss"}, budget={"max_trials": 1}, trial={"retries": 1, "resume": False})
    exp = candle_lab.run(spec, client=client, root=root)
    (t,) = exp.records()
    assert t.state == "completed" and t.metrics is not None and t.metrics["epochs_trained"] == 4
    assert _steps(exp, 0) == [(1, 1), (1, 2), (2, 1), (2, 2), (2, 3), (2, 4)]
    assert not exp.events(["resumed"])
