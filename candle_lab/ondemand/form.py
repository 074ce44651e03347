"""The app's form: its fields, and the check of a session's choices against the site
profile (:func:`check_form`, run by ``candle-lab ondemand check`` in the session's job)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from candle_lab.clusters.profiles import ANY_GPU, SiteProfile, memory_bytes, resolve, walltime_seconds
from candle_lab.errors import SpecError, expected_got, field_path
from candle_lab.spec import ComputeSpec

MODES = {"dashboard": "CANDLE Lab dashboard", "jupyterlab": "JupyterLab with the CANDLE Lab extension"}
NO_GPU = "none"
FIELDS = ("mode", "working_dir", "partition", "gpu_type", "gpus", "cores", "memory_gb", "hours")
# What a working directory may hold: no shell metacharacters (quotes, $, `, ;, |, &, <, >,
# parentheses, globs, newlines...); a leading ~ stands for the home directory.
SAFE_PATH = re.compile(r"^(~(/[A-Za-z0-9_./+@%,=: -]*)?|[A-Za-z0-9_./+@%,=: -]*)$")
SAFE_PATH_TEXT = "a directory path of letters, digits, spaces and '_./+@%,=:-' (a leading ~ is your home)"
# The form's fields as they appear in a ``compute`` section (to name problems by form field).
COMPUTE_FIELDS = {
    "compute.partition": "partition",
    "compute.gpu_type": "gpu_type",
    "compute.gpus": "gpus",
    "compute.cores": "cores",
    "compute.memory": "memory_gb",
    "compute.walltime": "hours",
}


@dataclass(frozen=True)
class Session:
    """The form's choices once checked: what the session's job asks SLURM for."""

    mode: str
    partition: str
    gpu_type: str | None  # None: no GPU
    gpus: int
    cores: int
    memory_gb: int
    hours: int
    working_dir: str

    @property
    def walltime(self) -> str:
        return f"{self.hours // 24}-{self.hours % 24:02d}:00:00"

    @property
    def gres(self) -> str | None:
        if not self.gpus or self.gpu_type is None:
            return None
        return f"gpu:{self.gpus}" if self.gpu_type == ANY_GPU else f"gpu:{self.gpu_type}:{self.gpus}"

    def sbatch_args(self) -> list[str]:
        """The ``sbatch`` options of the session's job (``submit.yml.erb`` renders the same)."""
        args = [
            f"--partition={self.partition}",
            "--nodes=1",
            "--ntasks=1",
            f"--cpus-per-task={self.cores}",
            f"--mem={self.memory_gb}G",
            f"--time={self.walltime}",
        ]
        if self.gres:
            args.append(f"--gres={self.gres}")
        return args


@dataclass(frozen=True)
class PartitionLimits:
    """What a session may ask of one partition, in the form's units."""

    name: str
    max_hours: int
    cores: int
    memory_gb: int
    gpus: tuple[tuple[str, int], ...]

    def as_json(self) -> dict[str, Any]:
        return {"hours": self.max_hours, "cores": self.cores, "memory_gb": self.memory_gb, "gpus": dict(self.gpus)}


def partition_limits(profile: SiteProfile) -> list[PartitionLimits]:
    """The profile's partitions, the CPU partition first (the dashboard needs no GPU)."""
    names = list(profile.partitions)
    if profile.cpu_partition in names:
        names.remove(profile.cpu_partition)
        names.insert(0, profile.cpu_partition)
    out = []
    for name in names:
        part = profile.partitions[name]
        out.append(
            PartitionLimits(
                name=name,
                max_hours=int(walltime_seconds(part.max_walltime) // 3600),
                cores=part.cores,
                memory_gb=memory_bytes(part.memory) >> 30,
                gpus=tuple(part.gpus.items()),
            )
        )
    return out


def _whole_number(problems: list[tuple[str, str]], field: str, text: str, low: int) -> int:
    if re.fullmatch(r"\d+", text) and int(text) >= low:
        return int(text)
    problems.append((field, expected_got(f"a whole number of at least {low}", text)))
    return low


def check_form(values: Mapping[str, Any], profile: SiteProfile, *, existing_dir: bool = False) -> Session:
    """The form's values (strings, as OnDemand passes them) checked against the profile.

    Raises :class:`SpecError` naming every bad form field (``partition``, ``gpu_type``,
    ``hours``...); the compute limits are :func:`candle_lab.clusters.resolve`'s checks.
    ``existing_dir``: the working directory must exist (checked on the node).
    """
    text = {name: "" if values.get(name) is None else str(values[name]).strip() for name in FIELDS}
    unknown = sorted(set(values) - set(FIELDS))
    problems = [(name, f"unknown form field; expected one of {', '.join(FIELDS)}") for name in unknown]
    if text["mode"] not in MODES:
        problems.append(("mode", expected_got(" or ".join(MODES), text["mode"])))
    workdir = str(values.get("working_dir") or "")
    if not SAFE_PATH.fullmatch(workdir) or workdir != workdir.strip():
        problems.append(("working_dir", expected_got(SAFE_PATH_TEXT, workdir)))
    elif existing_dir and workdir and not Path(workdir).expanduser().is_dir():
        problems.append(("working_dir", expected_got("an existing directory", workdir)))
    gpu_type = text["gpu_type"] or NO_GPU
    gpus = 0 if gpu_type == NO_GPU else _whole_number(problems, "gpus", text["gpus"], 1)
    cores = _whole_number(problems, "cores", text["cores"], 1)
    memory_gb = _whole_number(problems, "memory_gb", text["memory_gb"], 1)
    hours = _whole_number(problems, "hours", text["hours"], 1)
    compute = {
        "profile": profile.name,
        "workers": 1,
        "cores": cores,
        "memory": f"{memory_gb}GB",
        "gpus": gpus,
        "gpu_type": None if gpu_type == NO_GPU else gpu_type,
        "partition": text["partition"] or None,
        "walltime": f"{hours}:00:00",
    }
    if not text["partition"]:
        problems.append(("partition", expected_got(f"one of {', '.join(profile.partitions)}", "")))
    else:
        try:
            resolve(ComputeSpec.model_validate(compute), profile)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                name = COMPUTE_FIELDS.get("compute." + field_path(err["loc"]), field_path(err["loc"]))
                problems.append((name, str(err["msg"]).removeprefix("Value error, ")))
        except SpecError as exc:
            for field, message in exc.problems:
                if field == "compute.walltime":  # in the form's unit
                    name, limit = text["partition"], profile.partitions[text["partition"]].max_walltime
                    most = int(walltime_seconds(limit) // 3600)
                    message = f"partition {name!r} allows at most {most} hours ({limit}), asked for {hours}"
                problems.append((COMPUTE_FIELDS.get(field, field), message))
    if problems:
        raise SpecError(problems, "Open OnDemand session")
    return Session(
        mode=text["mode"],
        partition=text["partition"],
        gpu_type=None if gpu_type == NO_GPU else gpu_type,
        gpus=gpus,
        cores=cores,
        memory_gb=memory_gb,
        hours=hours,
        working_dir=workdir,
    )


def parse_assignments(items: list[str]) -> dict[str, str]:
    """``["partition=gpu", "hours=2"]`` -> ``{"partition": "gpu", "hours": "2"}``."""
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SpecError.one("", expected_got("FIELD=VALUE", item))
        values[name] = value
    return values
