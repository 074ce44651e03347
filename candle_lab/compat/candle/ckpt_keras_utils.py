"""CANDLE's Keras checkpoint/restart: ``CandleCkptKeras`` (alias ``CandleCheckpointCallback``)
and ``restart``, as CANDLE benchmarks call them::

    ckpt = candle.CandleCkptKeras(gParameters)
    ckpt.set_model(model)
    J = ckpt.restart(model)
    initial_epoch = J["epoch"] if J is not None else 0
    model.fit(..., initial_epoch=initial_epoch, callbacks=[ckpt, ...])

In a population-based-training trial ``restart`` loads the checkpoint the interval starts
from (its member's, or the member it copied) and the interval's end is saved for the next
one (:mod:`candle_lab.trial.checkpoint`). Elsewhere it keeps CANDLE's own behaviour: every
``ckpt_save_interval`` epochs (after ``ckpt_skip_epochs``) the weights and the optimizer's
state go to ``ckpt_directory/ckpts/last/``, and ``restart`` resumes from there unless
``ckpt_restart_mode`` is ``off`` (``required``: fail when there is nothing to resume).
In a trial a relative ``ckpt_directory`` lies in the trial's run folder, the same for
every attempt: an attempt cut off (lost worker, walltime, preemption) is resumed by the
next from the last checkpoint, and candle_lab's own epoch checkpoints stay off for it.
Importing this module imports Keras."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from candle_lab.trial.checkpoint import Checkpoint, current_checkpoint
from candle_lab.trial.context import current_trial

try:
    import keras
except ImportError as exc:  # pragma: no cover - depends on the installation
    from candle_lab.errors import MissingDependency

    raise MissingDependency("tensorflow", "keras", "CANDLE's checkpoint/restart") from exc

log = logging.getLogger(__name__)

INFO = "ckpt-info.json"


class CandleCkptKeras(keras.callbacks.Callback):
    """Saves checkpoints as training goes; :meth:`restart` resumes from the latest."""

    def __init__(self, gParameters: dict[str, Any], logger: Any = "DEFAULT", verbose: bool = True) -> None:
        super().__init__()
        self.gParameters = gParameters
        self.verbose = verbose
        self.mode = str(gParameters.get("ckpt_restart_mode") or "auto").lower()
        self.save_interval = int(gParameters.get("ckpt_save_interval") or 1)
        self.skip_epochs = int(gParameters.get("ckpt_skip_epochs") or 0)
        self.metric = str(gParameters.get("ckpt_save_best_metric") or "val_loss")
        folder = Path(str(gParameters.get("ckpt_directory") or "./save"))
        ctx = current_trial()
        if ctx is not None:  # in a trial: its run folder, the same for each attempt
            folder = folder if folder.is_absolute() else ctx.run_dir / folder
            checkpoint = current_checkpoint()
            if checkpoint is not None and not checkpoint.is_interval:
                ctx.checkpoint_by_model = True  # it resumes itself: the Keras fit hook leaves it alone
        self.last = folder / "ckpts" / "last"

    def restart(self, model: Any) -> dict[str, Any] | None:
        """Load the latest checkpoint into ``model``; its ``{"epoch": ...}``, or None to
        start from scratch."""
        interval = current_checkpoint()
        if interval is not None and interval.is_interval:  # PBT: where this interval starts
            ctx = current_trial()
            if ctx is not None:
                ctx.checkpoint_restored = True
            if not interval.restore_keras(model):
                return None
            return {"epoch": interval.initial_epoch, "best_metric_last": None}
        info = self.last / INFO
        if self.mode == "off":
            return None
        if not info.is_file():
            if self.mode == "required":
                raise FileNotFoundError(f"ckpt_restart_mode 'required': no checkpoint in {self.last}")
            return None
        Checkpoint(0, 0, self.last, self.last).restore_keras(model)
        found: dict[str, Any] = json.loads(info.read_text(encoding="utf-8"))
        log.info("restarting from epoch %s (%s)", found.get("epoch"), self.last)
        return found

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        done = epoch + 1
        checkpoint = current_checkpoint()
        if checkpoint is not None and checkpoint.is_interval:
            return  # PBT: the interval's end is saved when fit returns
        if self.save_interval <= 0 or done <= self.skip_epochs or done % self.save_interval:
            return
        Checkpoint(0, 0, None, self.last).save_keras(self.model)
        best = (logs or {}).get(self.metric)
        info = {"epoch": done, "best_metric_last": None if best is None else float(best)}
        (self.last / INFO).write_text(json.dumps(info), encoding="utf-8")

    def report_initial(self) -> None:
        """CANDLE logs its checkpoint settings here; candle_lab's run folder holds them."""

    def report_final(self) -> None:
        """CANDLE logs checkpoint statistics here; nothing to add."""


CandleCheckpointCallback = CandleCkptKeras


def restart(gParameters: dict[str, Any], model: Any, verbose: bool = True) -> dict[str, Any] | None:
    """CANDLE's function form of :meth:`CandleCkptKeras.restart`."""
    return CandleCkptKeras(gParameters, verbose=verbose).restart(model)
