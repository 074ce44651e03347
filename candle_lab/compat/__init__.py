"""Compatibility with libraries that CANDLE benchmark modules import.

:func:`install_candle` makes ``import candle`` resolve to
:mod:`candle_lab.compat.candle`, a compatible subset of the CANDLE library
(``Benchmark``, ``finalize_parameters``, ``get_file``, ...), but only when no real CANDLE
library can be imported: a real installation always wins. The ``candle`` model adapter
calls it before importing a benchmark module, so that unchanged modules run in trials.

Standalone, a benchmark that starts with ``import candle`` runs with::

    python -m candle_lab.compat my_baseline_keras2.py --epochs 3

or, from Python (a notebook, a wrapper script), ``candle_lab.compat.install_candle()``
before importing it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from candle_lab.compat.context import TrialParameters, current_trial_parameters, trial_parameters
from candle_lab.compat.names import CANDLE_SUBMODULES, NOT_PROVIDED, PROVIDED, CandleNotProvided

__all__ = [
    "NOT_PROVIDED",
    "PROVIDED",
    "CandleNotProvided",
    "TrialParameters",
    "candle_in_use",
    "current_trial_parameters",
    "install_candle",
    "real_candle_spec",
    "trial_parameters",
    "uninstall_candle",
]

log = logging.getLogger(__name__)

ALIAS = "candle"
TARGET = "candle_lab.compat.candle"


def _is_namespace(spec: importlib.machinery.ModuleSpec) -> bool:
    """A bare directory named ``candle`` (a namespace package) is not a CANDLE library."""
    return spec.origin in (None, "namespace") and spec.submodule_search_locations is not None


def real_candle_spec() -> importlib.machinery.ModuleSpec | None:
    """Where a real CANDLE library would be imported from, or ``None`` if there is none."""
    for finder in list(sys.meta_path):
        if isinstance(finder, _CandleFinder):
            continue
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        spec = find_spec(ALIAS, None)
        if spec is not None and not _is_namespace(spec):
            return spec
    return None


class _AliasLoader(importlib.abc.Loader):
    """Loads ``candle[.sub]`` as the already imported ``candle_lab.compat.candle[.sub]``."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._original: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._original = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system gave the module the alias's spec: it keeps its own.
        module.__spec__ = self._original


class _CandleFinder(importlib.abc.MetaPathFinder):
    """``import candle`` -> the compatibility subset, when no real CANDLE is importable."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == ALIAS:
            if real_candle_spec() is not None:
                return None
            log.debug("import candle: using candle_lab's CANDLE compatibility subset")
            return importlib.machinery.ModuleSpec(ALIAS, _AliasLoader(TARGET), is_package=True)
        if not fullname.startswith(ALIAS + ".") or not candle_in_use():
            return None
        sub = fullname[len(ALIAS) + 1 :]
        target_name = f"{TARGET}.{sub}"
        if importlib.util.find_spec(target_name) is not None:
            return importlib.machinery.ModuleSpec(fullname, _AliasLoader(target_name), is_package=False)
        if sub in CANDLE_SUBMODULES:
            raise CandleNotProvided(sub, kind="module")
        return None


def install_candle() -> bool:
    """Let ``import candle`` find the compatibility subset when no real CANDLE library is
    installed (idempotent). Returns True when ``import candle`` gives the subset, False
    when it gives a real CANDLE library."""
    if not any(isinstance(f, _CandleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _CandleFinder())
    loaded = sys.modules.get(ALIAS)
    if loaded is not None:
        return candle_in_use()
    return real_candle_spec() is None


def uninstall_candle() -> None:
    """Undo :func:`install_candle` (an imported ``candle`` alias is forgotten too)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _CandleFinder)]
    for name in [n for n in sys.modules if n == ALIAS or n.startswith(ALIAS + ".")]:
        if _is_subset(sys.modules[name]):
            del sys.modules[name]


def _is_subset(module: Any) -> bool:
    return str(getattr(module, "__name__", "")).startswith(TARGET)


def candle_in_use() -> bool:
    """Whether the imported ``candle`` module is the compatibility subset."""
    return _is_subset(sys.modules.get(ALIAS))
