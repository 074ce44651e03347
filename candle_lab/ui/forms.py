"""State of the experiment form: model, search space, search, budget and compute job.

A plain ``param.Parameterized`` class with no widget in it: the Panel views render it,
the tests drive it directly. It converts to and from :class:`ExperimentSpec`, so a form
and a spec file round-trip, and it reports problems with the core's own messages.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as _field
from pathlib import Path
from typing import Any

import pandas as pd
import param
from pydantic import ValidationError

from candle_lab import api, formatting
from candle_lab.clusters.profiles import available_profiles, load_profile, resolve
from candle_lab.conditions import parse_when
from candle_lab.errors import CandleLabError, SpecError, expected_got, from_pydantic
from candle_lab.gallery import gallery_model, gallery_models
from candle_lab.models.candle import read_default_model
from candle_lab.space import (
    CategoricalParam,
    ConstantParam,
    IntegerParam,
    LayersParam,
    RealParam,
    UpfRun,
    read_space_file,
    to_ga_json,
    to_grid_json,
    to_upf,
)
from candle_lab.spec import ALGORITHMS, ComputeSpec, ExperimentSpec, SpaceSpec, load_spec, spec_from_dict

SPACE_COLUMNS = ["name", "type", "low", "high", "log", "choices", "value", "when", "mutable"]
TEXT_COLUMNS = ["name", "type", "low", "high", "choices", "value", "when"]  # edited as text: a typo stays as typed
FLAG_COLUMNS = ["log", "mutable"]
DEFAULTS_COLUMNS = ["parameter", "value"]
PARAM_TYPES = ["real", "integer", "categorical", "ordered", "constant", "layers"]
LAYER_COUNT = re.compile(r"^\s*(\d+)\s*(?:(?:-|\.\.|to)\s*(\d+)\s*)?$")  # layers' value: "1-4" or "3"
EXPORT_FORMATS = {
    "ga": "CANDLE GA JSON", "grid": "PyCOMPSs grid JSON", "upf": "unrolled parameter file", "yaml": "spec"
}
_SEARCH_FIELDS = (
    "algorithm", "surrogate", "acquisition", "initial_points", "batch_size", "seed", "population", "generations",
    "mutation_rate", "crossover_rate", "tournament_size", "generational", "interval_epochs", "intervals",
    "truncation", "resample_probability",
)
_COMPUTE_FIELDS = ("profile", "workers", "cores", "memory", "gpus", "gpu_type", "partition", "walltime")
FIELD_PARAMS: dict[str, str] = {  # spec field -> the form parameter that edits it
    "name": "exp_name", "description": "description",
    "model.kind": "model_kind", "model.ref": "model_ref", "model.path": "model_path",
    "model.command": "model_command", "model.result_file": "result_file", "model.default_model": "default_model",
    "budget.max_trials": "max_trials", "budget.max_time": "max_time", "budget.target": "target",
    "objective.metric": "metric", "objective.direction": "direction",
    "objectives": "more_objectives", "constraints": "constraints",
    "trial.retries": "retries", "trial.timeout": "timeout",
    **{f"search.{n}": n for n in _SEARCH_FIELDS},
    **{f"compute.{n}": n for n in _COMPUTE_FIELDS},
}


# ------------------------------------------------------------------------- space table
def _bare(value: Any) -> bool:
    return isinstance(value, str) and "," not in value and '"' not in value and _literal(value) == value


def _show(value: Any) -> str:
    """A value as cell text: bare when it reads back as the same string, else JSON."""
    return value if _bare(value) else json.dumps(value)


def _show_choices(values: Sequence[Any]) -> str:
    strings = [v for v in values if isinstance(v, str)]
    if all(_bare(v) for v in strings):
        return ", ".join(_show(v) for v in values)
    return ", ".join(json.dumps(v) for v in values)


def _cell_text(value: Any) -> str:
    return "" if _blank(value) else value if isinstance(value, str) else str(value)


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1")
    return False if _blank(value) else bool(value)


def space_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The space table as the editor holds it: text cells (a mistyped number stays as
    typed, so its message can quote it) and true/false flags, one row per table row."""
    frame = rows.reindex(columns=SPACE_COLUMNS).reset_index(drop=True)
    columns: dict[str, pd.Series] = {}
    for column in SPACE_COLUMNS:
        if column in FLAG_COLUMNS:
            columns[column] = pd.Series([_flag(v) for v in frame[column]], dtype=bool)
        else:
            columns[column] = pd.Series([_cell_text(v) for v in frame[column]], dtype=object)
    return pd.DataFrame(columns, columns=SPACE_COLUMNS)


