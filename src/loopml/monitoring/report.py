"""`build_report(tracker, model)`: the data of a model's monitoring report, from what `runner.run` stored.

    report = build_report(tracker, "fraud", last=24)      # the last 24 hourly windows, every version
    report.to_dict()                                       # JSON-able: summary, distributions, series, alerts
    report.to_html("report.html")                          # one self-contained page (report_html.py)

Nothing here reads the prediction log: the series come from the stored windows (drift, quality, performance),
the current distributions are the merge of the chosen windows' stored profiles (profiles are mergeable), and
the reference is the version's reference profile. With several versions in the chosen windows, the series
show them all (a point per version and window) and the distributions show the newest version, against its
own reference.

Which signal fired: per window, `stats.performance.compare_performance` compares the estimate (from
probabilities) with the realized value (late labels) against a reference value of the metric: the version's
recorded metric when the registry holds it, else the realized (or, without labels, estimated) value of the
version's first computed window.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.core.clock import now_ms
from loopml.core.errors import InvalidInput, NotFound
from loopml.monitoring.config import monitor_config
from loopml.monitoring.reference import reference_for
from loopml.monitoring.report_data import alerts_of, distributions, quality_findings
from loopml.monitoring.store import MonitorStore, WindowRecord
from loopml.monitoring.windows import step_of
from loopml.registry.records import ModelRef
from loopml.registry.store import RegistryStore
from loopml.stats.drift_config import TEST_METHODS
from loopml.stats.estimation import ESTIMATED, EstimatedPerformance
from loopml.stats.performance import RealizedPerformance, compare_performance

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

# The metric the charts and the summary follow, first one a window has (classification, then regression).
PRIMARY_METRICS = ("accuracy", "f1", "roc_auc", "mae", "rmse")


@dataclass(frozen=True)
class MonitorReport:
    """The report's data; every field is JSON-able. Built by `build_report`; see the module docstring.

    `windows` lists the chosen windows oldest first; every series (`drift`, `performance`, `latency`) holds
    one entry per window, in that order (None where the window has no value).
    """

    model: str
    granularity: str
    generated_ms: int
    summary: dict[str, Any]
    windows: list[dict[str, Any]]
    distributions: dict[str, Any]
    drift: dict[str, Any]
    performance: dict[str, Any]
    latency: dict[str, Any]
    alerts: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (the same data the HTML page shows; non-finite numbers become None)."""
        plain: dict[str, Any] = _json_safe(
            {
                "model": self.model,
                "granularity": self.granularity,
                "generated_ms": self.generated_ms,
                "summary": self.summary,
                "windows": self.windows,
                "distributions": self.distributions,
                "drift": self.drift,
                "performance": self.performance,
                "latency": self.latency,
                "alerts": self.alerts,
            }
        )
        return plain

    def to_json(self, path: str | Path) -> Path:
        """Write `to_dict()` as JSON (atomically); the path."""
        return write_atomically(Path(path), json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    def to_html(self, path: str | Path) -> Path:
        """Write the self-contained HTML page (inline CSS and SVG; no script, no network) atomically; the path."""
        from loopml.monitoring.report_html import render

        return write_atomically(Path(path), render(self))


def build_report(
    tracker: Tracker,
    model: str,
    *,
    version: int | None = None,
    granularity: str = "hour",
    last: int | None = None,
) -> MonitorReport:
    """The monitoring report of `model` over its computed windows at `granularity`.

    `version` keeps one version's windows (default: every version); `last` keeps the windows of the last
    `last` window starts. `NotFound` for an unknown model or version, or when no window is computed yet
    (run `loopml monitor run MODEL` first); `InvalidInput` for a bad granularity or `last`.
    """
    step_of(granularity)  # refuses an unknown granularity with the list of known ones
    if last is not None and last < 1:
        raise InvalidInput(f"last must be a positive number of windows, got {last}")
    registry = RegistryStore(tracker.stores.db)
    if version is not None:
        registry.get_version(ModelRef(model, version=version))  # NotFound names the versions there are
    store = MonitorStore(tracker.stores.db)
    every = store.windows(model, version=version, granularity=granularity)
    if not every:
        which = "" if version is None else f" version {version}"
        raise NotFound(
            f"no {granularity}ly monitoring windows computed yet for {model!r}{which}; "
            f"run `loopml monitor run {model}` first"
        )
    chosen = _last(every, last)
    newest = version if version is not None else max(w.version for w in chosen)
    profile_version = registry.get_version(ModelRef(model, version=newest))
    pinned = monitor_config(tracker.settings.project_dir, model).reference
    reference = reference_for(tracker, profile_version, pinned)
    merged = [w for w in chosen if w.version == newest]
    performance = _performance(registry, store, model, chosen, granularity)
    drift = _drift(chosen)
    report = MonitorReport(
        model=model,
        granularity=granularity,
        generated_ms=now_ms(),
        summary={},
        windows=[_window(w) for w in chosen],
        distributions=distributions(tracker, reference, merged, version=newest),
        drift=drift,
        performance=performance,
        latency=_latency(chosen),
        alerts=alerts_of(tracker.stores.db, model, version=version, since_ms=chosen[0].start_ms),
    )
    return replace(report, summary=_summary(report, chosen))


def write_atomically(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file renamed into place (a reader never sees half a file).

    `InvalidInput` in one line when the folder is missing or not writable.
    """
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    except OSError as error:
        raise InvalidInput(f"cannot write {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; a report is meant to be shared
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise InvalidInput(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _json_safe(value: Any) -> Any:
    # Stored JSON may carry NaN (Python's json writes it); strict JSON readers refuse it.
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _last(windows: list[WindowRecord], last: int | None) -> list[WindowRecord]:
    if last is None:
        return windows
    # By window start, not by record: two versions served side by side share each window's time.
    starts = sorted({w.start_ms for w in windows})[-last:]
    return [w for w in windows if w.start_ms >= starts[0]]


def _window(w: WindowRecord) -> dict[str, Any]:
    return {
        "window_id": w.window_id,
        "version": w.version,
        "start_ms": w.start_ms,
        "end_ms": w.end_ms,
        "rows": w.rows,
        "labelled_rows": w.labelled_rows,
    }


def _drift(windows: list[WindowRecord]) -> dict[str, Any]:
    """Per column, one cell per window: the primary method's score, its threshold and the verdict."""
    columns: list[str] = []
    for w in windows:
        for name in (w.drift or {}).get("columns", {}):
            if name not in columns:
                columns.append(name)
    cells: dict[str, list[dict[str, Any] | None]] = {name: [] for name in columns}
    shares: list[float | None] = []
    for w in windows:
        found = (w.drift or {}).get("columns", {})
        shares.append((w.drift or {}).get("share"))
        for name in columns:
            c = found.get(name)
            cells[name].append(
                None
                if c is None
                else {
                    "score": c.get("score"),
                    "threshold": c.get("threshold"),
                    "method": c.get("method"),
                    "drifted": bool(c.get("drifted")),
                    "status": c.get("status"),
                    "psi": (c.get("scores") or {}).get("psi"),
                    "relative": relative_score(c.get("method"), c.get("score"), c.get("threshold")),
                }
            )
    return {"columns": columns, "share": shares, "cells": cells}


def relative_score(method: str | None, score: float | None, threshold: float | None) -> float | None:
    """A column's drift score on one scale for every method: 1.0 at its threshold, higher is more drift.

    Distances (Wasserstein/sigma, Jensen-Shannon, PSI): score / threshold. Tests (KS, chi-square) score a
    p-value, where smaller is more drift: log(p) / log(threshold), so p = threshold gives 1 and p = 1 gives 0.
    """
    if method is None or score is None or threshold is None or not threshold > 0:
        return None
    if method in TEST_METHODS:
        if threshold >= 1:
            return None
        return math.log(max(score, 1e-300)) / math.log(threshold)
    return score / threshold


def _latency(windows: list[WindowRecord]) -> dict[str, Any]:
    series: dict[str, list[float | None]] = {"p50": [], "p95": [], "p99": []}
    for w in windows:
        found = w.quality.get("latency_ms") or {}
        for key, values in series.items():
            values.append(found.get(key))
    errors = [(w.quality.get("requests") or {}).get("error_rate") for w in windows]
    return {**series, "rows": [w.rows for w in windows], "error_rate": errors}


def _performance(
    registry: RegistryStore, store: MonitorStore, model: str, windows: list[WindowRecord], granularity: str
) -> dict[str, Any]:
    """Estimated and realized metrics per window, and the comparison of the primary metric."""
    metric = next(
        (
            m
            for m in PRIMARY_METRICS
            for w in windows
            if m in _metrics(w, "estimated") | _metrics(w, "realized")
        ),
        None,
    )
    estimated = [_metrics(w, "estimated") or None for w in windows]
    realized = [_metrics(w, "realized") or None for w in windows]
    result: dict[str, Any] = {
        "metric": metric,
        "estimated": estimated,
        "realized": realized,
        "errors": [_errors(w) for w in windows],
        "references": {},
        "comparisons": [None] * len(windows),
    }
    if metric is None or metric not in ESTIMATED:
        return result  # regression, or no estimate: realized values only, nothing to compare
    references: dict[int, dict[str, Any]] = {}
    for i, w in enumerate(windows):
        if w.performance is None or "estimated" not in w.performance:
            continue
        if w.version not in references:
            references[w.version] = _reference(
                registry, store, model, w.version, metric=metric, granularity=granularity
            )
        ref = references[w.version]
        if ref["value"] is None:
            continue
        est = w.performance["estimated"]
        estimate = EstimatedPerformance(
            rows=est["rows"],
            metrics=est["metrics"],
            sampling_error=est.get("sampling_error", {}),
            calibrated=bool(est.get("calibrated")),
        )
        real = w.performance.get("realized")
        realized_perf = (
            None
            if real is None
            else RealizedPerformance(real["status"], real["rows"], real["labelled_rows"], real["metrics"])
        )
        comparison = compare_performance(estimate, realized_perf, reference=ref["value"], metric=metric)
        result["comparisons"][i] = comparison.to_dict()
    result["references"] = {str(v): ref for v, ref in references.items()}
    return result


def _reference(
    registry: RegistryStore, store: MonitorStore, model: str, version: int, *, metric: str, granularity: str
) -> dict[str, Any]:
    recorded = registry.get_version(ModelRef(model, version=version)).metrics.get(metric)
    if recorded is not None:
        return {"value": float(recorded), "source": "recorded with the version", "window_start_ms": None}
    # The version's first window is what it did when it went live; later windows are measured against it.
    for w in store.windows(model, version=version, granularity=granularity):
        for kind in ("realized", "estimated"):
            if (value := _metrics(w, kind).get(metric)) is not None:
                return {
                    "value": value,
                    "source": f"{kind} in its first window",
                    "window_start_ms": w.start_ms,
                }
    return {"value": None, "source": "none", "window_start_ms": None}


def _metrics(w: WindowRecord, kind: str) -> dict[str, float]:
    found = ((w.performance or {}).get(kind) or {}).get("metrics") or {}
    return {k: float(v) for k, v in found.items() if v is not None}


def _errors(w: WindowRecord) -> str | None:
    found = [f"{k}: {v}" for k, v in (w.performance or {}).items() if k.endswith("_error")]
    return "; ".join(found) or None


def _summary(report: MonitorReport, windows: list[WindowRecord]) -> dict[str, Any]:
    latest = windows[-1]
    comparisons = report.performance["comparisons"]
    latest_comparison = next((c for c in reversed(comparisons) if c is not None), None)
    labelled = next((c for c in reversed(comparisons) if c is not None and c["realized"] is not None), None)
    fired = [
        {
            "start_ms": w.start_ms,
            "version": w.version,
            "fired": c["fired"],
            "diagnosis": c["diagnosis"],
        }
        for w, c in zip(windows, comparisons, strict=True)
        if c is not None and (c["fired"] or c["diagnosis"] not in ("ok", "awaiting labels"))
    ]
    drifted_in = [
        {"start_ms": w.start_ms, "version": w.version, "columns": _drifted(w)} for w in windows if _drifted(w)
    ]
    return {
        "model": report.model,
        "versions": sorted({w.version for w in windows}),
        "windows": len(windows),
        "start_ms": windows[0].start_ms,
        "end_ms": max(w.end_ms for w in windows),
        "rows": sum(w.rows for w in windows),
        "labelled_rows": sum(w.labelled_rows for w in windows),
        "latest": {
            "start_ms": latest.start_ms,
            "version": latest.version,
            "rows": latest.rows,
            "drifted_columns": _drifted(latest),
            "drift_share": (latest.drift or {}).get("share"),
            "dataset_drifted": (latest.drift or {}).get("drifted"),
            "quality_findings": quality_findings(latest.quality),
        },
        "drifted_windows": drifted_in,
        "performance": {
            "metric": report.performance["metric"],
            "latest": latest_comparison,
            "latest_labelled": labelled,
            "fired": fired,
        },
        "alerts": len(report.alerts),
    }


def _drifted(w: WindowRecord) -> list[str]:
    return [name for name, c in (w.drift or {}).get("columns", {}).items() if c.get("drifted")]
