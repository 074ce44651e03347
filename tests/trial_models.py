"""Models used by the engine tests; imported by dask workers (``model.path`` = this folder)."""

from __future__ import annotations

import math
import os
import time
from typing import Any

import candle_lab
from candle_lab.trial import current_trial
from candle_lab.trial.checkpoint import current_checkpoint


def _attempt() -> int:
    ctx = current_trial()
    return ctx.task.attempt if ctx else 1


def sleepy(params: dict[str, Any]) -> dict[str, float]:
    time.sleep(float(params.get("sleep", 0.3)))
    x = float(params.get("x", 0.0))
    return {"loss": (x - 0.3) ** 2, "x": x}


def curve(params: dict[str, Any]) -> float:
    x = float(params["x"])
    for step in range(1, 4):
        candle_lab.report(step, loss=x / step)
    return x


def flaky(params: dict[str, Any]) -> float:
    """Raises on the first attempt, succeeds on the second."""
    if _attempt() == 1:
        raise RuntimeError("flaky model: first attempt fails")
    return float(params["x"])


def broken(params: dict[str, Any]) -> float:
    if params["x"] > 0.5:
        raise ValueError(f"broken model: x={params['x']} is too large")
    return float(params["x"])


def nan_model(params: dict[str, Any]) -> float:
    return math.nan if params["x"] > 0.5 else float(params["x"])


def hang(params: dict[str, Any]) -> float:
    if params["x"] > 0.5:
        time.sleep(60)
    return float(params["x"])


def crash_once(params: dict[str, Any]) -> float:
    """Kills its worker process on the first attempt (a lost worker)."""
    if _attempt() == 1:
        os._exit(3)
    return float(params["x"])


def epochs(params: dict[str, Any]) -> dict[str, float]:
    """A training loop: 'loss' falls by epoch towards x; honours stop requests."""
    x = float(params["x"])
    loss = 1.0
    for epoch in range(1, int(params.get("epochs", 12)) + 1):
        time.sleep(float(params.get("epoch_seconds", 0.25)))
        loss = x + 1.0 / epoch
        if candle_lab.report(epoch, loss=loss):
            break
    return {"loss": loss}


def out_of_memory(params: dict[str, Any]) -> float:
    raise MemoryError("could not allocate 40 GiB")


def keras_history(params: dict[str, Any]) -> Any:
    """A callable returning a Keras History (the model is kept as the best one)."""
    import numpy as np
    import tensorflow as tf

    x = np.linspace(-1, 1, 64, dtype="float32").reshape(-1, 1)
    model = tf.keras.Sequential([tf.keras.Input((1,)), tf.keras.layers.Dense(4), tf.keras.layers.Dense(1)])
    model.compile(optimizer=tf.keras.optimizers.SGD(float(params["x"])), loss="mse")
    return model.fit(x, 2 * x, validation_split=0.25, epochs=3, verbose=0)


def tf_resources(params: dict[str, Any]) -> dict[str, float]:
    """Fits a tiny Keras model, then reports what TensorFlow was given."""
    import numpy as np
    import tensorflow as tf

    x = np.zeros((8, 1), dtype="float32")
    model = tf.keras.Sequential([tf.keras.Input((1,)), tf.keras.layers.Dense(1)])
    model.compile(loss="mse")
    model.fit(x, x, epochs=1, verbose=0)
    return {
        "objective": 0.0,
        "intra_threads": float(tf.config.threading.get_intra_op_parallelism_threads()),
        "omp_threads": float(os.environ["OMP_NUM_THREADS"]),
        "visible_gpus": float(len(tf.config.list_physical_devices("GPU"))),
        "cuda_hidden": float(os.environ.get("CUDA_VISIBLE_DEVICES") == ""),
    }


