"""Warm start: the completed trials of earlier experiments, mapped onto a new space.

``search.warm_start: [EXP003, EXP007]`` (ids or folders) imports, when the experiment is
created, each completed trial of those experiments that is a point of the new space:
parameters the new space no longer has are dropped, a constant must keep its value, a
value outside narrowed bounds or removed choices leaves the trial out, as does a
parameter the new space searches that the trial never had. Each source gets a note of
what was mapped (:class:`WarmNote`); the search hears the imported trials before its
first proposal. They are not trials of the new experiment: its budget, best and front
count its own trials only.

Mapping is pure (:func:`map_trials`); reading the source experiments is the caller's.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from candle_lab import pareto
from candle_lab.errors import SpecError
from candle_lab.optimizers.base import Observation
from candle_lab.spec import ExperimentSpec
from candle_lab.store.db import TrialRecord

SHOWN_REASONS = 3  # an error lists this many reasons why trials did not fit


@dataclass(frozen=True)
class WarmTrial:
    """A completed trial of another experiment, as a point of the new space."""

    source: str  # the experiment's id
    run_id: str
    params: dict[str, Any]
    metrics: dict[str, float]


@dataclass(frozen=True)
class WarmNote:
    """What was mapped from one source experiment."""

    source: str
    completed: int
    imported: int
    skipped: dict[str, int] = field(default_factory=dict)  # why trials were left out, how many each
    dropped: tuple[str, ...] = ()  # its parameters the new space does not have
    added: tuple[str, ...] = ()  # parameters the new space searches that it did not

    def text(self) -> str:
        parts = [f"{self.imported} of {self.completed} completed trials of {self.source} imported"]
        if self.dropped:
            parts.append(f"dropped {', '.join(self.dropped)}")
        if self.added:
            parts.append(f"new: {', '.join(self.added)}")
        parts += [f"{n} left out ({why})" for why, n in sorted(self.skipped.items(), key=lambda kv: -kv[1])]
        return "; ".join(parts)


def needed_metrics(spec: ExperimentSpec) -> list[str]:
    """The metrics a trial must have to tell the new search anything."""
    return list(dict.fromkeys([*(g.metric for g in spec.goals), *(c.metric for c in spec.constraints)]))


def map_trials(
    spec: ExperimentSpec, field_name: str, source: str, source_spec: ExperimentSpec, records: Sequence[TrialRecord]
) -> tuple[list[WarmTrial], WarmNote]:
    """The completed ``records`` of experiment ``source`` that are points of ``spec``'s
    space; raises :class:`SpecError` on ``field_name`` when none can be used."""
    space = spec.space.search_space()
    done = [t for t in records if t.state == "completed"]
    if not done:
        raise SpecError.one(field_name, f"{source} has no completed trials to learn from")
    wanted = needed_metrics(spec)
    reported: set[str] = set()
    trials: list[WarmTrial] = []
    skipped: Counter[str] = Counter()
    theirs: set[str] = set()
    for t in done:
        metrics = {**(t.metrics or {})}
        if t.objective is not None:
            metrics[source_spec.objective.metric] = float(t.objective)
        reported.update(metrics)
        theirs.update(t.params)
        missing = [m for m in wanted if m not in metrics or not math.isfinite(float(metrics[m]))]
        if missing:
            skipped[f"no {missing[0]!r}"] += 1
            continue
        point = {k: v for k, v in t.params.items() if k in space.names}
        problems = space.check_point(point)
        if problems:
            name, message = problems[0]
            skipped[f"{name}: {message.split(', got')[0]}"] += 1
            continue
        trials.append(WarmTrial(source, t.run_id, space.finish(space.flat(point)), metrics))
    absent = [m for m in wanted if m not in reported]
    if not trials and absent:
        raise SpecError.one(field_name, f"the trials of {source} do not report {', '.join(map(repr, absent))} "
                                        f"(they report {', '.join(sorted(reported)) or 'nothing'})")
    if not trials:
        reasons = "; ".join(f"{n}× {why}" for why, n in skipped.most_common(SHOWN_REASONS))
        raise SpecError.one(field_name, f"none of the {len(done)} completed trials of {source} is a point of the "
                                        f"new space ({reasons})")
    searched = [p.name for p in spec.space.parameters if p.type != "constant"]
    note = WarmNote(source, len(done), len(trials), dict(skipped),
                    dropped=tuple(sorted(theirs - set(space.names))),
                    added=tuple(n for n in searched if n not in theirs))
    return trials, note


def observations(spec: ExperimentSpec, trials: Sequence[WarmTrial]) -> list[Observation]:
    """What the optimizer hears of imported trials, as of the new spec's objectives and
    constraints."""
    out = []
    for t in trials:
        value = t.metrics.get(spec.objective.metric)
        loss = spec.objective.loss(float(value)) if value is not None else None
        vector = pareto.losses(t.metrics, spec.goals) if spec.multi_objective else None
        feasible = pareto.feasible(t.metrics, spec.constraints)
        out.append(Observation(t.params, loss, f"{t.source}/{t.run_id}", losses=vector, feasible=feasible))
    return out


def as_row(t: WarmTrial) -> dict[str, Any]:
    return {"source": t.source, "run_id": t.run_id, "params": t.params, "metrics": t.metrics}


def from_row(row: Mapping[str, Any]) -> WarmTrial:
    return WarmTrial(str(row["source"]), str(row["run_id"]), dict(row["params"]), dict(row["metrics"]))
