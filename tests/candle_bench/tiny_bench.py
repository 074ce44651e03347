"""A tiny CANDLE-style benchmark (unchanged CANDLE shape: initialize_parameters + run)."""

from __future__ import annotations

import os
import time

import numpy as np

from candle_lab.models.candle import finalize_parameters

HERE = os.path.dirname(os.path.abspath(__file__))


def initialize_parameters(default_model: str = "default_model.txt") -> dict:
    return finalize_parameters(os.path.join(HERE, default_model))


def run(params: dict):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(int(params["rng_seed"]))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, :2].sum(axis=1) > 0).astype("float32")
    model = tf.keras.Sequential(
        [tf.keras.Input((8,)), tf.keras.layers.Dense(params["units"], activation=params["activation"]),
         tf.keras.layers.Dense(1, activation="sigmoid")]
    )
    model.compile(optimizer=tf.keras.optimizers.Adam(params["learning_rate"]), loss="binary_crossentropy")
    if params.get("epoch_sleep"):
        class Slow(tf.keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                time.sleep(params["epoch_sleep"])
        callbacks = [Slow()]
    else:
        callbacks = []
    return model.fit(x, y, validation_split=0.25, epochs=params["epochs"], batch_size=32, verbose=0,
                     callbacks=callbacks)
