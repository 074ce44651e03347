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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import param
from pydantic import ValidationError

from candle_lab import api
from candle_lab.clusters.profiles import available_profiles, load_profile, resolve
from candle_lab.errors import CandleLabError, SpecError, expected_got, from_pydantic
from candle_lab.gallery import gallery_model, gallery_models
from candle_lab.models.candle import read_default_model
from candle_lab.space import (
    CategoricalParam,
    ConstantParam,
    IntegerParam,
    RealParam,
    UpfRun,
    read_space_file,
    to_ga_json,
    to_grid_json,
    to_upf,
)
from candle_lab.spec import ALGORITHMS, ExperimentSpec, SpaceSpec, load_spec, spec_from_dict

SPACE_COLUMNS = ["name", "type", "low", "high", "log", "choices", "value", "mutable"]
PARAM_TYPES = ["real", "integer", "categorical", "ordered", "constant"]
EXPORT_FORMATS = {
    "ga": "CANDLE GA JSON", "grid": "PyCOMPSs grid JSON", "upf": "unrolled parameter file", "yaml": "spec"
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


def parameters_to_rows(parameters: Sequence[Any]) -> pd.DataFrame:
    """The editable table of a space: one row per parameter, text cells for lists."""
    rows = []
    for p in parameters:
        row: dict[str, Any] = {"name": p.name, "type": p.type, "low": None, "high": None, "log": False,
                               "choices": "", "value": "", "mutable": bool(getattr(p, "mutable", False))}
        if isinstance(p, RealParam | IntegerParam):
            row.update(low=float(p.low), high=float(p.high), log=p.log)
        elif isinstance(p, CategoricalParam):
            row.update(type="ordered" if p.ordered else "categorical", choices=_show_choices(p.choices))
        elif isinstance(p, ConstantParam):
            row["value"] = _show(p.value)
        rows.append(row)
    return pd.DataFrame(rows, columns=SPACE_COLUMNS)


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


def rows_to_parameters(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """The table back to parameter dicts; blank rows are skipped, bad cells named."""
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows.to_dict("records")):
        name = "" if _blank(row.get("name")) else str(row["name"]).strip()
        if not name:
            continue
        where = f"space.parameters[{len(out)}] ({name})"
        kind = str(row.get("type") or "real").strip().lower()
        entry: dict[str, Any] = {"name": name}
        if kind in ("real", "integer"):
            entry["type"] = kind
            for bound in ("low", "high"):
                value = row.get(bound)
                if _blank(value):
                    raise SpecError.one(f"{where}.{bound}", f"expected a number, got nothing (table row {i + 1})")
                number = float(value) if not isinstance(value, str) else _literal(value)
                if not isinstance(number, int | float) or isinstance(number, bool):
                    raise SpecError.one(f"{where}.{bound}", expected_got("a number", value))
                entry[bound] = int(number) if kind == "integer" and float(number).is_integer() else number
            entry["log"] = bool(row.get("log")) if not _blank(row.get("log")) else False
        elif kind in ("categorical", "ordered"):
            entry.update(type="categorical", choices=parse_choices(str(row.get("choices") or "")))
            if kind == "ordered":
                entry["ordered"] = True
        elif kind == "constant":
            entry.update(type="constant", value=_literal(str(row.get("value") or "")))
        else:
            raise SpecError.one(f"{where}.type", expected_got(" | ".join(PARAM_TYPES), kind))
        if not _blank(row.get("mutable")) and bool(row.get("mutable")):
            entry["mutable"] = True  # PBT perturbs it
        out.append(entry)
    return out


def _hidden_fields(parameters: Sequence[Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """What the table has no column for (a GA file's ``sigma``), by parameter name."""
    return {p.name: (p.type, {"sigma": p.sigma}) for p in parameters if getattr(p, "sigma", None) is not None}


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


def _blank_if_none(value: Any) -> str:
    return "" if value is None else str(value)


# ------------------------------------------------------------------------- the form
class SpecForm(param.Parameterized):
    """Everything the experiment form edits. ``problems`` holds ``(field, message)`` pairs."""

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

    problems = param.List(default=[], doc="(field, message) pairs of the last check")
    message = param.String(default="", doc="What the last action did")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._base: dict[str, Any] = {}  # spec fields the form does not show, kept as loaded
        self._hidden: dict[str, tuple[str, dict[str, Any]]] = {}  # parameters' fields without a column
        self._default_values: dict[str, Any] = {}
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
                max_time=_blank_if_none(data["budget"].get("max_time")),
                target=b.target,
                metric=o.metric,
                direction=o.direction,
                profile=c.profile if c.profile in self.param.profile.objects else self.profile,
                gpus=c.gpus,
                workers=c.workers,
                cores=c.cores,
                memory=c.memory or "",
                walltime=c.walltime or "",
                retries=t.retries,
                timeout=_blank_if_none(data["trial"].get("timeout")),
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
        if path:
            try:
                values = read_default_model(path)
            except SpecError as exc:
                self.problems = exc.problems
        self._default_values = values
        self.defaults = pd.DataFrame(
            {"parameter": list(values), "value": [_show(v) for v in values.values()]}, columns=["parameter", "value"]
        )

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
        """The form as a spec dict (not validated); cleared fields are left out."""
        base = json.loads(json.dumps(self._base))

        def merged(name: str, **values: Any) -> dict[str, Any]:
            out = {**base.get(name, {}), **values}
            return {k: v for k, v in out.items() if v is not None and v != ""}

        parameters = _with_hidden(rows_to_parameters(self.space), self._hidden)
        source = base.get("space", {}).get("source")
        if source and _normalized(parameters) != base["space"].get("parameters"):
            source = None  # edited: no longer what the file holds
        searched = {p["name"] for p in parameters}
        parameters += [p for p in self._edited_defaults() if p["name"] not in searched]
        command = self.model_kind == "command"
        return {
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

    def _algorithm_settings(self) -> dict[str, Any]:
        """The fields of the chosen algorithm (GA, PBT), the others left as loaded."""
        names = {
            "ga": ("population", "generations", "mutation_rate", "crossover_rate", "tournament_size", "generational"),
            "pbt": ("population", "interval_epochs", "intervals", "truncation", "resample_probability"),
        }.get(self.algorithm, ())
        return {name: getattr(self, name) for name in names}

    def build(self) -> ExperimentSpec:
        """The validated spec; raises :class:`SpecError` (every problem named)."""
        return spec_from_dict(self.spec_dict(), source="form")

    def check(self) -> ExperimentSpec | None:
        """Validate the whole form and the compute job against its profile; sets ``problems``."""
        try:
            spec = self.build()
            resolve(spec.compute)
        except SpecError as exc:
            self.problems = exc.problems
            return None
        self.problems = []
        return spec

    def problems_for(self, *prefixes: str) -> list[str]:
        """Messages of the problems under some sections (``compute``, ``space``...)."""
        return [f"{f}: {m}" if f else m for f, m in self.problems if not prefixes or f.startswith(prefixes)]

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

