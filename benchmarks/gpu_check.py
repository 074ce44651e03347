"""GPU check (scripts/gpu-check): fractional GPUs on a real GPU machine, in one go.

TensorFlow's GPUs, then an asynchronous search of the gallery's ``unet_nuclei`` on the
local cluster with ``gpus_per_trial`` 0.25 (four trials share each GPU; one worker per
GPU) for about three minutes, then what the GPU sampler and the records say:

- GPU busy %: the mean of the trials' ``sys.gpu_util`` samples (all of them, and after the
  first 10 % of the search, once every worker has started);
- each trial's GPU memory peak (its process's, ``sys.gpu_proc_mem_mb``, where
  ``nvidia-smi`` lists it; else the memory used on its GPU);
- trials per GPU at once (from each record's ``gpu`` and its start and end);
- trials on a GPU they were not given: a record whose ``gpu`` is not its worker's slot
  (:func:`candle_lab.trial.gpus.assign`), or a process holding memory on another GPU
  (``sys.gpu_foreign_mem_mb``).

Targets, printed PASS/FAIL: busy >= 90 %, at most ``1/share`` trials per GPU at once, no
trial on a foreign GPU. ``python -m benchmarks.gpu_check --help`` for the sizes.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from candle_lab.trial.gpus import FOREIGN_MEMORY, GPU_MEMORY, GPU_UTIL, PROCESS_MEMORY, assign

BUSY_TARGET = 90.0


# ------------------------------------------------------------------ analysis (pure, tested without a GPU)
def gpu_ids(text: Any) -> list[str]:
    """A record's ``gpu`` ("0", "0,1", None) as ids."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return []
    return [g.strip() for g in str(text).split(",") if g.strip()]


def most_at_once(trials: pd.DataFrame, now: float | None = None) -> dict[str, int]:
    """Per GPU id, the most trials that ran on it at the same moment (a trial ends where
    the next begins: ends are counted before starts at the same time)."""
    ran = trials[trials["started"].notna()]
    events: dict[str, list[tuple[float, int]]] = {}
    end_now = time.time() if now is None else now
    for gpu, start, end in zip(ran["gpu"], ran["started"], ran["ended"], strict=True):
        stop = float(end) if pd.notna(end) else end_now
        for g in gpu_ids(gpu):
            events.setdefault(g, []).extend([(float(start), 1), (stop, -1)])
    out = {}
    for g, changes in events.items():
        changes.sort(key=lambda c: (c[0], c[1]))
        out[g] = int(np.max(np.cumsum([c[1] for c in changes])))
    return out


def foreign_trials(trials: pd.DataFrame, metrics: pd.DataFrame, share: float,
                   visible: Sequence[str] | None = None) -> list[int]:
    """Trials that ran on a GPU they were not given: on the local cluster worker ``i``
    has the GPUs of slot ``i`` (of ``visible``: the machine's when None); a record that
    names others, or a trial whose process held memory on another GPU, ran where it was
    not sent."""
    bad: set[int] = set()
    ran = trials[trials["started"].notna()]
    for trial_id, worker, gpu in zip(ran["trial_id"], ran["worker"], ran["gpu"], strict=True):
        name = str(worker)
        if not name.isdigit():
            continue  # not a local worker: no slot to check against
        if gpu_ids(gpu) != assign(visible, int(name), share):
            bad.add(int(trial_id))
    if not metrics.empty:
        foreign = metrics[(metrics["name"] == FOREIGN_MEMORY) & (pd.to_numeric(metrics["value"]) > 0)]
        bad.update(int(t) for t in foreign["trial_id"].unique())
    return sorted(bad)


def busy(metrics: pd.DataFrame, skip: float = 0.1) -> tuple[float | None, float | None]:
    """Mean ``sys.gpu_util`` over every sample, and over the samples after the first
    ``skip`` of the sampled time (workers still starting: TensorFlow, data)."""
    rows = metrics[metrics["name"] == GPU_UTIL] if not metrics.empty else metrics
    if rows.empty:
        return None, None
    values = pd.to_numeric(rows["value"]).to_numpy(float)
    times = pd.to_numeric(rows["time"]).to_numpy(float)
    t0, t1 = float(times.min()), float(times.max())
    steady = values[times >= t0 + skip * (t1 - t0)]
    return float(values.mean()), float(steady.mean()) if steady.size else None


