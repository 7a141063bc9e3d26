"""Monitoring: every monitored model with its latest window; one model's recent windows (a drift heatmap of
features x windows, performance, prediction drift, data quality and latency over time, its alerts); and one
window's reference vs current distribution of each feature with the drift test or distance behind its verdict.

The pages read what `loopml monitor run` (or the automation controller) stored, as `loopml monitor windows`,
`report` and `alerts` do: the windows' JSON, the window's and the reference's stored profiles. They never read
the prediction log, so a page costs the same whatever the traffic was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from loopml.core.errors import InvalidInput, LoopMLError
from loopml.monitoring.alert_store import AlertStore
from loopml.monitoring.alerts import AlertRule, load_rules, open_alerts
from loopml.monitoring.config import monitor_config
from loopml.monitoring.reference import reference_for
from loopml.monitoring.report import PRIMARY_METRICS
from loopml.monitoring.report_data import distributions, quality_findings
from loopml.monitoring.report_html import MAX_RELATIVE
from loopml.monitoring.store import MonitorStore, WindowRecord
from loopml.monitoring.windows import GRANULARITY_MS, step_of
from loopml.registry.records import ModelRef
from loopml.registry.store import RegistryStore
from loopml.server.fields import who
from loopml.server.ui import charts
from loopml.server.ui.drift_heatmap import (
    LEGEND,
    MAX_FEATURES,
    finite,
    heatmap,
    relative_of,
)
from loopml.server.ui.pages import Pages, bounded, caller, link

if TYPE_CHECKING:
    from loopml.stats import TableProfile
    from loopml.tracking.tracker import Tracker

DEFAULT_WINDOWS = 48
MAX_WINDOWS = 168  # a week of hours: the heatmap stays readable (it scrolls sideways past ~60 columns)
ALERTS_READ = 500  # the newest alerts of a model looked at for open ones (a rule fires once per cooldown)
ALERTS_SHOWN = 50
INT_MAX = 2**31 - 1


# -- page data ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """A monitored model on the overview: its latest window and what it says."""

    model: str
    granularity: str
    latest: WindowRecord | None
    drift: dict[str, Any] | None
    drifted: list[str]
    metric: str | None
    realized: float | None
    estimated: float | None
    open_alerts: int
    status: str
    problem: str = ""


@dataclass(frozen=True)
class Feature:
    """One feature of a window: its drift result, its distributions' summary and chart."""

    name: str
    result: dict[str, Any]
    relative: float | None
    stats: dict[str, Any] | None
    spec: dict[str, Any] | None


def routes(app: FastAPI, pages: Pages) -> None:
    tracker = pages.tracker
    store = MonitorStore(tracker.stores.db)
    alert_store = AlertStore(tracker.stores.db)

    @app.get("/monitoring", response_class=HTMLResponse)
    def overview(request: Request) -> HTMLResponse:
        reader = who(request)  # a reader of some models sees those
        rows = [
            _summary(tracker, store, alert_store, name, computed)
            for name, computed in store.monitored().items()
            if reader.can("read", name)
        ]
        if not rows and not reader.can("read"):
            reader.require("read")
        return pages.render(request, "monitoring.html", section="monitoring", rows=rows)

    @app.get("/monitoring/{model}", response_class=HTMLResponse)
    def model_page(
        request: Request, model: str, granularity: str = "", version: str = "", last: str = ""
    ) -> HTMLResponse:
        caller(request, "read", model=model)
        count = bounded(last, "last", DEFAULT_WINDOWS, 1, MAX_WINDOWS)
        number = bounded(version, "version", 0, 1, INT_MAX) or None
        if granularity:
            step_of(granularity)  # InvalidInput naming the known ones
        newest = store.newest(model)  # NotFound for an unknown model
        computed = sorted({w.granularity for w in newest})
        if number is not None:
            RegistryStore(tracker.stores.db).get_version(ModelRef(model, version=number))  # NotFound
        size = granularity or _granularity(tracker, model, computed)
        windows = store.recent(model, granularity=size, last=count, version=number)
        rules, problem = _rules(tracker, model)
        alerts = alert_store.alerts(model, limit=ALERTS_READ)
        several = _several(windows)
        return pages.render(
            request,
            "monitoring_model.html",
            section="monitoring",
            model=model,
            granularity=size,
            granularities=sorted(set(computed) | {size}, key=lambda g: GRANULARITY_MS[g]),
            version=number,
            versions=sorted({w.version for w in newest} | ({number} if number else set())),
            last=count,
            max_windows=MAX_WINDOWS,
            windows=windows,
            latest=windows[-1] if windows else None,
            heatmap=heatmap(windows, lambda w: _window_link(request, w.window_id, model), several=several),
            legend=LEGEND,
            specs=_model_charts(windows, size),
            metric=_primary(windows),
            findings={w.window_id: quality_findings(w.quality) for w in windows},
            drifted={w.window_id: _drifted(w) for w in windows},
            realized=lambda w, m: _metric(w, "realized", m),
            estimated=lambda w, m: _metric(w, "estimated", m),
            open_alerts=open_alerts(alerts, newest, rules),
            alerts=list(reversed(alerts[-ALERTS_SHOWN:])),
            alerts_total=len(alerts),
            rules=rules,
            problem=problem,
            window_href=lambda window_id: _window_link(request, window_id, model),
            ops={rule.name: rule.op for rule in rules},
            latency=latency_of,
            max_features=MAX_FEATURES,
        )

    @app.get("/monitoring/{model}/windows/{window_id}", response_class=HTMLResponse)
    def window_page(request: Request, model: str, window_id: str) -> HTMLResponse:
        caller(request, "read", model=model)
        window = store.window(model, window_id)
        reference, note = _reference(tracker, window)
        features = _features(tracker, window, reference)
        predictions = _output_features((window.drift or {}).get("predictions"))
        before, after = store.adjacent(window)
        return pages.render(
            request,
            "monitoring_window.html",
            section="monitoring",
            model=model,
            window=window,
            drift=window.drift,
            features=features,
            charted=_charted(features),
            predictions=predictions,
            reference_note=note,
            findings=quality_findings(window.quality),
            performance=_performance_rows(window),
            latency=latency_of(window),
            before=before,
            after=after,
            window_href=lambda found: _window_link(request, found, model),
            max_features=MAX_FEATURES,
        )


