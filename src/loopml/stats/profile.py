"""Profiles of whole tables: one column profile per column, a logical type per column, merge and JSON forms.

Logical type (chosen from the numpy dtype unless given) -> profile class:

    numeric      ints, uints, floats, timedelta64 (as ns)      NumericProfile
    datetime     datetime64 (as int64 ns since the epoch)      NumericProfile
    boolean      bool; str/object holding only True/False      CategoricalProfile over "True"/"False"
    categorical  str, bytes, object                            CategoricalProfile
    text         str/object with long, mostly unique values    TextProfile

Booleans are categorical rather than numeric 0/1 because drift on them is a change of category shares (the
Jensen-Shannon path), and a two-value histogram adds nothing. A str/object column is text when its values
average at least 20 characters and at least half of them (and at least 100) are distinct.

The inferred type of a str/object column depends on the data, so two chunks can disagree (short IDs in one,
long in another). Chunks that will be merged, and production windows that will be compared with a reference,
should be profiled with the reference's types: `profile_columns(window, kinds=reference.kinds)`.

`TableProfile.to_dict()` is plain JSON-able data with `"version": 1`; `from_dict` refuses other versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from loopml.core.errors import InvalidInput
from loopml.stats.categorical import DEFAULT_MAX_CATEGORIES, CategoricalProfile, count_values
from loopml.stats.encoding import int_in
from loopml.stats.numeric import NumericProfile
from loopml.stats.text import TextProfile

FORMAT_VERSION = 1
TEXT_MIN_MEAN_LENGTH = 20.0
TEXT_MIN_DISTINCT_SHARE = 0.5
TEXT_MIN_DISTINCT = 100
_BOOLEAN_NAMES = frozenset({"True", "False"})


class LogicalType(StrEnum):
    """What a column means, which decides its profile class and, later, its drift measure."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    TEXT = "text"


ColumnProfile: TypeAlias = NumericProfile | CategoricalProfile | TextProfile

PROFILE_CLASS: Mapping[LogicalType, type[ColumnProfile]] = MappingProxyType(
    {
        LogicalType.NUMERIC: NumericProfile,
        LogicalType.DATETIME: NumericProfile,
        LogicalType.BOOLEAN: CategoricalProfile,
        LogicalType.CATEGORICAL: CategoricalProfile,
        LogicalType.TEXT: TextProfile,
    }
)