def gpu_probe(params: dict[str, Any]) -> dict[str, float]:
    """What a trial sees: its GPU (CUDA_VISIBLE_DEVICES) and its SLURM job (also written
    to the run folder at the start, for tests that cancel the job mid-trial)."""
    ctx = current_trial()
    if ctx is not None:
        (ctx.prepare_dir() / "slurm_job").write_text(os.environ.get("SLURM_JOB_ID", ""))
    time.sleep(float(params.get("sleep", 1.0)))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return {
        "objective": float(params["x"]),
        "gpu_count": float(len([v for v in visible.split(",") if v])),
        "gpu_index": float(visible) if visible.isdigit() else -1.0,
        "slurm_job": float(os.environ.get("SLURM_JOB_ID", "-1")),
    }


def hog(params: dict[str, Any]) -> float:
    """x == 0 grows its memory until the worker's nanny kills it; others are quick."""
    if params["x"] == 0:
        held = []
        for _ in range(100):
            held.append(bytearray(40 << 20))
            for page in range(0, len(held[-1]), 4096):  # touch the pages: resident memory
                held[-1][page] = 1
            time.sleep(0.05)
    time.sleep(0.2)
    return float(params["x"])


def pid_sleepy(params: dict[str, Any]) -> float:
    """Leaves its worker's pid in its run folder (for tests that kill workers), then sleeps."""
    ctx = current_trial()
    assert ctx is not None
    (ctx.prepare_dir() / f"pid-{ctx.task.attempt}").write_text(str(os.getpid()))
    time.sleep(float(params.get("sleep", 1.0)))
    return float(params["x"])


def fills_disk(params: dict[str, Any]) -> float:
    """x == 1 writes into its run folder until the disk is full (and leaves it full)."""
    ctx = current_trial()
    if params["x"] == 1 and ctx is not None:
        with (ctx.prepare_dir() / "big.bin").open("wb") as out:
            for _ in range(160):
                out.write(b"\0" * (64 << 10))
                out.flush()
    return float(params["x"])


def unruly(params: dict[str, Any]) -> float:
    """x == 0 closes stdout and stderr; x == 1 forks a child process that prints; others print."""
    import multiprocessing
    import sys

    x = params["x"]
    print(f"x={x} first line")
    if x == 0:
        sys.stdout.close()
        sys.stderr.close()
        print(f"x={x} printed after closing stdout")
    elif x == 1:
        child = multiprocessing.get_context("fork").Process(target=print, args=(f"x={x} child line",))
        child.start()
        child.join(30)
        assert child.exitcode == 0, child.exitcode
    print(f"x={x} last line")
    return float(x)


