"""A model's input/output signature: inferred from training data, stored as JSON, enforced on every request.

`check` lists every way a frame differs from a signature; `validate` raises `SignatureMismatch` if there is any,
else returns the frame as the model saw it in training: columns in signature order, integers as floats in float
columns, JSON's 3.0 as an integer, strings as the training categories, ISO 8601 strings as datetimes. Rows in
messages are 0-based positions, which is the index of the record in a JSON request.

Missing, unexpected and mistyped columns, and nulls where training saw none, are always violations. Unseen levels
and out-of-range numbers are drift, which monitoring watches, so they are violations only with `strict_levels` /
`strict_ranges`; without `strict_levels` a value that is not one of the training categories becomes missing in a
category column (pandas semantics). Integer and boolean columns come out as nullable `Int64` / `boolean` when
the request holds nulls, else as plain numpy dtypes.

Levels are strings. A category column keeps all its categories in dtype order, because models may use the codes;
a string column keeps its distinct values, sorted, when there are at most 50. Category values are compared by
`str()`, so they may arrive as strings, integers or booleans; floats are refused, since 1.0 would not match "1".

pandas is an optional extra, imported inside functions only; a frame in hand means it is installed.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from loopml.core.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

TYPES = ("integer", "float", "boolean", "string", "category", "datetime")
MAX_LEVELS = 50
_MAX_LISTED = 10
_INT64_BOUND = 2.0**63
_PANDAS_HINT = "model signatures need pandas: install it with `pip install 'loopml[data]'`"
_SPEC_KEYS = ("name", "type", "nullable", "levels", "minimum", "maximum")
_NUMPY_KINDS = {"i": "integer", "u": "integer", "f": "float", "b": "boolean", "M": "datetime", "O": "object"}
# pandas.api.types.infer_dtype results for object columns, mapped to the signature type they can honestly get.
_OBJECT_TYPES = {
    **dict.fromkeys(("string", "empty"), "string"),
    **dict.fromkeys(("floating", "mixed-integer-float"), "float"),
    **dict.fromkeys(("datetime", "datetime64", "date"), "datetime"),
    **{"integer": "integer", "boolean": "boolean"},
}


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
class ColumnSpec:
    """One column: name, type (one of `TYPES`), whether training saw nulls, and the levels or range it saw."""

    name: str
    type: str
    nullable: bool
    levels: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInput(f"a column name must be a non-empty string, got {self.name!r}")
        where = f"column {self.name!r}"
        if self.type not in TYPES:
            raise InvalidInput(f"{where}: type must be one of {', '.join(TYPES)}; got {self.type!r}")
        if not isinstance(self.nullable, bool):
            raise InvalidInput(f"{where}: nullable must be true or false, got {self.nullable!r}")
        if self.levels is None and self.type == "category":
            raise InvalidInput(f"{where}: a category column needs its levels (the training categories)")
        if self.levels is not None:
            if self.type not in ("string", "category"):
                raise InvalidInput(f"{where}: a {self.type} column has no levels")
            if not isinstance(self.levels, tuple) or not all(isinstance(v, str) for v in self.levels):
                raise InvalidInput(f"{where}: levels must be a list of strings, got {self.levels!r}")
            if len(set(self.levels)) != len(self.levels):
                raise InvalidInput(f"{where}: levels must be distinct; remove the repeated ones")
        for bound in ("minimum", "maximum"):
            object.__setattr__(self, bound, self._bound(bound))
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise InvalidInput(f"{where}: minimum {self.minimum} is above maximum {self.maximum}")

    def _bound(self, bound: str) -> float | None:
        value = getattr(self, bound)
        if value is None:
            return None
        if self.type not in ("integer", "float"):
            raise InvalidInput(f"column {self.name!r}: a {self.type} column has no {bound}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidInput(f"column {self.name!r}: {bound} must be a finite number, got {value!r}")
        return float(value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; optional fields that are None are left out."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Any) -> ColumnSpec:
        """Read `to_dict`'s form back; anything malformed raises InvalidInput."""
        if not isinstance(data, Mapping):
            raise InvalidInput(f"a column must be an object with name, type and nullable; got {data!r:.60}")
        unknown = sorted(str(key) for key in data if key not in _SPEC_KEYS)
        if unknown:
            raise InvalidInput(f"unknown column keys {unknown}; allowed: {', '.join(_SPEC_KEYS)}")
        absent = [key for key in _SPEC_KEYS[:3] if key not in data]
        if absent:
            raise InvalidInput(f"a column needs {', '.join(absent)}; got keys {sorted(map(str, data))}")
        levels = data.get("levels")
        return cls(
            **{str(k): v for k, v in data.items() if k != "levels"},
            levels=tuple(levels) if isinstance(levels, list) else levels,
        )

    @cached_property
    def _codes(self) -> dict[str, int]:
        return {level: code for code, level in enumerate(self.levels or ())}

    @cached_property
    def _categorical(self) -> Any:  # built once: a CategoricalDtype costs ~50 us, far more than the check
        import pandas as pd

        return pd.CategoricalDtype(list(self.levels or ()))