def defaults_table(values: dict[str, Any]) -> pd.DataFrame:
    """The default model values as text cells (object columns even when empty: an empty
    frame would be float64, and a table widget would keep number cells for the text)."""
    return pd.DataFrame(
        {"parameter": pd.Series(list(values), dtype=object),
         "value": pd.Series([_show(v) for v in values.values()], dtype=object)},
        columns=DEFAULTS_COLUMNS,
    )


def parameters_to_rows(parameters: Sequence[Any]) -> pd.DataFrame:
    """The editable table of a space: one row per parameter, text cells for values."""
    rows = []
    for p in parameters:
        row: dict[str, Any] = {"name": p.name, "type": p.type, "low": "", "high": "", "log": False,
                               "choices": "", "value": "", "when": _when_text(p.when),
                               "mutable": bool(getattr(p, "mutable", False))}
        if isinstance(p, RealParam | IntegerParam):
            row.update(low=json.dumps(p.low), high=json.dumps(p.high), log=p.log)
        elif isinstance(p, LayersParam):  # units in low/high/log, the number of layers in value
            count = f"{p.min_layers}-{p.max_layers}" if p.min_layers < p.max_layers else str(p.max_layers)
            row.update(low=json.dumps(p.units.low), high=json.dumps(p.units.high), log=p.units.log, value=count)
        elif isinstance(p, CategoricalParam):
            row.update(type="ordered" if p.ordered else "categorical", choices=_show_choices(p.choices))
        elif isinstance(p, ConstantParam):
            row["value"] = _show(p.value)
        rows.append(row)
    return space_table(pd.DataFrame(rows, columns=SPACE_COLUMNS))


def _when_text(when: Any) -> str:
    """A condition as the table shows it: its own text, a mapping as clauses."""
    if when is None:
        return ""
    if isinstance(when, str):
        return when
    try:
        return parse_when(when).text()
    except ValueError:
        return json.dumps(when)


_GOAL = re.compile(r"^([A-Za-z_][\w.\-]*)(?:\s+(min|max|minimize|maximize))?$")
_LIMIT = re.compile(r"^(?:(-?[\d.eE+\-]+)\s*<=\s*)?([A-Za-z_][\w.\-]*)\s*(?:(<=|>=)\s*(-?[\d.eE+\-]+))?$")


