"""Search-space parameters, the :class:`SearchSpace` they form, and the file formats.

File formats read and written here:

* ``ga``: the CANDLE/Supervisor GA JSON format, a list of
  ``{"name", "type": int|float|categorical|ordered|logical|constant, "lower", "upper",
  "values", "element_type", "sigma", "use_log_scale", "value"}``;
* ``grid``: the PyCOMPSs-style JSON object of lists, ``{"optimizer": ["adam", "sgd"], ...}``;
* ``upf``: CANDLE unrolled parameter files, one JSON object per line, each with an ``"id"``
  that becomes the run id;
* ``native``: a JSON/YAML list of this module's own parameter objects.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from candle_lab import limits
from candle_lab.errors import SpecError, expected_got

Choice = str | int | float | bool | list[int | float | str]
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
MAX_GRID = 4_000_000
MAX_INT = 2**53  # integers beyond this are not exact as floats (the surrogates' unit space)


class _Param(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(description="Parameter name, as the model receives it")

    @model_validator(mode="after")
    def _check_name(self) -> _Param:
        if not NAME_RE.match(self.name):
            raise ValueError(
                f"name must start with a letter or '_' and hold only letters, digits, '_', '.', '-'; "
                f"got {self.name!r}"
            )
        return self


class RealParam(_Param):
    """A continuous parameter in ``[low, high]``, optionally searched on a log scale."""

    type: Literal["real"] = "real"
    low: float
    high: float
    log: bool = Field(False, description="Search on a log scale (needs low > 0)")
    sigma: float | None = Field(
        None, gt=0, description="GA: standard deviation of the Gaussian mutation, in the parameter's units"
    )
    mutable: bool = Field(False, description="PBT: perturbed when a member exploits another")

    @model_validator(mode="after")
    def _check_bounds(self) -> RealParam:
        _check_low_high(self.low, self.high, self.log)
        return self


class IntegerParam(_Param):
    """An integer parameter in ``[low, high]`` (both included)."""

    type: Literal["integer"] = "integer"
    low: int
    high: int
    log: bool = False
    sigma: float | None = Field(
        None, gt=0, description="GA: standard deviation of the Gaussian mutation, in the parameter's units"
    )
    mutable: bool = Field(False, description="PBT: perturbed when a member exploits another")

    @model_validator(mode="after")
    def _check_bounds(self) -> IntegerParam:
        _check_low_high(self.low, self.high, self.log, integer=True)
        return self


class CategoricalParam(_Param):
    """One of ``choices``; ``ordered`` makes it an ordinal (ordered categorical) parameter."""

    type: Literal["categorical"] = "categorical"
    choices: tuple[Choice, ...]
    ordered: bool = Field(False, description="The choices have a natural order (e.g. batch sizes)")
    sigma: float | None = Field(
        None, gt=0, description="GA, ordered choices: standard deviation of the Gaussian mutation, in steps"
    )
    mutable: bool = Field(False, description="PBT: perturbed when a member exploits another")

    @model_validator(mode="after")
    def _check_choices(self) -> CategoricalParam:
        if not self.choices:
            raise ValueError("choices must hold at least one value, got an empty list")
        keys = [json.dumps(c, sort_keys=True) for c in self.choices]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"choices must be distinct, got duplicates {', '.join(dupes)}")
        if self.mutable and len(self.choices) < 2:
            raise ValueError(f"mutable: expected at least two choices for PBT to switch, got {list(self.choices)}")
        if self.sigma is not None and not self.ordered:
            raise ValueError(f"sigma applies to ordered choices only (type ordered), got sigma={self.sigma} here")
        return self


class ConstantParam(_Param):
    """A fixed value passed to every trial (CANDLE's ``constant``); not searched."""

    type: Literal["constant"] = "constant"
    value: Any
    mutable: bool = False

    @model_validator(mode="after")
    def _not_mutable(self) -> ConstantParam:
        if self.mutable:
            raise ValueError(
                "mutable: expected a real, integer or categorical parameter for PBT to perturb, got a constant"
            )
        return self


Parameter = Annotated[RealParam | IntegerParam | CategoricalParam | ConstantParam, Field(discriminator="type")]

_TYPE_ALIASES = {"float": "real", "double": "real", "continuous": "real", "int": "integer", "categorial": "categorical"}


def normalize_param_dict(raw: Any) -> Any:
    """Accept friendly spellings (``float``, ``int``, ``ordered``, ``logical``, ``values``)."""
    if not isinstance(raw, Mapping):
        return raw
    data = dict(raw)
    kind = data.get("type")
    if isinstance(kind, str):
        kind = _TYPE_ALIASES.get(kind.lower(), kind.lower())
        if kind in ("ordered", "ordinal"):
            kind, data["ordered"] = "categorical", True
        if kind == "logical":
            kind = "categorical"
            data.setdefault("choices", [True, False])
        data["type"] = kind
    if data.get("type") == "categorical" and "values" in data and "choices" not in data:
        data["choices"] = data.pop("values")
    return data


def _check_low_high(low: float, high: float, log: bool, integer: bool = False) -> None:
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"low and high must be finite numbers, got low={low}, high={high}")
    if integer and max(abs(low), abs(high)) > MAX_INT:
        raise ValueError(f"low and high must lie within ±2**53 (±{MAX_INT:.3g}), got low={low:.6g}, high={high:.6g}")
    if not math.isfinite(float(high) - float(low)):
        raise ValueError(f"high - low must be a finite number, got low={low}, high={high}")
    if low >= high:
        raise ValueError(f"low must be less than high, got low={low}, high={high}")
    if log and low <= 0:
        raise ValueError(f"log scale needs low > 0, got low={low}")


