"""Site profiles (``site_profiles/*.yaml``): what a cluster offers and how to start workers.

A profile names its scheduler (``local`` or ``slurm``), its partitions with their limits
(walltime, cores and memory per node, GPU types and counts per node), how a worker's
Python starts (an interpreter path, environment set-up lines, or a container) and its
defaults. :func:`resolve` checks a spec's ``compute`` section against those limits before
anything is submitted; every value that reaches a batch script is checked here.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from candle_lab.errors import SpecError, from_pydantic
from candle_lab.spec import ComputeSpec, parse_duration

SAFE_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
ANY_GPU = "any"  # a partition whose GPUs have no type in SLURM's gres


def memory_bytes(text: str) -> int:
    """'4GB' -> bytes (SLURM reads MB/GB as MiB/GiB; so do we)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"not a size: {text!r}")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    return int(float(m.group(1)) * scale)


def walltime_seconds(text: str) -> float:
    """SLURM's time forms -> seconds: MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS."""
    days, dash, rest = text.strip().rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if dash:
        parts += [0] * (3 - len(parts))  # D-HH[:MM[:SS]]
        h, m, s = parts
        return (int(days) * 24 + h) * 3600 + m * 60 + s
    if len(parts) == 2:  # MM:SS
        return parts[0] * 60 + parts[1]
    h, m, s = ([0] * (3 - len(parts)) + parts)[-3:]
    return h * 3600 + m * 60 + s


class Partition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_walltime: str = "24:00:00"
    cores: int = Field(1, ge=1, description="CPU cores per node")
    memory: str = Field("4GB", description="Memory per node")
    gpus: dict[str, int] = Field(default_factory=dict, description="GPU type -> GPUs per node")


