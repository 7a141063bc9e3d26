"""Checking a frame against a model's signature: `check` lists the differences, `validate` enforces them.

`check` lists every way a frame differs from a signature; `validate` raises `SignatureMismatch` if there is any,
else returns the frame as the model saw it in training: columns in signature order, integers as floats in float
columns, JSON's 3.0 as an integer, strings as the training categories, ISO 8601 strings as datetimes. Rows in
messages are 0-based positions, which is the index of the record in a JSON request.

Missing, unexpected and mistyped columns, and nulls where training saw none, are always violations. Unseen levels
and out-of-range numbers are drift, which monitoring watches, so they are violations only with `strict_levels` /
`strict_ranges`; without `strict_levels` a value that is not one of the training categories becomes missing in a
category column (pandas semantics). Integer and boolean columns come out as nullable `Int64` / `boolean` when
the request holds nulls, else as plain numpy dtypes.

Category values are compared by `str()`, so they may arrive as strings, integers or booleans; floats are refused,
since 1.0 would not match "1". The types, their JSON form and inference live in `loopml.registry.signature`, which
re-exports the names defined here.

pandas is an optional extra, imported inside functions only; a frame in hand means it is installed.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from loopml.core.errors import InvalidInput
from loopml.registry.signature import _PANDAS_HINT, ColumnSpec, Signature, _kind

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SignatureMismatch", "Violation", "check", "frame_from_records", "validate"]

_MAX_LISTED = 10
_INT64_BOUND = 2.0**63


def _is_integer(v: object) -> bool:
    if isinstance(v, bool | np.bool_):
        return False
    if isinstance(v, int | np.integer):
        return bool(-_INT64_BOUND <= v < _INT64_BOUND)
    if isinstance(v, float | np.floating):
        return bool(math.isfinite(v) and float(v).is_integer() and -_INT64_BOUND <= v < _INT64_BOUND)
    return False


def _is_number(v: object) -> bool:
    if isinstance(v, bool | np.bool_):
        return False
    if isinstance(v, int):  # a Python int can be too large for a float
        return abs(v) <= sys.float_info.max
    return isinstance(v, float | np.integer | np.floating)


# Per type: the column kinds it takes without reading values, the kinds it keeps without converting them,
# what its values are called in messages, and the test an object column's values must pass.
_LEVEL = str | int | np.integer | np.bool_
_TIME = str | dt.date | np.datetime64
_RULES: dict[str, tuple[set[str], set[str], str, Callable[[object], bool]]] = {
    "integer": ({"integer", "float"}, {"integer"}, "integers", _is_integer),
    "float": ({"integer", "float"}, {"float"}, "numbers", _is_number),
    "boolean": ({"boolean"}, {"boolean"}, "booleans", lambda v: isinstance(v, bool | np.bool_)),
    "string": ({"string"}, {"string", "object"}, "strings", lambda v: isinstance(v, str)),
    "category": (
        {"string", "integer", "boolean"},
        set(),
        "strings or integers",
        lambda v: isinstance(v, _LEVEL),
    ),
    "datetime": ({"datetime", "string"}, {"datetime"}, "dates or times", lambda v: isinstance(v, _TIME)),
}


@dataclass(frozen=True)
class Violation:
    """One way a frame differs from a signature; `problem` is a stable code, `detail` says it with numbers.

    Codes: "missing", "unexpected", "type", "null", "unseen_level", "out_of_range".
    """

    column: str | None
    problem: str
    detail: str

    def __str__(self) -> str:
        where = "frame" if self.column is None else f"column {self.column!r}"
        return f"{where} ({self.problem}): {self.detail}"


class SignatureMismatch(InvalidInput):
    """A frame does not match the model's signature; `.violations` lists every difference found."""

    code = "signature_mismatch"

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = list(violations)
        listed = "; ".join(str(v) for v in self.violations[:_MAX_LISTED])
        if len(self.violations) > _MAX_LISTED:
            listed += f"; and {len(self.violations) - _MAX_LISTED} more"
        count = f"{len(self.violations)} problem{'s' if len(self.violations) != 1 else ''}"
        super().__init__(
            f"input does not match the model signature ({count}): {listed}; fix the request to match it"
        )

    def __reduce__(self) -> tuple[type[SignatureMismatch], tuple[list[Violation]]]:
        return type(self), (self.violations,)


