"""What model code sees while it runs as a trial: :func:`current_trial`, :func:`report`,
stop requests, its run folder. Models and the Keras callback depend on this module and
on :mod:`candle_lab.trial.protocol` only, never on the runner.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from candle_lab.store.layout import PARAMS_FILE
from candle_lab.trial.protocol import TOPIC, MetricsEvent, StartEvent, TrialTask, WorkerEvent, to_message

log = logging.getLogger(__name__)


class TrialTimeout(Exception):
    """The model ran past the trial's timeout (raised by adapters that can enforce it)."""


@dataclass
class TrialContext:
    """The running trial, for code inside the model (metrics, callbacks, stop requests)."""

    task: TrialTask
    worker: Any | None
    run_dir: Path
    started: float
    step: int = 0
    stop_reason: str | None = None
    stop_told: bool = False  # the model was told to stop (saw should_stop): it ends early, not complete
    last_metrics: dict[str, float] = field(default_factory=dict)
    checkpoint_restored: bool = False  # PBT: the Keras fit hook restored (once per trial) ...
    checkpoint_by_model: bool = False  # ... unless the model takes its checkpoint itself
    _prepared: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def prepare_dir(self) -> Path:
        """The run folder with the trial's ``params.json`` (written once)."""
        with self._lock:
            if not self._prepared:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                text = json.dumps(self.task.params, indent=2, default=str)
                (self.run_dir / PARAMS_FILE).write_text(text, encoding="utf-8")
                self._prepared = True
        return self.run_dir

    def emit(self, event: WorkerEvent) -> None:
        if self.worker is not None:
            self.worker.log_event(TOPIC, to_message(self.task.experiment, event))

    @property
    def should_stop(self) -> bool:
        if self.stop_reason is None and _walltime_notice:  # this worker's job ends soon
            self.stop("walltime")
        self.stop_told = self.stop_told or self.stop_reason is not None
        return self.stop_reason is not None

    def stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason

    def stopped_early(self) -> str | None:
        """Why the trial stopped on request, if it did. A walltime notice counts only once
        the model saw it (:attr:`should_stop`): a model that never looks runs to its end."""
        if self.stop_reason == "walltime" and not self.stop_told:
            return None
        return self.stop_reason

    def time_left(self) -> float | None:
        if self.task.timeout is None:
            return None
        return self.task.timeout - (time.time() - self.started)


_current: contextvars.ContextVar[TrialContext | None] = contextvars.ContextVar("candle_lab_trial", default=None)
_running: dict[tuple[str, int], TrialContext] = {}


def current_trial() -> TrialContext | None:
    """The trial running in this thread, or ``None`` outside a trial."""
    return _current.get()


def report(step: int | None = None, **metrics: float) -> bool:
    """Send metrics of the running trial to the driver (e.g. once per epoch).

    Returns True when the trial should stop (the driver or the user asked): a model
    that reports can end its training loop there."""
    ctx = current_trial()
    if ctx is None:
        log.debug("report() outside a trial: %s", metrics)
        return False
    announce((ctx.task.experiment, ctx.task.trial_id))
    ctx.step = ctx.step + 1 if step is None else int(step)
    values = {k: float(v) for k, v in metrics.items()}
    ctx.last_metrics.update(values)
    ctx.emit(MetricsEvent(ctx.task.trial_id, ctx.task.attempt, time.time(), ctx.step, values))
    return ctx.should_stop


def request_stop(experiment: str, trial_id: int, reason: str = "stopped") -> bool:
    """Ask a running trial to stop at its next epoch boundary (run on its worker by the
    driver). Returns whether the trial was running here."""
    ctx = _running.get((experiment, trial_id))
    if ctx is not None:
        ctx.stop(reason)
    return ctx is not None


# When this worker process heard that its SLURM job ends soon (SIGUSR1 from --signal).
_walltime_notice: list[float] = []


def notice_walltime() -> int:
    """This worker's job ends soon (SLURM's ``--signal``): every trial running here stops
    at its next epoch boundary with reason ``walltime`` (its driver runs it again, resuming
    from its checkpoint, on a fresh worker), and so does any trial that starts here later.
    Returns how many trials were running."""
    _walltime_notice.append(time.time())
    running = list(_running.values())
    for ctx in running:
        ctx.stop("walltime")
    return len(running)


# ------------------------------------------------------------------ the start event
# "Trial started" events are sent once a trial has run START_DELAY seconds (or reports
# earlier): trials shorter than that cost the scheduler no event at all.
START_DELAY = 0.1
_unannounced: dict[tuple[str, int], tuple[TrialContext, StartEvent]] = {}
_announce_lock = threading.Lock()
_announcer: threading.Thread | None = None


def announce(key: tuple[str, int]) -> None:
    """Send the start event of trial ``key`` now, if it was not sent yet."""
    with _announce_lock:
        item = _unannounced.pop(key, None)
    if item is not None:
        ctx, event = item
        ctx.emit(event)
        try:
            ctx.prepare_dir()
        except OSError as exc:  # the model meets the same error and says so in its outcome
            log.warning("could not write the run folder %s: %s", ctx.run_dir, exc)


def _announce_loop() -> None:
    while True:
        time.sleep(START_DELAY / 2)
        now = time.time()
        with _announce_lock:
            due = [k for k, (ctx, _) in _unannounced.items() if now - ctx.started >= START_DELAY]
        for key in due:
            announce(key)


def schedule_start_event(ctx: TrialContext, event: StartEvent) -> None:
    global _announcer
    with _announce_lock:
        _unannounced[(ctx.task.experiment, ctx.task.trial_id)] = (ctx, event)
        if _announcer is None:
            _announcer = threading.Thread(target=_announce_loop, name="candle-lab-announcer", daemon=True)
            _announcer.start()


def forget(ctx: TrialContext) -> None:
    """The attempt ended: no start event is sent any more."""
    key = (ctx.task.experiment, ctx.task.trial_id)
    _running.pop(key, None)
    with _announce_lock:
        _unannounced.pop(key, None)
