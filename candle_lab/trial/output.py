"""Trial output, captured per trial: ``sys.stdout``/``sys.stderr`` of a process that runs
trials route each write to the log of the trial running in the writing thread. In a worker
process that runs one trial at a time, file descriptors 1 and 2 go to the trial's log as
well while it runs: what native libraries (TensorFlow, absl, CUDA) and child processes
write there is the trial's, not the terminal's or the driver's log.

Outside ``--verbose`` (:func:`configure_native_logs`), TensorFlow's C++ log has errors
only; what absl writes before that level is read still reaches the trial's log.
"""

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

from candle_lab import settings


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
            # Line by line: native writes to the same file (descriptor 2) keep their place.
            self._file = self._path.open("a", encoding="utf-8", buffering=1)
        return self._file.write(text)

    def ensure(self) -> None:
        """The file, empty if nothing was written (every run folder has its log)."""
        if self._file is None:
            with contextlib.suppress(OSError):  # the result, not the log, says what went wrong
                self._path.parent.mkdir(parents=True, exist_ok=True)
                self._path.touch()

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
def output_to(path: Path, native: bool = False) -> Iterator[None]:
    """Model prints in this thread go to the run's log, which exists afterwards (empty when
    the model wrote nothing). ``native``: this process's descriptors 1 and 2 too
    (:func:`native_output_to`); only where this is the process's one running trial."""
    with _routing:
        for name in ("stdout", "stderr"):
            if not isinstance(getattr(sys, name), _Router):
                setattr(sys, name, _Router(getattr(sys, name)))
    with _LazyLog(path) as out, native_output_to(path) if native else contextlib.nullcontext():
        token = _output.set(out)
        try:
            yield
        finally:
            _output.reset(token)
            out.ensure()


_STREAMS = (1, 2)
_native_lock = threading.Lock()


def _flush_std() -> None:
    """Text buffered for descriptors 1 and 2 goes where they point now."""
    streams = (sys.__stdout__, sys.__stderr__, _fallback("stdout"), _fallback("stderr"))
    for stream in {id(s): s for s in streams if s is not None}.values():
        with contextlib.suppress(Exception):
            stream.flush()


def _fallback(name: str) -> Any:
    stream = getattr(sys, name, None)
    return stream.fallback if isinstance(stream, _Router) else stream


@contextlib.contextmanager
def native_output_to(path: Path) -> Iterator[None]:
    """Descriptors 1 and 2 of this process append to ``path`` while the block runs: what
    TensorFlow's C++ code, absl, CUDA and child processes write (TensorFlow logs at its
    first import, before any log level can be set from Python). For a process that runs
    one trial at a time: the other threads' native output goes there too. Where the
    descriptors cannot be redirected (closed, or a redirection already active), the block
    runs as it is."""
    if not _native_lock.acquire(blocking=False):
        yield
        return
    saved: list[int] = []
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        except OSError:
            target = -1
        if target >= 0:
            try:
                _flush_std()
                for fd in _STREAMS:
                    saved.append(os.dup(fd))
                for fd in _STREAMS:
                    os.dup2(target, fd)
            except OSError:
                _restore(saved)
                saved = []
            finally:
                os.close(target)
        try:
            yield
        finally:
            if saved:
                _flush_std()
                _restore(saved)
    finally:
        _native_lock.release()


def _restore(saved: list[int]) -> None:
    for fd, copy in zip(_STREAMS, saved, strict=False):
        with contextlib.suppress(OSError):
            os.dup2(copy, fd)
        os.close(copy)


# The native log levels outside --verbose; a value already in the environment is kept.
# TF_CPP_MIN_LOG_LEVEL 2: TensorFlow's C++ errors only (no oneDNN, CPU-feature, ... notices).
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "GRPC_VERBOSITY": "ERROR"}


def configure_native_logs(asked: bool = False) -> None:
    """Native libraries' verbosity, for this process and those it starts (dask workers, a
    detached driver): read when TensorFlow is imported, so set before. ``asked``
    (``--verbose``): say so to them (trials then leave descriptors 1 and 2 alone); else
    the quiet levels, unless set already."""
    if asked:
        settings.share_verbose()
    if settings.verbose():
        return
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
