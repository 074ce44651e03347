"""Site profiles: read once per file version; a run's compute section resolved once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import REPO

from candle_lab.clusters import profiles, resolve, task_resources
from candle_lab.errors import SpecError
from candle_lab.spec import ComputeSpec


def test_a_profile_is_read_again_only_once_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "site.yaml"
    shutil.copy(REPO / "site_profiles" / "lab.yaml", path)
    reads: list[Path] = []
    read = profiles._read_profile
    monkeypatch.setattr(profiles, "_read_profile", lambda p: reads.append(p) or read(p))

    first = profiles.load_profile(str(path))
    assert profiles.load_profile(str(path)) is first and len(reads) == 1
    path.write_text(path.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    os.utime(path, ns=(1, 1))  # a new modification time, whatever the clock's resolution
    assert profiles.load_profile(str(path)) == first and len(reads) == 2
    path.write_text("name: [", encoding="utf-8")
    with pytest.raises(SpecError, match="not valid YAML"):
        profiles.load_profile(str(path))
    with pytest.raises(SpecError, match="not valid YAML"):  # errors are never kept
        profiles.load_profile(str(path))


def test_resolved_keeps_the_request_and_gives_the_task_resources() -> None:
    gpu = ComputeSpec(profile="lab", gpus=1, memory="1GB")
    resolved = resolve(gpu)
    assert resolved.request is gpu
    assert task_resources(resolved) == {"GPU": 1.0}
    assert task_resources(resolve(ComputeSpec(profile="lab", memory="1GB"))) is None
    assert task_resources(resolve(ComputeSpec(profile="local", gpus=1))) is None  # no GPU resource locally
