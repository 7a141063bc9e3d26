"""Expectations on tabular versions, declared in `loopml.toml`, checked batch by batch at add time.

    [datasets.transactions.expect]
    required_columns = ["amount", "country"]
    types = { amount = "numeric", country = "categorical" }
    ranges = { amount = [0, 100000] }
    allowed = { country = ["DE", "FR", "US"] }
    max_null_share = { amount = 0.01 }      # or one number for every column
    unique = ["transaction_id"]

A version that breaks a rule is refused (or, forced, stored as rejected) with a report that names each
broken rule and shows example rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loopml.core.errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow as pa

EXAMPLES = 5
_KNOWN = frozenset({"required_columns", "types", "ranges", "allowed", "max_null_share", "unique"})


@dataclass(frozen=True)
class Violation:
    """One broken rule, with up to five example rows (row number and offending value)."""

    rule: str
    column: str | None
    message: str
    examples: list[tuple[int, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Expectations:
    """The rules for one dataset (keyword arguments stored as given)."""

    required_columns: tuple[str, ...] = ()
    types: Mapping[str, str] = field(default_factory=dict)
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    allowed: Mapping[str, frozenset[str]] = field(default_factory=dict)
    max_null_share: float | Mapping[str, float] | None = None
    unique: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any]) -> Expectations:
        """Parse `[datasets.NAME.expect]`; a malformed table is `InvalidInput` naming the key."""
        where = f"[datasets.{name}.expect] in loopml.toml"
        unknown = sorted(set(config) - _KNOWN)
        if unknown:
            raise InvalidInput(f"{where}: unknown rule(s) {unknown}; known: {sorted(_KNOWN)}")
        try:
            ranges = {c: (float(lo), float(hi)) for c, (lo, hi) in dict(config.get("ranges", {})).items()}
            share = config.get("max_null_share")
            return cls(
                required_columns=tuple(str(c) for c in config.get("required_columns", ())),
                types={str(c): str(t) for c, t in dict(config.get("types", {})).items()},
                ranges=ranges,
                allowed={str(c): frozenset(map(str, v)) for c, v in dict(config.get("allowed", {})).items()},
                max_null_share=None
                if share is None
                else share
                if isinstance(share, Mapping)
                else float(share),
                unique=tuple(str(c) for c in config.get("unique", ())),
            )
        except (TypeError, ValueError) as error:
            raise InvalidInput(f"{where} is malformed: {error}") from None


def check(
    rules: Expectations, batches: Iterable[pa.RecordBatch], logical: Mapping[str, str]
) -> list[Violation]:
    """Every rule the table breaks (an empty list when it keeps them all)."""
    found = _Findings()
    seen: dict[str, set[Any]] = {c: set() for c in rules.unique}
    nulls: dict[str, int] = {}
    rows = 0
    columns: list[str] = []
    for batch in batches:
        columns = batch.schema.names
        for name in columns:
            array = batch.column(name)
            nulls[name] = nulls.get(name, 0) + array.null_count
            _check_values(rules, found, name, array, offset=rows, seen=seen)
        rows += batch.num_rows
    for name in rules.required_columns:
        if name not in columns:
            found.problems[("required", name)] = Violation("required", name, f"column {name!r} is missing")
    for name, wanted in rules.types.items():
        if name in logical and logical[name] != wanted:
            found.problems[("type", name)] = Violation(
                "type", name, f"{name!r} is {logical[name]}, expected {wanted}"
            )
    for name in columns:
        limit = _null_limit(rules.max_null_share, name)
        share = nulls.get(name, 0) / rows if rows else 0.0
        if limit is not None and share > limit:
            message = f"{share:.1%} nulls, at most {limit:.1%} allowed"
            found.problems[("nulls", name)] = Violation("nulls", name, message)
    return list(found.problems.values())


def _check_values(
    rules: Expectations, found: _Findings, name: str, array: Any, *, offset: int, seen: dict[str, set[Any]]
) -> None:
    """The row-level rules (ranges, allowed values, unique keys) on one column of one batch."""
    import pyarrow.compute as pc

    if name in rules.ranges:
        low, high = rules.ranges[name]
        outside = pc.or_kleene(pc.less(array, low), pc.greater(array, high))
        found.note(
            "range", name, f"values outside [{low:g}, {high:g}]", array=array, mask=outside, offset=offset
        )
    if name in rules.allowed:
        known = pc.is_in(array.cast("string"), value_set=_string_array(rules.allowed[name]))
        message = "values not in the allowed set"
        found.note("allowed", name, message, array=array, mask=pc.invert(known), offset=offset)
    if name in seen:
        keys, repeats = seen[name], []
        for i, value in enumerate(array.to_pylist()):
            if value in keys:
                repeats.append((offset + i, value))
            keys.add(value)
        if repeats:
            found.add("unique", name, "duplicate keys", repeats)


def report(violations: list[Violation]) -> str:
    """The violations as a few readable lines."""
    lines = []
    for v in violations:
        shown = ", ".join(f"row {row}: {value!r}" for row, value in v.examples)
        lines.append(
            f"- {v.rule}{f' ({v.column})' if v.column else ''}: {v.message}"
            + (f"; e.g. {shown}" if shown else "")
        )
    return "\n".join(lines)


class _Findings:
    """Violations gathered across batches, one per (rule, column), with at most five examples each."""

    def __init__(self) -> None:
        self.problems: dict[tuple[str, str | None], Violation] = {}

    def note(self, rule: str, column: str, message: str, *, array: Any, mask: Any, offset: int) -> None:
        import pyarrow.compute as pc

        hits = pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist()
        if hits:
            values = array.take(hits[:EXAMPLES]).to_pylist()
            self.add(rule, column, message, [(offset + i, v) for i, v in zip(hits, values, strict=False)])

    def add(self, rule: str, column: str, message: str, examples: list[tuple[int, Any]]) -> None:
        old = self.problems.get((rule, column))
        kept = (old.examples if old else []) + examples
        self.problems[(rule, column)] = Violation(rule, column, message, kept[:EXAMPLES])


def _string_array(values: frozenset[str]) -> Any:
    import pyarrow as pa

    return pa.array(sorted(values), type=pa.string())


def _null_limit(rule: float | Mapping[str, float] | None, column: str) -> float | None:
    if rule is None or isinstance(rule, float):
        return rule
    value = rule.get(column)
    return None if value is None else float(value)
