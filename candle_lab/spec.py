"""The experiment spec: what to run, what to search, how, for how long, and where.

An :class:`ExperimentSpec` is validated and frozen. It loads from YAML or JSON, can be
built in Python, exports a JSON Schema (for forms) and round-trips through YAML unchanged.
Relative paths in a spec file are resolved against the file's folder at load time, and a
space file is read into the spec, so that the copy saved with an experiment is complete.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from candle_lab import limits
from candle_lab.errors import SpecError, expected_got, from_pydantic
from candle_lab.space import (
    MAX_GRID,
    CategoricalParam,
    ConstantParam,
    IntegerParam,
    LayersParam,
    Parameter,
    RealParam,
    SearchSpace,
    SpaceFormat,
    UpfRun,
    check_conditions,
    normalize_param_dict,
    read_space_file,
)

Algorithm = Literal["grid", "random", "upf", "async-bo", "batch-bo", "ga", "pbt", "ensemble"]
SPACE_FORMATS: tuple[str, ...] = ("auto", "ga", "grid", "upf", "native")
ALGORITHMS: tuple[str, ...] = ("grid", "random", "upf", "async-bo", "batch-bo", "ga", "pbt")
MAX_OBJECTIVES = 4  # a Pareto front of more is hard to read and its hypervolume costly


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _base_dir(info: ValidationInfo) -> Path:
    ctx = info.context or {}
    return Path(ctx.get("base_dir") or Path.cwd())


def _resolve(value: str | None, info: ValidationInfo) -> str | None:
    if value is None or value == "":
        return None
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (_base_dir(info) / path).resolve())


# ------------------------------------------------------------------------------- model
MODULE_FUNC_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
MODULE_RE = re.compile(r"^[A-Za-z_][\w.]*$")


class ModelSpec(Section):
    """What one trial runs: a Python callable, a CANDLE benchmark module, or a command."""

    kind: Literal["callable", "candle", "command"] = Field(
        "callable", description="callable: module:function; candle: a CANDLE benchmark module; command: a script"
    )
    ref: str | None = Field(None, description="module:function (callable) or module name (candle)")
    path: str | None = Field(None, description="Folder put on sys.path so that ref can be imported")
    default_model: str | None = Field(None, description="CANDLE default model file (INI)")
    config_file: str | None = Field(None, description="CANDLE --config_file, overriding the default model file")
    command: tuple[str, ...] | None = Field(None, description="Command line of a script model")
    result_file: str | None = Field(None, description="File (in the run directory) holding the script's result")

    @field_validator("command", mode="before")
    @classmethod
    def _split_command(cls, value: Any) -> Any:
        if isinstance(value, str):
            import shlex

            try:
                return tuple(shlex.split(value))
            except ValueError as exc:  # "No closing quotation"
                raise ValueError(expected_got(f"a command line with balanced quotes ({exc})", value)) from None
        return value

    @field_validator("path", "default_model", "config_file")
    @classmethod
    def _paths(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _resolve(value, info)

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.kind == "callable":
            if not self.ref or not MODULE_FUNC_RE.match(self.ref):
                raise ValueError(
                    f"ref: expected 'module:function' for a callable model, got {self.ref!r}"
                )
        elif self.kind == "candle":
            if not self.ref or not MODULE_RE.match(self.ref):
                raise ValueError(f"ref: expected a benchmark module name like 'nt3_baseline', got {self.ref!r}")
        elif not self.command:
            raise ValueError("command: a command model needs the command line to run, got nothing")
        return self


# ------------------------------------------------------------------------------- space
class SpaceSpec(Section):
    """The parameters to search (or, for UPF, the explicit runs)."""

    parameters: tuple[Parameter, ...] = ()
    runs: tuple[UpfRun, ...] = Field((), description="Explicit runs of an unrolled parameter file")
    source: str | None = Field(None, description="The space file this was read from (informational)")

    @model_validator(mode="before")
    @classmethod
    def _accept_forms(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, list):
            data = {"parameters": data}
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        if "file" in data:
            fmt: SpaceFormat = data.pop("format", "auto")
            if fmt not in SPACE_FORMATS:
                raise SpecError.one("space.format", expected_got(" | ".join(SPACE_FORMATS), fmt))
            file = data.pop("file")
            if not isinstance(file, str | os.PathLike) or not str(file).strip():
                raise SpecError.one("space.file", expected_got("the path of a space file", file))
            path = Path(_resolve(str(file), info) or "")
            content = read_space_file(path, fmt)
            data.setdefault("parameters", content.parameters)
            data.setdefault("runs", content.runs)
            data["source"] = str(path)
        params = data.get("parameters")
        if isinstance(params, list):
            if len(params) > limits.MAX_PARAMETERS:
                raise SpecError.one(
                    "space.parameters", f"expected at most {limits.MAX_PARAMETERS:,} parameters, got {len(params):,}"
                )
            data["parameters"] = [normalize_param_dict(p) for p in params]
            for i, p in enumerate(data["parameters"]):
                choices = p.get("choices") if isinstance(p, Mapping) else None
                if isinstance(choices, list) and len(choices) > limits.MAX_CHOICES:
                    raise SpecError.one(
                        f"space.parameters[{i}].choices",
                        f"expected at most {limits.MAX_CHOICES:,} choices, got {len(choices):,}",
                    )
        return data

    @model_validator(mode="after")
    def _unique_names(self) -> SpaceSpec:
        dupes = sorted(n for n, k in Counter(p.name for p in self.parameters).items() if k > 1)
        if dupes:
            raise ValueError(f"parameter names must be unique, got {', '.join(repr(d) for d in dupes)} more than once")
        problems = check_conditions(self.parameters)
        if problems:
            raise SpecError([(f"space.parameters[{i}] ({self.parameters[i].name}).when", message)
                             for i, message in problems])
        return self

    def search_space(self) -> SearchSpace:
        return SearchSpace(tuple(self.parameters))


# ------------------------------------------------------------------------------- search
class SearchSpec(Section):
    """How to search: the algorithm and the Bayesian-optimization settings."""

    algorithm: Algorithm = Field(
        "async-bo",
        description="grid | random | upf | async-bo | batch-bo | ga | pbt (ensemble: made by candle-lab ensemble)",
    )
    surrogate: Literal["auto", "RF", "ET", "GP"] = Field(
        "auto", description="Surrogate model; auto = GP while the data is small, extra trees beyond"
    )
    acquisition: Literal["auto", "LCB", "EI", "PI", "qLCB"] = Field(
        "auto", description="auto = EI for async-bo, qLCB for batch-bo"
    )
    initial_points: int = Field(10, ge=1, description="Size of the initial (Latin hypercube) design")
    batch_size: int | None = Field(None, ge=1, description="Points per round of batch-bo (default: workers)")
    kappa: float = Field(1.96, gt=0, description="Exploration weight of LCB (mean of qLCB's weights)")
    xi: float = Field(0.01, ge=0, description="Improvement margin of EI and PI")
    seed: int | None = Field(None, description="Random seed (fixed when the experiment is created)")
    shuffle: bool = Field(False, description="Grid: visit the points in random order (CANDLE's random grid)")
    grid_points: int = Field(5, ge=2, le=10_000, description="Grid: values per real/integer parameter")
    population: int = Field(20, ge=2, le=100_000, description="GA: individuals kept for selection; PBT: members")
    generations: int | None = Field(
        None, ge=1, description="GA: generations after the initial one (budget: population × (generations + 1))"
    )
    mutation_rate: float = Field(0.2, ge=0, le=1, description="GA: chance that each gene of a child mutates")
    crossover_rate: float = Field(0.8, ge=0, le=1, description="GA: chance that a child mixes two parents")
    tournament_size: int = Field(3, ge=1, description="GA: individuals drawn per tournament selection")
    elitism: bool = Field(True, description="GA: select among the best evaluated so far (else the latest)")
    generational: bool = Field(
        False, description="GA: wait for each whole generation before the next (CANDLE's barrier)"
    )

    interval_epochs: int = Field(1, ge=1, description="PBT: epochs a member trains between exploit decisions")
    intervals: int | None = Field(
        None, ge=1, description="PBT: intervals each member trains (budget: population × intervals trials)"
    )
    truncation: float = Field(
        0.25, gt=0, le=0.5, description="PBT: bottom fraction that copies a member of the top fraction"
    )
    perturb: tuple[float, float] = Field((0.8, 1.2), description="PBT: factors a mutable number is multiplied by")
    resample_probability: float = Field(
        0.25, ge=0, le=1, description="PBT: chance that a mutable parameter is drawn afresh instead"
    )

    warm_start: tuple[str, ...] = Field(
        (), description="Experiments (ids or folders) whose completed trials the search learns from first"
    )
    enqueue: tuple[dict[str, Any], ...] = Field(
        (), description="Configurations to evaluate first (e.g. known good settings), before any proposal"
    )

    @field_validator("perturb")
    @classmethod
    def _positive_factors(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(math.isfinite(f) and f > 0 for f in value):
            raise ValueError(expected_got("two positive factors like [0.8, 1.2]", list(value)))
        return value

    @model_validator(mode="after")
    def _ga(self) -> SearchSpec:
        if self.algorithm == "ga" and self.tournament_size > self.population:
            raise ValueError(
                f"tournament_size: expected at most population ({self.population}), got {self.tournament_size}"
            )
        return self


# ------------------------------------------------------------------------------- budget
def parse_duration(value: Any, field: str = "duration") -> float | None:
    """Seconds from ``90``, ``"90s"``, ``"30m"``, ``"2h"``, ``"1d"``, ``"01:30:00"`` or ``"1-00:00:00"``."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(expected_got("a duration like 3600, '30m', '2h' or '01:30:00'", value))
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        units = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?", text)
        clock = re.fullmatch(r"(?:(\d+)-)?(\d+):([0-5]?\d)(?::([0-5]?\d))?", text)
        if match:
            seconds = float(match.group(1)) * units[match.group(2) or "s"]
        elif clock:
            # SLURM's forms (as YAML reads unquoted 1:30): MM:SS, HH:MM:SS, D-HH:MM, D-HH:MM:SS.
            days, a, b, c = clock.groups()
            if c is not None:
                h, m, s = int(a), int(b), int(c)
            elif days is not None:
                h, m, s = int(a), int(b), 0
            else:
                h, m, s = 0, int(a), int(b)
            seconds = int(days or 0) * 86400 + h * 3600 + m * 60 + s
        else:
            raise ValueError(expected_got("a duration like 3600, '30m', '2h' or '01:30:00'", value))
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(expected_got(f"a positive, finite {field}", value))
    return seconds


