"""Site profiles (``site_profiles/*.yaml``): what a cluster offers and how to start workers."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from candle_lab.errors import SpecError, from_pydantic


class SiteProfile(BaseModel):
    """One site. The spec's ``compute`` section overrides ``defaults`` within the site's limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    scheduler: Literal["local", "slurm"]
    description: str = ""
    defaults: dict[str, Any] = Field(default_factory=dict)


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


def load_profile(name_or_path: str) -> SiteProfile:
    """A profile by name (``local``) or by path to a YAML file."""
    path = Path(name_or_path).expanduser()
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        found = [d / f"{name_or_path}.yaml" for d in profile_dirs() if (d / f"{name_or_path}.yaml").is_file()]
        if not found:
            raise SpecError.one(
                "compute.profile",
                f"expected one of {', '.join(available_profiles())} or a path to a profile YAML, got {name_or_path!r}",
            )
        path = found[0]
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError.one("", f"not valid YAML ({exc})", str(path)) from None
    try:
        return SiteProfile.model_validate(data)
    except ValidationError as exc:
        raise from_pydantic(exc, f"site profile {path}") from None
