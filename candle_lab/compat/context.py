"""The running trial's search values, for ``candle.finalize_parameters`` inside a benchmark.

A benchmark module builds its parameters itself (``initialize_parameters`` calls
``candle.finalize_parameters(bmk)``); the trial's values from the search and its run
information (``output_dir``, ``run_id``, ``experiment_id``, ``timeout``) reach that call
through this context, set by the ``candle`` model adapter around ``initialize_parameters``.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrialParameters:
    """One trial's values for the benchmark: the search's ``params`` (above the command
    line) and the ``run_info`` (above everything). ``finalized`` receives each dict that
    ``finalize_parameters`` returned while this context was active."""

    params: Mapping[str, Any]
    run_info: Mapping[str, Any]
    finalized: list[dict[str, Any]] = field(default_factory=list, compare=False)


_current: contextvars.ContextVar[TrialParameters | None] = contextvars.ContextVar(
    "candle_lab_candle_trial", default=None
)


def current_trial_parameters() -> TrialParameters | None:
    """The trial whose parameters ``finalize_parameters`` merges now, or ``None``."""
    return _current.get()


@contextlib.contextmanager
def trial_parameters(params: Mapping[str, Any], run_info: Mapping[str, Any]) -> Iterator[TrialParameters]:
    """Within this block, ``candle.finalize_parameters(bmk)`` merges ``params`` (the
    search's values) over the command line and ``run_info`` over everything."""
    binding = TrialParameters(dict(params), dict(run_info))
    token = _current.set(binding)
    try:
        yield binding
    finally:
        _current.reset(token)