class BudgetSpec(Section):
    """When the search ends: trials, wall time, or a target objective reached."""

    max_trials: int | None = Field(None, ge=1, description="Most trials to run")
    max_time: float | None = Field(None, description="Most wall time in seconds (accepts '30m', '2h', '01:00:00')")
    target: float | None = Field(None, description="End the search when the objective reaches this value")

    @field_validator("max_time", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return parse_duration(value, "max_time")


class ObjectiveSpec(Section):
    metric: str = Field("val_loss", min_length=1, description="Name of the metric to optimise")
    direction: Literal["minimize", "maximize"] = "minimize"

    def loss(self, value: float) -> float:
        """The value the optimizers minimise."""
        return value if self.direction == "minimize" else -value

    def reached(self, value: float, target: float) -> bool:
        return value <= target if self.direction == "minimize" else value >= target

    def better(self, a: float, b: float) -> bool:
        return a < b if self.direction == "minimize" else a > b


class ConstraintSpec(Section):
    """A limit on a metric the model reports: trials beyond it are infeasible."""

    metric: str = Field(..., min_length=1, description="Name of a metric the model reports")
    max: float | None = Field(None, description="Feasible when the metric is at most this")
    min: float | None = Field(None, description="Feasible when the metric is at least this")

    @model_validator(mode="after")
    def _bound(self) -> ConstraintSpec:
        if self.max is None and self.min is None:
            raise ValueError(f"constraint on {self.metric!r}: expected max, min or both, got neither")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"constraint on {self.metric!r}: expected min <= max, got min {self.min} > max {self.max}")
        return self

    def satisfied(self, value: float) -> bool:
        return (self.max is None or value <= self.max) and (self.min is None or value >= self.min)

    def __str__(self) -> str:
        parts = [f"{self.min:g} <=" if self.min is not None else "", self.metric,
                 f"<= {self.max:g}" if self.max is not None else ""]
        return " ".join(p for p in parts if p)


