"""The checkpoint contract of population based training (``search.algorithm: pbt``).

Each PBT trial trains one interval of one member: from epoch ``initial_epoch`` to epoch
``epochs``, starting from the checkpoint in ``restore_dir`` (its member's previous
interval, or the member it copied), and leaves its own checkpoint in ``save_dir`` for
the interval after it, whichever worker runs that one (run folders are on storage every
worker sees).

* **Keras, nothing to write.** Inside a PBT trial every ``Model.fit`` restores the
  weights and the optimizer's state (moments, step count; not the learning rate, which
  is the trial's own) before it trains, trains the interval's epochs only, and saves
  after. A CANDLE benchmark or a function that builds, compiles and fits a model with
  ``epochs=params["epochs"]`` runs unchanged.
* **Anything else**: a ``kind: callable`` function that takes a ``checkpoint`` argument
  gets a :class:`Checkpoint` and does both itself (and the automatic Keras handling is
  off for it)::

      def run(params, checkpoint):
          state = load(checkpoint.restore_dir) if checkpoint.restore_dir else fresh(params)
          for epoch in range(checkpoint.initial_epoch, checkpoint.epochs):
              loss = train_one_epoch(state, params)
              candle_lab.report(epoch + 1, loss=loss)
          save(state, checkpoint.save_dir)
          return loss

  ``checkpoint.restore_keras(model)`` and ``checkpoint.save_keras(model)`` do the Keras
  part for functions that fit by hand.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from candle_lab.store.layout import PBT_DIR
from candle_lab.trial.context import current_trial

log = logging.getLogger(__name__)

WEIGHTS = "model.weights.h5"
OPTIMIZER = "optimizer.npz"


@dataclass(frozen=True)
class Checkpoint:
    """One PBT interval: train epochs ``initial_epoch`` .. ``epochs`` (Keras' meaning of
    both), from ``restore_dir`` (None: from scratch), saving to ``save_dir``."""

    initial_epoch: int
    epochs: int
    restore_dir: Path | None
    save_dir: Path

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

    def save_keras(self, model: Any) -> None:
        """Save the weights and the optimizer's state (without its learning rate)."""
        import numpy as np

        self.save_dir.mkdir(parents=True, exist_ok=True)
        model.save_weights(str(self.save_dir / WEIGHTS))
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and getattr(optimizer, "built", False):
            np.savez(self.save_dir / OPTIMIZER, *[np.asarray(v) for v in _optimizer_state(optimizer)])


def _optimizer_state(optimizer: Any) -> list[Any]:
    """The optimizer's variables but its learning rate (each interval sets its own)."""
    return [v for v in optimizer.variables if not str(getattr(v, "path", v.name)).endswith("learning_rate")]


def current_checkpoint() -> Checkpoint | None:
    """The running trial's PBT checkpoint; None outside a PBT trial."""
    ctx = current_trial()
    if ctx is None or ctx.task.interval is None:
        return None
    first, last = ctx.task.interval
    restore = Path(ctx.task.restore_from) / PBT_DIR if ctx.task.restore_from else None
    return Checkpoint(first, last, restore, ctx.run_dir / PBT_DIR)
