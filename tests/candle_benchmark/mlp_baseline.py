"""MLP baseline (Keras): a CANDLE benchmark module written the way CANDLE's are.

Binary classification of synthetic samples with a small dense network whose layers are
the list parameter ``dense``. Runs unchanged under candle_lab (``kind: candle``) and
standalone: ``python -m candle_lab.compat mlp_baseline.py --epochs 1``.
"""

import os

import candle
import mlp
import numpy as np
from tensorflow import keras
from tensorflow.keras import backend as K
from tensorflow.keras.callbacks import CSVLogger
from tensorflow.keras.layers import Dense, Dropout


def initialize_parameters(default_model="mlp_default_model.txt"):
    # Build benchmark object
    mlpBmk = mlp.BenchmarkMLP(
        mlp.file_path, default_model, "keras", prog="mlp_baseline", desc="Synthetic binary classification"
    )
    # Initialize parameters
    gParameters = candle.finalize_parameters(mlpBmk)
    return gParameters


def load_data(gParameters):
    rng = np.random.default_rng(gParameters["data_seed"])
    samples, features = gParameters["samples"], gParameters["features"]
    x = rng.normal(size=(samples, features)).astype("float32")
    w = rng.normal(size=features)
    y = ((x @ w + gParameters["noise"] * rng.normal(size=samples)) > 0).astype("float32")
    split = int(samples * (1 - gParameters["val_split"]))
    return x[:split], y[:split], x[split:], y[split:]


def run(gParameters):
    candle.set_seed(gParameters["rng_seed"])
    x_train, y_train, x_val, y_val = load_data(gParameters)

    model = keras.Sequential()
    model.add(keras.Input((x_train.shape[1],)))
    for units in gParameters["dense"]:
        model.add(Dense(units, activation=gParameters["activation"], use_bias=gParameters["use_bias"]))
        if gParameters["dropout"]:
            model.add(Dropout(gParameters["dropout"]))
    model.add(Dense(1, activation=gParameters["out_activation"]))

    kerasDefaults = candle.keras_default_config()
    optimizer = candle.build_optimizer(gParameters["optimizer"], gParameters["learning_rate"], kerasDefaults)
    model.compile(loss=gParameters["loss"], optimizer=optimizer, metrics=["accuracy"])

    output_dir = gParameters["output_dir"]
    csv_logger = CSVLogger(os.path.join(output_dir, "training.log"))
    candleRemoteMonitor = candle.CandleRemoteMonitor(params=gParameters)
    timeoutMonitor = candle.TerminateOnTimeOut(gParameters["timeout"])
    history = model.fit(
        x_train,
        y_train,
        batch_size=gParameters["batch_size"],
        epochs=gParameters["epochs"],
        verbose=0,
        validation_data=(x_val, y_val),
        callbacks=[csv_logger, candleRemoteMonitor, timeoutMonitor],
    )
    return history


def main():
    gParameters = initialize_parameters()
    run(gParameters)


if __name__ == "__main__":
    main()
    try:
        K.clear_session()
    except AttributeError:  # theano does not have this function
        pass
