"""`run(tracker, model)`: compute every closed window of a model's prediction log that is not computed yet.

Per window and model version: the profile of the logged inputs and outputs (stored in the blob store, so a
day can later be the merge of its hours without reading rows again), data quality against the signature,
drift against the version's reference profile, and realized performance on the labels that have arrived.
Idempotent: a window is computed once; running again only computes newer windows (`loopml monitor run`, and
the automation controller on its schedule, call this).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loopml.core.errors import LoopMLError
from loopml.monitoring.config import MonitorConfig, load_kpi, monitor_config
from loopml.monitoring.kpis import KpiFunction, window_kpis
from loopml.monitoring.performance import window_labels, window_performance
from loopml.monitoring.quality import inputs_of, outputs_of, profile_part, window_quality
from loopml.monitoring.reference import reference_for
from loopml.monitoring.store import MonitorStore, WindowRecord, load_profile
from loopml.monitoring.windows import DEFAULT_GRACE_MS, Window, due_windows
from loopml.predictions import read_predictions, segments
from loopml.predictions.records import INPUT_PREFIX, OUTPUT_PREFIX
from loopml.predictions.requests import request_counts, request_spans, request_summary
from loopml.registry.loading import load_version
from loopml.registry.records import ModelRef
from loopml.registry.signature import Signature
from loopml.registry.store import RegistryStore
from loopml.stats import TableProfile, profile_columns

if TYPE_CHECKING:
    import pandas as pd

    from loopml.tracking.tracker import Tracker


@dataclass
class _Version:
    """What every window of one version is measured against."""

    signature: Signature | None
    reference: TableProfile | None
    importance: dict[str, float] | None = None  # weights of the dataset drift share, when the model has them
    baseline: TableProfile | None = None  # the version's first window: the reference of its outputs


@dataclass
class _Settings:
    """The model's monitoring settings, read once per run."""

    config: MonitorConfig
    kpis: dict[str, KpiFunction]

    @classmethod
    def of(cls, tracker: Tracker, model: str) -> _Settings:
        project = tracker.settings.project_dir
        config = monitor_config(project, model)
        return cls(config, {name: load_kpi(project, target) for name, target in config.kpis.items()})


def run(
    tracker: Tracker,
    model: str,
    *,
    granularity: str = "hour",
    now_ms: int | None = None,
    grace_ms: int = DEFAULT_GRACE_MS,
) -> list[WindowRecord]:
    """Compute the due windows of `model` (oldest first) and return what was stored for them. Day windows
    are made from their hour windows (computed first if needed) without reading rows again."""
    store = MonitorStore(tracker.stores.db)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if granularity == "day":
        from loopml.monitoring.days import run_days

        return run_days(tracker, model, now_ms=now, grace_ms=grace_ms)
    spans = [(s.version, s.start_time, s.end_time) for s in segments(tracker, model)]
    spans += request_spans(tracker, model)  # a window where every request failed has no predictions
    due = due_windows(
        spans, granularity=granularity, now_ms=now, done=store.done(model, granularity), grace_ms=grace_ms
    )
    if not due:
        return []
    settings = _Settings.of(tracker, model)
    versions: dict[int, _Version] = {}
    computed = []
    for window in due:
        if window.version not in versions:
            versions[window.version] = _version(tracker, model, window.version, settings)
        version = versions[window.version]
        computed.append(
            _compute(
                tracker, store, model, window, granularity=granularity, version=version, settings=settings
            )
        )
    return computed


def _version(tracker: Tracker, model: str, number: int, settings: _Settings) -> _Version:
    version = RegistryStore(tracker.stores.db).get_version(ModelRef(model, version=number))
    signature = Signature.from_dict(version.signature) if version.signature else None
    reference = reference_for(tracker, version, settings.config.reference)
    importance = None
    if reference is not None:
        try:
            importance = feature_importance(load_version(tracker, version))
        except LoopMLError:  # a model that needs trust to load (python flavor): the plain share decides
            importance = None
    return _Version(signature, reference, importance)


def feature_importance(model: Any) -> dict[str, float] | None:
    """{input column: weight} when the model itself says how much each of its input columns counts (tree
    ensembles fitted on named columns: `feature_importances_` beside `feature_names_in_`); None otherwise,
    e.g. for a Pipeline whose importances belong to encoded features, not to the columns requests carry."""
    names = getattr(model, "feature_names_in_", None)
    weights = getattr(model, "feature_importances_", None)
    if names is None or weights is None or len(names) != len(weights):
        return None
    values = [float(w) for w in weights]
    if not all(math.isfinite(w) and w >= 0 for w in values) or sum(values) <= 0:
        return None
    return {str(n): w for n, w in zip(names, values, strict=True)}


