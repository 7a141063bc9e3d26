"""`drift_report`: drift of a current table against a reference table or its stored profile, on its own.

    report = drift_report(reference=train_df, current=today_df)        # raw rows on both sides
    report = drift_report(reference=dataset_version_profile, current=today_df)  # TableProfile or its dict
    report.drifted, report.columns["amount"].score, report.to_dict(), report.to_html("drift.html")

Each column is read once: a numeric column is converted to float64 and sorted (raw reference) or bucketed
like the reference's sketch (profile reference); a categorical column is counted (pandas' `value_counts`
when the column is a pandas Series, else `collections.Counter`). The math is `loopml.stats.drift`.

Column kinds come from the reference: a profile's logical types (numeric -> numeric; categorical and
boolean -> categorical; datetime and text are skipped), else the dtype (ints and floats numeric; bool,
strings, objects and pandas categories categorical; datetimes skipped). A reference column absent from the
current table is reported with status "missing"; a current column that cannot be read as its reference kind
with status "skipped" and the reason: both are findings, not errors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loopml.core.errors import InvalidInput
from loopml.stats import CategoricalProfile, LogicalType, NumericProfile, TableProfile
from loopml.stats.drift import ColumnDrift, categorical_drift, dataset_drift, not_compared, numeric_drift
from loopml.stats.drift_config import DriftConfig
from loopml.stats.drift_samples import CategoricalSide, NumericSide

_COMPARED_KINDS = {
    LogicalType.NUMERIC: "numeric",
    LogicalType.CATEGORICAL: "categorical",
    LogicalType.BOOLEAN: "categorical",
}


@dataclass(frozen=True)
class DriftReport:
    """Per-column drift results (in column order) and the dataset verdict; see `drift_report`."""

    columns: Mapping[str, ColumnDrift]
    drifted: bool
    share: float | None  # drifted / compared columns
    weighted_share: float | None  # by feature importance, when given
    drift_share: float  # the threshold of the verdict
    compared: int
    drifted_count: int
    reference_source: str  # "rows" or "profile"
    reference_rows: int
    current_rows: int
    config: DriftConfig

    @property
    def drifted_columns(self) -> list[str]:
        """Names of the drifted columns."""
        return [name for name, c in self.columns.items() if c.drifted]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form: verdict, shares, config, and each column's result by name."""
        return {
            "drifted": self.drifted,
            "share": self.share,
            "weighted_share": self.weighted_share,
            "drift_share": self.drift_share,
            "compared": self.compared,
            "drifted_count": self.drifted_count,
            "drifted_columns": self.drifted_columns,
            "reference": {"source": self.reference_source, "rows": self.reference_rows},
            "current": {"rows": self.current_rows},
            "config": self.config.to_dict(),
            "columns": {name: c.to_dict() for name, c in self.columns.items()},
        }

    def to_html(self, path: str | Path) -> Path:
        """Write a self-contained HTML page (a table and inline-SVG histograms; no network); the path."""
        from loopml.monitoring.drift_html import render

        target = Path(path)
        target.write_text(render(self), encoding="utf-8")
        return target

    def __repr__(self) -> str:
        share = "n/a" if self.share is None else f"{self.share:.0%}"
        head = (
            f"DriftReport(drifted={self.drifted}, {self.drifted_count}/{self.compared} columns drifted ({share}), "
            f"threshold {self.drift_share:.0%}; reference {self.reference_source} of {self.reference_rows:,} rows, "
            f"current {self.current_rows:,} rows)"
        )
        lines = [head]
        for c in self.columns.values():
            if c.status in ("ok", "drifted"):
                score = "n/a" if c.score is None or math.isnan(c.score) else f"{c.score:.4g}"
                mark = "DRIFT" if c.drifted else "ok"
                lines.append(
                    f"  {c.column:<24} {c.kind:<11} {c.method:<15} {score:>9} (threshold {c.threshold:g})  {mark}"
                )
            else:
                lines.append(f"  {c.column:<24} {c.kind:<11} {c.status}: {c.note}")
        return "\n".join(lines)


def drift_report(
    reference: Any,
    current: Any,
    *,
    columns: Sequence[str] | None = None,
    config: DriftConfig | None = None,
    feature_importance: Mapping[str, float] | None = None,
) -> DriftReport:
    """Drift of `current` (a pandas DataFrame or a mapping of 1-D arrays) against `reference`.

    `reference` is raw rows (a DataFrame or a mapping of arrays), a `TableProfile`, or a profile's `to_dict()`
    form. `columns` limits the comparison (default: every reference column). `config` sets methods and
    thresholds per kind and per column; `feature_importance` ({column: weight >= 0}) adds the weighted share,
    which then decides the verdict.
    """
    config = config if config is not None else DriftConfig()
    if not isinstance(config, DriftConfig):
        raise InvalidInput(f"config must be a DriftConfig, got {type(config).__name__}")
    profile = _as_profile(reference)
    current_profile = _as_profile(current)
    if current_profile is not None:
        # A profile against a profile: a day's drift from the merge of its hours' stored profiles.
        if profile is None:
            raise InvalidInput("a current profile is compared with a reference profile, not with raw rows")
        current_columns: Mapping[str, Any] = dict(current_profile.columns)
        current_rows = current_profile.rows
    else:
        current_columns, current_rows = _table(current, "current")
    if profile is not None:
        names, reference_rows = list(profile.columns), profile.rows
        raw: Mapping[str, Any] = {}
    else:
        raw, reference_rows = _table(reference, "reference")
        names = list(raw)
    if columns is not None:
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise InvalidInput(f"columns not in the reference: {unknown}")
        names = list(columns)
    results = []
    for name in names:
        if profile is not None:
            result = _against_profile(name, profile, current_columns, config)
        else:
            result = _against_rows(name, raw[name], current_columns, config)
        results.append(result)
    summary = dataset_drift(
        results,
        drift_share=config.drift_share,
        correction=config.correction,
        feature_importance=feature_importance,
    )
    return DriftReport(
        columns={c.column: c for c in summary.columns},
        drifted=summary.drifted,
        share=summary.share,
        weighted_share=summary.weighted_share,
        drift_share=summary.drift_share,
        compared=summary.compared,
        drifted_count=summary.drifted_count,
        reference_source="profile" if profile is not None else "rows",
        reference_rows=reference_rows,
        current_rows=current_rows,
        config=config,
    )


