"""Uncertainty-quantification ensembles (CANDLE's UQ workflow): calibration on a problem
with known noise, bootstrap and Monte Carlo dropout ensembles of finished experiments on
a real local dask cluster, the CLI, and bad options named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import model_spec

import candle_lab
from candle_lab import uq
from candle_lab.cli import main
from candle_lab.errors import SpecError
from candle_lab.html_report import write_report


def test_calibration_of_an_ensemble_whose_noise_is_known() -> None:
    """Members scattered around the truth with a known, varying spread: the std predicts
    the error, and nominal intervals cover what they promise."""
    rng = np.random.default_rng(0)
    samples, members = 4000, 200
    truth = rng.normal(size=samples)
    spread = rng.uniform(0.05, 1.0, samples)
    centre = truth + spread * rng.normal(size=samples)  # the ensemble's mean misses by ~ its spread
    preds = centre + spread * rng.normal(size=(members, samples))
    summary = uq.summarize(truth, preds)
    assert summary["std"].to_numpy() == pytest.approx(spread, rel=0.2)
    cal = uq.calibration(summary)
    for nominal, observed in cal.coverage.items():
        assert observed == pytest.approx(nominal, abs=0.04), (nominal, observed)
    assert cal.spearman > 0.4
    bins = cal.bins
    assert list(bins["samples"]) == [400] * 10
    assert bins["rmse"].iloc[-1] > 5 * bins["rmse"].iloc[0]  # error grows with std


def test_classification_members_are_scored_on_the_true_class() -> None:
    y_true = np.array([0, 1, 1])
    probs = np.array([[[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], [[0.7, 0.3], [0.4, 0.6], [0.5, 0.5]]])
    summary = uq.summarize(y_true, probs)
    assert summary["mean"].to_numpy() == pytest.approx([0.8, 0.7, 0.5])
    assert summary["error"].to_numpy() == pytest.approx([-0.2, -0.3, -0.5])
    assert summary["std"].iloc[2] == 0


def _source(client: Any, root: Path, function: str, space: list[dict[str, Any]], trials: int) -> candle_lab.Experiment:
    spec = model_spec(function, space=space, objective={"metric": "objective" if function == "uq_regression"
                                                            else "val_loss"}, budget={"max_trials": trials})
    return candle_lab.run(spec, client=client, root=root)


def test_bootstrap_std_grows_where_the_data_are_sparse(client: Any, root: Path) -> None:
    space = [{"name": "degree", "type": "integer", "low": 5, "high": 7},
             {"name": "alpha", "type": "real", "low": 1e-4, "high": 1e-3, "log": True}]
    source = _source(client, root, "uq_regression", space, 3)
    exp = candle_lab.ensemble(source, top=2, method="bootstrap", members=8, seed=1, client=client)
    records = exp.records()
    assert len(records) == 16 and all(t.state == "completed" for t in records)
    assert sorted({t.origin["config"] for t in records}) == sorted(  # type: ignore[index]
        int(t) for t in source.trials.nsmallest(2, "objective")["trial_id"]
    )
    assert len({t.origin["seed"] for t in records}) == 16  # type: ignore[index]  # a recorded seed per member
    best, _ = exp.uncertainty()
    assert best.trial_id == source.best.trial_id and best.members == 8  # type: ignore[union-attr]
    std = best.summary["std"].to_numpy()
    grid = np.linspace(-1.0, 1.0, 101)
    dense, sparse = std[(grid > -0.9) & (grid < 0.2)], std[grid > 0.5]
    assert np.median(sparse) > 3 * np.median(dense), (np.median(dense), np.median(sparse))
    assert set(best.calibration.coverage) == set(uq.NOMINAL)
    html = write_report(exp).read_text()
    assert "Uncertainty of trial" in html and "Coverage of nominal Gaussian intervals" in html


def test_dropout_ensemble_and_a_model_without_dropout(client: Any, root: Path, capsys: Any) -> None:
    space = [{"name": "dropout", "type": "categorical", "choices": [0.2]}]
    source = _source(client, root, "uq_keras", space, 1)
    exp = candle_lab.ensemble(source, method="dropout", members=12, client=client)
    (record,) = exp.records()
    assert record.state == "completed" and record.run_id.endswith("_MC"), record.error
    (config,) = exp.uncertainty()
    assert config.members == 12 and len(config.summary) == 60 and (config.summary["std"] > 0).all()
    plain = _source(client, root, "uq_keras", [{"name": "dropout", "type": "categorical", "choices": [0.0]}], 1)
    failed = candle_lab.ensemble(plain, method="dropout", members=4, client=client).records()[0]
    assert failed.state == "failed"
    assert "ensemble.method: 'dropout' needs a model with dropout layers" in (failed.error or "")


def test_ensemble_command_and_bad_options(client: Any, root: Path, capsys: Any) -> None:
    space = [{"name": "degree", "type": "integer", "low": 3, "high": 4},
             {"name": "alpha", "type": "real", "low": 1e-3, "high": 1e-2}]
    source = _source(client, root, "uq_regression", space, 2)
    assert main(["--root", str(root), "ensemble", source.id, "--members", "3", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "uncertainty of trial" in out and "coverage of nominal intervals 50%:" in out
    assert main(["--root", str(root), "ensemble", source.id, "--members", "3", "--top", "0"]) == 2  # bad input
    assert "top: expected a whole number ≥ 1, got 0" in capsys.readouterr().err
    assert main(["--root", str(root), "ensemble", source.id, "--members", "1"]) == 2
    assert "ensemble.members" in capsys.readouterr().err
    with pytest.raises(SpecError, match=r"ensemble: an ensemble experiment has search\.algorithm 'ensemble'"):
        candle_lab.spec_from_dict(model_spec("uq_regression", search={"algorithm": "ensemble"}))


def test_the_dashboard_starts_an_ensemble(client: Any, root: Path) -> None:
    import time

    from candle_lab.ui.state import ExperimentMonitor

    space = [{"name": "degree", "type": "integer", "low": 3, "high": 4},
             {"name": "alpha", "type": "real", "low": 1e-3, "high": 1e-2}]
    source = _source(client, root, "uq_regression", space, 2)
    board = ExperimentMonitor(path=str(source.path))
    assert board.ensemble(1, "bootstrap", 1) is None and "ensemble.members" in board.message
    started = board.ensemble(1, "bootstrap", 2)
    assert started is not None and board.message.startswith(f"started {started.id}: bootstrap ensemble")
    deadline = time.monotonic() + 120
    while started.status().state not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert started.status().completed == 2
    board.close()