@dataclass(slots=True)
class _Column:
    """What `check` learnt about one signature column, so `validate` need not look again."""

    spec: ColumnSpec
    position: int
    kind: str
    has_nulls: bool
    present: np.ndarray[Any, Any]  # True where the value is not null
    series: Any = None  # fetched only when the values had to be read
    parsed: Any = None  # datetimes parsed from strings


def check(
    signature: Signature, frame: pd.DataFrame, *, strict_levels: bool = False, strict_ranges: bool = False
) -> list[Violation]:
    """Every way `frame` differs from `signature.inputs`, in signature order, then unexpected columns."""
    return _inspect(signature, frame, strict_levels=strict_levels, strict_ranges=strict_ranges)[0]


def validate(
    signature: Signature, frame: pd.DataFrame, *, strict_levels: bool = False, strict_ranges: bool = False
) -> pd.DataFrame:
    """The frame with columns in signature order and training dtypes; raises SignatureMismatch on violations.

    The caller's frame is not modified.
    """
    fast = _float_block(signature, frame, strict_ranges=strict_ranges)
    if fast is not None:
        return fast
    violations, columns = _inspect(signature, frame, strict_levels=strict_levels, strict_ranges=strict_ranges)
    if violations:
        raise SignatureMismatch(violations)
    order = [column.position for column in columns]
    out = frame.copy(deep=False) if order == list(range(frame.shape[1])) else frame.take(order, axis=1)
    for i, column in enumerate(columns):
        if column.kind in _RULES[column.spec.type][1] or column.kind == "exact_category":
            continue
        try:
            out.isetitem(i, _coerce(column, frame))
        except (TypeError, ValueError, OverflowError) as exc:  # a value check() let through by mistake
            detail = f"expected {column.spec.type}; the values could not be converted ({exc})"
            raise SignatureMismatch([Violation(column.spec.name, "type", detail)]) from exc
    return out


def _float_block(signature: Signature, frame: Any, *, strict_ranges: bool) -> pd.DataFrame | None:
    """`validate`'s answer for the common serving case, checked on the whole float64 block at once (~15 us
    for 30 columns against ~110 us column by column): the frame has exactly the signature's columns, all
    float64, every column is numeric, no null where training saw none, integer columns hold integers and
    (with `strict_ranges`) every value is in range. None in any other case, or when anything is wrong: the
    column-by-column path then says what, so both paths give the same answer."""
    import pandas as pd

    specs = signature.inputs
    if not isinstance(frame, pd.DataFrame) or frame.shape[1] != len(specs) or frame.shape[0] == 0:
        return None
    if any(spec.type not in ("float", "integer") for spec in specs):
        return None
    index = signature.column_index
    if not (frame.columns is index or frame.columns.equals(index)):
        return None
    if any(dtype != np.float64 for dtype in _dtypes(frame)):
        return None
    block = frame.to_numpy(dtype=np.float64, copy=False)
    integers = [position for position, spec in enumerate(specs) if spec.type == "integer"]
    if not _block_passes(specs, block, integers, strict_ranges=strict_ranges):
        return None
    out = frame.copy(deep=False)
    for position in integers:
        out.isetitem(position, block[:, position].astype(np.int64))
    return out


def _dtypes(frame: pd.DataFrame) -> Any:
    """The column dtypes; pandas' `frame.dtypes` builds a Series (~40 us), its block manager answers at once."""
    get_dtypes = getattr(getattr(frame, "_mgr", None), "get_dtypes", None)
    return get_dtypes() if callable(get_dtypes) else frame.dtypes


def _block_passes(
    specs: Sequence[ColumnSpec], block: np.ndarray[Any, Any], integers: list[int], *, strict_ranges: bool
) -> bool:
    nan = np.isnan(block)
    if nan.any():
        for position, spec in enumerate(specs):
            if (not spec.nullable or spec.type == "integer") and nan[:, position].any():
                return False  # a null violation, or a nullable integer column: the general path handles both
    if integers:
        values = block[:, integers]
        if not (np.all(values == np.floor(values)) and np.all(np.abs(values) < _INT64_BOUND)):
            return False
    if strict_ranges:  # NaN compares false, so nulls never count as out of range
        for position, spec in enumerate(specs):
            column = block[:, position]
            if spec.minimum is not None and np.any(column < spec.minimum):
                return False
            if spec.maximum is not None and np.any(column > spec.maximum):
                return False
    return True


