"""CANDLE's Keras utilities: ``TerminateOnTimeOut``, ``CandleRemoteMonitor``,
``build_optimizer``, ``build_initializer``, ``compute_trainable_params``,
``set_parallelism_threads`` (and ``set_seed``; checkpoint/restart from
:mod:`.ckpt_keras_utils`). Importing this module imports Keras."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from candle_lab.compat.candle.ckpt_keras_utils import CandleCheckpointCallback, CandleCkptKeras, restart
from candle_lab.compat.candle.helper_utils import set_seed
from candle_lab.errors import MissingDependency, SpecError, expected_got

try:
    import keras
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise MissingDependency("tensorflow", "keras", "The CANDLE compatibility library's Keras utilities") from exc

__all__ = [
    "CandleCheckpointCallback",
    "CandleCkptKeras",
    "CandleRemoteMonitor",
    "TerminateOnTimeOut",
    "build_initializer",
    "build_optimizer",
    "compute_trainable_params",
    "restart",
    "set_parallelism_threads",
    "set_seed",
]

log = logging.getLogger(__name__)


class TerminateOnTimeOut(keras.callbacks.Callback):
    """Stops training at the end of the first epoch that ends ``timeout_in_sec`` seconds
    or more after training began (``-1`` or ``None``: no timeout)."""

    def __init__(self, timeout_in_sec: float | None = 10) -> None:
        super().__init__()
        self.timeout_in_sec = -1.0 if timeout_in_sec is None else float(timeout_in_sec)
        self.run_timestamp: float | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.run_timestamp = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.timeout_in_sec < 0 or self.run_timestamp is None:
            return
        elapsed = time.monotonic() - self.run_timestamp
        if elapsed >= self.timeout_in_sec:
            log.info("Timeout: ran %.1f s, at most %.1f s: stopping training", elapsed, self.timeout_in_sec)
            self.model.stop_training = True


class CandleRemoteMonitor(keras.callbacks.Callback):
    """Accepted for compatibility and does nothing: inside a candle_lab trial every
    epoch's metrics already reach the driver (see :mod:`candle_lab.keras`)."""

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.params_candle = params


def build_optimizer(optimizer_type: str, lr: float, kerasDefaults: dict[str, Any]) -> Any:
    """A Keras optimizer by CANDLE name (``sgd``, ``rmsprop``, ``adagrad``, ``adadelta``,
    ``adam``, ``adamax``, ``nadam``) with ``keras_default_config()`` settings."""
    opt = keras.optimizers
    kd = kerasDefaults
    name = str(optimizer_type).lower()
    if name == "sgd":
        return opt.SGD(learning_rate=lr, momentum=kd["momentum_sgd"], nesterov=kd["nesterov_sgd"])
    if name == "rmsprop":
        return opt.RMSprop(learning_rate=lr, rho=kd["rho"], epsilon=kd["epsilon"])
    if name == "adagrad":
        return opt.Adagrad(learning_rate=lr, epsilon=kd["epsilon"])
    if name == "adadelta":
        return opt.Adadelta(learning_rate=lr, rho=kd["rho"], epsilon=kd["epsilon"])
    if name in ("adam", "adamax", "nadam"):
        cls = {"adam": opt.Adam, "adamax": opt.Adamax, "nadam": opt.Nadam}[name]
        return cls(learning_rate=lr, beta_1=kd["beta_1"], beta_2=kd["beta_2"], epsilon=kd["epsilon"])
    raise SpecError.one(
        "optimizer", expected_got("one of sgd, rmsprop, adagrad, adadelta, adam, adamax, nadam", optimizer_type)
    )


def build_initializer(
    initializer_type: str,
    kerasDefaults: dict[str, Any],
    seed: int | None = None,
    constant: float = 0.0,
) -> Any:
    """A Keras initializer by CANDLE name (``constant``, ``uniform``, ``normal``,
    ``glorot_uniform``, ``glorot_normal``, ``lecun_uniform``, ``he_normal``)."""
    init = keras.initializers
    kd = kerasDefaults
    name = str(initializer_type).lower()
    if name == "constant":
        return init.Constant(value=constant)
    if name == "uniform":
        return init.RandomUniform(minval=kd["minval_uniform"], maxval=kd["maxval_uniform"], seed=seed)
    if name == "normal":
        return init.RandomNormal(mean=kd["mean_normal"], stddev=kd["stddev_normal"], seed=seed)
    named = {
        "glorot_uniform": init.GlorotUniform,
        "glorot_normal": init.GlorotNormal,
        "lecun_uniform": init.LecunUniform,
        "he_normal": init.HeNormal,
    }
    if name in named:
        return named[name](seed=seed)
    raise SpecError.one(
        "initialization",
        expected_got(
            "one of constant, uniform, normal, glorot_uniform, glorot_normal, lecun_uniform, he_normal",
            initializer_type,
        ),
    )


def compute_trainable_params(model: Any) -> dict[str, int]:
    """Numbers of trainable, non-trainable and all weights of a Keras model."""

    def count(weights: Any) -> int:
        total = 0
        for w in weights:
            size = 1
            for dim in w.shape:
                size *= int(dim)
            total += size
        return total

    trainable = count(model.trainable_weights)
    frozen = count(model.non_trainable_weights)
    return {"trainable_params": trainable, "non_trainable_params": frozen, "total_params": trainable + frozen}


def set_parallelism_threads() -> None:
    """TensorFlow's thread pools from ``$NUM_INTRA_THREADS`` / ``$NUM_INTER_THREADS``
    when set (inside a trial candle_lab sizes them to the trial's cores already)."""
    try:
        import tensorflow as tf
    except ImportError:
        return
    try:
        if os.environ.get("NUM_INTRA_THREADS"):
            tf.config.threading.set_intra_op_parallelism_threads(int(os.environ["NUM_INTRA_THREADS"]))
        if os.environ.get("NUM_INTER_THREADS"):
            tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["NUM_INTER_THREADS"]))
    except RuntimeError:
        log.debug("TensorFlow already started; its thread pools stay as they are")
