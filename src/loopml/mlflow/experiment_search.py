"""`search_experiments` in MLflow's terms: its filter (`name LIKE 'fraud%' AND tags.team = 'risk'`), order
(`creation_time DESC` by default) and view type, over LoopML's experiments and their tags.

MLflow's experiment filter is a conjunction of comparisons on `name`, `creation_time`, `last_update_time`
(optionally prefixed `attribute.` / `attributes.`) and `tags.<key>`; strings take `=`, `!=`, `LIKE`, `ILIKE`,
numbers `=`, `!=`, `<`, `<=`, `>`, `>=`. Experiments are few, so the filter is evaluated in Python.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select

from loopml.core.errors import InvalidFilter
from loopml.mlflow.tracking import experiment_tags
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.database import Database
from loopml.tracking.records import Experiment
from loopml.tracking.rows import experiment_from_row

MAX_FILTER_CHARS = 10_000
_TOKEN = re.compile(
    r"\s*(?:(?P<ident>(?:attributes?\.|tags?\.)?(?:`[^`]+`|\"[^\"]+\"|[\w.\-]+))\s*"
    r"(?P<op>!=|<=|>=|=|<|>|(?i:not\s+ilike|not\s+like|ilike|like))\s*"
    r"(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|-?\d+(?:\.\d+)?))\s*",
)
_AND = re.compile(r"\s*and\s+", re.IGNORECASE)
_NUMERIC = ("creation_time", "last_update_time")
_ORDERABLE = ("name", "experiment_id", *_NUMERIC)


@dataclass(frozen=True)
class _Clause:
    key: str
    tag: bool
    op: str
    value: str | float


def search_experiments(
    db: Database,
    *,
    filter: str | None = None,
    order_by: Sequence[str] = (),
    view_type: str = "ACTIVE_ONLY",
) -> list[tuple[Experiment, dict[str, str]]]:
    """Experiments with their tags, filtered and ordered as MLflow's server does."""
    clauses = parse(filter or "")
    with db.read() as conn:
        rows = conn.execute(select(t.experiments)).all()
    experiments = [experiment_from_row(r) for r in rows]
    stages = {"ACTIVE_ONLY": ("active",), "DELETED_ONLY": ("deleted",), "ALL": ("active", "deleted")}
    if view_type not in stages:
        raise InvalidFilter(f"view_type: one of ACTIVE_ONLY, DELETED_ONLY, ALL; got {view_type!r}")
    experiments = [e for e in experiments if e.lifecycle.value in stages[view_type]]
    tags = experiment_tags(db, [e.experiment_id for e in experiments])
    found = [(e, tags.get(e.experiment_id, {})) for e in experiments]
    found = [item for item in found if all(_matches(c, *item) for c in clauses)]
    for key, descending in reversed(_order(order_by)):
        found.sort(key=lambda item, k=key: _attribute(item[0], k), reverse=descending)  # type: ignore[misc]
    return found


def parse(
    text: str, *, strings: Sequence[str] = ("name",), numbers: Sequence[str] = _NUMERIC
) -> list[_Clause]:
    """The comparisons of an MLflow filter over these string and number attributes (and tags), joined by AND;
    `InvalidFilter` saying what is wrong."""
    if len(text) > MAX_FILTER_CHARS:
        raise InvalidFilter(f"the filter has {len(text)} characters; the limit is {MAX_FILTER_CHARS}")
    clauses: list[_Clause] = []
    if not text.strip():
        return clauses
    position = 0
    while True:
        match = _TOKEN.match(text, position)
        if match is None:
            raise InvalidFilter(f"invalid experiment filter at {text[position : position + 40]!r}")
        clauses.append(_clause(match["ident"], match["op"], match["value"], strings, numbers))
        position = match.end()
        if position >= len(text):
            break
        joiner = _AND.match(text, position)
        if joiner is None:
            raise InvalidFilter(f"expected AND at {text[position : position + 40]!r} (only AND is supported)")
        position = joiner.end()
    return clauses


def _clause(ident: str, op: str, raw: str, strings: Sequence[str], numbers: Sequence[str]) -> _Clause:
    tag = ident.startswith(("tags.", "tag."))  # MLflow's client itself sends `tag.`
    key = re.sub(r"^(?:attributes?\.|tags?\.)", "", ident).strip('`"')
    op = " ".join(op.lower().split())
    if raw[0] in "'\"":
        value: str | float = re.sub(r"\\(.)", r"\1", raw[1:-1])
    else:
        value = float(raw)
    if not tag and key not in (*strings, *numbers):
        raise InvalidFilter(
            f"invalid attribute {key!r}: filter on {', '.join((*strings, *numbers))} or tags.<key>"
        )
    numeric = not tag and key in numbers
    if numeric != isinstance(value, float) or (not numeric and op in ("<", "<=", ">", ">=")):
        raise InvalidFilter(f"invalid comparison {ident} {op} {raw}")
    return _Clause(key, tag, op, value)


def compare_text(op: str, found: str | None, wanted: str) -> bool:
    """Whether `found` (None: absent, which never matches) compares to `wanted` by a string operator."""
    return found is not None and _STRING_OPS[op](found, wanted)


def like(text: str, pattern: str) -> bool:
    """SQL's LIKE (`%` any run, `_` one character), in time linear in the text per wildcard: a regular
    expression would backtrack exponentially on patterns like `%a%a%a%b`, holding the server."""
    at = hit = 0
    star = -1
    i = 0
    while i < len(text):
        if at < len(pattern) and pattern[at] != "%" and (pattern[at] == "_" or pattern[at] == text[i]):
            i, at = i + 1, at + 1
        elif at < len(pattern) and pattern[at] == "%":
            star, hit, at = at, i, at + 1
        elif star >= 0:
            hit += 1
            i, at = hit, star + 1
        else:
            return False
    return all(c == "%" for c in pattern[at:])


_STRING_OPS: dict[str, Callable[[str, str], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "like": like,
    "ilike": lambda a, b: like(a.lower(), b.lower()),
    "not like": lambda a, b: not like(a, b),
    "not ilike": lambda a, b: not like(a.lower(), b.lower()),
}
_NUMBER_OPS: dict[str, Callable[[float, float], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _matches(clause: _Clause, experiment: Experiment, tags: dict[str, str]) -> bool:
    if clause.tag:
        found = tags.get(clause.key)
        return found is not None and _STRING_OPS[clause.op](found, str(clause.value))
    if clause.key == "name":
        return _STRING_OPS[clause.op](experiment.name, str(clause.value))
    return _NUMBER_OPS[clause.op](float(experiment.created_time), float(clause.value))


def _order(order_by: Sequence[str]) -> list[tuple[str, bool]]:
    keys = []
    for item in order_by or ["creation_time DESC", "experiment_id ASC"]:
        words = item.split()
        key = re.sub(r"^attributes?\.", "", words[0]) if words else ""
        direction = words[1].upper() if len(words) > 1 else "ASC"
        if key not in _ORDERABLE or direction not in ("ASC", "DESC") or len(words) > 2:
            raise InvalidFilter(f"invalid order_by {item!r}: one of {', '.join(_ORDERABLE)} with ASC or DESC")
        keys.append((key, direction == "DESC"))
    if not any(k == "experiment_id" for k, _ in keys):
        keys.append(("experiment_id", False))
    return keys


def _attribute(experiment: Experiment, key: str) -> str | int:
    if key in _NUMERIC:
        return experiment.created_time
    return str(getattr(experiment, key))
