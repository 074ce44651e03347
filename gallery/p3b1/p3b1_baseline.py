"""P3B1: a multi-task deep neural net that reads clinical pathology reports.

The shape of CANDLE's Pilot3 P3B1 benchmark: shared dense layers (``shared_nnet_spec``)
feed one stack of task-specific dense layers per task (``ind_nnet_spec``, CANDLE's
``'64, 64:64:64'`` form: ``:`` separates the tasks, ``,`` the layers), each ending in a
softmax, trained together to predict primary site, tumor laterality and histological
grade. The reports are synthetic bag-of-words features generated with a fixed seed
(each label raises the frequency of its own group of terms, and grade depends on site),
so it runs anywhere without a download. ``val_loss`` is Keras' total validation loss,
the sum of the three tasks' losses.

Standalone: ``python p3b1_baseline.py [--config_file FILE] [--epochs 3 ...]``.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import keras
import numpy as np

from candle_lab.models.candle import benchmark_main, finalize_parameters

HERE = os.path.dirname(os.path.abspath(__file__))

TASKS = (("site", 6), ("laterality", 3), ("grade", 4))  # (name, classes)


def initialize_parameters(
    default_model: str = "default_model.txt",
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """CANDLE's precedence: library defaults < default model file < config file < overrides."""
    return finalize_parameters(os.path.join(HERE, default_model), config_file, overrides)


@functools.lru_cache(maxsize=4)
def load_data(
    reports: int = 1200, vocabulary: int = 500, seed: int = 2018
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """Synthetic report features (TF-IDF-like) and one label vector per task.

    Returns ``x_train, [y_site, y_laterality, y_grade], x_val, [...]``: integer labels, a
    fixed 80/20 split. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    site = rng.integers(0, TASKS[0][1], size=reports)
    laterality = rng.integers(0, TASKS[1][1], size=reports)
    # Grade depends on the site (related tasks are what a multi-task net can exploit).
    grade_bias = rng.dirichlet(np.ones(TASKS[2][1]) * 0.7, size=TASKS[0][1])
    grade = np.array([rng.choice(TASKS[2][1], p=grade_bias[s]) for s in site])
    rate = rng.gamma(0.5, 1.0, size=vocabulary)  # background term frequencies (Zipf-like)
    lam = np.tile(rate, (reports, 1))
    for labels, (_, classes) in zip((site, laterality, grade), TASKS, strict=True):
        terms = rng.choice(vocabulary, size=(classes, 8), replace=False)  # each class's key terms
        boost = rng.uniform(0.2, 0.8, size=(classes, 8))
        for c in range(classes):
            rows = np.flatnonzero(labels == c)
            lam[np.ix_(rows, terms[c])] += boost[c]
    length = rng.uniform(0.5, 1.5, size=(reports, 1))  # report length
    counts = rng.poisson(lam * length)
    x = np.log1p(counts).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-6
    split = int(reports * 0.8)
    ys = [site, laterality, grade]
    return x[:split], [y[:split] for y in ys], x[split:], [y[split:] for y in ys]


def layer_spec(value: Any) -> list[list[int]]:
    """CANDLE's ``'1200, 1200:1200'`` (tasks split by ``:``), an int, or lists -> sizes per stack."""
    if isinstance(value, int):
        return [[value]]
    if isinstance(value, str):
        return [[int(u) for u in part.split(",") if u.strip()] for part in value.split(":")]
    if value and all(isinstance(v, int) for v in value):
        return [list(value)]
    return [[int(u) for u in ([v] if isinstance(v, int) else v)] for v in value]


def build_model(params: dict[str, Any], input_dim: int) -> keras.Model:
    activation = params["activation"]
    init = params.get("initialization", "glorot_uniform")
    drop = float(params["dropout"])
    shared = layer_spec(params["shared_nnet_spec"])[0]
    individual = layer_spec(params["ind_nnet_spec"])
    if len(individual) == 1:
        individual = individual * len(TASKS)
    if len(individual) != len(TASKS):
        raise ValueError(f"ind_nnet_spec: expected {len(TASKS)} task stacks, got {params['ind_nnet_spec']!r}")
    inputs = keras.Input((input_dim,), name="input")
    layer = inputs
    for k, units in enumerate(shared):
        dense = keras.layers.Dense(units, activation=activation, kernel_initializer=init, name=f"shared_layer_{k}")
        layer = dense(layer)
        if drop > 0:
            layer = keras.layers.Dropout(drop)(layer)
    outputs = []
    for (task, classes), spec in zip(TASKS, individual, strict=True):
        head = layer
        for k, units in enumerate(spec):
            dense = keras.layers.Dense(units, activation=activation, kernel_initializer=init, name=f"{task}_layer_{k}")
            head = dense(head)
            if drop > 0:
                head = keras.layers.Dropout(drop)(head)
        outputs.append(keras.layers.Dense(classes, activation=params["out_activation"], name=task)(head))
    model = keras.Model(inputs, outputs, name=str(params.get("model_name", "p3b1")))
    optimizer = keras.optimizers.get(
        {"class_name": params["optimizer"], "config": {"learning_rate": float(params["learning_rate"])}}
    )
    model.compile(
        loss={task: params["loss"] for task, _ in TASKS},
        optimizer=optimizer,
        metrics={task: [params.get("metrics", "accuracy")] for task, _ in TASKS},
    )
    return model


def run(params: dict[str, Any]) -> keras.callbacks.History:
    keras.utils.set_random_seed(int(params["rng_seed"]))
    x_train, ys_train, x_val, ys_val = load_data(int(params["reports"]), int(params["vocabulary"]))
    model = build_model(params, x_train.shape[1])
    names = [task for task, _ in TASKS]
    return model.fit(
        x_train,
        dict(zip(names, ys_train, strict=True)),
        batch_size=int(params["batch_size"]),
        epochs=int(params["epochs"]),
        validation_data=(x_val, dict(zip(names, ys_val, strict=True))),
        verbose=0,
    )


if __name__ == "__main__":
    benchmark_main(initialize_parameters, run, description=__doc__.splitlines()[0])