@dataclass(frozen=True)
class Signature:
    """The columns a model takes (`inputs`, in order) and the columns it returns (`outputs`)."""

    inputs: tuple[ColumnSpec, ...]
    outputs: tuple[ColumnSpec, ...] = ()

    def __post_init__(self) -> None:
        for side in ("inputs", "outputs"):
            specs = tuple(getattr(self, side))
            object.__setattr__(self, side, specs)
            if not all(isinstance(spec, ColumnSpec) for spec in specs):
                raise InvalidInput(f"signature {side} must be ColumnSpec objects")
            names = [spec.name for spec in specs]
            if len(set(names)) != len(names):
                twice = sorted({name for name in names if names.count(name) > 1})
                raise InvalidInput(f"signature {side} name {twice} more than once; names must be unique")
        if not self.inputs:
            raise InvalidInput("a signature needs at least one input column")

    @property
    def column_names(self) -> list[str]:
        """The input column names, in the order the model takes them."""
        return [spec.name for spec in self.inputs]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: `{"inputs": [column, ...], "outputs": [column, ...]}`."""
        return {"inputs": [s.to_dict() for s in self.inputs], "outputs": [s.to_dict() for s in self.outputs]}

    @classmethod
    def from_dict(cls, data: Any) -> Signature:
        """Read `to_dict`'s form back; anything malformed raises InvalidInput saying where."""
        if not isinstance(data, Mapping) or "inputs" not in data:
            raise InvalidInput(f"a signature must be an object with 'inputs' and 'outputs', got {data!r:.80}")
        unknown = sorted(str(key) for key in data if key not in ("inputs", "outputs"))
        if unknown:
            raise InvalidInput(f"unknown signature keys {unknown}; allowed: inputs, outputs")
        sides: dict[str, list[ColumnSpec]] = {}
        for side in ("inputs", "outputs"):
            items = data.get(side, [])
            if not isinstance(items, list):
                raise InvalidInput(f"signature {side} must be a list of columns, got {type(items).__name__}")
            sides[side] = []
            for i, item in enumerate(items):
                try:
                    sides[side].append(ColumnSpec.from_dict(item))
                except InvalidInput as exc:
                    raise InvalidInput(f"signature {side}[{i}]: {exc.message}") from exc
        return cls(inputs=tuple(sides["inputs"]), outputs=tuple(sides["outputs"]))

    @cached_property
    def _by_name(self) -> dict[str, ColumnSpec]:
        return {spec.name: spec for spec in self.inputs}


def infer_signature(
    sample: pd.DataFrame | np.ndarray[Any, Any],
    *,
    predictions: Any = None,
    probabilities: Any = None,
    classes: Sequence[Any] | None = None,
) -> Signature:
    """Describe training data: one input per column (a 2-D array's are "f0".."fN-1"), outputs from predictions.

    `predictions` (one per row) gives a "prediction" output; `probabilities` (rows x classes) gives a float
    output "proba_<class>" per class, with `classes` in column order (default 0..k-1).
    """
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - the data extra is installed where tests run
        raise ImportError(_PANDAS_HINT) from exc
    if isinstance(sample, np.ndarray):
        if sample.ndim != 2:
            raise InvalidInput(f"a sample array must be 2-D (rows x features), got shape {sample.shape}")
        sample = pd.DataFrame(sample, columns=[f"f{i}" for i in range(sample.shape[1])])
    if not isinstance(sample, pd.DataFrame):
        raise InvalidInput(f"a sample must be a DataFrame or a 2-D numpy array, got {type(sample).__name__}")
    if sample.shape[0] == 0 or sample.shape[1] == 0:
        raise InvalidInput(f"the sample is empty ({sample.shape[0]} x {sample.shape[1]}); pass training rows")
    if not sample.columns.is_unique or not all(isinstance(name, str) for name in sample.columns):
        raise InvalidInput(
            "sample column names must be distinct strings; e.g. df.columns = df.columns.astype(str)"
        )
    inputs = tuple(_infer_column(str(name), sample[name]) for name in sample.columns)
    rows = sample.shape[0]
    outputs: list[ColumnSpec] = []
    if predictions is not None:
        outputs.append(_infer_column("prediction", _prediction_series(predictions, rows)))
    if probabilities is not None:
        outputs.extend(_probability_specs(probabilities, classes, rows))
    elif classes is not None:
        raise InvalidInput("classes name the columns of probabilities; pass probabilities too")
    return Signature(inputs=inputs, outputs=tuple(outputs))


