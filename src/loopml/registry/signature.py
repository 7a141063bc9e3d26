"""A model's input/output signature: inferred from training data, stored as JSON, enforced on every request.

`ColumnSpec` and `Signature` are the types and their JSON form; `infer_signature` describes training data.
Enforcing a signature on a request (`check`, `validate`, `frame_from_records`, `Violation`, `SignatureMismatch`)
lives in `loopml.registry.signature_check`; those names are importable from here too.

Levels are strings. A category column keeps all its categories in dtype order, because models may use the codes;
a string column keeps its distinct values, sorted, when there are at most 50 (`MAX_LEVELS`).

pandas is an optional extra, imported inside functions only; a frame in hand means it is installed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from loopml.core.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

    from loopml.registry.signature_check import (
        SignatureMismatch,
        Violation,
        check,
        frame_from_records,
        validate,
    )

__all__ = [
    "MAX_LEVELS", "TYPES", "ColumnSpec", "Signature", "SignatureMismatch", "Violation", "check",
    "frame_from_records", "infer_signature", "validate",
]  # fmt: skip

TYPES = ("integer", "float", "boolean", "string", "category", "datetime")
MAX_LEVELS = 50
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

    @cached_property
    def column_index(self) -> Any:
        """The input column names as one pandas Index, built once: frames made for this signature share it
        (building an Index of strings costs ~50 us a frame)."""
        import pandas as pd

        return pd.Index(self.column_names)


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


_CHECK_NAMES = frozenset({"Violation", "SignatureMismatch", "check", "validate", "frame_from_records"})

if not TYPE_CHECKING:  # mypy sees the import at the top instead, so misspelt names stay errors

    def __getattr__(name: str) -> Any:
        # signature_check imports this module, so its names are imported on first use rather than at the top.
        if name in _CHECK_NAMES:
            from loopml.registry import signature_check

            value = getattr(signature_check, name)
            globals()[name] = value  # later lookups are plain attribute reads
            return value
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