def pbt_keras(params: dict[str, Any]) -> Any:
    """A small Keras regression, built, compiled and fitted as if PBT did not exist: the
    fit hook restores and saves its checkpoint and trains the interval's epochs."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (256, 4)).astype("float32")
    y = (x @ np.array([1.5, -2.0, 0.5, 1.0], dtype="float32") + 0.3 * np.sin(3 * x[:, 0])).reshape(-1, 1)
    tf.keras.utils.set_random_seed(int(params.get("seed", 0)))
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(16, activation="tanh"),
                                 tf.keras.layers.Dense(1)])
    model.compile(optimizer=tf.keras.optimizers.Adam(float(params["learning_rate"])), loss="mse")

    class AtStart(tf.keras.callbacks.Callback):  # the validation loss of the weights it starts from
        def on_train_begin(self, logs: Any = None) -> None:
            start = self.model.evaluate(x[192:], y[192:], batch_size=16, verbose=0)
            checkpoint = current_checkpoint()
            candle_lab.report(checkpoint.initial_epoch if checkpoint else 0, val_loss_at_start=float(start))

    return model.fit(x[:192], y[:192], validation_data=(x[192:], y[192:]), batch_size=16,
                     epochs=int(params.get("epochs", 100)), verbose=0, callbacks=[AtStart()])


def pbt_progress(params: dict[str, Any], checkpoint: Any) -> float:
    """Takes its checkpoint itself: 'progress' grows by the learning rate each epoch and
    is saved at the end; the first attempt of each of member 1's later intervals kills its
    worker."""
    import json

    progress = 0.0
    if checkpoint.restore_dir is not None:
        progress = json.loads((checkpoint.restore_dir / "progress.json").read_text())["progress"]
    ctx = current_trial()
    if ctx is not None and ctx.task.run_id.startswith("M001_") and checkpoint.initial_epoch and ctx.task.attempt == 1:
        time.sleep(0.3)
        os._exit(3)
    loss = 1.0
    for epoch in range(checkpoint.initial_epoch, checkpoint.epochs):
        time.sleep(float(params.get("epoch_seconds", 0.0)))
        progress += float(params["learning_rate"])
        loss = 1.0 / (1.0 + progress)
        candle_lab.report(epoch + 1, loss=loss, progress=progress)
    checkpoint.save_dir.mkdir(parents=True, exist_ok=True)
    (checkpoint.save_dir / "progress.json").write_text(json.dumps({"progress": progress}))
    return loss


def uq_regression(params: dict[str, Any]) -> float:
    """Polynomial ridge regression of sin(3x) + noise, dense data on [-1, 0.3), sparse on
    [0.3, 1]: trains on candle_lab.uq.resample(...) and reports predictions on a grid."""
    import numpy as np

    from candle_lab import uq

    rng = np.random.default_rng(7)
    x = np.concatenate([rng.uniform(-1.0, 0.3, 200), rng.uniform(0.3, 1.0, 10)])
    y = np.sin(3 * x) + 0.1 * rng.normal(size=len(x))
    xt, yt = uq.resample(x, y)
    degree, alpha = int(params["degree"]), float(params["alpha"])
    design = np.vander(xt, degree + 1)
    coef = np.linalg.solve(design.T @ design + alpha * np.eye(degree + 1), design.T @ yt)
    grid = np.linspace(-1.0, 1.0, 101)
    pred = np.vander(grid, degree + 1) @ coef
    candle_lab.report_predictions(np.sin(3 * grid), pred)
    return float(np.mean((np.vander(x, degree + 1) @ coef - y) ** 2))


def uq_keras(params: dict[str, Any]) -> Any:
    """A small Keras regression with (dropout > 0) or without a Dropout layer; predicts a
    held-out set through candle_lab.uq.predict (Monte Carlo dropout in a dropout member)."""
    import numpy as np
    import tensorflow as tf

    from candle_lab import uq

    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (300, 2)).astype("float32")
    y = (x[:, :1] - 2 * x[:, 1:] ** 2).astype("float32")
    layers = [tf.keras.Input((2,)), tf.keras.layers.Dense(32, activation="relu")]
    if float(params["dropout"]) > 0:
        layers.append(tf.keras.layers.Dropout(float(params["dropout"])))
    model = tf.keras.Sequential([*layers, tf.keras.layers.Dense(1)])
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="mse")
    history = model.fit(x[:240], y[:240], validation_data=(x[240:], y[240:]), epochs=5, batch_size=32, verbose=0)
    uq.report_predictions(y[240:], uq.predict(model, x[240:]))
    return history


def three_metrics(params: dict[str, Any]) -> dict[str, float]:
    """Reports accuracy, loss and val_loss each epoch (the objective is val_loss, which sorts
    last: a dashboard that falls back to the first metric shows the wrong one)."""
    x, lr = float(params["x"]), float(params["lr"])
    penalty = {"relu": 0.0, "tanh": 0.2, "elu": 0.4}[str(params["act"])]
    loss = val = 1.0
    for epoch in range(1, int(params.get("epochs", 3)) + 1):
        time.sleep(float(params.get("epoch_seconds", 0.05)))
        loss = (x - 0.3) ** 2 + penalty + abs(math.log10(lr) + 3) / 10 + 1.0 / epoch
        val = loss + 0.05
        if candle_lab.report(epoch, accuracy=1.0 - loss / 3, loss=loss, val_loss=val):
            break
    return {"accuracy": 1.0 - loss / 3, "loss": loss, "val_loss": val}


def keras_resume(params: dict[str, Any]) -> dict[str, float]:
    """An unchanged Keras loop of ``epochs`` epochs; its first attempt kills its worker as
    epoch ``die_at`` + 1 begins (epochs 1..die_at done and saved; ``settle`` seconds after
    the last one's metrics were sent, else they may die in flight). Returns the optimizer's
    step count: a resumed attempt continues it, a fresh one would count from 0."""
    import numpy as np
    import tensorflow as tf

    tf.keras.utils.set_random_seed(3)
    x = np.linspace(-1, 1, 64, dtype="float32").reshape(-1, 4)
    y = x.sum(axis=1, keepdims=True)
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(8, activation="tanh"),
                                 tf.keras.layers.Dense(1)])
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="mse")
    die_at = int(params.get("die_at", 3))
    settle = float(params.get("settle", 0.0))  # seconds for the last epoch's metrics to leave before dying

    class Die(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            if _attempt() == 1 and epoch == die_at:
                time.sleep(settle)
                os._exit(3)

    history = model.fit(x, y, batch_size=4, epochs=int(params.get("epochs", 6)), verbose=0, callbacks=[Die()])
    return {"loss": float(history.history["loss"][-1]), "iterations": float(model.optimizer.iterations.numpy()),
            "epochs_trained": float(len(history.history["loss"]))}


def resumable(params: dict[str, Any], checkpoint: Any) -> dict[str, float]:
    """A loop that takes its checkpoint itself: ``epochs`` epochs of ``epoch_seconds``,
    'total' grows by x each epoch and is saved after it; ends early when asked to stop
    (a walltime notice). Each attempt writes its SLURM job to the run folder's
    'slurm_job' and appends '<attempt> <SLURM job> <first epoch>' to its 'attempts' (for
    tests that cancel or signal it)."""
    import json

    ctx = current_trial()
    if ctx is not None:
        job = os.environ.get("SLURM_JOB_ID", "")
        (ctx.prepare_dir() / "slurm_job").write_text(job)
        with (ctx.run_dir / "attempts").open("a") as out:
            out.write(f"{ctx.task.attempt} {job} {checkpoint.initial_epoch + 1}\n")
    total = 0.0
    if checkpoint.restore_dir is not None:
        total = json.loads((checkpoint.restore_dir / "state.json").read_text())["total"]
    x = float(params["x"])
    for epoch in range(checkpoint.initial_epoch, int(params.get("epochs", 8))):
        time.sleep(float(params.get("epoch_seconds", 0.5)))
        total += x
        with checkpoint.saving(epoch + 1) as folder:
            (folder / "state.json").write_text(json.dumps({"total": total}))
        if candle_lab.report(epoch + 1, loss=1.0 / (1.0 + total), total=total):
            break
    return {"loss": 1.0 / (1.0 + total), "total": total}


def two_goals(params: dict[str, Any]) -> dict[str, float]:
    """ZDT1 on (x, y): 'error' against 'size' (both minimised), 'memory' grows with x; x
    above 0.95 runs out of memory."""
    x, y = float(params["x"]), float(params["y"])
    if x > 0.95:
        raise MemoryError("could not allocate 40 GiB")
    g = 1.0 + 9.0 * y
    return {"error": x, "size": g * (1.0 - math.sqrt(x / g)), "memory": 40.0 * x}


def edge(params: dict[str, Any]) -> float:
    """The loss falls towards the upper bound of 'lr' (the optimum lies beyond it)."""
    return -math.log(float(params["lr"])) + 0.1 * float(params["x"])


def layered(params: dict[str, Any]) -> dict[str, float]:
    """A network's shape as a conditional space describes it: ``dense`` a list of widths,
    ``momentum`` only with ``optimizer`` sgd; fails when a parameter is present that its
    condition excludes, or when ``dense`` is not a list of integers."""
    dense = params["dense"]
    if not isinstance(dense, list) or not all(isinstance(u, int) for u in dense):
        raise TypeError(f"dense should be a list of integers, got {dense!r}")
    if ("momentum" in params) != (params["optimizer"] == "sgd"):
        raise ValueError(f"momentum given with optimizer {params['optimizer']!r}")
    loss = sum(abs(math.log2(u) - 6) for u in dense) + abs(len(dense) - 2)
    loss += abs(float(params.get("momentum", 0.9)) - 0.9) if params["optimizer"] == "sgd" else 0.5
    return {"loss": loss}