def frame_from_records(signature: Signature, records: list[dict[str, Any]]) -> pd.DataFrame:
    """JSON records (one object per row) as a frame, signature columns first; `validate` judges the keys.

    A key that no record has is left out (so it is reported missing); a key some records lack is null there.
    """
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - the data extra is installed where tests run
        raise ImportError(_PANDAS_HINT) from exc
    if not isinstance(records, list):
        raise InvalidInput(f"records must be a list of objects, one per row; got {type(records).__name__}")
    keys: dict[Any, None] = {}
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise InvalidInput(f"record {i} is a {type(record).__name__}, not an object of column: value")
        keys.update(dict.fromkeys(record))
    names = signature.column_names
    if records:
        names = [name for name in names if name in keys] + [key for key in keys if key not in names]
    return pd.DataFrame({name: [record.get(name) for record in records] for name in names})


def _inspect(
    signature: Signature, frame: pd.DataFrame, *, strict_levels: bool, strict_ranges: bool
) -> tuple[list[Violation], list[_Column]]:
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise InvalidInput(f"expected a pandas DataFrame, got {type(frame).__name__}; see frame_from_records")
    names = frame.columns.tolist()
    dtypes = frame.dtypes.tolist()
    positions: dict[Any, int] = {}
    repeats: dict[Any, int] = {}
    for position, name in enumerate(names):
        if name in positions:
            repeats[name] = repeats.get(name, 1) + 1
        else:
            positions[name] = position
    nulls = frame.isna().to_numpy()  # one call for all columns: per-column Series cost ~6 us each
    null_counts = nulls.sum(axis=0).tolist()
    rows = frame.shape[0]
    violations: list[Violation] = []
    columns: list[_Column] = []
    for spec in signature.inputs:
        position = positions.get(spec.name, -1)
        if position < 0:
            needs = (
                f"column is absent; the model needs it ({spec.type}{', nullable' if spec.nullable else ''})"
            )
            violations.append(Violation(spec.name, "missing", needs))
            continue
        if spec.name in repeats:
            detail = f"column appears {repeats[spec.name]} times; send it once"
            violations.append(Violation(spec.name, "unexpected", detail))
            continue
        column_nulls, count = nulls[:, position], null_counts[position]
        if count and not spec.nullable:
            detail = (
                f"{count} of {rows} rows are null; training saw none (first: row {np.argmax(column_nulls)})"
            )
            violations.append(Violation(spec.name, "null", detail))
        kind = _kind(dtypes[position])
        if kind == spec.type == "category" and dtypes[position].categories.tolist() == list(
            spec.levels or ()
        ):
            kind = "exact_category"  # same categories in the same order: same codes, nothing to convert
        column = _Column(spec, position, kind, bool(count), ~column_nulls)
        problem = _check_values(column, frame, strict_levels=strict_levels, strict_ranges=strict_ranges)
        if problem is not None:
            violations.append(problem)
        columns.append(column)
    for name in positions:
        if not isinstance(name, str) or name not in signature._by_name:
            violations.append(Violation(str(name), "unexpected", "column is not in the signature; drop it"))
    return violations, columns