# ------------------------------------------------------------------------------- compute
MEMORY_RE = re.compile(r"^\d+(\.\d+)?\s*([KMGT]i?B?|B)?$", re.IGNORECASE)


class ComputeSpec(Section):
    """Where trials run: a site profile and overrides within its limits."""

    profile: str = Field("local", description="Site profile name (site_profiles/NAME.yaml) or a path")
    workers: int = Field(2, ge=1, description="Most workers (one trial runs on one worker at a time)")
    cores: int = Field(1, ge=1, description="CPU cores per worker")
    memory: str | None = Field(None, description="Memory per worker, e.g. '4GB'")
    gpus: int = Field(0, ge=0, description="GPUs per worker")
    gpus_per_trial: float | None = Field(
        None,
        gt=0,
        description="GPUs one trial uses: a whole number up to gpus (one trial on several GPUs of a node) "
        "or a fraction 1/k (0.5, 0.25: k trials share each GPU); default: all the worker's gpus",
    )
    gpu_type: str | None = Field(None, description="GPU type, e.g. 'v100'")
    partition: str | None = Field(None, description="SLURM partition")
    walltime: str | None = Field(None, description="Walltime of each worker job, HH:MM:SS")

    @field_validator("partition", "gpu_type")
    @classmethod
    def _safe_name(cls, value: str | None) -> str | None:
        # These end up in a batch script: letters, digits and '_.+-' only.
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.+-]+", value):
            raise ValueError(expected_got("a name of letters, digits and '_.+-'", value))
        return value

    @model_validator(mode="after")
    def _gpus_per_trial(self) -> ComputeSpec:
        share = self.gpus_per_trial
        if share is None:
            return self
        if not self.gpus:
            raise ValueError(f"compute.gpus_per_trial needs compute.gpus of 1 or more, got gpus {self.gpus}")
        whole = share >= 1 and share == int(share) and share <= self.gpus
        fraction = share < 1 and abs(1 / share - round(1 / share)) < 1e-6
        if not (whole or fraction):
            wanted = f"a whole number of GPUs up to compute.gpus ({self.gpus}) or a fraction 1/k (0.5, 0.25)"
            raise ValueError(f"compute.gpus_per_trial: {expected_got(wanted, share)}")
        return self

    @property
    def trial_gpus(self) -> float:
        """GPUs one trial uses (``gpus_per_trial``, else the worker's ``gpus``)."""
        return float(self.gpus if self.gpus_per_trial is None else self.gpus_per_trial)

    @property
    def trials_per_worker(self) -> int:
        """Trials one worker runs at once: its GPUs over each trial's share (1 without GPUs)."""
        if not self.gpus or self.gpus_per_trial is None:
            return 1
        return max(1, round(self.gpus / self.gpus_per_trial))

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not MEMORY_RE.match(value.strip()):
            raise ValueError(expected_got("a size like '4GB' or '500MB'", value))
        return value.strip() if value else value

    @field_validator("walltime", mode="before")
    @classmethod
    def _walltime_seconds(cls, value: Any) -> Any:
        # YAML reads an unquoted 12:00:00 as the integer 43200 (base 60).
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            minutes, seconds = divmod(value, 60)
            return f"{minutes // 60:02d}:{minutes % 60:02d}:{seconds:02d}"
        return value

    @field_validator("walltime")
    @classmethod
    def _walltime(cls, value: str | None) -> str | None:
        if value is not None:
            if not re.fullmatch(r"(\d+-)?\d+:\d{2}(:\d{2})?", value.strip()):
                raise ValueError(expected_got("a walltime like '04:00:00' or '1-00:00:00'", value))
            return value.strip()
        return value


