"""Checkpoints at epoch boundaries: resuming an interrupted trial, and the intervals of
population based training (``search.algorithm: pbt``).

**Resume** (``trial.resume``, on by default). A trial saves a checkpoint after each epoch
in its run folder (``RUN…/resume/epoch-NNNN/``, the newest named by ``resume/latest``).
When an attempt is cut off (its worker lost, its job's walltime, a preemption, the
driver restarted), the next attempt starts from the last saved epoch and the metrics of
the epochs before it stay recorded.

* **Keras, nothing to write.** Inside a trial the first ``Model.fit`` restores the
  weights and the optimizer's state (moments, step count) of the last checkpoint and
  trains from the epoch after it; every epoch it trains is saved. (A model that calls
  ``fit`` more than once resumes its first ``fit``.)
* **CANDLE modules** that checkpoint with ``CandleCkptKeras`` keep doing so: their run
  folder, hence their ``ckpt_directory``, is the same for every attempt, so
  ``restart(model)`` finds the last checkpoint; the automatic Keras handling stays off.
* **Anything else**: a ``kind: callable`` function that takes a ``checkpoint`` argument
  gets a :class:`Checkpoint` and does both itself (the automatic Keras handling is off
  for it)::

      def run(params, checkpoint):
          state = load(checkpoint.restore_dir) if checkpoint.restore_dir else fresh(params)
          for epoch in range(checkpoint.initial_epoch, checkpoint.epochs or params["epochs"]):
              loss = train_one_epoch(state, params)
              with checkpoint.saving(epoch + 1, {"loss": loss}) as folder:
                  save(state, folder)
              candle_lab.report(epoch + 1, loss=loss)
          return loss

  ``checkpoint.restore_keras(model)`` and ``checkpoint.save_keras(model, epoch)`` do the
  Keras part for functions that fit by hand. A checkpoint is complete once ``saving``
  ends: an attempt killed while it writes resumes from the one before.

**PBT.** Each PBT trial trains one interval of one member: from epoch ``initial_epoch``
to epoch ``epochs``, starting from the checkpoint in ``restore_dir`` (its member's
previous interval, or the member it copied), and leaves its own checkpoint in
``save_dir`` for the interval after it, whichever worker runs that one (run folders are
on storage every worker sees). Keras models need nothing (every ``fit`` trains the
interval's epochs from the checkpoint and saves after); the function above runs
unchanged (``checkpoint.epochs`` is the interval's end).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from candle_lab.store.layout import PBT_DIR, RESUME_DIR
from candle_lab.trial.context import current_trial
from candle_lab.trial.protocol import MetricsEvent

log = logging.getLogger(__name__)

WEIGHTS = "model.weights.h5"
OPTIMIZER = "optimizer.npz"
LATEST = "latest"  # in resume/: the name of the newest complete epoch folder
REPORTED = "reported.json"  # in an epoch folder: the metrics of that epoch, by the attempt that saved it
EPOCH_RE = re.compile(r"^epoch-(\d+)$")


@dataclass(frozen=True)
class Checkpoint:
    """Train from epoch ``initial_epoch`` (Keras' meaning) starting from ``restore_dir``
    (None: from scratch), saving to ``save_dir``. A PBT interval ends at ``epochs``; a
    resumable trial (``epochs`` None) trains its own epochs and keeps one folder per
    saved epoch in ``save_dir`` (``versioned``)."""

    initial_epoch: int
    epochs: int | None
    restore_dir: Path | None
    save_dir: Path
    versioned: bool = False

    @property
    def is_interval(self) -> bool:
        """A PBT interval (it ends at ``epochs``), not a resumable trial."""
        return self.epochs is not None

    @contextlib.contextmanager
    def saving(self, epoch: int, metrics: Mapping[str, float] | None = None) -> Iterator[Path]:
        """The folder to write the checkpoint of ``epoch`` into. Versioned, it becomes the
        latest only when the block ends (so a kill mid-write leaves the previous one) and
        older epochs are then removed. ``metrics``: the epoch's, kept with it (an attempt
        cut off just after reporting them may not have delivered them: the attempt that
        resumes here sends them again, see :meth:`resend`)."""
        if not self.versioned:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            yield self.save_dir
            return
        name = f"epoch-{epoch:04d}"
        folder = self.save_dir / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        yield folder
        ctx = current_trial()
        if metrics and ctx is not None:
            record = {"attempt": ctx.task.attempt, "step": epoch, "metrics": dict(metrics)}
            (folder / REPORTED).write_text(json.dumps(record), encoding="utf-8")
        pointer = self.save_dir / f".{LATEST}.{os.getpid()}"
        pointer.write_text(name, encoding="utf-8")
        os.replace(pointer, self.save_dir / LATEST)
        for old in self.save_dir.iterdir():
            if old.name != name and EPOCH_RE.match(old.name):
                shutil.rmtree(old, ignore_errors=True)

    def resend(self) -> None:
        """Send again the metrics saved with the epoch this attempt resumes from, as the
        attempt that reported them (the store keeps them once)."""
        ctx = current_trial()
        if ctx is None or self.restore_dir is None or self.is_interval:
            return
        try:
            record = json.loads((self.restore_dir / REPORTED).read_text(encoding="utf-8"))
            event = MetricsEvent(ctx.task.trial_id, int(record["attempt"]), time.time(), int(record["step"]),
                                 {str(k): float(v) for k, v in record["metrics"].items()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return
        if event.attempt < ctx.task.attempt:
            ctx.emit(event)

    def restore_keras(self, model: Any) -> bool:
        """Load the weights and the optimizer's state saved by :meth:`save_keras` into a
        built, compiled ``model``; False when there is nothing to restore."""
        if self.restore_dir is None:
            return False
        weights = self.restore_dir / WEIGHTS
        if not weights.is_file():
            raise FileNotFoundError(f"PBT checkpoint {weights} is missing: the interval that wrote it left none")
        import numpy as np

        model.load_weights(str(weights))
        optimizer = getattr(model, "optimizer", None)
        state = self.restore_dir / OPTIMIZER
        if optimizer is not None and state.is_file():
            optimizer.build(model.trainable_variables)
            saved = np.load(state)
            variables = _optimizer_state(optimizer)
            if len(saved.files) == len(variables):
                for i, variable in enumerate(variables):
                    variable.assign(saved[f"arr_{i}"])
            else:
                log.warning("optimizer state in %s does not fit this model's optimizer: not restored", state)
        return True

    def save_keras(self, model: Any, epoch: int | None = None, metrics: Mapping[str, float] | None = None) -> None:
        """Save the weights and the optimizer's state (without its learning rate) of
        ``epoch`` (default: the interval's end), and its ``metrics``."""
        import numpy as np

        with self.saving(epoch if epoch is not None else self.epochs or 0, metrics) as folder:
            model.save_weights(str(folder / WEIGHTS))
            optimizer = getattr(model, "optimizer", None)
            if optimizer is not None and getattr(optimizer, "built", False):
                np.savez(folder / OPTIMIZER, *[np.asarray(v) for v in _optimizer_state(optimizer)])


def _optimizer_state(optimizer: Any) -> list[Any]:
    """The optimizer's variables but its learning rate (each interval sets its own)."""
    return [v for v in optimizer.variables if not str(getattr(v, "path", v.name)).endswith("learning_rate")]


def latest_saved(folder: Path) -> tuple[int, Path] | None:
    """The newest complete checkpoint in a resume folder: (its epoch, its folder)."""
    try:
        name = (folder / LATEST).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    found = EPOCH_RE.match(name)
    if found is None or not (folder / name).is_dir():
        return None
    return int(found.group(1)), folder / name


def resume_checkpoint(run_dir: Path) -> Checkpoint:
    """Where an attempt of a resumable trial starts: after the last epoch saved by an
    earlier attempt in ``run_dir``, else from scratch."""
    folder = run_dir / RESUME_DIR
    saved = latest_saved(folder)
    if saved is None:
        return Checkpoint(0, None, None, folder, versioned=True)
    return Checkpoint(saved[0], None, saved[1], folder, versioned=True)


def current_checkpoint() -> Checkpoint | None:
    """The running trial's checkpoint: its PBT interval, or where it resumes; None outside
    a trial or with ``trial.resume`` off."""
    ctx = current_trial()
    if ctx is None:
        return None
    if ctx.task.interval is None:
        return resume_checkpoint(ctx.run_dir) if ctx.task.resume else None
    first, last = ctx.task.interval
    restore = Path(ctx.task.restore_from) / PBT_DIR if ctx.task.restore_from else None
    return Checkpoint(first, last, restore, ctx.run_dir / PBT_DIR)