@dataclass(frozen=True)
class TableProfile:
    """Profiles of the columns of one table (or of many chunks of it, merged). Immutable."""

    rows: int
    columns: Mapping[str, ColumnProfile]
    kinds: Mapping[str, LogicalType]

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", MappingProxyType(dict(self.columns)))
        object.__setattr__(
            self, "kinds", MappingProxyType({n: LogicalType(k) for n, k in self.kinds.items()})
        )
        if set(self.columns) != set(self.kinds):
            raise InvalidInput("a table profile needs exactly one logical type per column")
        for name, profile in self.columns.items():
            if not isinstance(profile, PROFILE_CLASS[self.kinds[name]]):
                raise InvalidInput(
                    f"column {name!r}: a {self.kinds[name]} column cannot hold a {type(profile).__name__}"
                )
            if _rows_of(profile) != self.rows:
                raise InvalidInput(
                    f"column {name!r} profiles {_rows_of(profile)} rows, the table has {self.rows}"
                )

    def __reduce__(self) -> tuple[type[TableProfile], tuple[int, dict[str, ColumnProfile], dict[str, str]]]:
        # Mapping proxies do not pickle; profiles cross process boundaries when chunks are profiled in workers.
        return (TableProfile, (self.rows, dict(self.columns), {n: k.value for n, k in self.kinds.items()}))

    def merge(self, other: TableProfile) -> TableProfile:
        """The profile of both tables stacked; refuses different columns or logical types."""
        if set(self.columns) != set(other.columns):
            only_self = sorted(set(self.columns) - set(other.columns))
            only_other = sorted(set(other.columns) - set(self.columns))
            raise InvalidInput(
                f"cannot merge profiles of different columns (only in the first: {only_self}, "
                f"only in the second: {only_other})"
            )
        for name, kind in self.kinds.items():
            if other.kinds[name] != kind:
                raise InvalidInput(
                    f"cannot merge column {name!r}: it is {kind} in one profile and {other.kinds[name]} in the "
                    "other; profile both with the same kinds=..."
                )
        return TableProfile(
            rows=self.rows + other.rows,
            columns={name: _merge_column(name, a, other.columns[name]) for name, a in self.columns.items()},
            kinds=self.kinds,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form with a "version" field (strict JSON: no NaN or Infinity)."""
        return {
            "version": FORMAT_VERSION,
            "rows": self.rows,
            "columns": {
                name: {"kind": self.kinds[name].value, **profile.to_dict()}
                for name, profile in self.columns.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TableProfile:
        """Inverse of `to_dict`; a missing field, a wrong type or an unknown version raises InvalidInput."""
        if not isinstance(data, Mapping):
            raise InvalidInput(f"a table profile must be a mapping, got {type(data).__name__}")
        version = data.get("version")
        if version != FORMAT_VERSION:
            raise InvalidInput(
                f"table profile has version {version!r}; this LoopML reads version {FORMAT_VERSION} "
                "(a newer LoopML wrote it? upgrade LoopML)"
            )
        try:
            columns: dict[str, ColumnProfile] = {}
            kinds: dict[str, LogicalType] = {}
            for name, column in data["columns"].items():
                kinds[name] = LogicalType(column["kind"])
                columns[name] = PROFILE_CLASS[kinds[name]].from_dict(column)
            return cls(rows=int_in(data["rows"], what="rows"), columns=columns, kinds=kinds)
        except InvalidInput:
            raise
        except KeyError as missing:
            raise InvalidInput(f"table profile is missing the field {missing}; it is damaged") from None
        except (TypeError, ValueError, AttributeError) as error:
            raise InvalidInput(f"table profile is malformed ({error}); it is damaged") from None


def profile_columns(
    columns: Mapping[str, npt.ArrayLike],
    *,
    kinds: Mapping[str, LogicalType | str] | None = None,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
) -> TableProfile:
    """Profile equally long 1-D columns; `kinds` pins the logical type of some or all of them."""
    kinds = dict(kinds or {})
    unknown = sorted(set(kinds) - set(columns))
    if unknown:
        raise InvalidInput(f"kinds names columns that are not given: {unknown}")
    arrays = {name: np.asarray(values) for name, values in columns.items()}
    lengths = {name: a.shape[0] if a.ndim == 1 else -1 for name, a in arrays.items()}
    for name, length in lengths.items():
        if not isinstance(name, str):
            raise InvalidInput(f"column names must be strings, got {type(name).__name__}: {name!r}")
        if length < 0:
            raise InvalidInput(f"column {name!r} must be a 1-D array, got shape {arrays[name].shape}")
    if len(set(lengths.values())) > 1:
        raise InvalidInput(f"columns must be equally long, got lengths {lengths}")
    profiled = {
        name: profile_column(values, kinds.get(name), max_categories=max_categories)
        for name, values in arrays.items()
    }
    return TableProfile(
        rows=next(iter(lengths.values()), 0),
        columns={name: profile for name, (_, profile) in profiled.items()},
        kinds={name: kind for name, (kind, _) in profiled.items()},
    )


def profile_column(
    values: npt.ArrayLike,
    kind: LogicalType | str | None = None,
    *,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
) -> tuple[LogicalType, ColumnProfile]:
    """(logical type, profile) of one 1-D column; the type is inferred from the dtype when not given."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise InvalidInput(f"a column must be a 1-D array, got shape {array.shape}")
    try:
        wanted = None if kind is None else LogicalType(kind)
    except ValueError:
        raise InvalidInput(
            f"unknown logical type {kind!r}; use one of {[k.value for k in LogicalType]}"
        ) from None
    dtype_kind = array.dtype.kind
    if wanted is None and dtype_kind in "iufm":
        wanted = LogicalType.NUMERIC
    if wanted is None and dtype_kind == "M":
        wanted = LogicalType.DATETIME
    if wanted in {LogicalType.NUMERIC, LogicalType.DATETIME}:
        if wanted is LogicalType.DATETIME and dtype_kind != "M":
            array = _as_datetimes(array)
        return wanted, NumericProfile.from_array(array)
    if dtype_kind not in "biufmMOUST":
        raise InvalidInput(f"cannot profile a column of dtype {array.dtype}")
    counts, nulls = count_values(array)
    if wanted is None:
        wanted = _infer_from_counts(counts, is_bool=dtype_kind == "b")
    if wanted is LogicalType.TEXT:
        return wanted, TextProfile.from_counts(counts, nulls=nulls)
    if wanted is LogicalType.BOOLEAN and not set(counts) <= _BOOLEAN_NAMES:
        extra = sorted(set(counts) - _BOOLEAN_NAMES)[:5]
        raise InvalidInput(f"a boolean column may hold only True, False and nulls; found {extra}")
    return wanted, CategoricalProfile.from_counts(counts, nulls=nulls, max_categories=max_categories)


def merge(first: TableProfile, *others: TableProfile) -> TableProfile:
    """The profile of all the given tables stacked (merging is associative and commutative)."""
    result = first
    for other in others:
        result = result.merge(other)
    return result


def _infer_from_counts(counts: Mapping[str, int], *, is_bool: bool) -> LogicalType:
    if is_bool or (counts and set(counts) <= _BOOLEAN_NAMES):
        return LogicalType.BOOLEAN
    present = sum(counts.values())
    distinct = len(counts)
    if distinct >= TEXT_MIN_DISTINCT and distinct >= TEXT_MIN_DISTINCT_SHARE * present:
        mean_length = sum(len(value) * c for value, c in counts.items()) / present
        if mean_length >= TEXT_MIN_MEAN_LENGTH:
            return LogicalType.TEXT
    return LogicalType.CATEGORICAL


def _as_datetimes(array: npt.NDArray[Any]) -> npt.NDArray[np.datetime64]:
    try:
        return array.astype("datetime64[ns]")
    except (TypeError, ValueError):
        raise InvalidInput(
            f"cannot read a column of dtype {array.dtype} as datetimes; pass datetime64 values or ISO 8601 strings"
        ) from None


def _rows_of(profile: ColumnProfile) -> int:
    if isinstance(profile, NumericProfile):
        return profile.count + profile.nulls + profile.infinities
    return profile.count + profile.nulls


def _merge_column(name: str, a: ColumnProfile, b: ColumnProfile) -> ColumnProfile:
    if isinstance(a, NumericProfile) and isinstance(b, NumericProfile):
        return a.merge(b)
    if isinstance(a, CategoricalProfile) and isinstance(b, CategoricalProfile):
        return a.merge(b)
    if isinstance(a, TextProfile) and isinstance(b, TextProfile):
        return a.merge(b)
    raise InvalidInput(f"cannot merge column {name!r}: a {type(a).__name__} with a {type(b).__name__}")
