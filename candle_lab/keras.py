"""Keras integration: live per-epoch metrics, stop requests and the trial timeout.

Inside a trial, every ``Model.fit`` gets a :class:`LiveMetrics` callback automatically
(a CANDLE benchmark runs unchanged); adding one by hand is harmless. Each epoch's logs go
to the driver through dask; training stops at an epoch boundary when the driver asks
(early stopping, a user's stop) or when the next epoch would overrun the trial's timeout
(as CANDLE's timeout callback did, before the batch system kills the job). In a
resumable trial (``trial.resume``) the first ``fit`` starts from the last epoch an earlier
attempt saved and saves each epoch; in a PBT trial, ``fit`` trains the interval's epochs
from the member's checkpoint and saves the next one (:mod:`candle_lab.trial.checkpoint`).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from typing import Any

from candle_lab.errors import MissingDependency
from candle_lab.store.layout import CHECKPOINT_FILE
from candle_lab.trial.checkpoint import Checkpoint, current_checkpoint
from candle_lab.trial.context import current_trial, report
from candle_lab.trial.gpus import memory_caps, parse_visible

log = logging.getLogger(__name__)


try:
    import keras
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise MissingDependency("tensorflow", "keras", "Keras live metrics") from exc


class LiveMetrics(keras.callbacks.Callback):
    """Reports each epoch's logs to the driver; stops on request or before the timeout."""

    def __init__(self) -> None:
        super().__init__()
        self._epoch_start = time.monotonic()
        self._longest_epoch = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_start = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        values = {k: float(v) for k, v in (logs or {}).items() if _is_number(v)}
        stop = report(epoch + 1, **values)
        self._longest_epoch = max(self._longest_epoch, time.monotonic() - self._epoch_start)
        ctx = current_trial()
        left = ctx.time_left() if ctx is not None else None
        if ctx is not None and left is not None and left < 1.5 * self._longest_epoch:
            log.info("trial %s: stopping before its timeout (%.0f s left)", ctx.task.trial_id, left)
            ctx.stop("timeout")
            stop = True
        if stop:
            self.model.stop_training = True


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the weights and the optimizer's state after each epoch (resumable trials)."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        super().__init__()
        self.checkpoint = checkpoint

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        try:
            values = {k: float(v) for k, v in (logs or {}).items() if _is_number(v)}
            self.checkpoint.save_keras(self.model, epoch + 1, values)
        except OSError as exc:  # a full disk: the trial goes on, a cut-off attempt starts earlier
            log.warning("could not save the checkpoint of epoch %d: %s", epoch + 1, exc)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def configure_tensorflow(cores: int, share: float | None = None) -> None:
    """TensorFlow's thread pools sized to the trial's cores; memory growth on every GPU it
    sees (its own, through ``CUDA_VISIBLE_DEVICES``), and with a GPU ``share`` below 1 (trials
    sharing a GPU) a memory cap of that share of the GPU (less 10 %), when ``nvidia-smi``
    says how much it has. Only possible before TensorFlow starts its runtime, which is
    during the worker's first trial."""
    try:
        import tensorflow as tf
    except ImportError:  # another Keras backend
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(cores)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, cores))
        gpus = tf.config.list_physical_devices("GPU")
        caps = memory_caps(share, parse_visible(os.environ.get("CUDA_VISIBLE_DEVICES"))) if gpus else []
        for gpu, cap in zip(gpus, [*caps, *[None] * len(gpus)], strict=False):
            if cap is None:
                tf.config.experimental.set_memory_growth(gpu, True)
            else:  # growth within the cap (TF_FORCE_GPU_ALLOW_GROWTH, set for the worker)
                limit = tf.config.LogicalDeviceConfiguration(memory_limit=cap)
                tf.config.set_logical_device_configuration(gpu, [limit])
                log.info("GPU %s: this trial may use %d MiB (a %.2g share)", gpu.name, cap, share)
    except (RuntimeError, ValueError):
        log.debug("TensorFlow already started; its settings stay as they are")


def _trial_callbacks(callbacks: Any, saving: Checkpoint | None = None) -> list[Any]:
    ctx = current_trial()
    out = list(callbacks or [])
    if ctx is None:
        return out
    if saving is not None:  # before LiveMetrics: an epoch reported is an epoch saved
        out.append(EpochCheckpoint(saving))
    if not any(isinstance(c, LiveMetrics) for c in out):
        out.append(LiveMetrics())
    if ctx.task.checkpoint and not any(isinstance(c, keras.callbacks.ModelCheckpoint) for c in out):
        path = ctx.prepare_dir() / CHECKPOINT_FILE
        out.append(keras.callbacks.ModelCheckpoint(str(path), monitor=ctx.task.metric, save_best_only=True))
    return out


def _restored(model: Any, checkpoint: Checkpoint) -> bool:
    """Whether the last saved epoch was loaded into ``model``; a model whose weights only
    exist once it trains (no input shape), or that changed, starts again from epoch 1."""
    try:
        restored = checkpoint.restore_keras(model)
    except Exception as exc:
        log.warning("could not resume from %s (%s): training from epoch 1", checkpoint.restore_dir, exc)
        return False
    if restored:
        checkpoint.resend()
    return restored


def install_fit_hook() -> None:
    """Make every ``fit`` inside a trial report live (once per process)."""
    fit = keras.Model.fit
    if getattr(fit, "_candle_lab", False):
        return
    ctx = current_trial()
    configure_tensorflow(ctx.task.cores if ctx is not None else 1, ctx.task.gpu_share if ctx is not None else None)

    @functools.wraps(fit)
    def fit_with_live_metrics(self: Any, *args: Any, callbacks: Any = None, **kwargs: Any) -> Any:
        ctx = current_trial()
        checkpoint = current_checkpoint()
        if ctx is None or checkpoint is None or ctx.checkpoint_by_model:
            return fit(self, *args, callbacks=_trial_callbacks(callbacks), **kwargs)
        if not checkpoint.is_interval:  # resumable: the first fit, from the last saved epoch
            if ctx.checkpoint_restored:
                return fit(self, *args, callbacks=_trial_callbacks(callbacks), **kwargs)
            ctx.checkpoint_restored = True
            if _restored(self, checkpoint):
                epochs = int(args[3] if len(args) > 3 else kwargs.get("epochs", 1))
                kwargs["initial_epoch"] = min(checkpoint.initial_epoch, epochs - 1)  # at least one epoch runs
                log.info("trial %s resumes after epoch %d", ctx.task.trial_id, kwargs["initial_epoch"])
            return fit(self, *args, callbacks=_trial_callbacks(callbacks, checkpoint), **kwargs)
        # PBT: this interval's epochs only, from the checkpoint it starts from
        if not ctx.checkpoint_restored:
            ctx.checkpoint_restored = True
            checkpoint.restore_keras(self)
        if len(args) > 3:  # fit(x, y, batch_size, epochs, ...)
            args = (*args[:3], checkpoint.epochs, *args[4:])
        else:
            kwargs["epochs"] = checkpoint.epochs
        kwargs["initial_epoch"] = checkpoint.initial_epoch
        history = fit(self, *args, callbacks=_trial_callbacks(callbacks), **kwargs)
        checkpoint.save_keras(self)
        return history

    fit_with_live_metrics._candle_lab = True  # type: ignore[attr-defined]
    keras.Model.fit = fit_with_live_metrics
