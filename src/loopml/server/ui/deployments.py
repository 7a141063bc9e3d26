"""Deployments: every served model's versions with their live traffic (requests per minute over the last 5
minutes and the last hour, latency percentiles, error rate), and one model's page with the same per
version, charts over the last hours, its canary or shadow and how the challenger compares so far, and the
deployment's history. Both pages reload themselves every `REFRESH_S` seconds.

Request counts come from `request_counts` (summed by the database: failed requests have no prediction to
log); latencies from the prediction log's latency column, read alone over a bounded window (see
`loopml.predictions.traffic`). Latency percentiles are over logged predictions, as the canary judge and
monitoring compute them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from loopml.automation.store import AutomationStore
from loopml.core.clock import now_ms
from loopml.predictions.traffic import LatencySample, latency_sample, request_minutes, request_totals
from loopml.registry.deployments import Deployment, DeploymentEvent, DeploymentStore
from loopml.registry.records import ModelRef, RegisteredModel
from loopml.registry.store import RegistryStore
from loopml.server.ui import charts
from loopml.server.ui.automation import canary_rows
from loopml.server.ui.pages import Pages, bounded, caller

REFRESH_S = 15
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DEFAULT_HOURS, MAX_HOURS = 3, 24
MAX_BUCKETS = 240  # points per chart: 3 hours by the minute, a day by 6 minutes
PAGE_LATENCY_ROWS = 200_000  # predictions read for one model's page (its charted window, newest first)
LIST_LATENCY_ROWS = 50_000  # per model on the list (its last hour, newest first)
MAX_CHARTED_VERSIONS = (
    6  # latency charts on a model's page: the deployment's versions first, then the busiest
)
HISTORY = 50  # deployment changes listed


@dataclass
class VersionTraffic:
    """One version's place in the deployment and its live numbers."""

    version: int
    role: str = ""  # champion | canary | shadow | challenger | "" (served, but not by the deployment)
    share: float | None = None  # of requests it answers (shadow: it mirrors)
    requests_5m: int = 0
    rate_5m: float = 0.0  # requests per minute
    requests_1h: int = 0
    rate_1h: float = 0.0
    failed_1h: int = 0
    error_rate: float | None = None  # over the last hour
    p50: float | None = None  # latency over the last hour, ms
    p95: float | None = None
    p99: float | None = None
    latency_rows: int = 0


@dataclass
class ModelTraffic:
    """A model's deployment and its versions' traffic."""

    model: str
    deployment: Deployment | None
    versions: list[VersionTraffic]
    latency_complete: bool = True
    latency_since: int = 0
    unreadable: int = 0
    problems: list[str] = field(default_factory=list)  # references the registry cannot resolve


