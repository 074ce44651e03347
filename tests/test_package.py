"""The package as a whole: every submodule imports without hiding a public name, and the
core API does not reach up into the front ends."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import json
import pkgutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

import candle_lab
from candle_lab.errors import MissingDependency

PACKAGE = Path(candle_lab.__file__).resolve().parent
FRONT_ENDS = ("candle_lab.ui", "candle_lab.widgets", "candle_lab.html_report", "candle_lab.server", "candle_lab.cli")


def missing_extras() -> list[str]:
    """The optional extras of candle-lab whose packages are not all installed here."""
    requirements = [Requirement(line) for line in importlib.metadata.requires("candle-lab") or []]
    optional = [r for r in requirements if "extra" in str(r.marker or "")]
    missing = []
    for extra in importlib.metadata.metadata("candle-lab").get_all("Provides-Extra") or []:
        for requirement in optional:
            if requirement.marker is not None and requirement.marker.evaluate({"extra": extra}):
                try:
                    importlib.metadata.distribution(requirement.name)
                except importlib.metadata.PackageNotFoundError:
                    missing.append(extra)
                    break
    return missing


def import_all() -> dict[str, Any]:
    """Import every submodule of candle_lab (``__main__`` modules run, so they are left
    out); which imported, which were skipped for a missing third-party package, and what
    ``candle_lab.report`` and the other public names are afterwards."""
    imported: list[str] = []
    skipped: dict[str, str] = {}
    # walk_packages imports each package to list its children; one that failed is in skipped
    for info in pkgutil.walk_packages(candle_lab.__path__, "candle_lab.", onerror=lambda name: None):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        try:
            importlib.import_module(info.name)
        except MissingDependency as exc:
            skipped[info.name] = str(exc)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] == "candle_lab":
                raise
            skipped[info.name] = str(exc)
        else:
            imported.append(info.name)
    report = candle_lab.report
    return {
        "shadowed": [name for name in candle_lab.__all__ if isinstance(getattr(candle_lab, name), types.ModuleType)],
        "imported": imported,
        "skipped": skipped,
        "report": repr(report),
        "report_is_trial_report": callable(report) and report is importlib.import_module("candle_lab.trial").report,
    }


def test_every_submodule_imports_and_report_stays_the_trial_function() -> None:
    """``candle_lab.report`` (live metrics from a trial) must not be replaced by a
    submodule of the same name once everything is imported. A fresh interpreter: nothing
    imported before, and TensorFlow & co. stay out of the test process."""
    result = subprocess.run([sys.executable, __file__], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])

    assert {"candle_lab.api", "candle_lab.trial", "candle_lab.html_report", "candle_lab.figures"} <= set(
        found["imported"]
    )
    missing = missing_extras()
    assert not found["skipped"] or missing, f"skipped although every extra is installed: {found['skipped']}"
    assert found["report_is_trial_report"], f"candle_lab.report is {found['report']}"
    assert not found["shadowed"], f"submodules replaced these names of candle_lab: {found['shadowed']}"


CORE = ("api.py", "engine", "store", "optimizers", "spec.py", "space.py", "monitor.py", "trial", "states.py",
        "planner.py", "efficiency.py", "pareto.py", "bounds.py", "conditions.py", "warm.py")


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
            if node.module == "candle_lab":
                names += [f"candle_lab.{alias.name}" for alias in node.names]
    return names


@pytest.mark.parametrize("core", CORE)
def test_the_core_imports_no_front_end(core: str) -> None:
    """The core every front end builds on imports no Panel app, notebook widgets, HTML
    report or Jupyter server extension, not even inside a function."""
    files = [PACKAGE / core] if core.endswith(".py") else sorted((PACKAGE / core).rglob("*.py"))
    assert files and all(f.is_file() for f in files)
    reaching_up = {
        str(f.relative_to(PACKAGE)): name
        for f in files
        for name in imported_modules(f)
        if any(name == front or name.startswith(front + ".") for front in FRONT_ENDS)
    }
    assert not reaching_up, f"the core imports front ends: {reaching_up}"


if __name__ == "__main__":  # run by the first test in a fresh interpreter
    sys.stdout.write(json.dumps(import_all()) + "\n")