def _kind(dtype: Any) -> str:
    """The signature type a dtype holds, "object" when only the values can tell, or "other"."""
    if isinstance(dtype, np.dtype):
        return _NUMPY_KINDS.get(dtype.kind, "other")
    import pandas as pd

    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if isinstance(dtype, pd.StringDtype):
        return "string"
    types = pd.api.types
    tests = (types.is_bool_dtype, types.is_integer_dtype, types.is_float_dtype, types.is_datetime64_any_dtype)
    for test, kind in zip(tests, ("boolean", "integer", "float", "datetime"), strict=True):
        if test(dtype):
            return kind
    return "string" if types.is_string_dtype(dtype) else "other"


def _infer_column(name: str, series: pd.Series[Any]) -> ColumnSpec:
    import pandas as pd

    kind = _kind(series.dtype)
    nulls = series.isna()
    values = series[~nulls]
    if kind == "object":
        kind = _OBJECT_TYPES.get(pd.api.types.infer_dtype(values, skipna=True), "")
        if not kind:
            seen = sorted({type(v).__name__ for v in values})[:4]
            raise InvalidInput(f"column {name!r} mixes values of types {seen}; convert it to one type first")
    if kind == "other":
        raise InvalidInput(
            f"column {name!r} has dtype {series.dtype}, which a signature cannot describe; "
            "convert it to numbers, booleans, strings, a category or datetimes"
        )
    nullable = bool(nulls.any())
    if kind == "category":
        categories = tuple(str(c) for c in series.cat.categories)
        return ColumnSpec(name, "category", nullable, levels=categories)
    if kind == "string":
        distinct = {str(v) for v in values.unique()}
        levels = tuple(sorted(distinct)) if len(distinct) <= MAX_LEVELS else None
        return ColumnSpec(name, "string", nullable, levels=levels)
    if kind in ("integer", "float"):
        lo, hi = _finite_range(values.to_numpy(dtype=np.float64))
        return ColumnSpec(name, kind, nullable, minimum=lo, maximum=hi)
    return ColumnSpec(name, kind, nullable)


def _finite_range(values: np.ndarray[Any, Any]) -> tuple[float | None, float | None]:
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else (None, None)


def _prediction_series(predictions: Any, rows: int) -> pd.Series[Any]:
    import pandas as pd

    if isinstance(predictions, pd.DataFrame) and predictions.shape[1] == 1:
        predictions = predictions.iloc[:, 0]
    if isinstance(predictions, pd.Series):
        series = predictions.reset_index(drop=True)
    else:
        try:
            array = np.asarray(predictions)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"predictions must be an array with one value per row: {exc}") from exc
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise InvalidInput(f"predictions must be 1-D (one per row), got shape {array.shape}")
        series = pd.Series(array)
    if len(series) != rows:
        raise InvalidInput(f"there are {len(series)} predictions for {rows} sample rows; pass one per row")
    return series


def _probability_specs(probabilities: Any, classes: Sequence[Any] | None, rows: int) -> list[ColumnSpec]:
    try:
        array = np.asarray(probabilities, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"probabilities must be numbers (rows x classes): {exc}") from exc
    if array.ndim != 2 or array.shape[0] != rows:
        raise InvalidInput(f"probabilities must have shape ({rows}, classes), got {array.shape}")
    labels = [str(c) for c in classes] if classes is not None else [str(i) for i in range(array.shape[1])]
    if len(labels) != array.shape[1]:
        raise InvalidInput(f"{len(labels)} classes given for {array.shape[1]} probability columns")
    return [
        ColumnSpec(f"proba_{label}", "float", bool(np.isnan(column).any()), None, *_finite_range(column))
        for label, column in zip(labels, array.T, strict=True)
    ]


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