def routes(app: FastAPI, pages: Pages) -> None:
    tracker = pages.tracker
    db = tracker.stores.db

    @app.get("/deployments", response_class=HTMLResponse)
    def deployment_list(request: Request) -> HTMLResponse:
        caller(request)
        now = now_ms()
        found = {d.model: d for d in DeploymentStore(db).list_deployments()}
        five, hour = _window_start(now, 5), _window_start(now, 60)
        last_hour = request_totals(tracker, start_ms=hour, end_ms=now + 1)
        last_five = request_totals(tracker, start_ms=five, end_ms=now + 1)
        registered = {m.name: m for m in RegistryStore(db).list_models()}
        names = sorted(set(found) | {name for name, _ in last_hour if name in registered})
        models = []
        for name in names:
            sample = latency_sample(tracker, name, start_ms=hour, end_ms=now + 1, max_rows=LIST_LATENCY_ROWS)
            models.append(
                _traffic(
                    registered[name],
                    found.get(name),
                    five=_within(last_five, name),
                    hour=_within(last_hour, name),
                    sample=sample,
                    now=now,
                )
            )
        return _page(
            pages,
            request,
            "deployments.html",
            models=models,
            span_5m=(now - five) / MINUTE_MS,
            span_1h=(now - hour) / MINUTE_MS,
            now=now,
        )

    @app.get("/deployments/{model}", response_class=HTMLResponse)
    def deployment_page(request: Request, model: str, hours: str = "") -> HTMLResponse:
        caller(request, "read", model=model)
        window = bounded(hours, "hours", DEFAULT_HOURS, 1, MAX_HOURS)
        now = now_ms()
        registered = RegistryStore(db).get_model(model)  # NotFound (404) for an unknown model
        deployment = DeploymentStore(db).get(model)
        bucket = _bucket_ms(window)
        start = (now // bucket) * bucket - (window * HOUR_MS // bucket - 1) * bucket
        minutes = request_minutes(tracker, model, start_ms=start, end_ms=now + 1)
        sample = latency_sample(tracker, model, start_ms=start, end_ms=now + 1, max_rows=PAGE_LATENCY_ROWS)
        five, hour = _window_start(now, 5), _window_start(now, 60)
        traffic = _traffic(
            registered,
            deployment,
            five=_by_status(minutes, five),
            hour=_by_status(minutes, hour),
            sample=sample,
            now=now,
        )
        events = DeploymentStore(db).events(model, limit=HISTORY)
        rollout = _rollout(tracker, registered, deployment, events, sample=sample, now=now)
        specs = _charts(traffic, minutes, sample, start=start, bucket=bucket, now=now)
        return _page(
            pages,
            request,
            "deployment.html",
            model=registered,
            traffic=traffic,
            specs=specs,
            rollout=rollout,
            limits=", ".join(
                f"{k} = {v:g}" for k, v in sorted((deployment.limits if deployment else {}).items())
            ),
            history=[_history_row(e) for e in reversed(events)],
            hours=window,
            hour_choices=(1, 3, 6, 12, 24),
            bucket_minutes=bucket // MINUTE_MS,
            span_5m=(now - five) / MINUTE_MS,
            span_1h=(now - hour) / MINUTE_MS,
            now=now,
        )


def _page(pages: Pages, request: Request, template: str, **context: Any) -> HTMLResponse:
    # The live numbers go stale: the body's data-refresh makes loopml.js reload the page.
    return pages.render(request, template, section="deployments", refresh=REFRESH_S, **context)


# -- numbers ------------------------------------------------------------------------------------------


def _window_start(now: int, minutes: int) -> int:
    """The first minute of the last `minutes` UTC minutes, the current (partial) one included."""
    return now - now % MINUTE_MS - (minutes - 1) * MINUTE_MS


def _bucket_ms(hours: int) -> int:
    minutes = -(-hours * 60 // MAX_BUCKETS)  # ceiling: never more than MAX_BUCKETS points
    return max(1, minutes) * MINUTE_MS


def _within(totals: Mapping[tuple[str, int], dict[int, int]], model: str) -> dict[int, dict[int, int]]:
    """The totals of one model, by version."""
    return {version: counts for (name, version), counts in totals.items() if name == model}


def _by_status(minutes: Sequence[tuple[int, int, int, int]], start: int) -> dict[int, dict[int, int]]:
    found: dict[int, dict[int, int]] = {}
    for version, minute, status, requests in minutes:
        if minute >= start:
            counts = found.setdefault(version, {})
            counts[status] = counts.get(status, 0) + requests
    return found


def _failed(counts: Mapping[int, int]) -> int:
    return sum(n for status, n in counts.items() if status >= 400)


def _percentiles(values: np.ndarray) -> tuple[float | None, float | None, float | None]:
    finite = values[~np.isnan(values)]
    if not len(finite):
        return None, None, None
    p50, p95, p99 = (float(v) for v in np.percentile(finite, [50, 95, 99]))
    return p50, p95, p99


def _version_of(model: RegisteredModel, ref: str | None) -> int | None:
    """The version a deployment's reference (an alias or vN) stands for now, or None when it is unset."""
    if ref is None:
        return None
    parsed = ModelRef.parse(f"{model.name}@{ref}")
    if parsed.version is not None:
        return parsed.version
    if parsed.alias is None:
        return model.latest_version
    return model.aliases.get(parsed.alias)


def _traffic(
    model: RegisteredModel,
    deployment: Deployment | None,
    *,
    five: Mapping[int, dict[int, int]],
    hour: Mapping[int, dict[int, int]],
    sample: LatencySample,
    now: int,
) -> ModelTraffic:
    """Each version the deployment names or that served in the last hour, with its numbers."""
    rows: dict[int, VersionTraffic] = {}
    problems: list[str] = []
    if deployment is not None:
        champion = _version_of(model, deployment.champion)
        challenger = _version_of(model, deployment.challenger)
        if champion is None:
            problems.append(f"the champion reference {deployment.champion!r} points at no version")
        if deployment.challenger is not None and challenger is None:
            problems.append(f"the challenger reference {deployment.challenger!r} points at no version")
        if champion is not None:
            rows[champion] = VersionTraffic(champion, "champion", 1.0)
        if challenger is not None and challenger != champion:
            if deployment.mode == "canary":
                rows[challenger] = VersionTraffic(challenger, "canary", deployment.share)
                if champion is not None:
                    rows[champion].share = 1.0 - deployment.share
            elif deployment.mode == "shadow":
                rows[challenger] = VersionTraffic(challenger, "shadow", deployment.share)
            else:
                rows[challenger] = VersionTraffic(challenger, "challenger", 0.0)
    hour_start = _window_start(now, 60)
    latency_since = max(hour_start, sample.since_ms)
    recent = sample.time_ms >= latency_since
    for version in sorted(set(hour) | set(five)):
        rows.setdefault(version, VersionTraffic(version))
    for version, row in rows.items():
        row.requests_5m = sum(five.get(version, {}).values())
        row.rate_5m = row.requests_5m / ((now - _window_start(now, 5)) / MINUTE_MS)
        counts = hour.get(version, {})
        row.requests_1h = sum(counts.values())
        row.rate_1h = row.requests_1h / ((now - hour_start) / MINUTE_MS)
        row.failed_1h = _failed(counts)
        row.error_rate = row.failed_1h / row.requests_1h if row.requests_1h else None
        latencies = sample.latency_ms[recent & (sample.version == version)]
        row.latency_rows = len(latencies)
        row.p50, row.p95, row.p99 = _percentiles(latencies)
    order = {"champion": 0, "canary": 1, "shadow": 1, "challenger": 2}
    versions = sorted(rows.values(), key=lambda r: (order.get(r.role, 3), -r.requests_1h, -r.version))
    return ModelTraffic(
        model.name,
        deployment,
        versions,
        latency_complete=sample.since_ms <= hour_start,
        latency_since=latency_since,
        unreadable=sample.unreadable,
        problems=problems,
    )


def _charts(
    traffic: ModelTraffic,
    minutes: Sequence[tuple[int, int, int, int]],
    sample: LatencySample,
    *,
    start: int,
    bucket: int,
    now: int,
) -> list[tuple[str, dict[str, Any]]]:
    """Requests per minute and error rate per version, and each charted version's latency percentiles,
    over buckets from `start` to now; x is minutes from now (negative: the past)."""
    count = (now - start) // bucket + 1
    x = [round((start + i * bucket - now) / MINUTE_MS, 2) for i in range(count)]
    minutes_per_bucket = bucket / MINUTE_MS
    charted = [row.version for row in traffic.versions][:MAX_CHARTED_VERSIONS]
    requests = {v: np.zeros(count) for v in charted}
    failed = {v: np.zeros(count) for v in charted}
    for version, minute, status, n in minutes:
        if version in requests:
            i = (minute - start) // bucket
            requests[version][i] += n
            if status >= 400:
                failed[version][i] += n
    rate_series = [(f"v{v}", [float(n) / minutes_per_bucket for n in requests[v]]) for v in charted]
    error_series = [
        (f"v{v}", [float(f / n) if n else None for f, n in zip(failed[v], requests[v], strict=True)])
        for v in charted
    ]
    specs = [
        (
            "Requests per minute",
            charts.xy(x, rate_series, x_label="minutes from now", y_label="requests/min"),
        ),
        ("Error rate", charts.xy(x, error_series, x_label="minutes from now", y_label="failed share")),
    ]
    for version in charted:
        specs.append((f"Latency of v{version} (ms)", _latency_chart(x, sample, version, start, bucket)))
    return specs


def _latency_chart(
    x: list[float], sample: LatencySample, version: int, start: int, bucket: int
) -> dict[str, Any]:
    mask = (sample.version == version) & ~np.isnan(sample.latency_ms)
    times, values = sample.time_ms[mask], sample.latency_ms[mask]
    lines: dict[str, list[float | None]] = {name: [None] * len(x) for name in ("p50", "p95", "p99")}
    if len(values):
        index = (times - start) // bucket
        order = np.argsort(index, kind="stable")
        index, values = index[order], values[order]
        cuts = np.flatnonzero(np.diff(index)) + 1
        for first, group in zip(index[np.r_[0, cuts]], np.split(values, cuts), strict=True):
            if 0 <= first < len(x):
                for name, value in zip(lines, np.percentile(group, [50, 95, 99]), strict=True):
                    lines[name][int(first)] = float(value)
    return charts.xy(x, list(lines.items()), x_label="minutes from now", y_label="ms")


# -- the canary or shadow ------------------------------------------------------------------------------


def _rollout(
    tracker: Any,
    model: RegisteredModel,
    deployment: Deployment | None,
    events: Sequence[DeploymentEvent],
    *,
    sample: LatencySample,
    now: int,
) -> dict[str, Any] | None:
    """The running canary or shadow: its share, since when, the live comparison of both versions since
    then, and the comparison the automation controller last recorded (when it runs this rollout)."""
    if deployment is None or deployment.mode == "single" or deployment.challenger is None:
        return None
    db = tracker.stores.db
    started, by, breach = _rollout_start(deployment, events)
    champion = _version_of(model, deployment.champion)
    challenger = _version_of(model, deployment.challenger)
    since = started - started % MINUTE_MS
    totals = request_totals(tracker, start_ms=since, end_ms=now + 1, models=[model.name])
    compared = []
    latency_from = max(started, sample.since_ms)
    for role, version in (("champion", champion), (deployment.mode, challenger)):
        if version is None:
            continue
        counts = totals.get((model.name, version), {})
        requests, failed = sum(counts.values()), _failed(counts)
        mask = (sample.version == version) & (sample.time_ms >= latency_from)
        p50, _, p99 = _percentiles(sample.latency_ms[mask])
        compared.append(
            {
                "role": role,
                "version": version,
                "requests": requests,
                "failed": failed,
                "error_rate": failed / requests if requests else None,
                "p50": p50,
                "p99": p99,
            }
        )
    state = AutomationStore(db).state(model.name)
    recorded = None
    info = state.rollout or {}
    if state.phase == "rollout" and state.candidate == challenger and info.get("evidence"):
        recorded = info["evidence"]
    return {
        "mode": deployment.mode,
        "share": deployment.share,
        "champion": (deployment.champion, champion),
        "challenger": (deployment.challenger, challenger),
        "sticky_key": deployment.sticky_key,
        "limits": deployment.limits,
        "started": started,
        "by": by,
        "breach": breach if deployment.share == 0 else None,  # a share raised again since: it is over
        "live": compared,
        "latency_from": latency_from,
        "recorded": recorded,
        "recorded_rows": canary_rows(recorded),
        "loop": state if state.phase == "rollout" else None,
    }


def _rollout_start(
    deployment: Deployment, events: Sequence[DeploymentEvent]
) -> tuple[int, str | None, dict[str, Any] | None]:
    """When (and by whom) the deployment took its current mode and challenger, and the server's limit
    breach since then if there was one: the oldest of the newest events that already had them."""
    started, by, breach = deployment.updated_time, deployment.updated_by, None
    for event in reversed(events):
        shown = event.detail.get("deployment") or {}
        if shown.get("mode") != deployment.mode or shown.get("challenger") != deployment.challenger:
            break
        started, by = event.time, event.user
        if event.kind == "limit_breached" and breach is None:
            breach = {**event.detail, "time": event.time}
    return started, by, breach


# -- history -------------------------------------------------------------------------------------------


def _history_row(event: DeploymentEvent) -> dict[str, Any]:
    shown = event.detail.get("deployment") or {}
    mode = shown.get("mode", "")
    what = f"champion {shown.get('champion', '?')}"
    if shown.get("challenger") and mode != "single":
        what += f", {mode} {shown['challenger']} at {float(shown.get('share') or 0):.0%}"
    reason = event.detail.get("reason")
    return {
        "time": event.time,
        "revision": event.revision,
        "kind": event.kind,
        "user": event.user or "",
        "mode": mode,
        "what": what,
        "reason": "" if reason is None else str(reason),
    }
