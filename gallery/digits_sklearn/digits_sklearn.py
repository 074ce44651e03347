"""A small multilayer perceptron on scikit-learn's bundled 8x8 digits (no download, ~1 s a trial).

The model behind candle_lab's quick start: ``run(params)`` trains on a fixed split and
returns the validation loss and accuracy, reporting the validation loss after every
epoch so the dashboard can draw its learning curve.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

import candle_lab


def load_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype("float32") / 16.0
    return train_test_split(x, digits.target, test_size=0.25, random_state=seed, stratify=digits.target)


def run(params: dict[str, Any]) -> dict[str, float]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.neural_network import MLPClassifier

    x_train, x_val, y_train, y_val = load_data()
    layers = (int(params.get("units", 64)),) * int(params.get("layers", 1))
    model = MLPClassifier(
        hidden_layer_sizes=layers,
        activation=params.get("activation", "relu"),
        alpha=float(params.get("alpha", 1e-4)),
        learning_rate_init=float(params.get("learning_rate", 1e-3)),
        batch_size=int(params.get("batch_size", 32)),
        random_state=int(params.get("seed", 0)),
    )
    classes = np.unique(y_train)
    val_loss = float("nan")
    for epoch in range(int(params.get("epochs", 10))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.partial_fit(x_train, y_train, classes=classes)
        val_loss = float(log_loss(y_val, model.predict_proba(x_val), labels=classes))
        candle_lab.report(epoch + 1, loss=float(model.loss_), val_loss=val_loss)
    return {"val_loss": val_loss, "val_accuracy": float(accuracy_score(y_val, model.predict(x_val)))}
