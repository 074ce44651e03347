"""The CANDLE tutorial's MNIST MLP, on scikit-learn's bundled 8x8 digits (no download).

Dense(512) -> Dropout -> Dense(512) -> Dropout -> Dense(10, softmax), as in
``Candle/examples/mnist/mnist_mlp_candle.py``; the layer sizes come from ``dense``.
Written like a CANDLE benchmark: ``initialize_parameters()`` reads ``default_model.txt``
and ``run(params)`` trains and returns the Keras ``History``.

Standalone: ``python digits_mlp_baseline.py [--config_file FILE] [--epochs 3 ...]``.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import keras
import numpy as np

from candle_lab import uq
from candle_lab.models.candle import benchmark_main, finalize_parameters

HERE = os.path.dirname(os.path.abspath(__file__))


def initialize_parameters(
    default_model: str = "default_model.txt",
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """CANDLE's precedence: library defaults < default model file < config file < overrides."""
    return finalize_parameters(os.path.join(HERE, default_model), config_file, overrides)


@functools.lru_cache(maxsize=4)
def load_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """1797 digits scaled to [0, 1], one-hot labels, a fixed stratified 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = keras.utils.to_categorical(digits.target, 10).astype("float32")
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=digits.target)
    return x_train, y_train, x_val, y_val


def build_model(params: dict[str, Any], input_dim: int, classes: int) -> keras.Model:
    dense = params["dense"]
    layers: list[Any] = [keras.Input((input_dim,))]
    for units in [dense] if isinstance(dense, int) else dense:
        layers.append(keras.layers.Dense(int(units), activation=params["activation"]))
        if params["dropout"] > 0:
            layers.append(keras.layers.Dropout(float(params["dropout"])))
    layers.append(keras.layers.Dense(classes, activation="softmax"))
    model = keras.Sequential(layers, name=str(params.get("model_name", "digits_mlp")))
    optimizer = keras.optimizers.get(
        {"class_name": params["optimizer"], "config": {"learning_rate": float(params["learning_rate"])}}
    )
    model.compile(loss=params["loss"], optimizer=optimizer, metrics=["accuracy"])
    return model


def run(params: dict[str, Any]) -> keras.callbacks.History:
    keras.utils.set_random_seed(int(params["rng_seed"]))
    x_train, y_train, x_val, y_val = load_data()
    x_train, y_train = uq.resample(x_train, y_train)  # a bootstrap ensemble member's resample; else as is
    model = build_model(params, x_train.shape[1], y_train.shape[1])
    history = model.fit(
        x_train,
        y_train,
        batch_size=int(params["batch_size"]),
        epochs=int(params["epochs"]),
        validation_data=(x_val, y_val),
        verbose=0,
    )
    uq.report_predictions(y_val, uq.predict(model, x_val))  # held-out predictions, for candle-lab ensemble
    return history


if __name__ == "__main__":
    benchmark_main(initialize_parameters, run, description=__doc__.splitlines()[0])