# -- the overview -------------------------------------------------------------------------------------


def _summary(
    tracker: Tracker, store: MonitorStore, alert_store: AlertStore, model: str, computed: list[str]
) -> Summary:
    granularity = _granularity(tracker, model, computed)
    newest = store.newest(model)
    latest = max(
        (w for w in newest if w.granularity == granularity),
        key=lambda w: (w.start_ms, w.version),
        default=None,
    )
    rules, problem = _rules(tracker, model)
    alerts = alert_store.alerts(model, limit=ALERTS_READ)
    still = len(open_alerts(alerts, newest, rules))
    drift = None if latest is None else latest.drift
    drifted = [] if latest is None else _drifted(latest)
    metric = None if latest is None else _primary([latest])
    if still:
        status = "firing"
    elif drift is None:
        status = "unknown"  # no reference to compare with, or an empty window
    else:
        status = "drift" if drift.get("drifted") else "ok"
    return Summary(
        model=model,
        granularity=granularity,
        latest=latest,
        drift=drift,
        drifted=drifted,
        metric=metric,
        realized=None if latest is None or metric is None else _metric(latest, "realized", metric),
        estimated=None if latest is None or metric is None else _metric(latest, "estimated", metric),
        open_alerts=still,
        status=status,
        problem=problem,
    )


def _granularity(tracker: Tracker, model: str, computed: Sequence[str]) -> str:
    """The window size shown by default: the model's configured one when it has windows of it, else the
    finest one computed (hours before days: days are merged from hours)."""
    try:
        configured = monitor_config(tracker.settings.project_dir, model).granularity
    except InvalidInput:  # a broken loopml.toml is reported by the rules; the windows still show
        configured = "hour"
    if configured in computed or not computed:
        return configured
    return "hour" if "hour" in computed else min(computed, key=lambda g: GRANULARITY_MS[g])


def _rules(tracker: Tracker, model: str) -> tuple[list[AlertRule], str]:
    """The model's alert rules from loopml.toml, and what is wrong with them (the page shows it)."""
    try:
        return load_rules(tracker.settings.project_dir, model), ""
    except InvalidInput as error:
        return [], error.message


# -- one model ----------------------------------------------------------------------------------------