def _against_profile(
    name: str, profile: TableProfile, current: Mapping[str, Any], config: DriftConfig
) -> ColumnDrift:
    logical = profile.kinds[name]
    kind = _COMPARED_KINDS.get(logical)
    if kind is None:
        return not_compared(
            name, logical.value, "skipped", f"{logical.value} columns are not compared for drift"
        )
    if name not in current:
        return not_compared(name, kind, "missing", "the column is not in the current table")
    column = profile.columns[name]
    try:
        if isinstance(column, NumericProfile):
            reference_side = NumericSide.from_profile(column)
            value = current[name]
            if isinstance(value, NumericProfile):
                current_side = NumericSide.from_profile(value)
            else:
                current_side = NumericSide.sketched(_floats(value), column.sketch)  # type: ignore[arg-type]
            return numeric_drift(name, reference_side, current_side, config.for_column(name, "numeric"))
        assert isinstance(column, CategoricalProfile)
        value = current[name]
        current_categories = (
            CategoricalSide.from_profile(value)
            if isinstance(value, CategoricalProfile)
            else _categories(value)
        )
        return categorical_drift(
            name,
            CategoricalSide.from_profile(column),
            current_categories,
            config.for_column(name, "categorical"),
        )
    except InvalidInput as error:
        return not_compared(name, kind, "skipped", f"the current column cannot be compared: {error}")


def _against_rows(name: str, values: Any, current: Mapping[str, Any], config: DriftConfig) -> ColumnDrift:
    kind = _kind_of(values)
    if kind is None:
        return not_compared(
            name, "other", "skipped", f"columns of dtype {_dtype(values)} are not compared for drift"
        )
    if name not in current:
        return not_compared(name, kind, "missing", "the column is not in the current table")
    try:
        if kind == "numeric":
            return numeric_drift(
                name,
                NumericSide.from_values(_floats(values)),
                NumericSide.from_values(_floats(current[name])),
                config.for_column(name, "numeric"),
            )
        return categorical_drift(
            name, _categories(values), _categories(current[name]), config.for_column(name, "categorical")
        )
    except InvalidInput as error:
        return not_compared(name, kind, "skipped", f"the current column cannot be compared: {error}")


def _as_profile(reference: Any) -> TableProfile | None:
    if isinstance(reference, TableProfile):
        return reference
    if isinstance(reference, Mapping) and "version" in reference and "columns" in reference:
        return TableProfile.from_dict(reference)
    return None


def _table(table: Any, what: str) -> tuple[Mapping[str, Any], int]:
    """({name: column}, rows) of a pandas DataFrame or a mapping of equally long 1-D arrays."""
    if hasattr(table, "columns") and hasattr(table, "__getitem__") and not isinstance(table, Mapping):
        names = [str(c) for c in table.columns]
        if len(set(names)) != len(names):
            raise InvalidInput(f"the {what} table has duplicate column names")
        return {str(c): table[c] for c in table.columns}, len(table)
    if isinstance(table, Mapping):
        lengths = {len(v) for v in table.values()}
        if len(lengths) > 1:
            raise InvalidInput(f"the {what} columns must be equally long, got lengths {sorted(lengths)}")
        return {str(k): v for k, v in table.items()}, lengths.pop() if lengths else 0
    raise InvalidInput(
        f"the {what} must be a pandas DataFrame or a mapping of columns"
        + (", or a TableProfile" if what == "reference" else "")
        + f"; got {type(table).__name__}"
    )


def _is_series(values: Any) -> bool:
    return hasattr(values, "dtype") and hasattr(values, "value_counts") and hasattr(values, "isna")


def _dtype(values: Any) -> str:
    return str(getattr(values, "dtype", type(values).__name__))


def _kind_of(values: Any) -> str | None:
    if _is_series(values):
        dtype = values.dtype
        name = str(dtype)
        if name.startswith(("datetime", "timedelta", "period", "interval")):
            return None
        if name in ("bool", "boolean", "category", "object", "string", "str") or name.startswith("string"):
            return "categorical"
        kind = getattr(dtype, "kind", "O")
        return "numeric" if kind in "iuf" else "categorical"
    kind = np.asarray(values).dtype.kind
    if kind in "iuf":
        return "numeric"
    if kind in "mM":
        return None
    return "categorical"


def _floats(values: Any) -> Any:
    """A column as float64 with NaN for nulls (pandas nullable dtypes included)."""
    if _is_series(values):
        try:
            return values.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            raise InvalidInput(f"a column of dtype {values.dtype} is not numeric") from None
    return values


def _categories(values: Any) -> CategoricalSide:
    if _is_series(values):
        counts = values.value_counts(dropna=True, sort=False)
        names = [v if isinstance(v, str) else _name(v) for v in counts.index.tolist()]
        merged: dict[str, int] = {}
        for label, c in zip(names, counts.tolist(), strict=True):
            merged[label] = merged.get(label, 0) + int(c)
        return CategoricalSide.from_counts(merged, nulls=int(values.isna().sum()))
    return CategoricalSide.from_values(np.asarray(values))


def _name(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)
