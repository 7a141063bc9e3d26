"""Pieces of the monitoring report's data: merged distributions, quality findings in words, the alert log.

Distributions: the current side of a feature is the merge of the chosen windows' stored profiles (column
`in.<feature>`), column by column, so a window whose schema differed (a column missing, or logged with another
type) leaves that column out instead of failing the merge; no row is read again. Numeric bins are equal-width
over both sides' 0.5%-99.5% range with open outer bins (as `stats.drift` draws them); the counts of a profile
side come from its sketch (`NumericProfile.histogram`), within the sketch's relative accuracy.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from loopml.monitoring.alert_store import AlertStore
from loopml.monitoring.store import WindowRecord, load_profile
from loopml.predictions.records import INPUT_PREFIX
from loopml.stats import CategoricalProfile, LogicalType, NumericProfile, TableProfile, merge
from loopml.stats.drift import HISTOGRAM_BINS, HISTOGRAM_CATEGORIES, OTHER

if TYPE_CHECKING:
    from loopml.storage.metadata.database import Database
    from loopml.tracking.tracker import Tracker

_SHOWN = {LogicalType.NUMERIC, LogicalType.CATEGORICAL, LogicalType.BOOLEAN}


def distributions(
    tracker: Tracker, reference: TableProfile | None, windows: Sequence[WindowRecord], *, version: int
) -> dict[str, Any]:
    """Per feature: reference vs current (merged windows) histogram shares and summary statistics."""
    profiles = [
        load_profile(tracker.blobs, w.profile_digest) for w in windows if w.profile_digest is not None
    ]
    names: list[str] = list(reference.columns) if reference is not None else []
    for profile in profiles:
        for column in profile.columns:
            name = column[len(INPUT_PREFIX) :]
            if column.startswith(INPUT_PREFIX) and name not in names:
                names.append(name)
    features: dict[str, Any] = {}
    for name in names:
        kind = reference.kinds[name] if reference is not None and name in reference.columns else None
        current, merged_windows, rows = _merged(profiles, INPUT_PREFIX + name, kind)
        if kind is None and current is not None:
            kind = current.kinds[INPUT_PREFIX + name]
        if kind not in _SHOWN:
            continue
        ref = None if reference is None or name not in reference.columns else reference.columns[name]
        cur = None if current is None else current.columns[INPUT_PREFIX + name]
        features[name] = {
            "kind": "numeric" if kind is LogicalType.NUMERIC else "categorical",
            "reference_rows": None if reference is None else reference.rows,
            "current_rows": rows,
            "windows_merged": merged_windows,
            "reference": _stats(ref),
            "current": _stats(cur),
            "histogram": _histogram(ref, cur),
        }
    return {
        "version": version,
        "reference": None if reference is None else {"rows": reference.rows},
        "windows": len(windows),
        "features": features,
    }


def _merged(
    profiles: Sequence[TableProfile], column: str, kind: LogicalType | None
) -> tuple[TableProfile | None, int, int]:
    """(merged one-column profile, windows merged, rows) of `column` over the windows holding it."""
    parts: list[TableProfile] = []
    for profile in profiles:
        if column not in profile.columns:
            continue
        if kind is not None and profile.kinds[column] is not kind:
            continue  # logged with another type than training's: a quality finding, not a distribution
        if parts and profile.kinds[column] is not parts[0].kinds[column]:
            continue
        parts.append(
            TableProfile(profile.rows, {column: profile.columns[column]}, {column: profile.kinds[column]})
        )
    if not parts:
        return None, 0, 0
    merged = merge(parts[0], *parts[1:])
    return merged, len(parts), merged.rows


def _stats(column: Any) -> dict[str, Any] | None:
    if isinstance(column, NumericProfile):
        if not column.count:
            return {"count": 0, "nulls": column.nulls}
        p05, p50, p95 = column.quantiles([0.05, 0.5, 0.95]).tolist()
        return {
            "count": column.count,
            "nulls": column.nulls,
            "mean": column.mean,
            "std": column.std,
            "min": column.min,
            "p05": p05,
            "p50": p50,
            "p95": p95,
            "max": column.max,
        }
    if isinstance(column, CategoricalProfile):
        top = column.top[:5]
        return {
            "count": column.count,
            "nulls": column.nulls,
            "distinct": column.distinct(),
            "top": [[value, count] for value, count in top],
        }
    return None


def _histogram(reference: Any, current: Any) -> dict[str, Any] | None:
    """Shares per bin of both sides over the same bins ({labels, reference, current, edges}), or None."""
    sides = [p for p in (reference, current) if p is not None]
    if not sides:
        return None
    if all(isinstance(p, NumericProfile) for p in sides):
        return _numeric_histogram(reference, current)
    if all(isinstance(p, CategoricalProfile) for p in sides):
        return _categorical_histogram(reference, current)
    return None


def _numeric_histogram(
    reference: NumericProfile | None, current: NumericProfile | None
) -> dict[str, Any] | None:
    present = [p for p in (reference, current) if p is not None and p.count]
    if not present:
        return None
    low = min(float(p.quantile(0.005)) for p in present)
    high = max(float(p.quantile(0.995)) for p in present)
    if not high > low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    # Open outer bins: values beyond the shown range still count, in the first or last bin.
    open_edges = np.concatenate([[-np.inf], edges[1:-1], [np.inf]])

    def shares(side: NumericProfile | None) -> list[float]:
        if side is None or not side.count:
            return [0.0] * HISTOGRAM_BINS
        counts = side.histogram(open_edges)
        total = float(counts.sum())
        return [round(float(c) / total, 6) if total > 0 else 0.0 for c in counts]

    labels = [f"{a:.4g}..{b:.4g}" for a, b in itertools.pairwise(edges.tolist())]
    return {
        "labels": labels,
        "reference": shares(reference),
        "current": shares(current),
        "edges": [float(e) for e in edges],
    }


def _categorical_histogram(
    reference: CategoricalProfile | None, current: CategoricalProfile | None
) -> dict[str, Any]:
    ref = {} if reference is None else reference.counts
    cur = {} if current is None else current.counts
    ref_total = max(1, 0 if reference is None else reference.count)
    cur_total = max(1, 0 if current is None else current.count)
    labels = list(dict.fromkeys([*ref, *cur]))
    p = {k: ref.get(k, 0) / ref_total for k in labels}
    q = {k: cur.get(k, 0) / cur_total for k in labels}
    labels.sort(key=lambda k: -(p[k] + q[k]))
    shown = labels[:HISTOGRAM_CATEGORIES]
    ref_shares = [round(p[k], 6) for k in shown]
    cur_shares = [round(q[k], 6) for k in shown]
    # What the top categories leave (the rest, and a profile's own uncounted tail) is one "other" bar.
    ref_rest, cur_rest = 1.0 - sum(p[k] for k in shown), 1.0 - sum(q[k] for k in shown)
    if reference is None:
        ref_rest = 0.0
    if current is None:
        cur_rest = 0.0
    if ref_rest > 1e-9 or cur_rest > 1e-9:
        shown = [*shown, OTHER if OTHER not in shown else f"{OTHER} +"]
        ref_shares.append(round(max(ref_rest, 0.0), 6))
        cur_shares.append(round(max(cur_rest, 0.0), 6))
    return {"labels": shown, "reference": ref_shares, "current": cur_shares, "edges": []}


def quality_findings(quality: dict[str, Any]) -> list[str]:
    """A window's quality findings in words ("amount: 12% out of the training range"); empty when clean."""
    found = [f"column {c} is missing" for c in quality.get("missing_columns", [])]
    found += [f"column {c} is not in the signature" for c in quality.get("unexpected_columns", [])]
    for name, column in (quality.get("columns") or {}).items():
        if column.get("null_share") and not column.get("nulls_in_training"):
            found.append(f"{name}: {column['null_share']:.1%} nulls (none in training)")
        if column.get("out_of_range"):
            found.append(f"{name}: {column['out_of_range_share']:.1%} out of the training range")
        if column.get("unseen_levels"):
            levels = ", ".join(list(column["unseen_levels"])[:3])
            found.append(f"{name}: {column['unseen_share']:.1%} unseen categories ({levels})")
    return found


def alerts_of(db: Database, model: str, *, version: int | None, since_ms: int) -> list[dict[str, Any]]:
    """The model's alerts on the chosen windows (by window start; alerts without a window by time)."""
    found = []
    for alert in AlertStore(db).alerts(model):
        at = alert.window_start_ms if alert.window_start_ms is not None else alert.time
        if at < since_ms or (version is not None and alert.version not in (None, version)):
            continue
        found.append(
            {
                "alert_id": alert.alert_id,
                "time": alert.time,
                "severity": alert.severity,
                "rule": alert.rule,
                "metric": alert.metric,
                "value": _finite(alert.value),
                "threshold": _finite(alert.threshold),
                "message": alert.message,
                "version": alert.version,
                "window_start_ms": alert.window_start_ms,
                "delivered": {name: d.get("status") for name, d in alert.delivered.items()},
            }
        )
    return found


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value