class EnsembleConfig(Section):
    """One configuration of an ensemble: the source experiment's trial and its parameters."""

    trial_id: int
    params: dict[str, Any]


class EnsembleSpec(Section):
    """An uncertainty-quantification ensemble (CANDLE's UQ workflow) of the best
    configurations of a finished experiment: ``bootstrap`` trains ``members`` models per
    configuration, each on a resample of the training data; ``dropout`` trains one model
    per configuration and predicts ``members`` times with dropout kept on."""

    source: str = Field(description="The experiment whose configurations are ensembled (its folder)")
    method: Literal["bootstrap", "dropout"] = Field("bootstrap", description="bootstrap | dropout")
    members: int = Field(10, ge=2, le=10_000, description="Bootstrap models, or dropout passes, per configuration")
    configs: list[EnsembleConfig] = Field(min_length=1, description="The configurations, best first")
    seed: int = Field(0, description="Seeds of the bootstrap resamples and dropout passes derive from it")


class TrialSpec(Section):
    retries: int = Field(1, ge=0, description="Re-runs of a trial that raised or lost its worker")
    timeout: float | None = Field(None, description="Most seconds one trial may run (accepts '30m')")
    early_stop: Literal["none", "median", "asha"] = Field(
        "none", description="Stop unpromising trials at epoch boundaries: median rule or ASHA"
    )
    grace_epochs: int = Field(2, ge=1, description="Early stopping: epochs every trial runs before it can be stopped")
    min_trials: int = Field(3, ge=1, description="Median rule: other trials needed at an epoch to compare with")
    eta: int = Field(3, ge=2, description="ASHA: keep the best 1/eta of the trials at each rung")
    keep_models: Literal["best", "all", "none"] = Field(
        "best", description="Keras models kept: the best one (EXP/best/), every run's, or none"
    )
    checkpoints: bool = Field(False, description="Keras: keep each run's best epoch in RUN…/checkpoint.keras")
    resume: bool = Field(
        True,
        description="Save a checkpoint after each epoch (Keras: automatic; functions: a `checkpoint` argument) so "
        "that an attempt cut off by a lost worker, walltime or preemption resumes from its last epoch",
    )

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return parse_duration(value, "timeout")


