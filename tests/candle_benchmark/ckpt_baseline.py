"""The MLP benchmark with CANDLE's checkpoint/restart, written the way CANDLE benchmarks
use it (``CandleCkptKeras``, ``restart``, ``initial_epoch``). Runs unchanged under
candle_lab's population based training, and resumes a killed standalone run."""

import os

import candle
import mlp_baseline
from tensorflow import keras


class ValLossAtStart(keras.callbacks.Callback):
    """Logs the validation loss of the weights training starts from (a test probe)."""

    def __init__(self, x_val, y_val, initial_epoch):
        super().__init__()
        self.data, self.initial_epoch = (x_val, y_val), initial_epoch

    def on_train_begin(self, logs=None):
        loss = self.model.evaluate(*self.data, batch_size=32, verbose=0)
        loss = loss[0] if isinstance(loss, list) else loss
        import candle_lab

        candle_lab.report(self.initial_epoch, val_loss_at_start=float(loss))


def initialize_parameters(default_model="mlp_default_model.txt"):
    return mlp_baseline.initialize_parameters(default_model)


def run(gParameters):
    candle.set_seed(gParameters["rng_seed"])
    x_train, y_train, x_val, y_val = mlp_baseline.load_data(gParameters)
    model = keras.Sequential([keras.Input((x_train.shape[1],))])
    for units in gParameters["dense"]:
        model.add(keras.layers.Dense(units, activation=gParameters["activation"]))
    model.add(keras.layers.Dense(1, activation=gParameters["out_activation"]))
    optimizer = candle.build_optimizer(
        gParameters["optimizer"], gParameters["learning_rate"], candle.keras_default_config()
    )
    model.compile(loss=gParameters["loss"], optimizer=optimizer, metrics=["accuracy"])

    ckpt = candle.CandleCkptKeras(gParameters, verbose=False)
    ckpt.set_model(model)
    J = ckpt.restart(model)
    initial_epoch = J["epoch"] if J is not None else 0

    history = model.fit(
        x_train,
        y_train,
        batch_size=gParameters["batch_size"],
        epochs=gParameters["epochs"],
        initial_epoch=initial_epoch,
        verbose=0,
        validation_data=(x_val, y_val),
        callbacks=[
            ckpt,
            ValLossAtStart(x_val, y_val, initial_epoch),
            keras.callbacks.CSVLogger(os.path.join(gParameters["output_dir"], "training.log"), append=True),
        ],
    )
    ckpt.report_final()
    return history


def main():
    run(initialize_parameters())


if __name__ == "__main__":
    main()
