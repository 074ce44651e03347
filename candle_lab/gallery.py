"""The gallery: example models, each a folder with ``experiment.yaml`` (and, for CANDLE
benchmarks, ``default_model.txt``). Forms offer them as starting points."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from candle_lab import settings
from candle_lab.errors import SpecError, did_you_mean

SPEC_FILE = "experiment.yaml"


@dataclass(frozen=True)
class GalleryModel:
    name: str
    folder: Path
    title: str
    description: str

    @property
    def spec_file(self) -> Path:
        return self.folder / SPEC_FILE

    @property
    def default_model(self) -> Path | None:
        path = self.folder / "default_model.txt"
        return path if path.is_file() else None


def gallery_dirs() -> list[Path]:
    """``$CANDLE_LAB_GALLERY`` (``os.pathsep``-separated), the installed copy, the source tree."""
    dirs = settings.gallery_dirs()
    packaged = resources.files("candle_lab") / "_gallery"
    if packaged.is_dir():
        dirs.append(Path(str(packaged)))
    dirs.append(Path(__file__).resolve().parents[1] / "gallery")
    return [d for d in dirs if d.is_dir()]


def gallery_models() -> dict[str, GalleryModel]:
    """Every gallery model by folder name (the first directory holding a name wins)."""
    found: dict[str, GalleryModel] = {}
    for base in gallery_dirs():
        for spec in sorted(base.glob(f"*/{SPEC_FILE}")):
            name = spec.parent.name
            if name in found:
                continue
            try:
                data = yaml.safe_load(spec.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError):
                data = {}
            found[name] = GalleryModel(name, spec.parent, str(data.get("name", name)), str(data.get("description", "")))
    return found


def gallery_model(name: str) -> GalleryModel:
    models = gallery_models()
    if name not in models:
        raise SpecError.one(
            "gallery", f"expected one of {', '.join(models) or 'none'}, got {name!r}{did_you_mean(name, models)}"
        )
    return models[name]