# ------------------------------------------------------------------------------- experiment
class ExperimentSpec(Section):
    """A whole experiment. Build in Python, or load with :func:`load_spec`."""

    name: str = Field("experiment", min_length=1, max_length=120)
    description: str = Field("", max_length=limits.MAX_DESCRIPTION)
    model: ModelSpec
    space: SpaceSpec
    search: SearchSpec = SearchSpec()
    budget: BudgetSpec = BudgetSpec()
    objective: ObjectiveSpec = ObjectiveSpec()
    objectives: list[ObjectiveSpec] = Field(
        default_factory=list,
        description="Several objectives (a Pareto front); the first is also `objective`. Empty: `objective` alone",
    )
    constraints: list[ConstraintSpec] = Field(
        default_factory=list, description="Limits on reported metrics; trials beyond them are infeasible"
    )
    compute: ComputeSpec = ComputeSpec()
    trial: TrialSpec = TrialSpec()
    ensemble: EnsembleSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _first_objective(cls, data: Any) -> Any:
        """``objectives: [...]`` alone: ``objective`` is its first."""
        if isinstance(data, dict) and isinstance(data.get("objectives"), list) and data["objectives"] and (
            "objective" not in data
        ):
            first = data["objectives"][0]
            if isinstance(first, (dict, ObjectiveSpec)):
                return {**data, "objective": first}
        return data

    @property
    def goals(self) -> list[ObjectiveSpec]:
        """Every objective, the main one first (one unless ``objectives`` lists several)."""
        return list(self.objectives) or [self.objective]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @model_validator(mode="after")
    def _objectives(self) -> ExperimentSpec:
        if self.objectives and self.objectives[0] != self.objective:
            raise ValueError(
                f"objective: with objectives, expected none or the first of them ({self.objectives[0].metric}), "
                f"got {self.objective.metric}"
            )
        names = [o.metric for o in self.objectives]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"objectives: expected each metric once, got {', '.join(repeated)} more than once")
        if len(self.objectives) > MAX_OBJECTIVES:
            raise ValueError(f"objectives: expected at most {MAX_OBJECTIVES}, got {len(self.objectives)}")
        if self.multi_objective and self.budget.target is not None:
            raise ValueError("budget.target: a target stops a single-objective search; with several objectives, "
                             f"expected none, got {self.budget.target}")
        return self

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        algo = self.search.algorithm
        space = self.space
        if (algo == "ensemble") != (self.ensemble is not None):
            raise ValueError(
                "ensemble: an ensemble experiment has search.algorithm 'ensemble' and an ensemble section "
                "(candle-lab ensemble EXP makes both), got one without the other"
            )
        if algo == "ensemble":
            return self
        if algo == "upf":
            if not space.runs:
                raise ValueError("space: algorithm 'upf' needs runs (give space.file: an unrolled parameter file)")
            return self
        if space.runs:
            raise ValueError(f"space: runs from an unrolled parameter file need search.algorithm 'upf', got {algo!r}")
        searchable = space.search_space().searchable
        if not searchable:
            raise ValueError("space: expected at least one parameter to search, got none")
        if self.search.enqueue:
            if algo in ("grid", "pbt"):
                raise ValueError(f"search.enqueue: {algo} search chooses every point itself; "
                                 "expected async-bo, batch-bo, random or ga")
            whole = space.search_space()
            bad = [(f"search.enqueue[{i}].{name}", message) for i, point in enumerate(self.search.enqueue)
                   for name, message in whole.check_point(point)]
            if bad:
                raise SpecError(bad)
        if self.search.warm_start and algo in ("grid", "upf", "pbt"):
            raise ValueError(f"search.warm_start: {algo} search does not learn from earlier trials; "
                             "expected async-bo, batch-bo or ga")
        if algo == "grid":
            size = space.search_space().grid_size(self.search.grid_points)
            if size > MAX_GRID:
                raise ValueError(
                    f"space: the grid has {size:,} points (more than {MAX_GRID:,}); "
                    "use fewer grid_points, fewer parameters, or random search"
                )
        if algo == "pbt" and self.model.kind == "command":
            raise ValueError(
                "model.kind: pbt hands each trial the checkpoint it starts from: "
                "expected callable or candle, got command"
            )
        if algo == "pbt" and not any(getattr(p, "mutable", False) for p in searchable):
            raise ValueError(
                "space: pbt perturbs the parameters marked mutable: true (e.g. learning_rate), got none"
            )
        ends = algo == "grid" or (algo == "ga" and self.search.generations is not None)  # last point, generation
        ends = ends or (algo == "pbt" and self.search.intervals is not None)  # or interval
        if not ends and self.budget.max_trials is None and self.budget.max_time is None:
            raise ValueError(
                f"budget: {algo} search does not end on its own; set budget.max_trials or budget.max_time"
                + {"ga": " (or search.generations)", "pbt": " (or search.intervals)"}.get(algo, "")
            )
        return self

    # ---- conversions
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def replace(self, **sections: Any) -> ExperimentSpec:
        """A copy with some fields replaced (``spec.replace(budget={'max_trials': 5})``), validated."""
        data = self.to_dict()
        for key, value in sections.items():
            if isinstance(value, BaseModel):
                value = value.model_dump(mode="json", exclude_none=True)
            if isinstance(value, Mapping) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return spec_from_dict(data)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return cls.model_json_schema()


