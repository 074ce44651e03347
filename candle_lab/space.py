"""Search-space parameters, the :class:`SearchSpace` they form, and the file formats.

File formats read and written here:

* ``ga``: the CANDLE/Supervisor GA JSON format, a list of
  ``{"name", "type": int|float|categorical|ordered|logical|constant, "lower", "upper",
  "values", "element_type", "sigma", "use_log_scale", "value"}``; candle_lab extends it
  with a ``"when"`` field on any entry (the parameter's condition, as in a spec) and a
  ``"type": "layers"`` entry (``min_layers``, ``max_layers``, ``units``, ``format``, as
  in a spec), which CANDLE's own GA does not read;
* ``grid``: the PyCOMPSs-style JSON object of lists, ``{"optimizer": ["adam", "sgd"], ...}``;
* ``upf``: CANDLE unrolled parameter files, one JSON object per line, each with an ``"id"``
  that becomes the run id;
* ``native``: a JSON/YAML list of this module's own parameter objects.
"""

from __future__ import annotations

import itertools
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
from candle_lab.conditions import Condition, Target, check, evaluation_order, parse_when
from candle_lab.errors import SpecError, did_you_mean, expected_got

Choice = str | int | float | bool | list[int | float | str]
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
MAX_GRID = 4_000_000
MAX_INT = 2**53  # integers beyond this are not exact as floats (the surrogates' unit space)
MAX_LAYERS = 16  # type layers: at most this many layers


