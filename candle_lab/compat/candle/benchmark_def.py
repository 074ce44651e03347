"""CANDLE's ``Benchmark``: a benchmark's keywords (``required``, ``additional_definitions``)
and its default model file."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from candle_lab.compat.candle.parsing_utils import REGISTERED_CONF, add_arguments, coerce
from candle_lab.errors import SpecError, expected_got
from candle_lab.models.candle import read_default_model


class Benchmark:
    """A CANDLE benchmark's parameter set-up. Subclasses set, in :meth:`set_locals`,
    ``self.required`` (keywords that must have a value) and
    ``self.additional_definitions`` (argparse-style dicts: ``name``, ``type``, ``nargs``,
    ``default``, ``choices``, ``action``, ``help``).

    ``filepath`` is the benchmark's folder, ``defmodel`` its default model file (INI;
    relative to ``filepath``); ``framework`` (``'keras'``, ``'pytorch'``), ``prog`` and
    ``desc`` are as in CANDLE."""

    def __init__(  # noqa: PLR0917  # CANDLE's signature
        self,
        filepath: str | os.PathLike[str],
        defmodel: str | os.PathLike[str],
        framework: str,
        prog: str | None = None,
        desc: str | None = None,
        parser: argparse.ArgumentParser | None = None,
    ) -> None:
        if parser is None:
            parser = argparse.ArgumentParser(
                prog=prog,
                description=desc,
                formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                conflict_handler="resolve",
            )
        self.parser = parser
        self.file_path = filepath
        self.default_model = defmodel
        self.framework = framework
        self.prog = prog
        self.desc = desc
        self.registered_conf: list[dict[str, Any]] = [dict(d) for d in REGISTERED_CONF]
        self.required: Any = set()
        self.additional_definitions: list[dict[str, Any]] = []
        self.conffile = os.path.join(os.fspath(filepath), os.fspath(defmodel))
        self.set_locals()

    def set_locals(self) -> None:
        """Set ``self.required`` and ``self.additional_definitions`` (in subclasses)."""

    def _source(self) -> str:
        return f"benchmark {type(self).__name__}"

    def _checked_definitions(self) -> list[dict[str, Any]]:
        defs = self.additional_definitions or []
        if not isinstance(defs, list | tuple):
            raise SpecError.one("additional_definitions", expected_got("a list of dicts", defs), self._source())
        problems: list[tuple[str, str]] = []
        for i, d in enumerate(defs):
            where = f"additional_definitions[{i}]"
            if not isinstance(d, Mapping) or not isinstance(d.get("name"), str) or not d.get("name"):
                problems.append((where, expected_got("a dict with a 'name'", d)))
                continue
            where = f"{where} ({d['name']})"
            if d.get("action") in ("store_true", "store_false"):
                problems.append(
                    (
                        f"{where}.action",
                        f"{d['action']!r} cannot be undone on the command line (CANDLE's rule); "
                        "expected 'type': candle.str2bool instead",
                    )
                )
            if d.get("type") is not None and not callable(d["type"]):
                expected = expected_got("a callable (int, float, str, candle.str2bool)", d["type"])
                problems.append((f"{where}.type", expected))
        if problems:
            raise SpecError(problems, self._source())
        return [dict(d) for d in defs]

    def definitions(self) -> dict[str, dict[str, Any]]:
        """Every keyword's definition by name: CANDLE's, then the benchmark's (which win)."""
        out = {d["name"]: d for d in self.registered_conf}
        out.update({d["name"]: d for d in self._checked_definitions()})
        return out

    def parse_parameters(self) -> None:
        """Add CANDLE's and the benchmark's keywords to the command-line parser."""
        add_arguments(self.parser, self.registered_conf)
        add_arguments(self.parser, self._checked_definitions())
        self.conffile = os.path.join(os.fspath(self.file_path), os.fspath(self.default_model))

    def read_config_file(self, file: str | os.PathLike[str]) -> dict[str, Any]:
        """A model file's values (every section; the first occurrence of a keyword wins),
        converted to the keywords' definitions."""
        values = read_default_model(Path(file))
        definitions = self.definitions()
        source = f"{self._source()} ({file})"
        return {k: coerce(k, v, definitions.get(k), source=source) for k, v in values.items()}

    def check_required_exists(self, gparam: Mapping[str, Any]) -> None:
        """Every keyword in ``self.required`` has a value; else an error naming them."""
        missing = sorted(set(self.required or ()) - set(gparam))
        if missing:
            raise SpecError(
                [
                    (
                        name,
                        f"required parameter is missing: expected it in the default model file {self.conffile} "
                        "(or a config_file, the command line or the search)",
                    )
                    for name in missing
                ],
                f"parameters of {self._source()}",
            )