def memory_peaks(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per trial: ``process_mb`` (its process's peak, NaN when not listed) and ``gpu_mb``
    (the peak memory used on its GPUs, every process on them)."""
    if metrics.empty:
        return pd.DataFrame({"process_mb": [], "gpu_mb": []}, dtype=float)
    values = pd.to_numeric(metrics["value"], errors="coerce")
    peaks = {
        column: values[metrics["name"] == name].groupby(metrics["trial_id"]).max()
        for column, name in (("process_mb", PROCESS_MEMORY), ("gpu_mb", GPU_MEMORY))
    }
    return pd.DataFrame(peaks).astype(float)


@dataclass(frozen=True)
class Check:
    """What the check found."""

    trials: int
    completed: int
    share: float
    busy_all: float | None
    busy_steady: float | None
    at_once: dict[str, int]
    foreign: list[int]
    memory: pd.DataFrame = field(repr=False)

    @property
    def allowed(self) -> int:
        return max(1, round(1 / self.share)) if self.share < 1 else 1

    def targets(self) -> list[tuple[str, bool, str]]:
        """(target, passed, what was measured)."""
        steady = self.busy_steady
        most = max(self.at_once.values(), default=0)
        return [
            (f"GPU busy >= {BUSY_TARGET:.0f}%", steady is not None and steady >= BUSY_TARGET,
             "no samples" if steady is None else f"{steady:.1f}%"),
            (f"at most {self.allowed} trials per GPU at once", bool(self.at_once) and most <= self.allowed,
             f"{most} ({', '.join(f'GPU {g}: {n}' for g, n in sorted(self.at_once.items()))})"),
            ("no trial on a GPU it was not given", not self.foreign,
             "none" if not self.foreign else f"trials {self.foreign}"),
        ]

    @property
    def passed(self) -> bool:
        return all(ok for _, ok, _ in self.targets())

    def summary(self) -> str:
        lines = [f"trials: {self.trials} ({self.completed} completed), {self.allowed} per GPU (share {self.share})"]
        lines.append("GPU busy: " + ("no samples" if self.busy_all is None else
                                     f"{self.busy_all:.1f}% over every sample, {self.busy_steady or 0:.1f}% "
                                     "after the first 10% of the search"))
        if not self.memory.empty:
            mem = self.memory
            own = mem["process_mb"].dropna()
            lines.append(
                "GPU memory per trial (peak): "
                + (f"its process {own.min():.0f}-{own.max():.0f} MiB (median {own.median():.0f}); "
                   if not own.empty else "its process: not listed by nvidia-smi; ")
                + f"its GPU (all trials on it) up to {mem['gpu_mb'].max():.0f} MiB"
            )
        lines += [f"{'PASS' if ok else 'FAIL'}  {name}: {measured}" for name, ok, measured in self.targets()]
        return "\n".join(lines)


def analyse(trials: pd.DataFrame, metrics: pd.DataFrame, share: float,
            visible: Sequence[str] | None = None) -> Check:
    all_busy, steady = busy(metrics)
    return Check(
        trials=len(trials),
        completed=int((trials["state"] == "completed").sum()) if not trials.empty else 0,
        share=share,
        busy_all=all_busy,
        busy_steady=steady,
        at_once=most_at_once(trials) if not trials.empty else {},
        foreign=foreign_trials(trials, metrics, share, visible) if not trials.empty else [],
        memory=memory_peaks(metrics),
    )


# ------------------------------------------------------------------ the run
def machine_gpus() -> list[str]:
    """GPU indices ``nvidia-smi`` lists (none without it)."""
    if shutil.which("nvidia-smi") is None:
        return []
    result = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                            text=True, check=False)
    return [line.strip() for line in result.stdout.splitlines() if line.strip().isdigit()]


def tensorflow_gpus() -> list[str]:
    """TensorFlow's GPUs, from a fresh process (this one must not hold a GPU context)."""
    code = "import tensorflow as tf; print('\\n'.join(d.name for d in tf.config.list_physical_devices('GPU')))"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        print(result.stderr[-2000:], file=sys.stderr)
    return [line for line in result.stdout.splitlines() if line.strip()]


def spec(gpus: int, share: float, seconds: float, *, images: int, image_size: int, epochs: int) -> dict[str, Any]:
    """``unet_nuclei`` from the gallery, sized to keep a GPU busy, on ``gpus`` local workers."""
    from candle_lab.gallery import gallery_model

    folder = gallery_model("unet_nuclei").folder
    return {
        "name": "gpu-check",
        "description": "scripts/gpu-check: unet_nuclei with fractional GPUs",
        "model": {"kind": "candle", "ref": "unet_nuclei_baseline", "path": str(folder)},
        "space": [
            {"name": "depth", "type": "integer", "low": 2, "high": 4},
            {"name": "filters", "type": "categorical", "choices": [16, 32], "ordered": True},
            {"name": "kernel_size", "type": "categorical", "choices": [3, 5], "ordered": True},
            {"name": "dropout", "type": "real", "low": 0.0, "high": 0.3},
            {"name": "activation", "type": "categorical", "choices": ["relu", "elu", "tanh"]},
            {"name": "learning_rate", "type": "real", "low": 3e-4, "high": 1e-2, "log": True},
            {"name": "batch_size", "type": "constant", "value": 32},
            {"name": "epochs", "type": "constant", "value": epochs},
            {"name": "images", "type": "constant", "value": images},
            {"name": "image_size", "type": "constant", "value": image_size},
        ],
        "objective": {"metric": "val_loss", "direction": "minimize"},
        "search": {"algorithm": "async-bo", "initial_points": 2 * gpus * max(1, round(1 / share)), "seed": 19},
        "budget": {"max_time": seconds, "max_trials": 10_000},
        "compute": {"profile": "local", "workers": gpus, "gpus": 1, "gpus_per_trial": share,
                    "cores": max(1, (os.cpu_count() or 1) // gpus)},  # split between the trials sharing a GPU
        "trial": {"retries": 0, "timeout": "5m", "keep_models": "none"},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="search budget (default 180)")
    parser.add_argument("--share", type=float, default=0.25, help="gpus_per_trial (default 0.25: 4 per GPU)")
    parser.add_argument("--images", type=int, default=1600)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--sample", type=float, default=2.0, help="seconds between GPU samples (default 2)")
    parser.add_argument("--root", type=Path, default=None, help="experiments folder (default: a temporary one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    gpus = machine_gpus()
    if not gpus:
        print("no GPU here: gpu-check skipped")
        return 0
    print(f"nvidia-smi: GPUs {', '.join(gpus)}")
    seen = tensorflow_gpus()
    print(f"TensorFlow sees {len(seen)} GPU(s): {', '.join(seen) or 'none'}")
    os.environ["CANDLE_LAB_GPU_SAMPLE"] = str(args.sample)  # read by the driver: each trial's sampler
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import candle_lab

    root = args.root or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    started = time.monotonic()
    exp = candle_lab.run(spec(len(gpus), args.share, args.seconds, images=args.images, image_size=args.image_size,
                              epochs=args.epochs), root=root)
    print(f"search: {time.monotonic() - started:.0f} s, experiment {exp.path}")
    visible = [g.strip() for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",")] \
        if os.environ.get("CUDA_VISIBLE_DEVICES") else None
    check = analyse(exp.trials, exp.metrics, args.share, visible)
    print(check.summary())
    tf_ok = bool(seen)
    print(f"{'PASS' if tf_ok else 'FAIL'}  TensorFlow sees the GPU")
    return 0 if check.passed and tf_ok else 1


if __name__ == "__main__":
    sys.exit(main())