class _Param(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(description="Parameter name, as the model receives it")
    when: str | dict[str, Any] | None = Field(
        None, description='Only searched (and passed) when this holds, e.g. "layers >= 3" or {optimizer: [sgd]}'
    )

    @model_validator(mode="after")
    def _check_name(self) -> _Param:
        if not NAME_RE.match(self.name):
            raise ValueError(
                f"name must start with a letter or '_' and hold only letters, digits, '_', '.', '-'; "
                f"got {self.name!r}"
            )
        if self.when is not None:
            try:
                parse_when(self.when)
            except ValueError as exc:
                raise ValueError(f"when: {exc}") from None
        return self

    @property
    def condition(self) -> Condition | None:
        return parse_when(self.when) if self.when is not None else None


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


class UnitsRange(BaseModel):
    """The units of each layer of a ``layers`` parameter."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    low: int = Field(ge=1)
    high: int
    log: bool = False

    @model_validator(mode="after")
    def _check_bounds(self) -> UnitsRange:
        _check_low_high(self.low, self.high, self.log, integer=True)
        return self


class LayersParam(_Param):
    """A list of layer widths, as CANDLE's ``dense``/``conv`` parameters take them: the
    number of layers (``min_layers`` to ``max_layers``) and the units of each layer are
    searched; layer k exists only when there are at least k layers. The model receives
    ``[500, 100, 50]`` (``format: list``) or ``"500 100 50"`` (``format: text``). Inside the
    search the family is the integer ``NAME.layers`` and ``NAME.1`` … ``NAME.<max_layers>``
    (conditions may name them, e.g. ``when: "dense.layers >= 2"``)."""

    type: Literal["layers"] = "layers"
    min_layers: int = Field(1, ge=0, le=MAX_LAYERS)
    max_layers: int = Field(ge=1, le=MAX_LAYERS)
    units: UnitsRange
    format: Literal["list", "text"] = "list"

    @model_validator(mode="after")
    def _check_layers(self) -> LayersParam:
        if self.min_layers > self.max_layers:
            raise ValueError(f"min_layers must be at most max_layers, got {self.min_layers} > {self.max_layers}")
        return self

    @property
    def count_name(self) -> str:
        return f"{self.name}.layers"

    def unit_name(self, k: int) -> str:
        return f"{self.name}.{k}"

    def expand(self) -> list[tuple[IntegerParam, Condition | None]]:
        """The searched family: the layer count (when it varies), then each layer's units
        with the condition that the layer exists."""
        out: list[tuple[IntegerParam, Condition | None]] = []
        if self.min_layers < self.max_layers:
            out.append((IntegerParam(name=self.count_name, low=self.min_layers, high=self.max_layers), None))
        for k in range(1, self.max_layers + 1):
            exists = parse_when(f"{self.count_name} >= {k}") if k > self.min_layers else None
            u = self.units
            out.append((IntegerParam(name=self.unit_name(k), low=u.low, high=u.high, log=u.log), exists))
        return out

    def value(self, units: Sequence[int]) -> list[int] | str:
        return " ".join(str(u) for u in units) if self.format == "text" else [int(u) for u in units]

    def units_of(self, value: Any) -> list[int]:
        """The widths in a value this parameter produced (a list, or text)."""
        items = value.split() if isinstance(value, str) else list(value) if isinstance(value, list | tuple) else []
        return [int(float(v)) for v in items]


Parameter = Annotated[
    RealParam | IntegerParam | CategoricalParam | ConstantParam | LayersParam, Field(discriminator="type")
]
Searched = RealParam | IntegerParam | CategoricalParam

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
    """The parameters of one experiment, with sampling and grid enumeration.

    ``searchable`` are the parameters the optimizers search, ``layers`` families
    expanded. A point the optimizers build holds every searchable parameter (``flat``);
    :meth:`finish` makes it what a trial receives: constants added, parameters whose
    ``when`` fails left out, layer families joined into their list. :meth:`flat` goes
    back, filling what a trial lacks with :func:`default_value`."""

    parameters: tuple[RealParam | IntegerParam | CategoricalParam | ConstantParam | LayersParam, ...]
    searchable: tuple[Searched, ...] = field(init=False)
    constants: dict[str, Any] = field(init=False)
    conditions: dict[str, Condition] = field(init=False)  # by searched (or constant) name
    _order: tuple[str, ...] = field(init=False)
    _families: tuple[LayersParam, ...] = field(init=False)
    _family_conditions: dict[str, Condition | None] = field(init=False)  # each layer family's own ``when``

    def __post_init__(self) -> None:
        flat = [q for _, q, _ in _flattened(self.parameters)]
        conditions = {q.name: c for _, q, c in _flattened(self.parameters) if c is not None}
        order, cyclic = evaluation_order(conditions, [q.name for q in flat])
        if cyclic:
            raise ValueError(f"the conditions form a cycle: {' -> '.join(cyclic)}")
        set_ = object.__setattr__
        set_(self, "searchable", tuple(q for q in flat if not isinstance(q, ConstantParam)))
        set_(self, "constants", {q.name: q.value for q in flat if isinstance(q, ConstantParam)})
        set_(self, "conditions", conditions)
        set_(self, "_order", tuple(order))
        set_(self, "_families", tuple(p for p in self.parameters if isinstance(p, LayersParam)))
        set_(self, "_family_conditions", {p.name: p.condition for p in self._families})  # parsed once

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    @property
    def conditional(self) -> bool:
        """Whether some parameter may be absent, or a layer family joined (points need :meth:`finish`)."""
        return bool(self.conditions or self._families)

    def with_constants(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """A full parameter dict in declaration order (constants included)."""
        merged = {**self.constants, **point}
        return {name: merged[name] for name in self.names if name in merged} | {
            k: v for k, v in point.items() if k not in self.constants and k not in self.names
        }

    def active(self, flat: Mapping[str, Any]) -> dict[str, Any]:
        """The searched parameters and constants present in a full point: those whose
        conditions hold on the ones present before them."""
        present: dict[str, Any] = {}
        for name in self._order:
            condition = self.conditions.get(name)
            if condition is None or condition.holds(present):
                present[name] = self.constants[name] if name in self.constants else flat.get(name)
        return present

    def finish(self, flat: Mapping[str, Any]) -> dict[str, Any]:
        """What a trial receives of a full point (see the class)."""
        if not self.conditional:
            return self.with_constants(flat)
        present = self.active(flat)
        out: dict[str, Any] = {}
        for p in self.parameters:
            if isinstance(p, LayersParam):
                own = self._family_conditions[p.name]
                if own is None or own.holds(present):
                    units = [present[p.unit_name(k)] for k in range(1, p.max_layers + 1) if p.unit_name(k) in present]
                    out[p.name] = p.value(units)
            elif p.name in present:
                out[p.name] = present[p.name]
        hidden = set(self._order)
        return out | {k: v for k, v in flat.items() if k not in hidden and k not in self.names}

    def flat(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """A full point from what a trial received (absent parameters at their default)."""
        if not self.conditional:
            return dict(point)
        out = dict(point)
        for p in self._families:
            if p.name in point:
                units = p.units_of(out.pop(p.name))
                if p.min_layers < p.max_layers:
                    out[p.count_name] = min(p.max_layers, max(p.min_layers, len(units)))
                for k, u in enumerate(units[: p.max_layers], start=1):
                    out[p.unit_name(k)] = u
        for q in self.searchable:
            out.setdefault(q.name, default_value(q))
        return out

    def check_point(self, point: Mapping[str, Any]) -> list[tuple[str, str]]:
        """What keeps ``point`` (as a trial receives it) from being a point of this space:
        (parameter, message) for unknown names, values out of range or not among the
        choices, a parameter missing although its condition holds, or given although it
        does not, a constant given another value."""
        problems = [(k, "not a parameter of this space" + did_you_mean(k, self.names)) for k in point
                    if k not in self.names]
        flat = {k: v for k, v in point.items() if k in self.names}
        reported: set[str] = set()
        for p in self._families:
            if p.name in flat:
                value = flat.pop(p.name)
                units = p.units_of(value) if _is_units(value) else None
                if units is None or not p.min_layers <= len(units) <= p.max_layers:
                    problems.append((p.name, expected_got(
                        f"a list of {p.min_layers} to {p.max_layers} layer widths", value)))
                    reported.add(p.name)
                    continue
                if p.min_layers < p.max_layers:
                    flat[p.count_name] = len(units)
                flat |= {p.unit_name(k): u for k, u in enumerate(units, start=1)}
        present = self.active(flat)
        for q in self.searchable:
            name = q.name.rsplit(".", 1)[0] if q.name not in self.names and "." in q.name else q.name
            if q.name in present and q.name not in flat and name not in reported:
                problems.append((name, "expected a value: " + ("its condition holds" if q.name in self.conditions
                                                              else "the space searches it")))
                reported.add(name)
            elif q.name in flat and q.name not in present:
                problems.append((name, f"given, but its condition {self.conditions[q.name].text()!r} does not hold"))
            elif q.name in flat and name not in reported:
                wrong = _out_of(q, flat[q.name])
                if wrong:
                    problems.append((name, wrong))
        for name, value in self.constants.items():
            if name in point and point_key({"v": point[name]}) != point_key({"v": value}):
                problems.append((name, expected_got(f"the constant {value!r} (or nothing)", point[name])))
        return problems

    def sample(self, rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
        """``n`` independent random points (log-uniform where ``log`` is set)."""
        columns = {p.name: sample_param(p, rng, n) for p in self.searchable}
        return [self.finish({k: col[i] for k, col in columns.items()}) for i in range(n)]

    def grid_values(self, points_per_dim: int) -> list[list[Any]]:
        return [grid_axis(p, points_per_dim) for p in self.searchable]

    def grid_size(self, points_per_dim: int) -> int:
        if self.conditional:
            return sum(1 for _ in itertools.islice(self.grid_points(points_per_dim), MAX_GRID + 1))
        return math.prod(len(v) for v in self.grid_values(points_per_dim))

    def grid_point(self, axes: Sequence[Sequence[Any]], index: int) -> dict[str, Any]:
        """The ``index``-th point of the grid in row-major (mixed-radix) order."""
        point: dict[str, Any] = {}
        for p, values in zip(reversed(self.searchable), reversed(axes), strict=True):
            index, digit = divmod(index, len(values))
            point[p.name] = values[digit]
        return self.finish(point)

    def grid_points(self, points_per_dim: int) -> Iterator[dict[str, Any]]:
        """The valid combinations of a conditional grid, each once: an absent parameter
        takes no values of its own."""
        axes = {p.name: grid_axis(p, points_per_dim) for p in self.searchable}
        names = [n for n in self._order if n in axes]

        def walk(i: int, present: dict[str, Any]) -> Iterator[dict[str, Any]]:
            if i == len(names):
                yield self.finish(present)
                return
            name = names[i]
            condition = self.conditions.get(name)
            if condition is not None and not condition.holds({**self.constants, **present}):
                yield from walk(i + 1, present)
                return
            for value in axes[name]:
                present[name] = value
                yield from walk(i + 1, present)
            del present[name]

        return walk(0, {})


def _is_units(value: Any) -> bool:
    items = value.split() if isinstance(value, str) else value if isinstance(value, list | tuple) else None
    return items is not None and all(_whole(v) for v in items)


def _whole(value: Any) -> bool:
    try:
        return not isinstance(value, bool) and float(value).is_integer()
    except (TypeError, ValueError):
        return False


def _out_of(p: Searched, value: Any) -> str | None:
    """Why ``value`` is not a value of ``p``; None when it is."""
    if isinstance(p, CategoricalParam):
        if any(point_key({"v": value}) == point_key({"v": c}) for c in p.choices):
            return None
        return expected_got("one of " + ", ".join(json.dumps(c) for c in p.choices), value)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(p, IntegerParam) and not (number and float(value).is_integer()):
        return expected_got("a whole number", value)
    if not number or not math.isfinite(value):
        return expected_got("a number", value)
    if not p.low <= value <= p.high:
        return expected_got(f"a number from {p.low:g} to {p.high:g}", value)
    return None


def default_value(p: Searched) -> Any:
    """Where an absent parameter sits in a full point: the middle of its range (on its
    scale), or its first choice."""
    if isinstance(p, CategoricalParam):
        return p.choices[0]
    middle = math.sqrt(p.low * p.high) if p.log else (p.low + p.high) / 2
    return int(round(middle)) if isinstance(p, IntegerParam) else float(middle)


def check_conditions(parameters: Sequence[Parameter]) -> list[tuple[int, str]]:
    """What is wrong with the parameters' conditions: (index of the parameter, message)
    for unknown names, references to itself, comparisons its parameter cannot take,
    values it never has, and cycles."""
    targets: dict[str, Target] = {}
    owner: dict[str, int] = {}  # searched name -> index of the parameter it comes from
    flat: dict[str, Condition] = {}
    for i, q, condition in _flattened(parameters):
        targets[q.name], owner[q.name] = _target(q), i
        if condition is not None:
            flat[q.name] = condition
    problems: list[tuple[int, str]] = []
    for i, p in enumerate(parameters):
        condition = p.condition
        if condition is not None:
            problems += [(i, message) for message in check(p.name, condition, targets)]
    if not problems:
        _, cyclic = evaluation_order(flat, list(targets))
        if cyclic:
            problems.append((owner[cyclic[0]], f"the conditions form a cycle: {' -> '.join(cyclic)}"))
    return problems


def _flattened(parameters: Sequence[Parameter]) -> list[tuple[int, Searched | ConstantParam, Condition | None]]:
    """Each parameter as searched (a layer family as its members), with the index of the
    parameter it comes from and the condition it exists under (its own, and for a layer
    that the family has that many layers)."""
    out: list[tuple[int, Searched | ConstantParam, Condition | None]] = []
    for i, p in enumerate(parameters):
        own = p.condition
        members: list[tuple[Any, Condition | None]] = list(p.expand()) if isinstance(p, LayersParam) else [(p, None)]
        out += [(i, q, exists & own if exists is not None else own) for q, exists in members]
    return out


def _target(p: Searched | ConstantParam) -> Target:
    if isinstance(p, CategoricalParam):
        numbers = all(isinstance(c, int | float) and not isinstance(c, bool) for c in p.choices)
        return Target(p.name, p.ordered and numbers, tuple(p.choices))
    if isinstance(p, ConstantParam):
        return Target(p.name, isinstance(p.value, int | float) and not isinstance(p.value, bool), (p.value,))
    return Target(p.name, True)


def sample_param(p: RealParam | IntegerParam | CategoricalParam, rng: np.random.Generator, n: int) -> list[Any]:
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
GA_TYPES = {"int", "float", "categorical", "ordered", "logical", "constant", "layers"}


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
        when = {"when": entry["when"]} if entry.get("when") is not None else {}  # candle_lab's extension
        if kind == "layers":
            params.append({k: v for k, v in entry.items() if k != "element_type"})
            continue
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
        params[-1].update(when)
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
                out.append({"name": p.name, "type": "logical"} | ({"when": p.when} if p.when is not None else {}))
                continue
            element = _element_type(p.choices)
            entry = {"name": p.name, "type": "ordered" if p.ordered else "categorical", "element_type": element}
            entry["values"] = list(p.choices)
            if p.ordered:
                entry["sigma"] = p.sigma or max(1, len(p.choices) // 4)
            out.append(entry)
        elif isinstance(p, LayersParam):
            out.append(p.model_dump(exclude={"when"}))
        else:
            out.append({"name": p.name, "type": "constant", "value": p.value})
        if p.when is not None:
            out[-1]["when"] = p.when
    return out


def _element_type(choices: Sequence[Any]) -> str:
    if all(isinstance(c, int) and not isinstance(c, bool) for c in choices):
        return "int"
    if all(isinstance(c, int | float) and not isinstance(c, bool) for c in choices):
        return "float"
    return "string"


def to_grid_json(parameters: Sequence[Parameter], points_per_dim: int = 5) -> dict[str, list[Any]]:
    """Export parameters as a PyCOMPSs-style object of lists (reals/integers discretised).
    The format has no conditions: a conditional space is refused, naming the parameter."""
    out: dict[str, list[Any]] = {}
    for p in parameters:
        if p.when is not None or isinstance(p, LayersParam):
            what = "a layers type" if isinstance(p, LayersParam) else f"a condition (when: {p.when})"
            raise SpecError.one(f"space.{p.name}", f"the grid format cannot hold {what}; export as GA JSON or YAML")
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
