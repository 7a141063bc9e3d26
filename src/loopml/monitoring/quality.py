"""Data quality of a window of logged predictions, against the model's signature.

Findings per input column: share of nulls (and whether training saw any), numbers outside the range
training saw, categories training never saw (with counts, the most frequent first), and columns the log
lacks (redacted, or a request schema that changed) or holds beyond the signature. Per window: rows, and the
serving latency percentiles. A finding is data, never an exception: a window with a different schema is
reported, not a crash.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from loopml.predictions.records import INPUT_PREFIX, OUTPUT_PREFIX
from loopml.registry.signature import ColumnSpec, Signature
from loopml.stats import TableProfile

if TYPE_CHECKING:
    import pandas as pd

MAX_LEVELS_LISTED = 20


def inputs_of(frame: pd.DataFrame) -> pd.DataFrame:
    """The logged model inputs of a window, under their own names."""
    columns = [c for c in frame.columns if str(c).startswith(INPUT_PREFIX)]
    return frame[columns].rename(columns=lambda c: str(c)[len(INPUT_PREFIX) :])


def outputs_of(frame: pd.DataFrame) -> pd.DataFrame:
    """The logged model outputs of a window (prediction, proba_<class>), under their own names."""
    columns = [c for c in frame.columns if str(c).startswith(OUTPUT_PREFIX)]
    return frame[columns].rename(columns=lambda c: str(c)[len(OUTPUT_PREFIX) :])


def profile_part(profile: TableProfile, prefix: str) -> TableProfile:
    """The columns of a window profile under `prefix` (`in.` inputs, `out.` outputs), under their own names."""
    names = [n for n in profile.columns if n.startswith(prefix)]
    return TableProfile(
        profile.rows,
        {n[len(prefix) :]: profile.columns[n] for n in names},
        {n[len(prefix) :]: profile.kinds[n] for n in names},
    )


def window_quality(frame: pd.DataFrame, signature: Signature | None) -> dict[str, Any]:
    """JSON-able quality findings of one window of the prediction log."""
    inputs = inputs_of(frame)
    rows = len(frame)
    report: dict[str, Any] = {"rows": rows, "columns": {}, "missing_columns": [], "unexpected_columns": []}
    if "latency_ms" in frame.columns and rows:
        latency = frame["latency_ms"].to_numpy(dtype=np.float64, na_value=np.nan)
        if not np.isnan(latency).all():
            p50, p95, p99 = np.nanpercentile(latency, [50, 95, 99]).tolist()
            report["latency_ms"] = {"p50": p50, "p95": p95, "p99": p99}
    if signature is None:
        return report
    expected = signature.column_names
    report["missing_columns"] = [c for c in expected if c not in inputs.columns]
    report["unexpected_columns"] = [str(c) for c in inputs.columns if c not in set(expected)]
    for spec in signature.inputs:
        if spec.name in inputs.columns:
            report["columns"][spec.name] = _column(inputs[spec.name], spec, rows)
    return report


def _column(series: pd.Series[Any], spec: ColumnSpec, rows: int) -> dict[str, Any]:
    nulls = int(series.isna().sum())
    found: dict[str, Any] = {"null_share": nulls / rows if rows else 0.0, "nulls_in_training": spec.nullable}
    present = series.dropna()
    if spec.type in ("integer", "float") and len(present):
        values = present.to_numpy(dtype=np.float64)
        below = int((values < spec.minimum).sum()) if spec.minimum is not None else 0
        above = int((values > spec.maximum).sum()) if spec.maximum is not None else 0
        found["out_of_range"] = below + above
        found["out_of_range_share"] = (below + above) / rows
    if spec.levels is not None and len(present):
        known = set(spec.levels)
        counts = present.astype(str).value_counts()
        unseen = {str(level): int(count) for level, count in counts.items() if level not in known}
        found["unseen_levels"] = dict(sorted(unseen.items(), key=lambda kv: -kv[1])[:MAX_LEVELS_LISTED])
        found["unseen_share"] = sum(unseen.values()) / rows
    return found
