"""Conditional parameters: a parameter's ``when:`` says when it exists.

Two spellings, both parsed and checked here, never evaluated as code::

    when: "layers >= 3"                       # NAME OP VALUE, clauses joined by "and"
    when: "optimizer in [sgd, rmsprop] and lr < 0.1"
    when: {optimizer: [sgd]}                  # NAME: value or list of values (all must hold)

OP is one of ``== != < <= > >= in``, ``not in``; VALUE is a YAML literal (a number, a
word, ``true``, a list ``[a, b]``). A parameter whose condition fails, or that depends on
a parameter that is itself absent, is *inactive*: it is left out of the trial's
parameters (a CANDLE model keeps its default for it).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from candle_lab.errors import did_you_mean, shown

OPS = ("==", "!=", "<=", ">=", "<", ">", "not in", "in")
ORDERING = {"<", "<=", ">", ">="}
MEMBERSHIP = {"in", "not in"}
_CLAUSE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*(==|!=|<=|>=|=|<|>|not\s+in\b|in\b)\s*(.+?)\s*$")
_AND = re.compile(r"\s+and\s+")


@dataclass(frozen=True)
class Clause:
    """``name op value`` (for ``in``/``not in`` the value is a tuple)."""

    name: str
    op: str
    value: Any

    def holds(self, actual: Any) -> bool:
        if self.op in MEMBERSHIP:
            found = any(_same(actual, v) for v in self.value)
            return found if self.op == "in" else not found
        if self.op == "==":
            return _same(actual, self.value)
        if self.op == "!=":
            return not _same(actual, self.value)
        try:
            a, b = float(actual), float(self.value)
        except (TypeError, ValueError):
            return False
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[self.op]

    def text(self) -> str:
        value = f"[{', '.join(_literal(v) for v in self.value)}]" if self.op in MEMBERSHIP else _literal(self.value)
        return f"{self.name} {self.op} {value}"


@dataclass(frozen=True)
class Condition:
    """All of ``clauses`` hold (each on a parameter that is present)."""

    clauses: tuple[Clause, ...]

    @property
    def names(self) -> set[str]:
        return {c.name for c in self.clauses}

    def holds(self, point: Mapping[str, Any]) -> bool:
        return all(c.name in point and c.holds(point[c.name]) for c in self.clauses)

    def __and__(self, other: Condition | None) -> Condition:
        return self if other is None else Condition(self.clauses + other.clauses)

    def text(self) -> str:
        return " and ".join(c.text() for c in self.clauses)


def parse_when(raw: Any) -> Condition:
    """The condition a ``when:`` holds; ValueError saying what is wrong with it."""
    if isinstance(raw, Mapping):
        if not raw:
            raise ValueError("expected at least one parameter in the mapping, got {}")
        return Condition(tuple(_from_mapping(str(k), v) for k, v in raw.items()))
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"expected a condition like \"layers >= 3\" or {{optimizer: [sgd]}}, got {shown(raw)}")
    return Condition(tuple(_clause(part) for part in _AND.split(raw.strip())))


def _from_mapping(name: str, value: Any) -> Clause:
    if isinstance(value, list):
        if not value:
            raise ValueError(f"{name}: expected a value or a non-empty list of values, got []")
        return Clause(name, "in", tuple(value))
    return Clause(name, "==", value)


def _clause(text: str) -> Clause:
    found = _CLAUSE.match(text)
    if found is None:
        raise ValueError(f"expected NAME OP VALUE with OP one of {', '.join(OPS)}, got {text!r}")
    name, op, raw = found.groups()
    op = "==" if op == "=" else " ".join(op.split())
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ValueError(f"{text!r}: the value {raw!r} is not a number, a word or a list") from None
    if op in MEMBERSHIP:
        if not isinstance(value, list) or not value:
            raise ValueError(f"{text!r}: '{op}' needs a list like [a, b], got {raw!r}")
        return Clause(name, op, tuple(value))
    if isinstance(value, list | dict) or value is None:
        raise ValueError(f"{text!r}: expected one value after '{op}', got {raw!r}")
    return Clause(name, op, value)


# ------------------------------------------------------------------ checks against the space
@dataclass(frozen=True)
class Target:
    """What a condition may say of a parameter: its name, whether it orders (numbers),
    and its values when it has a fixed set (choices, a constant)."""

    name: str
    numeric: bool
    values: tuple[Any, ...] | None = None


def check(name: str, condition: Condition, targets: Mapping[str, Target]) -> list[str]:
    """What is wrong with ``name``'s condition over the parameters ``targets``."""
    problems: list[str] = []
    for clause in condition.clauses:
        target = targets.get(clause.name)
        if clause.name == name:
            problems.append(f"{clause.text()!r} refers to {name!r} itself")
        elif target is None:
            family = f"{clause.name}.layers"
            hint = (f" (its number of layers is {family!r})" if family in targets
                    else did_you_mean(clause.name, targets))
            problems.append(f"{clause.text()!r}: no parameter is named {clause.name!r}{hint}")
        else:
            problems += _check_clause(clause, target)
    return problems


def _check_clause(clause: Clause, target: Target) -> list[str]:
    values = clause.value if clause.op in MEMBERSHIP else (clause.value,)
    if clause.op in ORDERING:
        if not target.numeric:
            return [f"{clause.text()!r}: '{clause.op}' compares numbers and {target.name!r} is not numeric"
                    f"{_among(target)}; use == or in"]
        if not _is_number(clause.value):
            return [f"{clause.text()!r}: {target.name!r} is a number, got {shown(clause.value)}"]
        return []
    if target.values is not None:
        unknown = [v for v in values if not any(_same(v, c) for c in target.values)]
        if unknown:
            return [f"{clause.text()!r}: {shown(unknown[0])} is never a value of {target.name!r}{_among(target)}"]
    elif target.numeric:
        wrong = [v for v in values if not _is_number(v)]
        if wrong:
            return [f"{clause.text()!r}: {target.name!r} is a number, got {shown(wrong[0])}"]
    return []


def _among(target: Target) -> str:
    return f" (its values: {', '.join(_literal(v) for v in target.values)})" if target.values is not None else ""


def evaluation_order(conditions: Mapping[str, Condition], names: Sequence[str]) -> tuple[list[str], list[str]]:
    """``names`` with every parameter after those its condition reads, and the first
    cycle found as a path (``a``, ``b``, ``a``: ``a`` when ``b``, ``b`` when ``a``)."""
    known = set(names)
    order: list[str] = []
    done: set[str] = set()
    path: list[str] = []
    cycle: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in path:
            if not cycle:
                cycle.extend([*path[path.index(name):], name])
            return
        path.append(name)
        for parent in sorted(conditions[name].names) if name in conditions else []:
            if parent in known and parent != name:
                visit(parent)
        path.pop()
        done.add(name)
        order.append(name)

    for name in names:
        visit(name)
    return order, cycle


def _same(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _literal(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