def parse_goals(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """``size min, auc max`` as objectives (direction min when left out), and a message per
    item that is not one."""
    goals, bad = [], []
    for item in (part.strip() for part in text.split(",")):
        found = _GOAL.match(item) if item else None
        if item and found is None:
            bad.append(f'{quoted(item)}: expected "metric min" or "metric max"')
        elif found is not None:
            goals.append({"metric": found[1], "direction": "maximize" if (found[2] or "min").startswith("max")
                          else "minimize"})
    return goals, bad


def parse_limits(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """``memory_gb <= 30, 0.7 <= auc`` (or ``auc >= 0.7``) as constraints, and a message per
    item that is not one."""
    limits, bad = [], []
    for item in (part.strip() for part in text.split(",")):
        found = _LIMIT.match(item) if item else None
        numbers = [n for n in (found[1], found[4]) if n is not None] if found else []
        if not item:
            continue
        if found is None or not numbers or any(_number(n) is None for n in numbers):
            bad.append(f'{quoted(item)}: expected "metric <= number", "metric >= number" or "number <= metric"')
            continue
        limit: dict[str, Any] = {"metric": found[2]}
        if found[1] is not None:
            limit["min"] = _number(found[1])
        if found[3] is not None:
            limit["max" if found[3] == "<=" else "min"] = _number(found[4])
        limits.append(limit)
    return limits, bad


def _literal(text: str) -> Any:
    """A cell's text as a value: JSON or Python literal when it parses, else the text."""
    text = text.strip()
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError):
            continue
    return text


def parse_choices(text: str) -> list[Any]:
    """``relu, tanh`` or ``16, 32, 64`` or ``[1, 2], [3]`` as a list of values."""
    text = text.strip()
    if not text:
        return []
    try:
        value = json.loads(f"[{text}]")
        return list(value)
    except ValueError:
        pass
    try:
        value = ast.literal_eval(f"[{text}]")
        return list(value)
    except (ValueError, SyntaxError):
        return [_literal(part) for part in text.split(",") if part.strip()]


def _blank(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value: Any) -> int | float | None:
    """A number cell's number; ``None`` when it holds something else."""
    number = _literal(value) if isinstance(value, str) else value
    if isinstance(number, bool) or not isinstance(number, int | float):
        return None
    return number


def quoted(value: Any) -> str:
    """Text the form rejected, quoted back as typed (cut short when long)."""
    text = str(value).strip()
    return f'"{text}"' if len(text) <= 60 else f'"{text[:50]}..." ({len(text):,} characters)'


def row_label(index: int, name: str) -> str:
    """How messages name a space-table row: ``space row 2 (learning_rate)``; rows count
    from 1, as the table numbers them."""
    return f"space row {index + 1} ({name})"


Cell = tuple[int, str | None]  # (table row from 0, column; None: the whole row)


@dataclass
class SpaceRows:
    """The space table read: the parameters of its good rows, the table row of each, and
    one problem (with its cell) per bad cell."""

    parameters: list[dict[str, Any]] = _field(default_factory=list)
    rows: list[int] = _field(default_factory=list)
    problems: list[tuple[str, str]] = _field(default_factory=list)
    cells: list[Cell] = _field(default_factory=list)

    def bad(self, index: int, name: str, column: str, message: str) -> None:
        self.problems.append((f"{row_label(index, name)}, {column}", message))
        self.cells.append((index, column))


def read_space_rows(rows: pd.DataFrame) -> SpaceRows:
    """The table as parameter dicts; blank rows are skipped, every bad cell is named."""
    out = SpaceRows()
    for i, row in enumerate(rows.to_dict("records")):
        name = "" if _blank(row.get("name")) else str(row["name"]).strip()
        if not name:
            continue
        before = len(out.problems)
        kind = _cell_text(row.get("type")).strip().lower() or "real"
        entry: dict[str, Any] = {"name": name}
        if kind in ("real", "integer"):
            entry["type"] = kind
            for bound in ("low", "high"):
                value = row.get(bound)
                number = None if _blank(value) else _number(value)
                if _blank(value):
                    out.bad(i, name, bound, "expected a number, got nothing")
                elif number is None:
                    out.bad(i, name, bound, f"{quoted(value)} is not a number")
                else:
                    entry[bound] = int(number) if kind == "integer" and float(number).is_integer() else number
            entry["log"] = _flag(row.get("log"))
        elif kind in ("categorical", "ordered"):
            entry.update(type="categorical", choices=parse_choices(_cell_text(row.get("choices"))))
            if kind == "ordered":
                entry["ordered"] = True
        elif kind == "constant":
            entry.update(type="constant", value=_literal(_cell_text(row.get("value"))))
        elif kind == "layers":
            units: dict[str, Any] = {"log": _flag(row.get("log"))}
            for bound in ("low", "high"):
                number = _number(row.get(bound)) if not _blank(row.get(bound)) else None
                if number is None or not float(number).is_integer():
                    out.bad(i, name, bound, f"expected a whole number of units, got {quoted(row.get(bound) or '')}")
                else:
                    units[bound] = int(number)
            count = LAYER_COUNT.match(_cell_text(row.get("value")))
            if count is None:
                out.bad(i, name, "value", "expected the number of layers, like 1-4 or 3, "
                                          f"got {quoted(_cell_text(row.get('value')))}")
            else:
                low, high = int(count.group(1)), int(count.group(2) or count.group(1))
                entry.update(min_layers=low, max_layers=high)
            entry.update(type="layers", units=units)
        else:
            types = ", ".join(PARAM_TYPES)
            out.bad(i, name, "type", f"{quoted(kind)} is not a parameter type; expected one of {types}")
        when = _cell_text(row.get("when")).strip()
        if when:
            entry["when"] = when
        if _flag(row.get("mutable")):
            entry["mutable"] = True  # PBT perturbs it
        if len(out.problems) == before:
            out.parameters.append(entry)
            out.rows.append(i)
    return out


def rows_to_parameters(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """The table back to parameter dicts; raises :class:`SpecError` naming every bad cell."""
    table = read_space_rows(rows)
    if table.problems:
        raise SpecError(table.problems)
    return table.parameters


def _hidden_fields(parameters: Sequence[Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """What the table has no column for (a GA file's ``sigma``, a layer list's ``format``),
    by parameter name."""
    hidden: dict[str, tuple[str, dict[str, Any]]] = {}
    for p in parameters:
        if getattr(p, "sigma", None) is not None:
            hidden[p.name] = (p.type, {"sigma": p.sigma})
        elif isinstance(p, LayersParam) and p.format != "list":
            hidden[p.name] = (p.type, {"format": p.format})
    return hidden


def _with_hidden(
    parameters: list[dict[str, Any]], hidden: dict[str, tuple[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Table rows with the fields the table has no column for, for each parameter still of
    the same name and type as when it was loaded or imported."""
    out = []
    for entry in parameters:
        kind, extra = hidden.get(entry["name"], (None, {}))
        out.append(entry | extra if kind == entry.get("type") else entry)
    return out


def _normalized(parameters: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    try:
        return SpaceSpec(parameters=parameters).model_dump(mode="json", exclude_none=True)["parameters"]
    except (ValueError, SpecError):
        return None


def _given(path: str | os.PathLike[str], field: str) -> Path:
    if not str(path).strip():
        raise SpecError.one(field, "expected a file path, got nothing")
    return Path(path)


_LAYER_CELLS = {"min_layers": "value", "max_layers": "value"}
_PARAMETER_FIELD = re.compile(r"^space\.parameters\[(\d+)\](?: \([^)]*\))?\.?(.*)$")


def _placed(field: str, labels: Sequence[tuple[str, int | None]]) -> tuple[str, Cell | None]:
    """A core field named as the form shows it: ``space.parameters[1].low`` (the second
    parameter) -> ``space row 3 (lr), low`` when the table's row 3 holds it, and its cell."""
    match = _PARAMETER_FIELD.match(field)
    if not match or int(match[1]) >= len(labels):
        return field, None
    label, row = labels[int(match[1])]
    rest = match[2]
    named = f"{label}, {rest}" if rest else label
    if row is None:
        return named, None
    column = re.match(r"\w*", rest.removeprefix("units."))  # a layers row: units in low/high/log ...
    cell = _LAYER_CELLS.get(column[0], column[0]) if column else None  # ... its count in value
    return named, (row, cell if cell in SPACE_COLUMNS else None)


def _unique(problems: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(problems))


@dataclass
class _Checked:
    """A validation of the form: the spec (``None`` when invalid), its problems, the bad
    space-table cells and the spec dict it validated."""

    spec: ExperimentSpec | None
    problems: list[tuple[str, str]]
    cells: list[Cell]
    data: dict[str, Any]


# ------------------------------------------------------------------------- the form
class SpecForm(param.Parameterized):
    """Everything the experiment form edits. ``problems`` holds ``(field, message)`` pairs,
    every problem once (space-table rows named ``space row N (name)``, N as the table numbers
    them); ``bad_cells`` the table cells they concern, ``bad_params()`` the fields."""

    root = param.String(default="", doc="Experiments folder ('' = the default)")
    exp_name = param.String(default="experiment", doc="Experiment name")
    description = param.String(default="")

    gallery: param.Selector[str] = param.Selector(default="", objects=[""], doc="Gallery model the form started from")
    model_kind: param.Selector[str] = param.Selector(default="callable", objects=["callable", "candle", "command"])
    model_ref = param.String(default="", doc="module:function, or a CANDLE benchmark module")
    model_path = param.String(default="", doc="Folder holding the model's module")
    model_command = param.String(default="", doc="Command line of a script model")
    result_file = param.String(default="")
    default_model = param.String(default="", doc="CANDLE default model file")
    defaults = param.DataFrame(default=pd.DataFrame(columns=["parameter", "value"]), doc="Default model values")

    space = param.DataFrame(default=pd.DataFrame(columns=SPACE_COLUMNS))
    upf_runs = param.List(default=[], item_type=UpfRun)

    algorithm: param.Selector[str] = param.Selector(default="async-bo", objects=list(ALGORITHMS))
    surrogate: param.Selector[str] = param.Selector(default="auto", objects=["auto", "ET", "RF", "GP"])
    acquisition: param.Selector[str] = param.Selector(default="auto", objects=["auto", "LCB", "EI", "PI", "qLCB"])
    initial_points = param.Integer(default=10, bounds=(1, None))
    batch_size = param.Integer(default=0, bounds=(0, None), doc="batch-bo points per round (0: one per worker)")
    seed = param.Integer(default=None, allow_None=True)
    population = param.Integer(default=20, bounds=(2, None), doc="GA: individuals kept for selection")
    generations = param.Integer(default=None, allow_None=True, doc="GA: generations after the initial one")
    mutation_rate = param.Number(default=0.2, allow_None=True, doc="GA: chance that each gene mutates")
    crossover_rate = param.Number(default=0.8, allow_None=True, doc="GA: chance that a child mixes two parents")
    tournament_size = param.Integer(default=3, bounds=(1, None), doc="GA: individuals per tournament")
    generational = param.Boolean(default=False, doc="GA: wait for each whole generation (CANDLE's barrier)")
    interval_epochs = param.Integer(default=1, bounds=(1, None), doc="PBT: epochs between exploit decisions")
    intervals = param.Integer(default=None, allow_None=True, doc="PBT: intervals each member trains")
    truncation = param.Number(default=0.25, allow_None=True, doc="PBT: bottom fraction that copies the top")
    resample_probability = param.Number(default=0.25, allow_None=True, doc="PBT: chance of a fresh draw")

    max_trials = param.Integer(default=20, allow_None=True, bounds=(1, None))
    max_time = param.String(default="", doc="e.g. 30m, 2h, 01:00:00")
    target = param.Number(default=None, allow_None=True)
    metric = param.String(default="val_loss")
    direction: param.Selector[str] = param.Selector(default="minimize", objects=["minimize", "maximize"])
    more_objectives = param.String(default="", doc="Other objectives (a Pareto front): e.g. size min, auc max")
    constraints = param.String(default="", doc="Limits on metrics: e.g. peak_gpu_memory_gb <= 30, auc >= 0.7")

    profile: param.Selector[str] = param.Selector(default="local", objects=["local"])
    partition: param.Selector[str] = param.Selector(default="", objects=[""])
    gpu_type: param.Selector[str] = param.Selector(default="", objects=[""])
    gpus = param.Integer(default=0, bounds=(0, None))
    workers = param.Integer(default=2, bounds=(1, None))
    cores = param.Integer(default=1, bounds=(1, None))
    memory = param.String(default="")
    walltime = param.String(default="")

    retries = param.Integer(default=1, bounds=(0, None))
    timeout = param.String(default="")

    problems = param.List(default=[], doc="(field, message) pairs of the last check, each once")
    message = param.String(default="", doc="What the last action did")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._base: dict[str, Any] = {}  # spec fields the form does not show, kept as loaded
        self._hidden: dict[str, tuple[str, dict[str, Any]]] = {}  # parameters' fields without a column
        self._default_values: dict[str, Any] = {}
        self._default_problems: list[tuple[str, str]] = []  # the default model file could not be read
        self.bad_cells: list[Cell] = []  # space-table cells of the last check's problems (set before them)
        self.param.gallery.objects = ["", *gallery_models()]
        self.param.profile.objects = available_profiles()
        self._profile_changed()

    # ------------------------------------------------------------------ compute choices
    @param.depends("profile", watch=True)
    def _profile_changed(self) -> None:
        try:
            profile = load_profile(self.profile)
        except CandleLabError:
            self.param.partition.objects = [""]
            return
        self.param.partition.objects = ["", *profile.partitions]
        if self.partition not in self.param.partition.objects:
            self.partition = ""
        self._partition_changed()

    @param.depends("partition", "gpus", watch=True)
    def _partition_changed(self) -> None:
        try:
            profile = load_profile(self.profile)
        except CandleLabError:
            return
        name = self.partition or (profile.gpu_partition if self.gpus else profile.cpu_partition) or ""
        part = profile.partitions.get(name)
        types = ["", *(part.gpus if part else [])]
        if self.gpu_type and self.gpu_type not in types:
            types.append(self.gpu_type)  # keep a loaded value visible: the check names it
        self.param.gpu_type.objects = types

    # ------------------------------------------------------------------ loading
    def load_gallery(self, name: str) -> None:
        model = gallery_model(name)
        self.load_spec(load_spec(model.spec_file))
        self.gallery = name
        self.message = f"loaded gallery model {name}"

    def load_file(self, path: str | os.PathLike[str]) -> None:
        self.load_spec(load_spec(_given(path, "spec file")))
        self.message = f"loaded {path}"

    def load_spec(self, spec: ExperimentSpec) -> None:
        """Show a spec in the form (fields the form has no widget for are kept)."""
        if spec.search.algorithm not in ALGORITHMS:
            raise SpecError.one(
                "search.algorithm",
                f"expected one of {', '.join(ALGORITHMS)} in the form, got {spec.search.algorithm!r} "
                "(an ensemble is started from its source experiment: candle-lab ensemble, or the dashboard)",
            )
        data = spec.to_dict()
        self._base = data
        self._hidden = _hidden_fields(spec.space.parameters)
        m, s, b, o, c, t = spec.model, spec.search, spec.budget, spec.objective, spec.compute, spec.trial
        self._read_defaults(m.default_model or self._module_default_model(m.kind, m.ref, m.path))
        params = list(spec.space.parameters)
        edited = {p.name: p.value for p in params if isinstance(p, ConstantParam) and p.name in self._default_values}
        if edited:  # fixed values show in the default model table too
            frame = self.defaults.copy()
            for key, value in edited.items():
                frame.loc[frame["parameter"] == key, "value"] = _show(value)
            self.defaults = frame
        with param.parameterized.batch_call_watchers(self):
            self.param.update(
                gallery="",
                exp_name=spec.name,
                description=spec.description,
                model_kind=m.kind,
                model_ref=m.ref or "",
                model_path=m.path or "",
                model_command=" ".join(m.command or ()),
                result_file=m.result_file or "",
                default_model=m.default_model or "",
                space=parameters_to_rows(params),
                upf_runs=list(spec.space.runs),
                algorithm=s.algorithm,
                surrogate=s.surrogate,
                acquisition=s.acquisition,
                initial_points=s.initial_points,
                batch_size=s.batch_size or 0,
                seed=s.seed,
                population=s.population,
                generations=s.generations,
                mutation_rate=s.mutation_rate,
                crossover_rate=s.crossover_rate,
                tournament_size=s.tournament_size,
                generational=s.generational,
                interval_epochs=s.interval_epochs,
                intervals=s.intervals,
                truncation=s.truncation,
                resample_probability=s.resample_probability,
                max_trials=b.max_trials,
                max_time=formatting.as_entered(data["budget"].get("max_time")),
                target=b.target,
                metric=o.metric,
                direction=o.direction,
                more_objectives=", ".join(f"{g.metric} {g.direction[:3]}" for g in spec.objectives[1:]),
                constraints=", ".join(str(limit) for limit in spec.constraints),
                profile=c.profile if c.profile in self.param.profile.objects else self.profile,
                gpus=c.gpus,
                workers=c.workers,
                cores=c.cores,
                memory=c.memory or "",
                walltime=c.walltime or "",
                retries=t.retries,
                timeout=formatting.as_entered(data["trial"].get("timeout")),
                problems=[],
            )
        if c.profile not in self.param.profile.objects:  # a profile given as a path
            self.param.profile.objects = [*self.param.profile.objects, c.profile]
            self.profile = c.profile
        self.param.partition.objects = sorted({*self.param.partition.objects, c.partition or ""})
        self.partition = c.partition or ""
        self._partition_changed()
        if c.gpu_type and c.gpu_type not in self.param.gpu_type.objects:
            self.param.gpu_type.objects = [*self.param.gpu_type.objects, c.gpu_type]
        self.gpu_type = c.gpu_type or ""

    @staticmethod
    def _module_default_model(kind: str, ref: str | None, path: str | None) -> str | None:
        if kind != "candle" or not ref or not path:
            return None
        candidate = Path(path) / "default_model.txt"
        return str(candidate) if candidate.is_file() else None

    def _read_defaults(self, path: str | None) -> None:
        values: dict[str, Any] = {}
        self._default_problems = []
        if path:
            try:
                values = read_default_model(path)
            except SpecError as exc:
                self._default_problems = exc.problems
                self.problems = exc.problems
        self._default_values = values
        self.defaults = defaults_table(values)

    @param.depends("default_model", watch=True)
    def _default_model_changed(self) -> None:
        self._read_defaults(self.default_model or None)

    # ------------------------------------------------------------------ space files
    def import_space(self, path: str | os.PathLike[str], fmt: str = "auto") -> None:
        content = read_space_file(_given(path, "space file"), fmt)  # type: ignore[arg-type]
        if content.runs:
            runs = [UpfRun.model_validate(r) for r in content.runs]
            self.param.update(upf_runs=runs, algorithm="upf", space=parameters_to_rows([]))
            self.message = f"imported {len(content.runs)} runs from {path}"
        else:
            try:
                parameters = SpaceSpec.model_validate({"parameters": content.parameters}).parameters
            except ValidationError as exc:
                raise from_pydantic(exc, str(path)) from None
            self._hidden = _hidden_fields(parameters)
            self.param.update(space=parameters_to_rows(parameters), upf_runs=[])
            if self.algorithm == "upf":
                self.algorithm = "async-bo"
            self.message = f"imported {len(content.parameters)} parameters from {path}"

    def export(self, fmt: str) -> str:
        """The space (``ga``, ``grid``, ``upf``) or the whole spec (``yaml``) as text."""
        spec = self.build()
        if fmt == "yaml":
            return spec.to_yaml()
        if fmt == "ga":
            return json.dumps(to_ga_json(spec.space.parameters), indent=2)
        if fmt == "grid":
            return json.dumps(to_grid_json(spec.space.parameters, spec.search.grid_points), indent=2)
        if fmt == "upf":
            return to_upf(spec.space.runs)
        raise SpecError.one("format", expected_got(" | ".join(EXPORT_FORMATS), fmt))

    # ------------------------------------------------------------------ building
    def _edited_defaults(self) -> list[dict[str, Any]]:
        """Default-model values the researcher changed: fixed for every trial (constants)."""
        out = []
        for row in self.defaults.to_dict("records"):
            key, text = str(row["parameter"]), str(row["value"])
            if key in self._default_values and _literal(text) != self._default_values[key]:
                out.append({"name": key, "type": "constant", "value": _literal(text)})
        return out

    def spec_dict(self) -> dict[str, Any]:
        """The form as a spec dict (not validated); cleared fields and bad table rows are left out."""
        return self._spec_data(read_space_rows(self.space))[0]

    def _spec_data(self, table: SpaceRows) -> tuple[dict[str, Any], list[tuple[str, int | None]]]:
        """The spec dict, and for each of its parameters how messages name it and its table row."""
        base = json.loads(json.dumps(self._base))

        def merged(name: str, **values: Any) -> dict[str, Any]:
            out = {**base.get(name, {}), **values}
            return {k: v for k, v in out.items() if v is not None and v != ""}

        parameters = _with_hidden(table.parameters, self._hidden)
        labels: list[tuple[str, int | None]] = [
            (row_label(row, p["name"]), row) for row, p in zip(table.rows, parameters, strict=True)
        ]
        source = base.get("space", {}).get("source")
        if source and (table.problems or _normalized(parameters) != base["space"].get("parameters")):
            source = None  # edited: no longer what the file holds
        searched = {p["name"] for p in parameters}
        fixed = [p for p in self._edited_defaults() if p["name"] not in searched]
        parameters += fixed
        labels += [(f"model defaults ({p['name']})", None) for p in fixed]
        command = self.model_kind == "command"
        data = {
            **base,
            "name": self.exp_name.strip() or "experiment",
            "description": self.description,
            "model": merged(
                "model",
                kind=self.model_kind,
                ref=self.model_ref.strip(),
                path=self.model_path.strip(),
                default_model=self.default_model.strip(),
                command=self.model_command.strip() if command else None,
                result_file=self.result_file.strip() if command else None,
            ),
            "space": {"parameters": parameters, "runs": [r.model_dump() for r in self.upf_runs]}
            | ({"source": source} if source else {}),
            "search": merged(
                "search",
                algorithm=self.algorithm,
                surrogate=self.surrogate,
                acquisition=self.acquisition,
                initial_points=self.initial_points,
                batch_size=self.batch_size or None,
                seed=self.seed,
                **self._algorithm_settings(),
            ),
            "budget": merged("budget", max_trials=self.max_trials, max_time=self.max_time.strip(), target=self.target),
            "objective": merged("objective", metric=self.metric.strip(), direction=self.direction),
            "compute": merged(
                "compute",
                profile=self.profile,
                workers=self.workers,
                cores=self.cores,
                memory=self.memory.strip(),
                gpus=self.gpus,
                gpu_type=self.gpu_type,
                partition=self.partition,
                walltime=self.walltime.strip(),
            ),
            "trial": merged("trial", retries=self.retries, timeout=self.timeout.strip()),
        }
        goals, limits, _ = self._goals()
        data.pop("objectives", None)
        data.pop("constraints", None)
        if goals:
            data["objectives"] = [data["objective"], *goals]
        if limits:
            data["constraints"] = limits
        return data, labels

    def _goals(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[tuple[str, str]]]:
        """The other objectives and the constraints typed in their boxes, and what of that
        text could not be read."""
        goals, bad_goals = parse_goals(self.more_objectives)
        limits, bad_limits = parse_limits(self.constraints)
        return goals, limits, [("objectives", m) for m in bad_goals] + [("constraints", m) for m in bad_limits]

    def _algorithm_settings(self) -> dict[str, Any]:
        """The fields of the chosen algorithm (GA, PBT), the others left as loaded."""
        names = {
            "ga": ("population", "generations", "mutation_rate", "crossover_rate", "tournament_size", "generational"),
            "pbt": ("population", "interval_epochs", "intervals", "truncation", "resample_probability"),
        }.get(self.algorithm, ())
        return {name: getattr(self, name) for name in names}

    def _validated(self) -> _Checked:
        """Every problem of the form at once: each bad table cell, and the core's
        messages for the rest (rows with a bad cell are left out of the spec checked)."""
        table = read_space_rows(self.space)
        data, labels = self._spec_data(table)
        problems = [*table.problems, *self._default_problems, *self._goals()[2]]
        cells = list(table.cells)
        spec: ExperimentSpec | None = None
        try:
            spec = spec_from_dict(data, source="form")
        except SpecError as exc:
            for field, message in exc.problems:
                named, cell = _placed(field, labels)
                problems.append((named, message))
                if cell is not None:
                    cells.append(cell)
        return _Checked(None if problems else spec, _unique(problems), cells, data)

    def build(self) -> ExperimentSpec:
        """The validated spec; raises :class:`SpecError` (every problem named)."""
        checked = self._validated()
        if checked.spec is None:
            raise SpecError(checked.problems, "form")
        return checked.spec

    def check(self) -> ExperimentSpec | None:
        """Validate the whole form and the compute job against its profile; sets
        ``bad_cells`` then ``problems`` (all of them, each once)."""
        checked = self._validated()
        compute = checked.spec.compute if checked.spec is not None else self._compute_alone(checked.data)
        problems = checked.problems
        if compute is not None:
            try:
                resolve(compute)
            except SpecError as exc:
                problems = _unique([*problems, *(self._worded(p) for p in exc.problems)])
        self.bad_cells = checked.cells
        self.problems = problems
        return checked.spec if not problems else None

    @staticmethod
    def _compute_alone(data: dict[str, Any]) -> ComputeSpec | None:
        """The compute section when it is valid on its own (the rest of the spec is not)."""
        try:
            return ComputeSpec.model_validate(data.get("compute", {}))
        except (ValidationError, ValueError, SpecError):
            return None

    def _worded(self, problem: tuple[str, str]) -> tuple[str, str]:
        """A compute message that names no GPU type the researcher left open: the core
        counts the partition's first type ("has 2 a100 GPUs"); the form says "has 2 GPUs"."""
        field, message = problem
        types = [t for t in self.param.gpu_type.objects if t]
        if self.gpu_type or not types:
            return problem
        named = "|".join(re.escape(t) for t in types)
        return field, re.sub(rf"\b(has \d+) (?:{named}) GPUs\b", r"\1 GPUs", message)

    def problems_for(self, *prefixes: str) -> list[str]:
        """Messages of the problems under some sections (``compute``, ``space``...)."""
        return [f"{f}: {m}" if f else m for f, m in self.problems if not prefixes or f.startswith(prefixes)]

    def problems_outside(self, *prefixes: str) -> list[str]:
        """Messages of the problems under none of these sections (shown on their own)."""
        return [f"{f}: {m}" if f else m for f, m in self.problems if not f or not f.startswith(prefixes)]

    def bad_params(self) -> set[str]:
        """The form parameters (widgets) whose values the last check found a problem with."""
        out = set()
        for f, _ in self.problems:
            key = re.match(r"[\w.]*", f)
            name = FIELD_PARAMS.get(key[0].rstrip(".")) if key else None
            if name:
                out.add(name)
        return out

    # ------------------------------------------------------------------ actions
    def save(self, path: str | os.PathLike[str]) -> Path | None:
        spec = self.check()
        if spec is None:
            self.message = "not saved: fix the problems shown"
            return None
        target = _given(path, "spec file").expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(spec.to_json() if target.suffix == ".json" else spec.to_yaml(), encoding="utf-8")
        self.message = f"saved {target}"
        return target

    def submit(self) -> api.Experiment | None:
        """Start the experiment as its own process (it outlives the app); ``None`` when invalid."""
        spec = self.check()
        if spec is None:
            self.message = "not submitted: fix the problems shown"
            return None
        exp = api.run(spec, wait=False, root=self.root or None)
        self.message = f"started {exp.id}"
        return exp

