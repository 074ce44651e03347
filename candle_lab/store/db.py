"""The SQLite store of one experiment (WAL; the driver is its only writer).

Tables: ``meta`` (key/value: spec, seed, state, driver heartbeat), ``trials`` (one row
per trial with its latest attempt), ``metrics`` (per-step metrics, long format),
``events`` (what happened, for the timeline and for debugging).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from candle_lab.states import FINAL_STATES, TrialState

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FINAL_STATES", "Store", "TrialRecord", "TrialState"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS trials (
    trial_id INTEGER PRIMARY KEY,
    run_id TEXT UNIQUE NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    objective REAL,
    metrics TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    worker TEXT,
    host TEXT,
    gpu TEXT,
    round INTEGER,
    queued REAL,
    started REAL,
    ended REAL,
    reason TEXT,
    error TEXT,
    origin TEXT,
    feasible INTEGER,
    pareto INTEGER
);
CREATE TABLE IF NOT EXISTS metrics (
    trial_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    time REAL
);
CREATE INDEX IF NOT EXISTS metrics_trial ON metrics (trial_id);
CREATE TABLE IF NOT EXISTS events (
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    trial_id INTEGER,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS imported (
    source TEXT NOT NULL,
    run_id TEXT NOT NULL,
    params TEXT NOT NULL,
    metrics TEXT NOT NULL
);
"""

TRIAL_COLUMNS = [
    "trial_id",
    "run_id",
    "params",
    "state",
    "objective",
    "metrics",
    "attempt",
    "worker",
    "host",
    "gpu",
    "round",
    "queued",
    "started",
    "ended",
    "reason",
    "error",
    "origin",
    "feasible",
    "pareto",
]
ADDED_COLUMNS = {"origin": "TEXT", "feasible": "INTEGER", "pareto": "INTEGER"}  # not in stores from before them


@dataclass(frozen=True)
class TrialRecord:
    """One trial as stored. Times are seconds since the epoch."""

    trial_id: int
    run_id: str
    params: dict[str, Any]
    state: str
    objective: float | None = None
    metrics: dict[str, float] | None = None
    attempt: int = 1
    worker: str | None = None
    host: str | None = None
    gpu: str | None = None
    round: int | None = None
    queued: float | None = None
    started: float | None = None
    ended: float | None = None
    reason: str | None = None
    error: str | None = None
    origin: dict[str, Any] | None = None  # where the point came from (GA: generation, parents)
    feasible: bool | None = None  # with constraints: whether its metrics satisfy them all
    pareto: bool | None = None  # with several objectives: on the Pareto front of the search

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=_plain, allow_nan=True)


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and other simple objects."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


JSON_COLUMNS = {"params": "param.", "origin": "origin.", "metrics": "metric."}  # JSON text -> columns


@dataclass(frozen=True)
class Summary:
    """Counts and extremes of an experiment's trials, from aggregate queries."""

    trials: int
    counts: dict[str, int]  # trials per state
    best: float | None  # the best objective of a completed trial
    first: float | None  # the earliest time a trial was queued or started
    last: float | None  # the latest end (or start, for a running trial)


def _cell(value: Any) -> Any:
    """A table cell: lists (a GA child's parents) as space-separated text."""
    return " ".join(str(v) for v in value) if isinstance(value, list) else value


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