class UpfRun(BaseModel):
    """One line of an unrolled parameter file: its run id and its parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    params: dict[str, Any]


# --------------------------------------------------------------------------------------
# The search space used by the optimizers


@dataclass(frozen=True)
class SearchSpace:
    """The parameters of one experiment, with sampling and grid enumeration."""

    parameters: tuple[RealParam | IntegerParam | CategoricalParam | ConstantParam, ...]
    searchable: tuple[RealParam | IntegerParam | CategoricalParam, ...] = field(init=False)
    constants: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "searchable", tuple(p for p in self.parameters if not isinstance(p, ConstantParam)))
        object.__setattr__(
            self, "constants", {p.name: p.value for p in self.parameters if isinstance(p, ConstantParam)}
        )

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    def with_constants(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """A full parameter dict in declaration order (constants included)."""
        merged = {**self.constants, **point}
        return {name: merged[name] for name in self.names if name in merged} | {
            k: v for k, v in point.items() if k not in self.constants and k not in self.names
        }

    def sample(self, rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
        """``n`` independent random points (log-uniform where ``log`` is set)."""
        columns = {p.name: _sample_param(p, rng, n) for p in self.searchable}
        return [self.with_constants({k: col[i] for k, col in columns.items()}) for i in range(n)]

    def grid_values(self, points_per_dim: int) -> list[list[Any]]:
        return [grid_axis(p, points_per_dim) for p in self.searchable]

    def grid_size(self, points_per_dim: int) -> int:
        return math.prod(len(v) for v in self.grid_values(points_per_dim))

    def grid_point(self, axes: Sequence[Sequence[Any]], index: int) -> dict[str, Any]:
        """The ``index``-th point of the grid in row-major (mixed-radix) order."""
        point: dict[str, Any] = {}
        for p, values in zip(reversed(self.searchable), reversed(axes), strict=True):
            index, digit = divmod(index, len(values))
            point[p.name] = values[digit]
        return self.with_constants(point)


def _sample_param(p: RealParam | IntegerParam | CategoricalParam, rng: np.random.Generator, n: int) -> list[Any]:
    if isinstance(p, RealParam):
        if p.log:
            return [float(v) for v in np.exp(rng.uniform(math.log(p.low), math.log(p.high), n))]
        return [float(v) for v in rng.uniform(p.low, p.high, n)]
    if isinstance(p, IntegerParam):
        if p.log:
            raw = np.exp(rng.uniform(math.log(p.low), math.log(p.high + 1), n))
            return [int(min(p.high, max(p.low, math.floor(v)))) for v in raw]
        return [int(v) for v in rng.integers(p.low, p.high + 1, n)]
    picks = rng.integers(0, len(p.choices), n)
    return [p.choices[int(i)] for i in picks]


def grid_axis(p: RealParam | IntegerParam | CategoricalParam, points: int) -> list[Any]:
    """Grid values of one parameter: all choices, all integers, or ``points`` evenly spaced."""
    if isinstance(p, CategoricalParam):
        return list(p.choices)
    if isinstance(p, IntegerParam):
        if p.high - p.low + 1 <= points:
            return list(range(p.low, p.high + 1))
        raw = np.geomspace(p.low, p.high, points) if p.log else np.linspace(p.low, p.high, points)
        return sorted({int(round(v)) for v in raw})
    raw = np.geomspace(p.low, p.high, points) if p.log else np.linspace(p.low, p.high, points)
    return [float(v) for v in raw]


def point_key(point: Mapping[str, Any]) -> str:
    """A canonical text key for a point (to recognise the same point again)."""
    return json.dumps(point, sort_keys=True, default=str)


# --------------------------------------------------------------------------------------
# File formats

SpaceFormat = Literal["auto", "ga", "grid", "upf", "native"]
GA_TYPES = {"int", "float", "categorical", "ordered", "logical", "constant"}


@dataclass(frozen=True)
class SpaceFile:
    """What a space file holds: parameters, or (UPF) explicit runs."""

    parameters: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    format: str


def read_space_file(path: Path, fmt: SpaceFormat = "auto") -> SpaceFile:
    """Read a space file; errors name the file, the line or entry, and the problem."""
    text = limits.read_text(path, limits.MAX_SPACE_BYTES, "space.file")
    if fmt == "auto":
        fmt = detect_format(path, text)
    if fmt == "upf":
        return SpaceFile([], parse_upf(text, str(path)), "upf")
    data = _load_structured(text, path)
    if fmt == "grid":
        return SpaceFile(parse_grid_json(data, str(path)), [], "grid")
    if fmt == "ga":
        return SpaceFile(parse_ga_json(data, str(path)), [], "ga")
    if not isinstance(data, list):
        raise SpecError.one(str(path), expected_got("a list of parameter objects", type(data).__name__))
    return SpaceFile([dict(d) if isinstance(d, Mapping) else d for d in data], [], "native")


def detect_format(path: Path, text: str) -> SpaceFormat:
    if path.suffix.lower() in (".upf", ".jsonl"):
        return "upf"
    stripped = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if len(stripped) > 1 and all(line.strip().startswith("{") and line.strip().endswith("}") for line in stripped):
        return "upf"
    try:
        data = _load_structured(text, path)
    except SpecError:
        return "native"
    if isinstance(data, Mapping):
        # A one-line unrolled parameter file reads as a mapping too: {"id": "run1", "lr": 0.1}.
        if "id" in data and not isinstance(data["id"], list):
            return "upf"
        return "grid"
    if isinstance(data, list) and data and all(isinstance(d, Mapping) for d in data):
        kinds = {str(d.get("type", "")).lower() for d in data}
        uses_ga_keys = any(("lower" in d or "values" in d or "element_type" in d) for d in data)
        if uses_ga_keys or kinds & {"int", "float", "ordered", "logical"}:
            return "ga"
    return "native"


def _load_structured(text: str, path: Path) -> Any:
    try:
        data = limits.parse(text, path.suffix.lower() == ".json", str(path))
        limits.check_shape(data, str(path))
        return data
    except json.JSONDecodeError as exc:
        raise SpecError.one(str(path), f"line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError.one(str(path), f"{where}not valid YAML ({getattr(exc, 'problem', exc)})") from None


def parse_upf(text: str, source: str = "upf") -> list[dict[str, Any]]:
    """Parse an unrolled parameter file: one JSON object per line, each with an ``"id"``."""
    runs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if len(runs) == limits.MAX_RUNS:
            raise SpecError.one(source, f"expected at most {limits.MAX_RUNS:,} runs, got more")
        try:
            obj = limits.parse(line, True, f"{source} line {lineno}")
        except json.JSONDecodeError as exc:
            raise SpecError.one(f"{source} line {lineno}", f"not a JSON object ({exc.msg})") from None
        limits.check_shape(obj, f"{source} line {lineno}")
        if not isinstance(obj, dict):
            raise SpecError.one(f"{source} line {lineno}", expected_got("a JSON object", obj))
        run_id = obj.pop("id", None)
        if run_id is None or isinstance(run_id, bool | dict | list) or str(run_id) == "":
            raise SpecError.one(
                f"{source} line {lineno}.id",
                expected_got('an "id" (it becomes the run id)', run_id) + f" in {line}",
            )
        run_id = str(run_id)
        if not re.match(r"^[A-Za-z0-9_.\-]+$", run_id):
            raise SpecError.one(f"{source} line {lineno}.id", expected_got("letters, digits, '_', '.', '-'", run_id))
        if run_id in seen:
            raise SpecError.one(f"{source} line {lineno}.id", f"duplicate run id {run_id!r}")
        seen.add(run_id)
        runs.append({"id": run_id, "params": obj})
    if not runs:
        raise SpecError.one(source, "the unrolled parameter file holds no runs")
    return runs


def parse_grid_json(data: Any, source: str = "grid") -> list[dict[str, Any]]:
    """PyCOMPSs-style ``{"name": [values...]}`` -> categorical parameters."""
    if not isinstance(data, Mapping) or not data:
        raise SpecError.one(source, expected_got('an object of lists, like {"batch_size": [32, 64]}', data))
    params = []
    for name, values in data.items():
        if not isinstance(values, list) or not values:
            raise SpecError.one(f"{source}.{name}", expected_got("a non-empty list of values", values))
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        params.append({"name": str(name), "type": "categorical", "choices": values, "ordered": numeric})
    return params


def parse_ga_json(data: Any, source: str = "ga") -> list[dict[str, Any]]:
    """CANDLE/Supervisor GA parameter list -> native parameter dicts."""
    if not isinstance(data, list) or not data:
        raise SpecError.one(source, expected_got("a non-empty list of parameter objects", data))
    params: list[dict[str, Any]] = []
    for i, entry in enumerate(data):
        where = f"{source}[{i}]"
        if not isinstance(entry, Mapping):
            raise SpecError.one(where, expected_got("an object with name and type", entry))
        name = entry.get("name")
        kind = str(entry.get("type", "")).lower()
        if not name:
            raise SpecError.one(f"{where}.name", "required field is missing")
        where = f"{source}[{i}] ({name})"
        if kind not in GA_TYPES:
            raise SpecError.one(f"{where}.type", expected_got(" | ".join(sorted(GA_TYPES)), entry.get("type")))
        if kind in ("int", "float"):
            for key in ("lower", "upper"):
                if key not in entry:
                    raise SpecError.one(f"{where}.{key}", f"required for type {kind}")
            params.append(
                {
                    "name": name,
                    "type": "integer" if kind == "int" else "real",
                    "low": entry["lower"],
                    "high": entry["upper"],
                    "log": bool(entry.get("use_log_scale", entry.get("log", False))),
                }
                | _sigma(entry)
            )
        elif kind in ("categorical", "ordered"):
            values = entry.get("values")
            if not isinstance(values, list) or not values:
                raise SpecError.one(f"{where}.values", expected_got("a non-empty list", values))
            ordered = kind == "ordered"
            extra = _sigma(entry) if ordered else {}
            params.append({"name": name, "type": "categorical", "choices": values, "ordered": ordered} | extra)
        elif kind == "logical":
            params.append({"name": name, "type": "categorical", "choices": [True, False]})
        else:
            if "value" not in entry:
                raise SpecError.one(f"{where}.value", "required for type constant")
            params.append({"name": name, "type": "constant", "value": entry["value"]})
    return params


def _sigma(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The GA file's ``sigma`` when it gives one (validated with the parameter)."""
    return {"sigma": entry["sigma"]} if entry.get("sigma") is not None else {}


