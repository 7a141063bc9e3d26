"""Day windows made from the day's hour windows: their stored profiles merged, never the raw rows again.

A day's profile is the merge of its hours' profiles (profiles are mergeable: the merge equals the profile of
the rows together), its drift is that merged profile against the reference profile, and its quality adds up
the hours' findings. Performance stays per hour (metrics such as ROC AUC do not add up); a report reads it
there. Hours whose columns differ from the day's first hour (a redaction or a schema change mid-day) are not
merged and are named in the day's quality.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

from loopml.core.errors import InvalidInput
from loopml.monitoring.config import monitor_config
from loopml.monitoring.quality import profile_part
from loopml.monitoring.reference import reference_for
from loopml.monitoring.store import MonitorStore, WindowRecord, load_profile
from loopml.monitoring.windows import DEFAULT_GRACE_MS, due_windows
from loopml.predictions.records import INPUT_PREFIX
from loopml.predictions.requests import request_summary
from loopml.registry.records import ModelRef
from loopml.registry.store import RegistryStore
from loopml.stats import TableProfile, merge

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker


def run_days(
    tracker: Tracker, model: str, *, now_ms: int, grace_ms: int = DEFAULT_GRACE_MS
) -> list[WindowRecord]:
    """Compute the due day windows of `model` (its hour windows first), oldest first."""
    from loopml.monitoring.runner import run

    run(tracker, model, granularity="hour", now_ms=now_ms, grace_ms=grace_ms)
    store = MonitorStore(tracker.stores.db)
    hours = store.windows(model, granularity="hour")
    spans = [(h.version, h.start_ms, h.end_ms - 1) for h in hours]
    due = due_windows(
        spans, granularity="day", now_ms=now_ms, done=store.done(model, "day"), grace_ms=grace_ms
    )
    config = monitor_config(tracker.settings.project_dir, model)
    references: dict[int, TableProfile | None] = {}
    computed = []
    for day in due:
        if day.version not in references:
            version = RegistryStore(tracker.stores.db).get_version(ModelRef(model, version=day.version))
            references[day.version] = reference_for(tracker, version, config.reference)
        members = [h for h in hours if h.version == day.version and day.start_ms <= h.start_ms < day.end_ms]
        profile, left_out = _merged(tracker, members)
        quality = merge_quality([h.quality for h in members])
        if left_out:
            quality["hours_not_merged"] = left_out
        drift = None
        reference = references[day.version]
        if profile is not None and reference is not None:
            from loopml.monitoring.drift import drift_report

            inputs = profile_part(profile, INPUT_PREFIX)
            shared = [name for name in reference.columns if name in inputs.columns]
            drift = dict(
                drift_report(
                    reference=reference, current=inputs, columns=shared, config=config.drift
                ).to_dict()
            )
        computed.append(
            store.save(
                model,
                version=day.version,
                granularity="day",
                start_ms=day.start_ms,
                end_ms=day.end_ms,
                rows=sum(h.rows for h in members),
                profile_digest=tracker.blobs.put_bytes(json.dumps(profile.to_dict()).encode())
                if profile
                else None,
                quality=quality,
                drift=drift,
            )
        )
    return computed


def _merged(tracker: Tracker, hours: list[WindowRecord]) -> tuple[TableProfile | None, list[int]]:
    """The merge of the hours' profiles, and the start times of hours left out (other columns)."""
    profiles = [
        (h.start_ms, load_profile(tracker.blobs, h.profile_digest)) for h in hours if h.profile_digest
    ]
    if not profiles:
        return None, []

    def layout(profile: TableProfile) -> tuple[set[str], dict[str, Any]]:
        return set(profile.columns), dict(profile.kinds)

    first = layout(profiles[0][1])
    same = [p for _, p in profiles if layout(p) == first]
    left_out = [start for start, p in profiles if layout(p) != first]
    try:
        return merge(*same), left_out
    except InvalidInput:  # profiles that cannot merge (sketches of other kinds): the day has no profile
        return None, [start for start, _ in profiles]


def merge_quality(hours: list[dict[str, Any]]) -> dict[str, Any]:
    """The quality findings of several windows together: counts add up, shares are weighted by rows."""
    rows = sum(int(q.get("rows", 0)) for q in hours)
    merged: dict[str, Any] = {"rows": rows, "columns": {}}
    merged["missing_columns"] = sorted({c for q in hours for c in q.get("missing_columns", [])})
    merged["unexpected_columns"] = sorted({c for q in hours for c in q.get("unexpected_columns", [])})
    names = {name for q in hours for name in q.get("columns", {})}
    for name in sorted(names):
        parts = [(int(q.get("rows", 0)), q["columns"][name]) for q in hours if name in q.get("columns", {})]
        column: dict[str, Any] = {"nulls_in_training": any(p.get("nulls_in_training") for _, p in parts)}
        for share in ("null_share", "out_of_range_share", "unseen_share"):
            if any(share in p for _, p in parts):
                column[share] = sum(n * p.get(share, 0.0) for n, p in parts) / rows if rows else 0.0
        if any("out_of_range" in p for _, p in parts):
            column["out_of_range"] = sum(int(p.get("out_of_range", 0)) for _, p in parts)
        levels: Counter[str] = Counter()
        for _, p in parts:
            levels.update(p.get("unseen_levels", {}))
        if levels:
            column["unseen_levels"] = dict(levels.most_common(20))
        merged["columns"][name] = column
    counted = [q["requests"] for q in hours if isinstance(q.get("requests"), dict)]
    if counted:
        statuses = {200: "requests", 400: "client_errors", 500: "server_errors"}  # one status per class
        by_status = {status: sum(int(c.get(key, 0)) for c in counted) for status, key in statuses.items()}
        by_status[200] -= by_status[400] + by_status[500]
        merged["requests"] = request_summary(by_status)
    latencies = [q["latency_ms"] for q in hours if "latency_ms" in q]
    if latencies:  # percentiles do not add up: the day reports its worst hour's
        merged["latency_ms_worst_hour"] = {k: max(lat[k] for lat in latencies) for k in ("p50", "p95", "p99")}
    return merged