class Container(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str
    runtime: Literal["apptainer", "singularity"] = "apptainer"
    options: tuple[str, ...] = ("--nv",)
    python: str = "python3"


class SiteProfile(BaseModel):
    """One site. The spec's ``compute`` section overrides ``defaults`` within the site's limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    scheduler: Literal["local", "slurm"]
    description: str = ""
    defaults: dict[str, Any] = Field(default_factory=dict)
    partitions: dict[str, Partition] = Field(default_factory=dict)
    cpu_partition: str | None = None
    gpu_partition: str | None = None
    python: str | None = Field(None, description="Worker interpreter (absolute path); default: the driver's")
    env_setup: tuple[str, ...] = Field((), description="Shell lines run in the job before the worker starts")
    container: Container | None = None
    interface: str | None = None
    local_directory: str | None = None
    tls: bool = Field(True, description="Encrypt and authenticate scheduler/worker/client traffic")
    lifetime_margin: str = Field("5m", description="Workers retire this long before their walltime ends")
    max_workers: int = Field(4096, ge=1, description="Most workers one experiment may ask for")

    @field_validator("partitions")
    @classmethod
    def _safe_names(cls, value: dict[str, Partition]) -> dict[str, Partition]:
        for name, part in value.items():
            for text in (name, *part.gpus):
                if not SAFE_NAME.match(text):
                    raise ValueError(f"expected names of letters, digits, '_.+-', got {text!r}")
        return value


@dataclass(frozen=True)
class Resolved:
    """A ``compute`` section checked against a profile: what the cluster will be asked for."""

    request: ComputeSpec  # the section as the spec wrote it
    profile: SiteProfile
    workers: int
    cores: int
    memory: str | None
    gpus: int
    gpu_type: str | None
    partition: str | None
    walltime: str | None

    @property
    def trial_gpus(self) -> float:
        """GPUs of one trial: ``gpus_per_trial``, else all the worker's."""
        share = self.request.gpus_per_trial
        return float(self.gpus if share is None or not self.gpus else share)

    @property
    def processes(self) -> int:
        """Worker processes per worker (job or machine), one trial each: its GPUs over each
        trial's share (1 without ``gpus_per_trial``)."""
        share = self.request.gpus_per_trial
        return 1 if not self.gpus or share is None else max(1, round(self.gpus / share))

    @property
    def job_cores(self) -> int:
        """Cores a worker job asks for: at least one per process."""
        return max(self.cores, self.processes)

    @property
    def gres(self) -> str | None:
        if not self.gpus:
            return None
        return f"gpu:{self.gpus}" if self.gpu_type in (None, ANY_GPU) else f"gpu:{self.gpu_type}:{self.gpus}"


def profile_dirs() -> list[Path]:
    """Where profiles are looked up: the installed package's copy, then the source tree."""
    dirs = []
    packaged = resources.files("candle_lab") / "_site_profiles"
    if packaged.is_dir():
        dirs.append(Path(str(packaged)))
    source = Path(__file__).resolve().parents[2] / "site_profiles"
    if source.is_dir():
        dirs.append(source)
    return dirs


def available_profiles() -> list[str]:
    return sorted({p.stem for d in profile_dirs() for p in d.glob("*.yaml")})


# Each profile file read, by its real path: (modification time and size, the profile).
_profiles: dict[Path, tuple[tuple[int, int], SiteProfile]] = {}


def load_profile(name_or_path: str) -> SiteProfile:
    """A profile by name (``local``) or by path to a YAML file (read again only once the
    file changed)."""
    path = Path(name_or_path).expanduser()
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        found = [d / f"{name_or_path}.yaml" for d in profile_dirs() if (d / f"{name_or_path}.yaml").is_file()]
        if not found:
            raise SpecError.one(
                "compute.profile",
                f"expected one of {', '.join(available_profiles())} or a path to a profile YAML, got {name_or_path!r}",
            )
        path = found[0]
    stat, key = path.stat(), path.resolve()
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _profiles.get(key)
    if cached is None or cached[0] != stamp:
        cached = _profiles[key] = (stamp, _read_profile(path))
    return cached[1]


def _read_profile(path: Path) -> SiteProfile:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError.one("", f"not valid YAML ({exc})", str(path)) from None
    try:
        return SiteProfile.model_validate(data)
    except ValidationError as exc:
        raise from_pydantic(exc, f"site profile {path}") from None


def resolve(compute: ComputeSpec, profile: SiteProfile | None = None) -> Resolved:
    """Check ``compute`` against its profile; raises :class:`SpecError` naming every bad field."""
    profile = profile or load_profile(compute.profile)
    # The profile's defaults fill what the spec leaves open (memory, walltime, partition...).
    values: dict[str, Any] = {k: profile.defaults.get(k) if v is None else v for k, v in compute.model_dump().items()}
    problems: list[tuple[str, str]] = []
    if values["workers"] > profile.max_workers:
        raise SpecError.one(
            "compute.workers",
            f"profile {profile.name!r} allows at most {profile.max_workers:,} workers, asked for {values['workers']:,}",
        )
    if profile.scheduler == "local":
        return Resolved(
            compute,
            profile,
            values["workers"],
            values["cores"],
            values["memory"],
            values["gpus"],
            values["gpu_type"],
            None,
            None,
        )

    gpus = int(values["gpus"])
    default = profile.gpu_partition if gpus else profile.cpu_partition
    name = values["partition"] or default or next(iter(profile.partitions), None)
    part = profile.partitions.get(name) if name else None
    if part is None:
        problems.append(("compute.partition", f"expected one of {', '.join(profile.partitions)}, got {name!r}"))
        raise SpecError(problems)
    gpu_type = values["gpu_type"]
    if gpus:
        if not part.gpus:
            with_gpus = [n for n, p in profile.partitions.items() if p.gpus] or ["none"]
            problems.append(("compute.gpus", f"partition {name!r} has no GPUs; GPU partitions: {', '.join(with_gpus)}"))
        else:
            if gpu_type is None:
                gpu_type = next(iter(part.gpus))
            if gpu_type not in part.gpus:
                problems.append(
                    (
                        "compute.gpu_type",
                        f"expected one of {', '.join(part.gpus)} on partition {name!r}, got {gpu_type!r}",
                    )
                )
            elif gpus > part.gpus[gpu_type]:
                problems.append(
                    (
                        "compute.gpus",
                        f"a {name!r} node has {part.gpus[gpu_type]} {gpu_type} GPUs, asked for {gpus} per worker",
                    )
                )
    elif gpu_type is not None:
        problems.append(("compute.gpu_type", f"set compute.gpus to use a GPU type, got gpu_type {gpu_type!r}"))
    if values["cores"] > part.cores:
        problems.append(("compute.cores", f"a {name!r} node has {part.cores} cores, asked for {values['cores']}"))
    elif gpus and compute.gpus_per_trial and round(gpus / compute.gpus_per_trial) > part.cores:
        problems.append(("compute.gpus_per_trial", f"{round(gpus / compute.gpus_per_trial)} trials per worker need a "
                         f"core each; a {name!r} node has {part.cores} cores, asked for {gpus_text(compute)}"))
    memory = values["memory"]
    if memory is None:
        problems.append(("compute.memory", f"expected a memory size per worker (at most {part.memory}), got none"))
    elif memory_bytes(memory) > memory_bytes(part.memory):
        problems.append(("compute.memory", f"a {name!r} node has {part.memory}, asked for {memory}"))
    walltime = values["walltime"] or part.max_walltime
    if walltime_seconds(walltime) > walltime_seconds(part.max_walltime):
        problems.append(
            ("compute.walltime", f"partition {name!r} allows at most {part.max_walltime}, asked for {walltime}")
        )
    if problems:
        raise SpecError(problems)
    return Resolved(compute, profile, values["workers"], values["cores"], memory, gpus, gpu_type, name, walltime)


def worker_lifetime(resolved: Resolved) -> tuple[float, float] | None:
    """(lifetime, stagger) seconds: workers retire before SLURM would kill them."""
    if resolved.walltime is None:
        return None
    total = walltime_seconds(resolved.walltime)
    margin = parse_duration(resolved.profile.lifetime_margin, "lifetime_margin") or 300.0
    margin = min(margin, total / 4)
    return max(60.0, total - margin), min(margin / 2, 120.0)


def walltime_notice(resolved: Resolved) -> float | None:
    """Seconds before a worker job's walltime ends at which the worker winds down: its
    earliest (staggered) retirement, and when SLURM signals it (``--signal=B:USR1@``).
    SLURM keeps time limits in whole minutes, rounded up: its job ends then."""
    lifetime = worker_lifetime(resolved)
    if lifetime is None or resolved.walltime is None:
        return None
    earliest = int(lifetime[0]) - int(lifetime[1])  # as the worker's --lifetime options say
    limit = math.ceil(walltime_seconds(resolved.walltime) / 60) * 60
    return float(max(1, limit - earliest))


def gpus_text(compute: ComputeSpec) -> str:
    return f"gpus {compute.gpus} with gpus_per_trial {compute.gpus_per_trial}"


def worker_python(profile: SiteProfile) -> str:
    return profile.python or sys.executable