def _model_charts(windows: Sequence[WindowRecord], granularity: str) -> list[tuple[str, dict[str, Any]]]:
    """The charts over the windows, each only when it has something to draw."""
    if not windows:
        return []
    metric = _primary(windows)
    outputs: list[str] = []
    for w in windows:
        predictions = ((w.drift or {}).get("predictions") or {}).get("columns", {})
        outputs += [n for n in predictions if n not in outputs]
    axis = _Axis(windows, granularity)
    found = [
        (
            f"Performance: {metric}" + ("" if metric is None else " (realized on labels, estimated before)"),
            axis.chart(
                [
                    (f"realized {metric}", lambda w: _metric(w, "realized", metric or "")),
                    (f"estimated {metric}", lambda w: _metric(w, "estimated", metric or "")),
                ],
                y_label=metric or "",
            ),
        ),
        (
            "Drifted share of features",
            axis.chart(
                [("drifted share", lambda w: (w.drift or {}).get("share"))],
                y_label="share",
                threshold=lambda w: (w.drift or {}).get("drift_share"),
            ),
        ),
        (
            "Prediction drift (outputs vs the version's first window; score / threshold, capped at "
            f"{MAX_RELATIVE:g})",
            axis.chart(
                [(name, _output_score(name)) for name in outputs],
                y_label="score / threshold",
                threshold=lambda w: 1.0 if (w.drift or {}).get("predictions") else None,
            ),
        ),
        (
            "Data quality (worst column)",
            axis.chart(
                [
                    ("null share", _worst("null_share")),
                    ("out of range share", _worst("out_of_range_share")),
                    ("unseen category share", _worst("unseen_share")),
                    ("failed requests", lambda w: (w.quality.get("requests") or {}).get("error_rate")),
                ],
                y_label="share",
            ),
        ),
        (
            "Latency (ms)" + (", each day's worst hour" if granularity == "day" else ""),
            axis.chart(
                [(p, _latency(p)) for p in ("p50", "p95", "p99")],
                y_label="ms",
            ),
        ),
        (
            "Volume",
            axis.chart(
                [("rows", lambda w: w.rows), ("labelled rows", lambda w: w.labelled_rows)], y_label="rows"
            ),
        ),
    ]
    return [(title, spec) for title, spec in found if spec is not None]


class _Axis:
    """The shared x axis of a model's charts: windows before the newest one (0 is the newest)."""

    def __init__(self, windows: Sequence[WindowRecord], granularity: str) -> None:
        self.windows = windows
        self.step = step_of(granularity)
        self.newest = max(w.start_ms for w in windows)
        self.x = sorted({self._offset(w) for w in windows})
        self.versions = sorted({w.version for w in windows})
        self.label = f"{granularity}s before the newest window"

    def _offset(self, w: WindowRecord) -> int:
        return (w.start_ms - self.newest) // self.step

    def chart(
        self,
        series: Sequence[tuple[str, Callable[[WindowRecord], Any]]],
        *,
        y_label: str,
        threshold: Callable[[WindowRecord], Any] | None = None,
    ) -> dict[str, Any] | None:
        """Each series over the windows (one line per version when several served), and the threshold as one
        line for all versions; None when no series has a value (a threshold alone says nothing)."""
        where = {x: i for i, x in enumerate(self.x)}
        drawn: list[tuple[str, list[float | None]]] = []
        for name, value in series:
            for version in self.versions:
                values: list[float | None] = [None] * len(self.x)
                for w in self.windows:
                    if w.version == version:
                        values[where[self._offset(w)]] = finite(value(w))
                label = name if len(self.versions) == 1 else f"{name} v{version}"
                drawn.append((label, values))
        measured = [(n, v) for n, v in drawn if any(x is not None for x in v)]
        if not measured:
            return None
        if threshold is not None:
            line: list[float | None] = [None] * len(self.x)
            for w in self.windows:
                line[where[self._offset(w)]] = line[where[self._offset(w)]] or finite(threshold(w))
            measured.append(("threshold", line))
        return charts.xy(self.x, measured, x_label=self.label, y_label=y_label, whole_x=True)


def _output_score(name: str) -> Callable[[WindowRecord], float | None]:
    def score(w: WindowRecord) -> float | None:
        result = (((w.drift or {}).get("predictions") or {}).get("columns") or {}).get(name)
        relative = None if result is None else relative_of(result)
        return None if relative is None else min(relative, MAX_RELATIVE)

    return score


def _worst(finding: str) -> Callable[[WindowRecord], float | None]:
    def worst(w: WindowRecord) -> float | None:
        columns = (w.quality.get("columns") or {}).values()
        found = [c.get(finding) for c in columns if isinstance(c, dict)]
        if finding == "null_share":  # nulls the training data had too are expected, not a finding
            found = [
                c.get(finding) for c in columns if isinstance(c, dict) and not c.get("nulls_in_training")
            ]
        values = [v for v in found if isinstance(v, int | float)]
        return max(values) if values else None

    return worst


def _latency(percentile: str) -> Callable[[WindowRecord], float | None]:
    def latency(w: WindowRecord) -> float | None:
        found = latency_of(w).get(percentile)
        return found if isinstance(found, int | float) else None

    return latency


