"""User-facing errors: each names the field, what was expected and what was given."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from typing import Any


class CandleLabError(Exception):
    """Base class of every error a user can cause and fix (never shown as a traceback)."""


class SpecError(CandleLabError):
    """Invalid experiment spec, search space file, site profile or form input.

    ``problems`` holds one ``(field, message)`` pair per problem so that forms can show
    each message next to its field.
    """

    def __init__(self, problems: Sequence[tuple[str, str]], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        head = f"invalid {source}" if source else "invalid input"
        lines = [f"{field}: {message}" if field else message for field, message in self.problems]
        if len(lines) == 1:
            text = f"{head}: {lines[0]}"
        else:
            text = head + f" ({len(lines)} problems):\n" + "\n".join(f"  - {line}" for line in lines)
        super().__init__(text)

    @classmethod
    def one(cls, field: str, message: str, source: str | None = None) -> SpecError:
        return cls([(field, message)], source)


class ExperimentNotFound(CandleLabError):
    """No experiment with that id or directory."""


class MissingDependency(CandleLabError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the package '{package}', which is not installed; "
            f"install it with: pip install 'candle-lab[{extra}]'"
        )


def expected_got(expected: str, got: Any) -> str:
    """The standard phrasing: ``expected X, got Y``."""
    return f"expected {expected}, got {shown(got)}"


def shown(value: Any) -> str:
    """``repr(value)``, cut short when long (a message never echoes megabytes back)."""
    text = repr(value)
    return text if len(text) <= 200 else f"{text[:160]}... ({len(text):,} characters)"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def field_path(loc: Iterable[str | int]) -> str:
    """``('space', 'parameters', 2, 'high')`` -> ``space.parameters[2].high``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def from_pydantic(exc: Any, source: str | None = None, allowed: dict[str, list[str]] | None = None) -> SpecError:
    """Turn a pydantic ``ValidationError`` into a :class:`SpecError` with readable lines."""
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        # Tagged unions put the tag into the path (space.parameters.0.real.low): drop it,
        # but remember it to list the fields of that kind ("space.parameters[].real").
        tagged = [p for i, p in enumerate(loc) if i > 0 and isinstance(loc[i - 1], int) and p in _TAGS]
        loc = [p for i, p in enumerate(loc) if not (i > 0 and isinstance(loc[i - 1], int) and p in _TAGS)]
        path = field_path(loc)
        kind = err["type"]
        given = err.get("input")
        if kind == "union_tag_not_found":
            path = field_path([*loc, "type"])
        if isinstance(given, dict) and isinstance(given.get("name"), str) and path.endswith(("]", ".type")):
            path = f"{path} ({given['name']})"
        if kind == "union_tag_invalid":
            tags = err.get("ctx", {}).get("expected_tags", "")
            problems.append((path, f"type must be one of {tags}, got {err.get('ctx', {}).get('tag')!r}"))
            continue
        if kind == "union_tag_not_found":
            problems.append((path, "required field is missing; expected one of " + ", ".join(sorted(_TAGS))))
            continue
        msg = str(err["msg"])
        if kind == "literal_error" and isinstance(given, str):
            choices = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
            hint = did_you_mean(given, choices)
            problems.append((path, f"expected {err.get('ctx', {}).get('expected')}, got {given!r}{hint}"))
            continue
        if kind == "extra_forbidden":
            parent = field_path(loc[:-1])
            generic = re.sub(r"\[\d+\]", "[]", parent) + (f".{tagged[-1]}" if tagged else "")
            names = (allowed or {}).get(parent) or (allowed or {}).get(generic, [])
            hint = did_you_mean(str(loc[-1]), names)
            listing = f"; allowed: {', '.join(names)}" if names else ""
            problems.append((path, f"unknown field{hint}{listing}"))
            continue
        if kind == "missing":
            problems.append((path, "required field is missing"))
            continue
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
            # Validators may name a sub-field themselves: "ref: expected ...".
            inner = re.match(r"^([A-Za-z_][\w.\[\]]*): (.*)$", msg, re.DOTALL)
            if inner:
                sub, msg = inner.groups()
                path = f"{path}.{sub}" if path else sub
            problems.append((path, msg))
            continue
        if msg.startswith("Input should be "):
            msg = "expected " + msg[len("Input should be ") :]
        elif msg.startswith("String should have "):
            msg = "expected a string with " + msg[len("String should have ") :]
        if "got" not in msg:
            msg = f"{msg}, got {shown(given)}"
        elif isinstance(given, int | float | str) and repr(given) not in msg:
            msg = f"{msg} ({given!r})"  # "got a number with a fractional part" -> show it
        problems.append((path, msg))
    return SpecError(problems, source)


_TAGS = {"real", "integer", "categorical", "constant", "layers"}
