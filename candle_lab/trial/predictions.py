"""What a model does for uncertainty quantification (CANDLE's UQ workflow), inside a trial.

* :func:`resample` — the training data as this ensemble member sees it: a bootstrap
  member gets a resample drawn with its recorded seed; any other trial gets the data
  unchanged (so a model calls it always).
* :func:`predict` — ``model``'s predictions of ``x``: a Monte Carlo dropout member
  predicts ``passes`` times with dropout kept on (shape ``(passes, samples, ...)``);
  any other trial predicts once.
* :func:`report_predictions` — the held-out targets and predictions, kept as
  ``predictions.npz`` in the run folder, where ``candle-lab ensemble`` reads them.

A model that predicts by other means writes ``predictions.npz`` itself (arrays ``y_true``
and ``y_pred``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from candle_lab.errors import CandleLabError
from candle_lab.store.layout import PREDICTIONS_FILE
from candle_lab.trial.context import current_trial

log = logging.getLogger(__name__)


def _member() -> dict[str, Any]:
    ctx = current_trial()
    return dict(ctx.task.uq or {}) if ctx is not None else {}


def resample(*arrays: Any) -> Any:
    """The arrays (same length) resampled with replacement for a bootstrap member, with
    the member's seed; unchanged otherwise. One array in, one out; several, a tuple."""
    member = _member()
    out = list(arrays)
    if member.get("method") == "bootstrap" and arrays:
        n = len(arrays[0])
        index = np.random.default_rng(int(member.get("seed", 0))).integers(0, n, n)
        out = [a[index] for a in arrays]
    return out[0] if len(out) == 1 else tuple(out)


def predict(model: Any, x: Any, **kwargs: Any) -> np.ndarray:
    """``model.predict(x)``; for a Monte Carlo dropout member, ``passes`` forward passes
    with dropout on, stacked. Raises a clear error when the model has no dropout layer."""
    member = _member()
    if member.get("method") != "dropout":
        return np.asarray(model.predict(x, verbose=0, **kwargs))
    layers = list(_layers(model))
    if not any("dropout" in type(layer).__name__.lower() for layer in layers):
        name = getattr(model, "name", model)
        raise CandleLabError(
            f"ensemble.method: 'dropout' needs a model with dropout layers, got none in {name!r} (use 'bootstrap')"
        )
    import keras

    seed = int(member.get("seed", 0))
    keras.utils.set_random_seed(seed)
    passes = int(member.get("passes", 1))
    return np.stack([np.asarray(model(x, training=True)) for _ in range(passes)])


def _layers(model: Any) -> Any:
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _layers(layer)


def report_predictions(y_true: Any, y_pred: Any) -> None:
    """Keep the held-out targets and predictions in the run folder (``predictions.npz``).
    Outside a trial, nothing is written."""
    ctx = current_trial()
    if ctx is None:
        log.debug("report_predictions outside a trial: not kept")
        return
    path = ctx.prepare_dir() / PREDICTIONS_FILE
    np.savez_compressed(path, y_true=np.asarray(y_true), y_pred=np.asarray(y_pred))