def latency_of(window: WindowRecord) -> dict[str, Any]:
    """A window's latency percentiles; a day's are its worst hour's (percentiles of hours do not merge)."""
    quality = window.quality
    found = quality.get("latency_ms") or quality.get("latency_ms_worst_hour")
    return found if isinstance(found, dict) else {}


# -- one window ---------------------------------------------------------------------------------------


def _reference(tracker: Tracker, window: WindowRecord) -> tuple[TableProfile | None, str]:
    """The version's reference profile as the monitor uses it now, and a note when it cannot be read."""
    try:
        version = RegistryStore(tracker.stores.db).get_version(ModelRef(window.model, version=window.version))
        pinned = monitor_config(tracker.settings.project_dir, window.model).reference
        found = reference_for(tracker, version, pinned)
    except LoopMLError as error:
        return None, f"the reference cannot be read now: {error.message}"
    if found is None:
        return None, f"version {window.version} has no reference profile (it was registered without a sample)"
    source = f"pinned in loopml.toml: {pinned}" if pinned else f"the training sample of v{window.version}"
    return found, f"reference: {source}, {found.rows:,} rows"


def _features(tracker: Tracker, window: WindowRecord, reference: TableProfile | None) -> list[Feature]:
    """Every feature of the window: its stored drift result, with the reference vs current distribution.

    The bars are the histogram the drift verdict was computed on (stored with the window); a feature
    without one (no reference when the window was computed) shows its current distribution from the
    window's profile (`report_data.distributions`), beside the reference's as it is now.
    """
    results: dict[str, Any] = (window.drift or {}).get("columns", {})
    profiled = distributions(tracker, reference, [window], version=window.version)["features"]
    names = list(results) + [n for n in profiled if n not in results]
    found = []
    for name in names:
        result = results.get(name) or {}
        stats = profiled.get(name)
        histogram = result.get("histogram") or (stats or {}).get("histogram")
        found.append(
            Feature(
                name=name,
                result=result,
                relative=relative_of(result) if result else None,
                stats=stats,
                spec=_bars(histogram),
            )
        )
    return found


def _output_features(predictions: dict[str, Any] | None) -> list[Feature]:
    """The model's outputs in a window against its version's first window (stored with the window)."""
    results = (predictions or {}).get("columns", {})
    return [Feature(name, r, relative_of(r), None, _bars(r.get("histogram"))) for name, r in results.items()]


def _charted(features: Sequence[Feature]) -> list[Feature]:
    """The distributions drawn (at most MAX_FEATURES): drifted first, then by relative score."""
    drawn = [f for f in features if f.spec is not None]
    drawn.sort(key=lambda f: (not f.result.get("drifted"), -(f.relative or 0.0)))
    return drawn[:MAX_FEATURES]


def _bars(histogram: dict[str, Any] | None) -> dict[str, Any] | None:
    if not histogram or not histogram.get("labels"):
        return None
    series = [
        (side, histogram[side])
        for side in ("reference", "current")
        if histogram.get(side) and any(histogram[side])
    ]
    return charts.bars(histogram["labels"], series, y_label="share") if series else None


def _performance_rows(window: WindowRecord) -> list[tuple[str, float | None, float | None, float | None]]:
    """(metric, realized, estimated, the estimate's sampling error) of every metric the window has."""
    performance = window.performance or {}
    realized = (performance.get("realized") or {}).get("metrics") or {}
    estimated = performance.get("estimated") or {}
    errors = estimated.get("sampling_error") or {}
    names = list(dict.fromkeys([*realized, *(estimated.get("metrics") or {})]))
    return [
        (
            n,
            finite(realized.get(n)),
            finite((estimated.get("metrics") or {}).get(n)),
            finite(errors.get(n)),
        )
        for n in names
    ]


# -- shared -------------------------------------------------------------------------------------------


def _primary(windows: Sequence[WindowRecord]) -> str | None:
    """The metric the pages follow: the first of the report's primary metrics any window has."""
    for metric in PRIMARY_METRICS:
        for w in windows:
            if _metric(w, "realized", metric) is not None or _metric(w, "estimated", metric) is not None:
                return metric
    return None


def _metric(window: WindowRecord, kind: str, metric: str) -> float | None:
    return finite((((window.performance or {}).get(kind) or {}).get("metrics") or {}).get(metric))


def _drifted(window: WindowRecord) -> list[str]:
    return [n for n, r in (window.drift or {}).get("columns", {}).items() if r.get("drifted")]


def _several(windows: Sequence[WindowRecord]) -> bool:
    return len({w.version for w in windows}) > 1


def _window_link(request: Request, window_id: str, model: str) -> str:
    return link(request, f"/monitoring/{quote(model, safe='')}/windows/{quote(window_id, safe='')}")
