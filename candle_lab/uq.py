"""Uncertainty quantification of ensembles (CANDLE's UQ workflow): what the members
predicted on held-out samples, summarised per sample and calibrated.

Pure functions over arrays: :func:`summarize` turns the members' predictions into a
per-sample mean, standard deviation and error; :func:`calibration` bins the samples by
predicted standard deviation (CANDLE's "error given std") and measures how often the
error falls inside nominal Gaussian intervals. Regression predictions are values;
classification predictions are class probabilities (the value of a member is then the
probability it gives the true class, and the error one minus its mean).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from candle_lab.errors import CandleLabError
from candle_lab.store.layout import PREDICTIONS_FILE
from candle_lab.trial.predictions import predict, report_predictions, resample

__all__ = [
    "Calibration",
    "ConfigUncertainty",
    "calibration",
    "collect",
    "predict",
    "report_predictions",
    "resample",
    "summarize",
]

NOMINAL = (0.5, 0.8, 0.9, 0.95)  # central interval probabilities whose coverage is measured
_Z = {0.5: 0.6745, 0.8: 1.2816, 0.9: 1.6449, 0.95: 1.9600}  # Gaussian quantiles of those intervals


@dataclass(frozen=True)
class Calibration:
    """Error against predicted std: ``bins`` (``std_low``, ``std_high``, ``samples``,
    ``mean_std``, ``rmse``, ``mean_abs_error``), ``coverage`` (nominal probability ->
    observed fraction of samples whose error lies inside ±z·std) and the rank correlation
    of |error| with std (``spearman``; higher: the std knows where it errs)."""

    bins: pd.DataFrame
    coverage: dict[float, float]
    spearman: float


def member_values(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(targets, values)``: each member's per-sample value to compare with the target,
    shape (members, samples), and whether this is classification. ``y_pred`` is
    (members, samples) or (members, samples, outputs); classes are the last axis of
    probabilities when ``y_true`` holds labels or one-hot rows."""
    y_pred = np.asarray(y_pred, dtype=float)
    y_true = np.asarray(y_true)
    if y_pred.ndim == 3 and y_pred.shape[-1] == 1:
        y_pred = y_pred[..., 0]
    if y_pred.ndim == 2:
        return y_true.reshape(-1).astype(float), y_pred, False
    if y_pred.ndim != 3:
        raise ValueError(f"predictions: expected (members, samples[, classes]), got shape {y_pred.shape}")
    labels = y_true.argmax(axis=-1) if y_true.ndim == 2 else y_true.astype(int).reshape(-1)
    picked = np.take_along_axis(y_pred, labels[None, :, None], axis=-1)[..., 0]
    return np.ones(len(labels)), picked, True


def summarize(y_true: np.ndarray, y_pred: np.ndarray) -> pd.DataFrame:
    """Per sample: ``target``, ``mean`` and ``std`` over members, ``error`` (mean − target)."""
    target, values, _ = member_values(y_true, y_pred)
    mean = values.mean(axis=0)
    std = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros_like(mean)
    return pd.DataFrame({"target": target, "mean": mean, "std": std, "error": mean - target})


def calibration(summary: pd.DataFrame, bins: int = 10) -> Calibration:
    """Samples binned by predicted std (equal counts), and the coverage of nominal intervals."""
    std, error = summary["std"].to_numpy(float), summary["error"].to_numpy(float)
    order = np.argsort(std, kind="stable")
    rows = []
    for part in np.array_split(order, min(bins, max(1, len(order)))):
        if len(part) == 0:
            continue
        e, s = error[part], std[part]
        rows.append(
            {
                "std_low": float(s.min()),
                "std_high": float(s.max()),
                "samples": len(part),
                "mean_std": float(s.mean()),
                "rmse": float(np.sqrt(np.mean(e**2))),
                "mean_abs_error": float(np.mean(np.abs(e))),
            }
        )
    safe = np.where(std > 0, std, np.nan)
    coverage = {p: float(np.mean(np.abs(error) <= _Z[p] * np.nan_to_num(safe, nan=0.0))) for p in NOMINAL}
    ranks = pd.Series(np.abs(error)).rank().corr(pd.Series(std).rank()) if len(std) > 2 else float("nan")
    return Calibration(pd.DataFrame(rows), coverage, float(ranks))


@dataclass(frozen=True)
class ConfigUncertainty:
    """One configuration's ensemble: its source trial, members, per-sample summary and
    calibration."""

    trial_id: int
    params: dict[str, object]
    members: int
    summary: pd.DataFrame
    calibration: Calibration


def collect(
    exp_dir: Path, runs: Sequence[tuple[int, str, dict[str, object]]], method: str
) -> list[ConfigUncertainty]:
    """The ensemble's predictions, read from each run folder's ``predictions.npz`` and
    grouped by configuration: ``runs`` holds ``(config trial id, run id, params)`` of the
    completed runs. A ``dropout`` run holds all its passes; ``bootstrap`` members are stacked."""
    grouped: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    params: dict[int, dict[str, object]] = {}
    for config, run_id, values in runs:
        path = Path(exp_dir) / run_id / PREDICTIONS_FILE
        if not path.is_file():
            continue
        with np.load(path) as data:
            grouped.setdefault(config, []).append((data["y_true"], data["y_pred"]))
        params[config] = values
    out = []
    for config, parts in grouped.items():
        y_true = parts[0][0]
        stacked = parts[0][1] if method == "dropout" else np.stack([p[1] for p in parts])
        if stacked.ndim < 2 or stacked.shape[1] != len(y_true):
            raise CandleLabError(
                f"predictions: expected {len(y_true)} predictions per member (as y_true), got shape {stacked.shape}"
            )
        summary = summarize(y_true, stacked)
        out.append(ConfigUncertainty(config, params[config], len(stacked), summary, calibration(summary)))
    return out