def allowed_fields() -> dict[str, list[str]]:
    """Field names per section, for 'unknown field' messages."""
    out: dict[str, list[str]] = {"": list(ExperimentSpec.model_fields)}
    for name, info in ExperimentSpec.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out[name] = list(ann.model_fields)
    out["space"] = ["parameters", "runs", "source", "file", "format"]
    for param in (RealParam, IntegerParam, CategoricalParam, ConstantParam, LayersParam):
        out[f"space.parameters[].{param.model_fields['type'].default}"] = list(param.model_fields)
    return out


def changed_fields(before: ExperimentSpec, after: ExperimentSpec) -> dict[str, dict[str, Any]]:
    """What a change of a search's budget or concurrency changed, as its ``changed`` event
    records it: ``{"budget.max_trials": {"from": 100, "to": 200}}``."""
    pairs = {
        "budget.max_trials": (before.budget.max_trials, after.budget.max_trials),
        "compute.workers": (before.compute.workers, after.compute.workers),
    }
    return {field: {"from": a, "to": b} for field, (a, b) in pairs.items() if a != b}


def spec_from_dict(data: Any, base_dir: Path | None = None, source: str | None = None) -> ExperimentSpec:
    """Validate a dict into an :class:`ExperimentSpec`; raises :class:`SpecError` naming the fields."""
    if not isinstance(data, Mapping):
        raise SpecError.one("", expected_got("a mapping of sections (model, space, search, ...)", data), source)
    try:
        limits.check_shape(data)
        return ExperimentSpec.model_validate(dict(data), context={"base_dir": base_dir or Path.cwd()})
    except ValidationError as exc:
        raise from_pydantic(exc, source, allowed_fields()) from None
    except SpecError as exc:
        raise SpecError(exc.problems, source or exc.source) from None


def load_spec(path: str | os.PathLike[str]) -> ExperimentSpec:
    """Load a YAML or JSON spec file."""
    path = Path(path)
    if not path.exists():
        raise SpecError.one("", f"spec file not found: {path}")
    text = limits.read_text(path, limits.MAX_SPEC_BYTES, "")
    try:
        data = limits.parse(text, path.suffix.lower() == ".json", "")
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise SpecError.one("", f"{where}: not valid JSON ({exc.msg})", str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError.one("", f"{where}not valid YAML ({problem})", str(path)) from None
    except SpecError as exc:
        raise SpecError(exc.problems, str(path)) from None
    return spec_from_dict(data, base_dir=path.parent.resolve(), source=str(path))