def to_ga_json(parameters: Sequence[Parameter]) -> list[dict[str, Any]]:
    """Export parameters in the CANDLE/Supervisor GA JSON format."""
    out: list[dict[str, Any]] = []
    for p in parameters:
        if isinstance(p, RealParam | IntegerParam):
            kind = "float" if isinstance(p, RealParam) else "int"
            entry: dict[str, Any] = {"name": p.name, "type": kind, "lower": p.low, "upper": p.high}
            if p.log:
                entry["use_log_scale"] = True
            default = (p.high - p.low) / 20 if isinstance(p, RealParam) else max(1, (p.high - p.low) // 20)
            entry["sigma"] = p.sigma or default
            out.append(entry)
        elif isinstance(p, CategoricalParam):
            if [repr(c) for c in p.choices] == ["True", "False"] and not p.ordered:
                out.append({"name": p.name, "type": "logical"})
                continue
            element = _element_type(p.choices)
            entry = {"name": p.name, "type": "ordered" if p.ordered else "categorical", "element_type": element}
            entry["values"] = list(p.choices)
            if p.ordered:
                entry["sigma"] = p.sigma or max(1, len(p.choices) // 4)
            out.append(entry)
        else:
            out.append({"name": p.name, "type": "constant", "value": p.value})
    return out


def _element_type(choices: Sequence[Any]) -> str:
    if all(isinstance(c, int) and not isinstance(c, bool) for c in choices):
        return "int"
    if all(isinstance(c, int | float) and not isinstance(c, bool) for c in choices):
        return "float"
    return "string"


def to_grid_json(parameters: Sequence[Parameter], points_per_dim: int = 5) -> dict[str, list[Any]]:
    """Export parameters as a PyCOMPSs-style object of lists (reals/integers discretised)."""
    out: dict[str, list[Any]] = {}
    for p in parameters:
        out[p.name] = [p.value] if isinstance(p, ConstantParam) else grid_axis(p, points_per_dim)
    return out


def to_upf(runs: Sequence[UpfRun]) -> str:
    """Export runs as an unrolled parameter file."""
    return "".join(json.dumps({"id": r.id, **r.params}) + "\n" for r in runs)


def iter_grid(space: SearchSpace, points_per_dim: int, order: Sequence[int] | None = None) -> Iterator[dict[str, Any]]:
    axes = space.grid_values(points_per_dim)
    total = math.prod(len(a) for a in axes)
    for i in order if order is not None else range(total):
        yield space.grid_point(axes, int(i))
