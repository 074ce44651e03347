"""Trial output, captured per trial: ``sys.stdout``/``sys.stderr`` of a process that runs
trials route each write to the log of the trial running in the writing thread."""

from __future__ import annotations

import contextlib
import contextvars
import io
import os
import sys
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class _LazyLog(io.TextIOBase):
    """The run's log file, created on the first write (most fast models print nothing)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: io.TextIOWrapper | None = None
        _open_logs.add(self)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self._file is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self._path.open("a", encoding="utf-8")
        return self._file.write(text)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None  # TextIOBase.close() flushes: nothing left to flush
        _open_logs.discard(self)
        super().close()


_open_logs: weakref.WeakSet[_LazyLog] = weakref.WeakSet()


def _flush_logs() -> None:
    """Before a model forks (``multiprocessing``, data loaders): what its log holds is
    written now, so that the child does not write it a second time."""
    for out in list(_open_logs):
        with contextlib.suppress(Exception):
            out.flush()


os.register_at_fork(before=_flush_logs)


_output: contextvars.ContextVar[_LazyLog | None] = contextvars.ContextVar("candle_lab_trial_output", default=None)
_routing = threading.Lock()


class _Router(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of a process that runs trials: a write goes to the log
    of the trial running in the writer's thread (context), anything else where it went
    before. With worker threads (``Client(processes=False)``) the host program's own
    prints stay the host's; never is the stream swapped for the whole process per trial."""

    def __init__(self, fallback: Any) -> None:
        self.fallback = fallback

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return int((_output.get() or self.fallback).write(text))

    def flush(self) -> None:
        (_output.get() or self.fallback).flush()

    # What callers ask of a terminal stream is the host stream's answer.
    @property
    def encoding(self) -> Any:  # type: ignore[override]
        return getattr(self.fallback, "encoding", "utf-8")

    @property
    def errors(self) -> Any:  # type: ignore[override]
        return getattr(self.fallback, "errors", None)

    def fileno(self) -> int:
        return int(self.fallback.fileno())

    def isatty(self) -> bool:
        return _output.get() is None and bool(self.fallback.isatty())

    def close(self) -> None:
        """A model that closes ``sys.stdout`` closes nothing: the stream is shared by the
        other trials of this process and by the host."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fallback, name)


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Model prints in this thread go to the run's log."""
    with _routing:
        for name in ("stdout", "stderr"):
            if not isinstance(getattr(sys, name), _Router):
                setattr(sys, name, _Router(getattr(sys, name)))
    with _LazyLog(path) as out:
        token = _output.set(out)
        try:
            yield
        finally:
            _output.reset(token)
