"""candle_lab's environment variables: read in candle_lab.settings only, by typed accessors."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

import candle_lab
from candle_lab import settings

PACKAGE = Path(candle_lab.__file__).resolve().parent
PREFIX = "CANDLE_LAB_"
# settings' constants by name, e.g. HOME_ENV -> CANDLE_LAB_HOME
NAMES = {k: v for k, v in vars(settings).items() if isinstance(v, str) and v.startswith(PREFIX)}


def _is_environ(node: ast.expr) -> bool:
    """``os.environ`` or ``environ``."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def _is_getenv(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "getenv") or (
        isinstance(node, ast.Name) and node.id == "getenv"
    )


def _env_keys(tree: ast.AST) -> list[tuple[int, ast.expr]]:
    """(line, key) of each use of the process environment: ``os.environ[k]``,
    ``os.environ.get(k)`` (any method), ``os.getenv(k)``, ``k in os.environ``."""
    keys: list[tuple[int, ast.expr]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _is_environ(node.value):
            keys.append((node.lineno, node.slice))
        elif isinstance(node, ast.Call) and node.args and (
            _is_getenv(node.func) or (isinstance(node.func, ast.Attribute) and _is_environ(node.func.value))
        ):
            keys.append((node.lineno, node.args[0]))
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            keys.append((node.lineno, node.left))
    return keys


def _module_strings(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "text"`` assignments."""
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            out.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
    return out


def _names_a_variable(key: ast.expr, local: dict[str, str]) -> bool:
    """Whether ``key`` is one of our variables: a literal, a settings constant, or a module constant."""
    if isinstance(key, ast.Constant):
        return isinstance(key.value, str) and key.value.startswith(PREFIX)
    if isinstance(key, ast.JoinedStr):
        return any(isinstance(v, ast.Constant) and str(v.value).startswith(PREFIX) for v in key.values[:1])
    if isinstance(key, ast.Attribute):
        return key.attr in NAMES
    if isinstance(key, ast.Name):
        return key.id in NAMES or local.get(key.id, "").startswith(PREFIX)
    return False


def environment_reads(source: str) -> list[int]:
    """Lines where ``source`` touches one of candle_lab's variables in the environment."""
    tree = ast.parse(source)
    local = _module_strings(tree)
    return [line for line, key in _env_keys(tree) if _names_a_variable(key, local)]


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of the module, classes and functions."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def variable_literals(source: str) -> list[int]:
    """Lines of string literals (docstrings aside) naming one of candle_lab's variables."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and PREFIX in node.value
        and id(node) not in docs
    ]


def _sources() -> list[Path]:
    paths = sorted(PACKAGE.rglob("*.py"))
    assert PACKAGE / "settings.py" in paths and len(paths) > 20
    return [p for p in paths if p != PACKAGE / "settings.py"]


# ------------------------------------------------------------------ the checks check


@pytest.mark.parametrize(
    "line",
    [
        'os.environ.get("CANDLE_LAB_HOME")',
        'os.environ["CANDLE_LAB_DATA"]',
        'os.getenv("CANDLE_LAB_PASSWORD", "")',
        '"CANDLE_LAB_DRIVER_JOB" in os.environ',
        "os.environ.setdefault(settings.HOME_ENV, 'x')",
        "environ.get(HOME_ENV)",
        'MINE = "CANDLE_LAB_GALLERY"\nos.environ.get(MINE)',
        'os.environ.pop(f"CANDLE_LAB_{name}")',
    ],
)
def test_the_check_finds_reads(line: str) -> None:
    assert environment_reads(line)


@pytest.mark.parametrize(
    "line", ['os.environ.get("JUPYTER_TOKEN")', "os.environ.get(settings.other)", '{**os.environ, "A": "1"}']
)
def test_the_check_passes_other_variables(line: str) -> None:
    assert not environment_reads(line)


def test_the_literal_check_skips_docstrings_only() -> None:
    source = '"""Reads $CANDLE_LAB_HOME."""\ndef f():\n    """$CANDLE_LAB_DATA"""\n    return "$CANDLE_LAB_HOME"\n'
    assert variable_literals(source) == [4]


# ------------------------------------------------------------------ the package


def test_only_settings_reads_candle_lab_variables() -> None:
    found = {
        str(p.relative_to(PACKAGE)): lines
        for p in _sources()
        if (lines := environment_reads(p.read_text(encoding="utf-8")))
    }
    assert not found, f"read these through candle_lab.settings: {found}"


def test_only_settings_names_candle_lab_variables() -> None:
    found = {
        str(p.relative_to(PACKAGE)): lines
        for p in _sources()
        if (lines := variable_literals(p.read_text(encoding="utf-8")))
    }
    assert not found, f"use candle_lab.settings' constants: {found}"


def test_every_variable_is_in_the_table() -> None:
    doc = settings.__doc__ or ""
    assert NAMES and all(f"``{name}``" in doc for name in NAMES.values())
    assert len(set(NAMES.values())) == len(NAMES)  # one constant per variable


# ------------------------------------------------------------------ the accessors


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in NAMES.values():
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_unset_and_empty_are_the_same(clean: pytest.MonkeyPatch) -> None:
    def values() -> tuple[object, ...]:
        return settings.home(), settings.password(), settings.gallery_dirs(), settings.data_dir(), settings.driver_job()

    assert values() == (None, None, [], None, False)
    for name in NAMES.values():
        clean.setenv(name, "")
    assert values() == (None, None, [], None, False)


def test_paths_expand_the_home_folder(clean: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean.setenv("HOME", str(tmp_path))
    clean.setenv("CANDLE_LAB_HOME", "~/exps")
    clean.setenv("CANDLE_LAB_DATA", str(tmp_path / "data"))
    assert settings.home() == tmp_path / "exps"
    assert settings.data_dir() == tmp_path / "data"


def test_gallery_dirs_split_on_pathsep(clean: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean.setenv("HOME", str(tmp_path))
    clean.setenv("CANDLE_LAB_GALLERY", os.pathsep.join(["~/a", "", "/b"]))
    assert settings.gallery_dirs() == [tmp_path / "a", Path("/b")]


def test_password_and_driver_job(clean: pytest.MonkeyPatch) -> None:
    clean.setenv("CANDLE_LAB_PASSWORD", "s3cret-pass")
    clean.setenv("CANDLE_LAB_DRIVER_JOB", "1")
    assert settings.password() == "s3cret-pass"
    assert settings.driver_job() is True


def test_share_home_keeps_a_set_folder(clean: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings.share_home(tmp_path / "a")
    assert settings.home() == tmp_path / "a"
    settings.share_home(tmp_path / "b")
    assert settings.home() == tmp_path / "a"


def test_the_package_follows_the_variables(clean: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from candle_lab.data import default_cache_dir
    from candle_lab.store import experiments_root

    clean.setenv("CANDLE_LAB_HOME", str(tmp_path / "exps"))
    clean.setenv("CANDLE_LAB_DATA", str(tmp_path / "data"))
    assert experiments_root() == (tmp_path / "exps").resolve()
    assert default_cache_dir() == tmp_path / "data"