class Store:
    """Reads and writes one experiment's database. Writers call :meth:`commit`."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            uri = f"file:{self.path}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
        else:
            self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            present = self._trial_columns()
            for column, kind in ADDED_COLUMNS.items():
                if column not in present:
                    self._db.execute(f"ALTER TABLE trials ADD COLUMN {column} {kind}")
            self._db.commit()
        present = self._trial_columns()
        self._select = ", ".join(c if c in present or not present else f"NULL AS {c}" for c in TRIAL_COLUMNS)

    def _trial_columns(self) -> set[str]:
        return {row[1] for row in self._db.execute("PRAGMA table_info(trials)")}

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def commit(self) -> None:
        self._db.commit()

    # ------------------------------------------------------------------ meta
    def set_meta(self, **values: Any) -> None:
        self._db.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [(k, json.dumps(v, default=_plain)) for k, v in values.items()],
        )

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}

    # ------------------------------------------------------------------ trials
    def add_trial(
        self,
        trial_id: int,
        run_id: str,
        params: Mapping[str, Any],
        *,
        round: int | None = None,
        queued: float | None = None,
        origin: Mapping[str, Any] | None = None,
    ) -> None:
        self._db.execute(
            "INSERT INTO trials (trial_id, run_id, params, state, attempt, round, queued, origin) "
            "VALUES (?, ?, ?, 'queued', 1, ?, ?, ?)",
            (
                trial_id,
                run_id,
                _json(dict(params)),
                round,
                queued if queued is not None else time.time(),
                _json(dict(origin)) if origin else None,
            ),
        )

    def mark_running(
        self, trial_id: int, attempt: int, *, worker: str | None, host: str | None, gpu: str | None, started: float
    ) -> None:
        self._db.execute(
            "UPDATE trials SET state = 'running', attempt = ?, worker = ?, host = ?, gpu = ?, started = ?, "
            "ended = NULL WHERE trial_id = ? AND state NOT IN ('completed', 'failed', 'stopped', 'cancelled')",
            (attempt, worker, host, gpu, started, trial_id),
        )

    def requeue(self, trial_id: int, attempt: int, reason: str | None = None, error: str | None = None) -> None:
        """A new attempt of a trial (after an error or a lost worker)."""
        self._db.execute(
            "UPDATE trials SET state = 'queued', attempt = ?, started = NULL, ended = NULL, reason = ?, error = ?, "
            "queued = ? WHERE trial_id = ?",
            (attempt, reason, error, time.time(), trial_id),
        )

    def finish_trial(
        self,
        trial_id: int,
        state: str,
        *,
        objective: float | None = None,
        metrics: Mapping[str, float] | None = None,
        attempt: int | None = None,
        worker: str | None = None,
        host: str | None = None,
        gpu: str | None = None,
        started: float | None = None,
        ended: float | None = None,
        reason: str | None = None,
        error: str | None = None,
        feasible: bool | None = None,
    ) -> None:
        self._db.execute(
            "UPDATE trials SET state = ?, objective = ?, metrics = ?, attempt = COALESCE(?, attempt), "
            "worker = COALESCE(?, worker), host = COALESCE(?, host), gpu = COALESCE(?, gpu), "
            "started = COALESCE(?, started), ended = ?, reason = ?, error = ?, feasible = ? WHERE trial_id = ?",
            (
                state,
                _finite(objective),
                _json(dict(metrics) if metrics else None),
                attempt,
                worker,
                host,
                gpu,
                started,
                ended if ended is not None else time.time(),
                reason,
                error,
                None if feasible is None else int(feasible),
                trial_id,
            ),
        )

    def add_imported(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Trials of other experiments this one learns from (warm start)."""
        self._db.executemany("INSERT INTO imported (source, run_id, params, metrics) VALUES (?, ?, ?, ?)",
                             [(r["source"], r["run_id"], _json(r["params"]), _json(r["metrics"])) for r in rows])

    def imported(self) -> list[dict[str, Any]]:
        """The warm-start trials, as :meth:`add_imported` took them (none in older stores)."""
        try:
            rows = self._db.execute("SELECT source, run_id, params, metrics FROM imported ORDER BY rowid").fetchall()
        except sqlite3.OperationalError:
            return []
        return [{"source": s, "run_id": r, "params": json.loads(p), "metrics": json.loads(m)} for s, r, p, m in rows]

    def set_pareto(self, joined: Sequence[int], left: Sequence[int]) -> None:
        """Trials that joined the Pareto front and trials that left it."""
        self._db.executemany("UPDATE trials SET pareto = ? WHERE trial_id = ?",
                             [(1, i) for i in joined] + [(0, i) for i in left])

    def trials(
        self, states: Iterable[str] | None = None, *, newer_than: int | None = None, ids: Sequence[int] = ()
    ) -> list[TrialRecord]:
        """Trials by id; ``states`` keeps those states only; ``newer_than`` keeps the trials
        with a larger id and those in ``ids`` (what a poller has not seen final yet)."""
        rows = self._trial_rows(states, newer_than, ids)
        out = []
        for row in rows:
            data = dict(zip(TRIAL_COLUMNS, row, strict=True))
            data["params"] = json.loads(data["params"])
            data["metrics"] = json.loads(data["metrics"]) if data["metrics"] else None
            data["origin"] = json.loads(data["origin"]) if data["origin"] else None
            for flag in ("feasible", "pareto"):
                data[flag] = None if data[flag] is None else bool(data[flag])
            out.append(TrialRecord(**data))
        return out

    def _trial_rows(
        self, states: Iterable[str] | None, newer_than: int | None, ids: Sequence[int]
    ) -> list[tuple[Any, ...]]:
        query = f"SELECT {self._select} FROM trials"
        args: list[Any] = []
        if states is not None:
            wanted = list(states)
            query += f" WHERE state IN ({', '.join('?' * len(wanted))})"
            args = wanted
        elif newer_than is not None:
            # One indexed range and indexed look-ups, not one OR (a scan of every trial).
            branches, args = [f"{query} WHERE trial_id > ?"], [newer_than]
            for chunk, marks in _in_chunks(ids):
                branches.append(f"{query} WHERE trial_id IN ({marks}) AND trial_id <= ?")
                args += [*chunk, newer_than]
            query = " UNION ALL ".join(branches)
        return self._db.execute(query + " ORDER BY trial_id", args).fetchall()

    def changes(self, ids: Sequence[int]) -> dict[int, tuple[str, int, float | None]]:
        """``(state, attempt, started)`` of the given trials: what a poller compares, before
        reading again only the trials that moved (no JSON decoded here)."""
        out: dict[int, tuple[str, int, float | None]] = {}
        for chunk, marks in _in_chunks(ids):
            rows = self._db.execute(
                f"SELECT trial_id, state, attempt, started FROM trials WHERE trial_id IN ({marks})", chunk
            )
            out.update({row[0]: (row[1], row[2], row[3]) for row in rows})
        return out

    def trial(self, trial_id: int) -> TrialRecord | None:
        found = [t for t in self.trials() if t.trial_id == trial_id]
        return found[0] if found else None

    def summary(self, *, maximize: bool = False) -> Summary:
        """Trials per state, the best objective, the first and last moments of work."""
        counts = dict(self._db.execute("SELECT state, COUNT(*) FROM trials GROUP BY state").fetchall())
        best, first_queued, first_started, last = self._db.execute(
            f"SELECT {'MAX' if maximize else 'MIN'}(CASE WHEN state = 'completed' THEN objective END), "
            "MIN(queued), MIN(started), MAX(COALESCE(ended, started)) FROM trials"
        ).fetchone()
        firsts = [t for t in (first_queued, first_started) if t is not None]
        return Summary(sum(counts.values()), counts, best, min(firsts) if firsts else None, last)

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM trials").fetchone()[0])

    # ------------------------------------------------------------------ metrics and events
    def add_metrics(self, trial_id: int, attempt: int, step: int, values: Mapping[str, float], when: float,
                    *, only_new: bool = False) -> None:
        """One step's metrics; ``only_new``: those the store does not hold yet (a step sent again)."""
        rows = [(trial_id, attempt, step, name, _finite(float(v)), when) for name, v in values.items()]
        if only_new:
            self._db.executemany(
                "INSERT INTO metrics (trial_id, attempt, step, name, value, time) SELECT ?1, ?2, ?3, ?4, ?5, ?6 "
                "WHERE NOT EXISTS (SELECT 1 FROM metrics WHERE trial_id = ?1 AND attempt = ?2 AND step = ?3 "
                "AND name = ?4)", rows)
            return
        self._db.executemany(
            "INSERT INTO metrics (trial_id, attempt, step, name, value, time) VALUES (?, ?, ?, ?, ?, ?)", rows
        )

    def add_event(self, kind: str, trial_id: int | None = None, detail: Any = None, when: float | None = None) -> None:
        self._db.execute(
            "INSERT INTO events (time, kind, trial_id, detail) VALUES (?, ?, ?, ?)",
            (when if when is not None else time.time(), kind, trial_id, _json(detail)),
        )

    def events(self, kinds: Iterable[str] | None = None) -> list[tuple[float, str, int | None, Any]]:
        """``(time, kind, trial_id, detail)`` in the order stored; ``kinds``: those kinds only."""
        query, args = "SELECT time, kind, trial_id, detail FROM events", []
        if kinds is not None:
            args = list(kinds)
            query += f" WHERE kind IN ({', '.join('?' * len(args))})"
        rows = self._db.execute(query + " ORDER BY rowid", args).fetchall()
        return [(t, k, i, json.loads(d) if d else None) for t, k, i, d in rows]

    # ------------------------------------------------------------------ data frames
    def trials_frame(self, *, newer_than: int | None = None, ids: Sequence[int] = ()) -> pd.DataFrame:
        """One row per trial: ids, state, objective, times, worker, and one column per
        parameter (``newer_than``, ``ids``: as in :meth:`trials`)."""
        import pandas as pd

        rows = self._trial_rows(None, newer_than, ids)
        scalars = [c for c in TRIAL_COLUMNS if c not in JSON_COLUMNS]
        if not rows:
            return pd.DataFrame(columns=scalars)
        # The scalars in one go, then one JSON parse per JSON column of 100,000 cells, no
        # object per trial (a 100,000-trial store opens in about half a second).
        everything = pd.DataFrame.from_records(rows, columns=TRIAL_COLUMNS)
        frame = everything[scalars]
        parts = [frame]
        for column, prefix in JSON_COLUMNS.items():
            texts = [t if isinstance(t, str) else "" for t in everything[column].tolist()]  # None may read as NaN
            if not any(texts):
                continue
            decoded = json.loads("[" + ",".join(t or "{}" for t in texts) + "]")
            part = pd.DataFrame.from_records(decoded)
            if column == "origin":
                part = part.map(_cell)
            parts.append(part.add_prefix(prefix))
        frame = pd.concat(parts, axis=1) if len(parts) > 1 else frame
        frame["duration"] = frame["ended"] - frame["started"]
        return frame

    def metrics_frame(self, after: int = 0) -> pd.DataFrame:
        """Per-step metrics, long format; ``after`` skips rows up to that ``row`` number
        (readers that poll fetch only what is new)."""
        import pandas as pd

        return pd.read_sql_query(
            "SELECT rowid AS row, trial_id, attempt, step, name, value, time FROM metrics "
            "WHERE rowid > ? ORDER BY rowid",
            self._db,
            params=(after,),
        )

    def data_version(self) -> int:
        """Changes whenever another connection commits (cheap: pollers skip unchanged reads)."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])


def _in_chunks(ids: Sequence[int], size: int = 500) -> Iterator[tuple[list[int], str]]:
    """``ids`` in pieces small enough for one ``IN (...)`` each, with their placeholders."""
    for start in range(0, len(ids), size):
        chunk = list(ids[start : start + size])
        yield chunk, ", ".join("?" * len(chunk))
