"""NT3: tumor/normal classification of gene-expression profiles with a 1-D convolutional net.

The shape of CANDLE's Pilot1 NT3 benchmark (Conv1D layers given as ``conv = [filters,
kernel, stride, ...]`` with ``pool`` sizes, then dense layers with dropout and a 2-class
softmax), on synthetic RNA-seq-like profiles generated with a fixed seed so that it runs
anywhere without a download: tumor samples differ from normal ones in a few blocks of
co-regulated genes, hidden under per-gene baselines, per-sample depth effects and noise.

Standalone: ``python nt3_baseline.py [--config_file FILE] [--epochs 3 ...]``.
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
def load_data(
    samples: int = 600, features: int = 1000, seed: int = 2017
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic expression profiles (samples x features x 1) and one-hot tumor/normal labels.

    Deterministic for a seed; a fixed 80/20 train/validation split; features max-abs scaled
    with the training set's statistics (as NT3 scales its data).
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=samples)  # 1 = tumor
    baseline = rng.gamma(2.0, 1.0, size=features)  # per-gene mean log-expression
    depth = rng.normal(0.0, 0.3, size=(samples, 1))  # per-sample library-size effect
    x = baseline + depth + rng.normal(0.0, 1.0, size=(samples, features))
    # Tumor signal: a few blocks of co-regulated genes, up or down, with a per-sample strength.
    strength = rng.uniform(0.6, 1.6, size=samples) * y
    for start, width, sign in ((80, 40, 1.0), (350, 25, -1.0), (610, 60, 1.0), (900, 30, -1.0)):
        block = slice(start, start + width)
        x[:, block] += sign * strength[:, None] * rng.uniform(0.5, 1.0, size=width)
    x = np.log1p(np.maximum(x, 0.0)).astype("float32")
    split = int(samples * 0.8)
    scale = np.abs(x[:split]).max(axis=0) + 1e-6
    x = (x / scale)[:, :, None]
    onehot = keras.utils.to_categorical(y, 2).astype("float32")
    return x[:split], onehot[:split], x[split:], onehot[split:]


def _triples(conv: list[int]) -> list[tuple[int, int, int]]:
    if len(conv) % 3:
        raise ValueError(f"conv: expected [filters, kernel, stride, ...] (a multiple of 3 numbers), got {conv!r}")
    return [(int(conv[i]), int(conv[i + 1]), int(conv[i + 2])) for i in range(0, len(conv), 3)]


def build_model(params: dict[str, Any], input_length: int, classes: int) -> keras.Model:
    activation = params["activation"]
    pools = params.get("pool") or []
    layers: list[Any] = [keras.Input((input_length, 1))]
    for i, (filters, kernel, stride) in enumerate(_triples(params["conv"])):
        layers.append(keras.layers.Conv1D(filters, kernel, strides=stride, activation=activation, padding="valid"))
        pool = int(pools[i]) if i < len(pools) else 1
        if pool > 1:
            layers.append(keras.layers.MaxPooling1D(pool))
    layers.append(keras.layers.Flatten())
    for units in params["dense"]:
        layers.append(keras.layers.Dense(int(units), activation=activation))
        if params["dropout"] > 0:
            layers.append(keras.layers.Dropout(float(params["dropout"])))
    layers.append(keras.layers.Dense(classes, activation=params["out_activation"]))
    model = keras.Sequential(layers, name=str(params.get("model_name", "nt3")))
    optimizer = keras.optimizers.get(
        {"class_name": params["optimizer"], "config": {"learning_rate": float(params["learning_rate"])}}
    )
    model.compile(loss=params["loss"], optimizer=optimizer, metrics=[params.get("metrics", "accuracy")])
    return model


def run(params: dict[str, Any]) -> keras.callbacks.History:
    keras.utils.set_random_seed(int(params["rng_seed"]))
    x_train, y_train, x_val, y_val = load_data(int(params["samples"]), int(params["features"]))
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
