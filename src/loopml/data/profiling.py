"""Schema and mergeable profile of a table, computed batch by batch (a large file is never read whole)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from loopml.core.errors import InvalidInput
from loopml.data.tables import schema_of
from loopml.stats import CategoricalProfile, LogicalType, NumericProfile, TableProfile, TextProfile

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class TableSummary:
    """What a tabular version records beside its bytes."""

    rows: int
    schema: list[dict[str, Any]]
    profile: dict[str, Any]


def profile_batches(batches: Iterable[pa.RecordBatch]) -> TableSummary:
    """Profile each batch and merge: the logical types the first batch shows are kept for the rest."""
    profile: TableProfile | None = None
    first_schema: pa.Schema | None = None
    kinds: dict[str, LogicalType] | None = None
    for batch in batches:
        names = batch.schema.names
        if len(set(names)) != len(names):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            raise InvalidInput(f"the table has duplicate column names: {duplicates}")
        if first_schema is not None and batch.schema.names != first_schema.names:
            raise InvalidInput("the table's columns change between parts of the file")
        columns = {name: _as_numpy(batch.column(i)) for i, name in enumerate(names)}
        part = _profile(columns, kinds)
        if profile is None:
            profile, first_schema, kinds = part, batch.schema, dict(part.kinds)
        else:
            profile = profile.merge(part)
    if profile is None or first_schema is None:
        raise InvalidInput("the table has no rows and no columns to version")
    nulls = {name: _nulls(column) for name, column in profile.columns.items()}
    logical = {name: kind.value for name, kind in profile.kinds.items()}
    return TableSummary(profile.rows, schema_of(first_schema, nulls, logical), profile.to_dict())


def _profile(columns: dict[str, Any], kinds: dict[str, LogicalType] | None) -> TableProfile:
    from loopml.stats import profile_columns

    return profile_columns(columns, kinds=kinds)


def _as_numpy(array: pa.Array) -> Any:
    import pyarrow as pa

    if isinstance(array.type, pa.DictionaryType):
        array = array.dictionary_decode()
    return array.to_numpy(zero_copy_only=False)


def _nulls(column: NumericProfile | CategoricalProfile | TextProfile) -> int:
    return int(column.nulls)


def summary_statistics(profile: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """A few headline numbers per column (nulls, mean, std, min, max, distinct) from a stored profile."""
    if profile is None:
        return {}
    table = TableProfile.from_dict(profile)
    summary: dict[str, dict[str, Any]] = {}
    for name, column in table.columns.items():
        numbers: dict[str, Any] = {"nulls": int(column.nulls), "distinct": round(column.distinct())}
        if isinstance(column, NumericProfile) and column.count and table.kinds[name] is LogicalType.DATETIME:
            numbers.update(
                mean=_instant(column.mean),
                std=f"{column.std / 1e9:.6g} s",
                min=_instant(column.min),
                max=_instant(column.max),
            )
        elif isinstance(column, NumericProfile) and column.count:
            numbers.update(
                mean=_rounded(column.mean), std=_rounded(column.std), min=column.min, max=column.max
            )
        if isinstance(column, CategoricalProfile) and column.top:
            numbers["top"] = column.top[0][0]
        summary[name] = numbers
    return summary


def _instant(nanoseconds: float | None) -> str | None:
    """A datetime profile value (nanoseconds since the epoch) as ISO text, to the second."""
    if nanoseconds is None:
        return None
    return str(np.datetime64(int(nanoseconds), "ns").astype("datetime64[s]"))


def _rounded(value: float) -> float:
    return float(np.format_float_positional(value, precision=6, unique=False, fractional=False, trim="-"))