def _check_values(  # noqa: PLR0911 - one return per problem, in the order they are reported
    column: _Column, frame: pd.DataFrame, *, strict_levels: bool, strict_ranges: bool
) -> Violation | None:
    """The first problem with one column's values (nulls aside); reads them only when it must."""
    import pandas as pd

    spec, kind, present = column.spec, column.kind, column.present
    taken, _, noun, accept = _RULES[spec.type]
    scan = kind in ("object", "category") or (kind not in taken and kind != "exact_category")
    integral = spec.type == "integer" and kind == "float"
    parse = spec.type == "datetime" and kind != "datetime"
    ranged = strict_ranges and (spec.minimum is not None or spec.maximum is not None)
    leveled = strict_levels and spec.levels is not None
    if not (scan or integral or parse or ranged or leveled):
        return None
    series = column.series = frame[spec.name]
    if scan:
        objects = series.to_numpy(dtype=object)
        bad = _flags(p and not accept(v) for v, p in zip(objects, present.tolist(), strict=True))
        if bad.any():
            return _violation(spec, "type", bad, series, f"are not {noun}")
    if integral:
        floats = _floats(column, series)
        whole = np.isfinite(floats) & (floats == np.floor(floats))
        bad = present & ~(whole & (floats >= -_INT64_BOUND) & (floats < _INT64_BOUND))
        if bad.any():
            return _violation(spec, "type", bad, series, "are not integers")
    if parse:
        try:
            column.parsed = pd.to_datetime(series, format="ISO8601", errors="coerce")
        except (TypeError, ValueError, OverflowError) as exc:  # e.g. mixed UTC offsets
            detail = f"expected datetime; the values cannot be read as one ({exc!s:.120})"
            return Violation(spec.name, "type", detail)
        bad = present & column.parsed.isna().to_numpy()
        if bad.any():
            return _violation(spec, "type", bad, series, "are not ISO 8601 dates or times")
    if ranged:
        floats = _floats(column, series)
        lo = -math.inf if spec.minimum is None else spec.minimum
        hi = math.inf if spec.maximum is None else spec.maximum
        bad = present & ~((floats >= lo) & (floats <= hi))
        if bad.any():
            where = f"are outside the training range [{_number(lo)}, {_number(hi)}]"
            return _violation(spec, "out_of_range", bad, series, where)
    if leveled:
        codes = spec._codes
        objects = series.to_numpy(dtype=object)
        bad = _flags(p and _level(v) not in codes for v, p in zip(objects, present.tolist(), strict=True))
        if bad.any():
            what = f"hold levels not among the {len(codes)} seen in training"
            return _violation(spec, "unseen_level", bad, series, what)
    return None


def _coerce(column: _Column, frame: pd.DataFrame) -> Any:  # noqa: PLR0911 - one return per target dtype
    """The column's values in the dtype the model was trained on (check() has passed them)."""
    import pandas as pd

    spec, kind, present = column.spec, column.kind, column.present.tolist()
    series = frame[spec.name] if column.series is None else column.series
    if not column.present.any():  # all null or no rows: the dtype pandas guessed from JSON means nothing
        series = pd.Series(np.full(len(present), None, dtype=object), index=frame.index)
        column.parsed = pd.to_datetime(series) if spec.type == "datetime" else None
    if spec.type == "float":
        return _floats(column, series)
    if spec.type == "datetime":
        return column.parsed.array
    if spec.type == "integer" and kind == "float":
        floats = _floats(column, series)
        return pd.array(floats, dtype="Int64") if column.has_nulls else floats.astype(np.int64)
    objects = series.to_numpy(dtype=object)
    if spec.type == "category":
        codes = spec._codes
        found = (codes.get(_level(v), -1) if p else -1 for v, p in zip(objects, present, strict=True))
        return pd.Categorical.from_codes(_flags(found, np.int64), dtype=spec._categorical)
    if spec.type == "string":
        return np.array([v if p else None for v, p in zip(objects, present, strict=True)], dtype=object)
    cast = int if spec.type == "integer" else bool
    values: list[Any] = [cast(v) if p else None for v, p in zip(objects, present, strict=True)]
    if column.has_nulls:
        return pd.array(values, dtype=pd.Int64Dtype() if cast is int else pd.BooleanDtype())
    return np.array(values, dtype=np.int64 if cast is int else np.bool_)


def _floats(column: _Column, series: Any) -> np.ndarray[Any, Any]:
    if column.has_nulls:
        return np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan))
    # Without na_value pandas skips its own null scan (~10 us a column); the null matrix has answered already.
    return np.asarray(series.to_numpy(dtype=np.float64))


def _flags(values: Iterable[Any], dtype: Any = bool) -> np.ndarray[Any, Any]:
    return np.fromiter(values, dtype=dtype)


def _level(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def _number(value: float) -> str:
    return f"{value:.6g}"


def _violation(
    spec: ColumnSpec, problem: str, bad: np.ndarray[Any, Any], series: Any, what: str
) -> Violation:
    """A violation whose detail counts the bad rows and shows the first, as the caller sent it."""
    first = int(np.argmax(bad))
    value = series.iloc[first]
    value = value.item() if isinstance(value, np.generic) else value
    expected = f"expected {spec.type}; " if problem == "type" else ""
    detail = f"{expected}{int(bad.sum())} of {len(bad)} rows {what} (first: row {first}, value {value!r:.60})"
    return Violation(spec.name, problem, detail)
