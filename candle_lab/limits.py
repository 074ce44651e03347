"""Bounds on what a spec may hold, checked before it is parsed or validated.

A spec arrives from files, forms, the REST API and notebooks. However it was written, each
of these checks answers in well under a second with the field at fault: a file too large or
not a regular file (``/dev/zero``), text nested too deeply for the parser, YAML aliases that
expand into millions of values (a "billion laughs"), strings or lists too long to be meant.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from candle_lab.errors import SpecError, field_path

MAX_SPEC_BYTES = 1 << 20  # a spec file (a spec is a few kB)
MAX_SPACE_BYTES = 16 << 20  # a space file (an unrolled parameter file can hold many runs)
MAX_YAML_CHARS = 256 << 10  # YAML text (PyYAML reads ~200 kB/s on a busy core; JSON 100x faster)
MAX_DEPTH = 32  # nesting of mappings and lists
PARSER_DEPTH = 500  # YAML flow brackets refused before parsing (brackets in strings included)
MAX_VALUES = 100_000  # values in one spec, each use of a YAML alias counted again
MAX_STRING = 100_000  # characters of one string
MAX_PARAMETERS = 1_000
MAX_CHOICES = 10_000  # of one categorical parameter
MAX_DESCRIPTION = 10_000
MAX_RUNS = 100_000  # of an unrolled parameter file


def read_text(path: Path, limit: int, field: str) -> str:
    """A regular file's text, refused when larger than ``limit`` bytes or not UTF-8."""
    try:
        with open(path, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise SpecError.one(field, f"expected a regular file, got {path} (a device, pipe or folder)")
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise SpecError.one(field, f"file not found: {path}") from None
    except IsADirectoryError:
        raise SpecError.one(field, f"expected a regular file, got {path} (a folder)") from None
    except OSError as exc:
        raise SpecError.one(field, f"cannot read {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise SpecError.one(field, f"expected a file of at most {limit // 1024:,} kB, got {path}, which is larger")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError.one(field, f"expected UTF-8 text, got {path} with a non-UTF-8 byte at {exc.start}") from None


# libyaml's parser where installed: PyYAML's own takes 45 s for a 600-kB flow-style spec.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse(text: str, json_only: bool, field: str) -> Any:
    """JSON or YAML text as data; a nesting too deep for the parser is a field error.
    Syntax errors propagate (each caller words them with its line and column)."""
    if not json_only and len(text) > MAX_YAML_CHARS:
        raise SpecError.one(
            field,
            f"expected YAML of at most {MAX_YAML_CHARS >> 10} kB (or JSON, up to the file limit), "
            f"got {len(text) >> 10:,} kB",
        )
    too_deep = SpecError.one(field, f"expected at most {MAX_DEPTH} levels of nested lists and mappings, got more")
    if not json_only and _bracket_depth(text) > PARSER_DEPTH:
        raise too_deep  # PyYAML takes seconds to find out (its parser slows with the depth)
    try:
        return json.loads(text) if json_only else yaml.load(text, Loader=YAML_LOADER)  # a safe loader
    except RecursionError:
        raise too_deep from None


def _bracket_depth(text: str) -> int:
    """How deep ``[`` and ``{`` nest in ``text`` (brackets inside quotes counted too)."""
    depth = deepest = 0
    for char in re.sub(r"[^\[\]{}]+", "", text):
        depth += 1 if char in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def check_shape(data: Any, field: str = "") -> None:
    """Refuse data nested deeper than MAX_DEPTH, with more than MAX_VALUES values (every
    use of a shared YAML alias counted) or a string longer than MAX_STRING. Stops at the
    first value past a bound, so that it costs at most MAX_VALUES steps."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    seen = 0
    while stack:
        value, where = stack.pop()
        seen += 1
        problem = None
        if seen > MAX_VALUES:
            problem = f"expected at most {MAX_VALUES:,} values in all (each use of a YAML alias counts), got more"
        elif len(where) > MAX_DEPTH:
            problem = f"expected at most {MAX_DEPTH} levels of nested lists and mappings, got more"
        elif isinstance(value, str) and len(value) > MAX_STRING:
            problem = f"expected a text of at most {MAX_STRING:,} characters, got {len(value):,}"
        if problem:
            raise SpecError.one(field_path((field, *where[:MAX_DEPTH]) if field else where[:MAX_DEPTH]), problem)
        if isinstance(value, dict | Mapping):
            stack.extend((v, (*where, str(k))) for k, v in value.items())
        elif isinstance(value, list | tuple):
            stack.extend((v, (*where, i)) for i, v in enumerate(value))