def _compute(
    tracker: Tracker,
    store: MonitorStore,
    model: str,
    window: Window,
    *,
    granularity: str,
    version: _Version,
    settings: _Settings,
) -> WindowRecord:
    frame = read_predictions(
        tracker, model, version=window.version, start_ms=window.start_ms, end_ms=window.end_ms
    )
    profile_digest = None
    drift = None
    if len(frame):
        profile = window_profile(frame)
        profile_digest = tracker.blobs.put_bytes(json.dumps(profile.to_dict()).encode())
        drift = window_drift(version.reference, inputs_of(frame), settings.config, version.importance)
        outputs = profile_part(profile, OUTPUT_PREFIX)
        if version.baseline is None:
            version.baseline = (
                _first_window_outputs(tracker, store, model, window.version, granularity) or outputs
            )
        elif outputs.columns:
            # The training sample's outputs are not kept; a version's outputs are compared with its first
            # window in production (NannyML's "reference period" idea).
            drift = (drift or {}) | {"predictions": _output_drift(version.baseline, outputs)}
    labels = window_labels(tracker, frame)
    performance = _performance(frame, labels, settings)
    quality = window_quality(frame, version.signature)
    requests = request_summary(
        request_counts(tracker, model, version=window.version, start_ms=window.start_ms, end_ms=window.end_ms)
    )
    if requests is not None:
        quality["requests"] = requests
    return store.save(
        model,
        version=window.version,
        granularity=granularity,
        start_ms=window.start_ms,
        end_ms=window.end_ms,
        rows=len(frame),
        profile_digest=profile_digest,
        quality=quality,
        drift=drift,
        performance=performance,
        labelled_rows=len(labels),
    )


def _first_window_outputs(
    tracker: Tracker, store: MonitorStore, model: str, version: int, granularity: str
) -> TableProfile | None:
    for record in store.windows(model, version=version, granularity=granularity):
        if record.profile_digest:
            return profile_part(load_profile(tracker.blobs, record.profile_digest), OUTPUT_PREFIX)
    return None


def _output_drift(baseline: TableProfile, outputs: TableProfile) -> dict[str, Any]:
    from loopml.monitoring.drift import drift_report

    shared = [name for name in baseline.columns if name in outputs.columns]
    return dict(drift_report(reference=baseline, current=outputs, columns=shared).to_dict())


def _performance(frame: pd.DataFrame, labels: dict[str, Any], settings: _Settings) -> dict[str, Any] | None:
    performance = window_performance(frame, labels)
    kpis = window_kpis(settings.kpis, frame, labels) if len(frame) else {}
    return (performance or {}) | kpis or None


def refresh_performance(
    tracker: Tracker, model: str, *, since_ms: int, granularity: str = "hour"
) -> list[WindowRecord]:
    """Recompute the performance of computed windows starting after `since_ms` that lack labels for some of
    their rows (labels arrive days late); returns the windows that changed, as stored now."""
    store = MonitorStore(tracker.stores.db)
    settings: _Settings | None = None
    changed: list[str] = []
    for window in store.windows(model, granularity=granularity):
        if window.start_ms < since_ms or window.rows == 0 or window.labelled_rows >= window.rows:
            continue
        frame = read_predictions(
            tracker, model, version=window.version, start_ms=window.start_ms, end_ms=window.end_ms
        )
        labels = window_labels(tracker, frame)
        if len(labels) == window.labelled_rows:
            continue
        settings = settings or _Settings.of(tracker, model)
        performance = _performance(frame, labels, settings)
        if performance is not None:
            store.set_performance(window.window_id, performance, len(labels))
            changed.append(window.window_id)
    return [w for w in store.windows(model, granularity=granularity) if w.window_id in changed]


def window_profile(frame: pd.DataFrame) -> TableProfile:
    """The mergeable profile of a window's logged inputs (`in.*`) and outputs (`out.*`)."""
    columns = {f"{INPUT_PREFIX}{name}": values.to_numpy() for name, values in inputs_of(frame).items()}
    columns |= {f"{OUTPUT_PREFIX}{name}": values.to_numpy() for name, values in outputs_of(frame).items()}
    return profile_columns(columns)


def window_drift(
    reference: TableProfile | None,
    inputs: pd.DataFrame,
    config: MonitorConfig | None = None,
    importance: dict[str, float] | None = None,
) -> dict[str, Any] | None:
    """Drift of a window's inputs against the version's reference profile (None without a reference)."""
    if reference is None:
        return None
    from loopml.monitoring.drift import drift_report

    shared = [name for name in reference.columns if name in inputs.columns]
    weights = {name: w for name, w in (importance or {}).items() if name in shared} or None
    report = drift_report(
        reference=reference,
        current=inputs[shared],
        config=config.drift if config else None,
        feature_importance=weights,
    )
    return dict(report.to_dict())
