"""Alert rules over monitored windows: which fire, storing them, and sending them to their channels.

[[models.fraud.monitoring.alerts]]
name = "amount-drift"          # unique per model; the cooldown is per rule and model
metric = "drift.amount"        # a name from `monitoring.metrics` (drift.*, quality.*, latency.*, kpi.*, ...)
threshold = 0.1
op = ">="                      # ">=" fires on high values, "<=" on low ones (accuracy, a KPI)
windows = 2                    # consecutive breaching windows of one version needed (default 1)
cooldown_s = 3600              # no second alert of this rule and model within this time (default 3600)
severity = "critical"          # "info" | "warning" (default) | "critical"
channels = ["ops", "log"]      # names of `[monitoring.channels.*]` tables (see `channels`); default ["log"]

Semantics, on purpose strict so an alert is never raised by a gap in the data:
- A rule looks at the newest window of a model version (per granularity) and the ones before it. It fires when
  the metric breached the threshold in each of the last `windows` windows, and those windows are adjacent in
  time. A window where the metric is absent (no labels yet, no reference, a KPI that raised), or a missing
  window (no predictions that hour), breaks the streak: absence never fires and never counts as a breach.
- The cooldown is measured in window time (between the ends of the windows alerted on), not wall time, so
  computing a backlog of windows at once raises the same alerts as computing them as they closed. It is
  inclusive: with the default 3600 s, an alert on one hourly window silences the next. A rule never fires twice
  on the same window.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.core.clock import now_ms
from loopml.core.errors import InvalidInput
from loopml.core.settings import PROJECT_FILE, read_project_file
from loopml.monitoring.alert_store import SEVERITIES, Alert, AlertStore
from loopml.monitoring.channels import deliver, load_channels
from loopml.monitoring.metrics import check_metric_name, window_metrics
from loopml.monitoring.store import MonitorStore, WindowRecord
from loopml.monitoring.windows import GRANULARITY_MS

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

OPS = (">=", "<=")


@dataclass(frozen=True)
class AlertRule:
    """When a metric of a model's windows raises an alert; the arguments are stored as given and checked once.

    `windows`: consecutive breaching windows needed; `cooldown_s`: quiet time after an alert of this rule;
    `channels`: names of configured channels (`"log"` is always there).
    """

    name: str
    metric: str
    threshold: float
    op: str = ">="
    windows: int = 1
    cooldown_s: float = 3600
    severity: str = "warning"
    channels: tuple[str, ...] = ("log",)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidInput(f"name: an alert rule needs a non-empty name, got {self.name!r}")
        where = f"alert rule {self.name!r}"
        check_metric_name(self.metric, where)
        if not _is_number(self.threshold) or not math.isfinite(self.threshold):
            raise InvalidInput(f"{where}: threshold must be a finite number, got {self.threshold!r}")
        if self.op not in OPS:
            raise InvalidInput(
                f"{where}: op must be one of {' or '.join(repr(o) for o in OPS)}, got {self.op!r}"
            )
        if isinstance(self.windows, bool) or not isinstance(self.windows, int) or self.windows < 1:
            raise InvalidInput(f"{where}: windows must be an integer >= 1, got {self.windows!r}")
        if not _is_number(self.cooldown_s) or not 0 <= self.cooldown_s < math.inf:
            raise InvalidInput(f"{where}: cooldown_s must be a number >= 0, got {self.cooldown_s!r}")
        if self.severity not in SEVERITIES:
            raise InvalidInput(
                f"{where}: severity must be one of {', '.join(SEVERITIES)}, got {self.severity!r}"
            )
        if not isinstance(self.channels, tuple) or not all(isinstance(c, str) and c for c in self.channels):
            raise InvalidInput(f"{where}: channels must be a tuple of channel names, got {self.channels!r}")

    def breaches(self, value: float) -> bool:
        """True when `value` is on the alerting side of the threshold (the threshold itself included)."""
        return value >= self.threshold if self.op == ">=" else value <= self.threshold

    def to_dict(self) -> dict[str, Any]:
        """The arguments as given, JSON-able (channels as a list)."""
        values = asdict(self)
        values["channels"] = list(self.channels)
        return values

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertRule:
        """Inverse of `to_dict`; unknown keys are refused, a list of channels is accepted."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = dict(data)
        if isinstance(values.get("channels"), list):
            values["channels"] = tuple(values["channels"])
        missing = [k for k in ("name", "metric", "threshold") if k not in values]
        if missing:
            raise InvalidInput(f"missing key(s) {', '.join(missing)}")
        return cls(**values)


def rules_from_config(entries: Any, model: str, channels: Iterable[str] | None = None) -> list[AlertRule]:
    """The rules of a `[[models.MODEL.monitoring.alerts]]` array; with `channels`, every channel a rule names
    must be among them. Errors name the file, the table, the rule and the key."""
    if entries is None:
        return []
    table = f"{PROJECT_FILE} [[models.{model}.monitoring.alerts]]"
    if not isinstance(entries, list):
        raise InvalidInput(f"{table} must be an array of tables ([[...]]), one per rule")
    known = None if channels is None else set(channels)
    rules: list[AlertRule] = []
    for index, entry in enumerate(entries):
        where = f"{table} #{index + 1}"
        if not isinstance(entry, Mapping):
            raise InvalidInput(f"{where} must be a table")
        try:
            rule = AlertRule.from_dict(entry)
        except InvalidInput as error:
            raise InvalidInput(f"{where}: {error.message}") from None
        if any(r.name == rule.name for r in rules):
            raise InvalidInput(f"{where}: name {rule.name!r} is used by another rule of {model}")
        unknown = [] if known is None else [c for c in rule.channels if c not in known]
        if unknown:
            raise InvalidInput(
                f"{where} ({rule.name}): channels: unknown channel(s) {', '.join(unknown)}; configure "
                f"[monitoring.channels.{unknown[0]}] or use one of {', '.join(sorted(known or ()))}"
            )
        rules.append(rule)
    return rules


def load_rules(project_dir: Path, model: str) -> list[AlertRule]:
    """The alert rules `loopml.toml` sets for `model`, checked against the configured channels."""
    path = project_dir / PROJECT_FILE
    project = read_project_file(path) if path.is_file() else {}
    monitoring = project.get("models", {}).get(model, {}).get("monitoring", {})
    if not isinstance(monitoring, Mapping):
        raise InvalidInput(f"{PROJECT_FILE} [models.{model}.monitoring] must be a table")
    return rules_from_config(monitoring.get("alerts"), model, load_channels(project_dir))


def evaluate(
    rules: Sequence[AlertRule],
    records: Sequence[WindowRecord],
    *,
    fired: Sequence[Alert] = (),
    time_ms: int | None = None,
) -> list[Alert]:
    """The alerts the rules raise on the newest window of each model version (and granularity) in `records`.

    `records` holds the windows to look back over (any order); `fired` the alerts raised before (for the
    cooldown). The alerts are not stored: see `alert` for the whole path.
    """
    now = now_ms() if time_ms is None else time_ms
    groups: dict[tuple[str, int, str], list[WindowRecord]] = {}
    for record in records:
        groups.setdefault((record.model, record.version, record.granularity), []).append(record)
    metrics: dict[str, dict[str, float]] = {}
    earlier = list(fired)
    raised: list[Alert] = []
    for key in sorted(groups):
        history = sorted(groups[key], key=lambda r: r.start_ms)
        newest = history[-1]
        for rule in rules:
            value = _streak_value(rule, history, metrics)
            if value is None or _cooling(rule, newest, [*earlier, *raised]):
                continue
            raised.append(_alert(rule, newest, value, now))
    return raised


def alert(tracker: Tracker, model: str, records: Sequence[WindowRecord] | None = None) -> list[Alert]:
    """Evaluate `model`'s rules (from the project's `loopml.toml`) on `records`, store what fires (one
    transaction), then deliver it and record each channel's outcome; returns the stored alerts.

    Each window of `records` (just computed, or whose performance late labels just changed) is evaluated as
    the newest of its version, over the stored windows before it, oldest first, so a backlog raises what
    live runs would have. `None` evaluates the newest stored window of each version. Bad configuration
    raises `InvalidInput`; a failing channel never raises, it is recorded in `Alert.delivered`.
    """
    project_dir = tracker.settings.project_dir
    rules = load_rules(project_dir, model)
    if not rules:
        return []
    channels = load_channels(project_dir)
    windows = MonitorStore(tracker.stores.db)
    alerts = AlertStore(tracker.stores.db)
    stored = windows.windows(model)
    if records is None:
        newest: dict[tuple[int, str], WindowRecord] = {}
        for record in stored:
            newest[(record.version, record.granularity)] = record  # oldest first: the last one stays
        targets = list(newest.values())
    else:
        targets = [r for r in records if r.model == model]
    fired = alerts.alerts(model)
    now = now_ms()
    raised: list[Alert] = []
    for target in sorted(targets, key=lambda r: (r.start_ms, r.version)):
        before = [
            w
            for w in stored
            if (w.version, w.granularity) == (target.version, target.granularity)
            and w.start_ms < target.start_ms
        ]
        raised += evaluate(rules, [*before, target], fired=[*fired, *raised], time_ms=now)
    saved = alerts.add(raised)
    delivered = []
    for item in saved:
        outcome = deliver(item, channels)
        alerts.set_delivery(item.alert_id or 0, outcome)
        delivered.append(replace(item, delivered=outcome))
    return delivered


def open_alerts(
    alerts: Sequence[Alert], newest: Sequence[WindowRecord], rules: Sequence[AlertRule] = ()
) -> list[tuple[Alert, float | None]]:
    """The alerts still open, newest first, each with its metric's value in the newest window (None: absent).

    Alerts are append-only rows; "open" is read from the windows: the newest alert of a rule (per version and
    window size) is open while its version still has the newest window of that size and the metric there
    still breaches the threshold, or is absent there (labels not in yet: not known to have recovered). An
    alert of a version no longer served, or superseded by a newer alert of its rule, is not open. `newest` is
    the newest window of each (version, granularity) (`MonitorStore.newest`); `rules` give the direction of
    each threshold (a rule no longer configured: inferred from the stored value, which breached it).
    """
    ops = {rule.name: rule.op for rule in rules}
    sizes = {step: name for name, step in GRANULARITY_MS.items()}
    latest_start: dict[str, int] = {}
    for record in newest:
        latest_start[record.granularity] = max(latest_start.get(record.granularity, 0), record.start_ms)
    current = {(r.version, r.granularity): r for r in newest if r.start_ms == latest_start[r.granularity]}
    seen: set[tuple[str, int | None, str]] = set()
    found: list[tuple[Alert, float | None]] = []
    for item in sorted(alerts, key=lambda a: (a.time, a.alert_id or 0), reverse=True):
        if item.window_start_ms is None or item.window_end_ms is None:
            continue  # not raised on a window: nothing says whether it still holds
        granularity = sizes.get(item.window_end_ms - item.window_start_ms)
        if granularity is None or (item.rule, item.version, granularity) in seen:
            continue
        seen.add((item.rule, item.version, granularity))
        window = None if item.version is None else current.get((item.version, granularity))
        if window is None:
            continue
        value = window_metrics(window).get(item.metric)
        if _still_breaching(value, ops.get(item.rule) or _op_of(item), item.threshold):
            found.append((item, value))
    return found


def _still_breaching(value: float | None, op: str | None, threshold: float | None) -> bool:
    """False only when a measured value is back on the quiet side of the threshold."""
    if value is None or op is None or threshold is None:
        return True
    return value >= threshold if op == ">=" else value <= threshold


def _op_of(item: Alert) -> str | None:
    """The direction of a stored alert's threshold, from the value that breached it (a rule's default, ">=",
    when the value was the threshold itself)."""
    if item.op is not None:
        return item.op
    if item.value is None or item.threshold is None:
        return None
    return "<=" if item.value < item.threshold else ">="


def _streak_value(
    rule: AlertRule, history: Sequence[WindowRecord], cache: dict[str, dict[str, float]]
) -> float | None:
    """The newest window's value when the last `rule.windows` windows are adjacent and all breach, else None."""
    if len(history) < rule.windows:
        return None
    streak = history[-rule.windows :]
    for previous, current in itertools.pairwise(streak):
        if current.start_ms != previous.end_ms:  # a window with no predictions in between
            return None
    values = []
    for record in streak:
        if record.window_id not in cache:
            cache[record.window_id] = window_metrics(record)
        value = cache[record.window_id].get(rule.metric)
        if value is None or not rule.breaches(value):  # absent is never a breach
            return None
        values.append(value)
    return values[-1]


def _cooling(rule: AlertRule, window: WindowRecord, earlier: Sequence[Alert]) -> bool:
    """True when this rule already alerted on this model within its cooldown (or on this very window)."""
    cooldown_ms = rule.cooldown_s * 1000
    for previous in earlier:
        if previous.rule != rule.name or previous.model != window.model:
            continue
        if previous.window_id is not None and previous.window_id == window.window_id:
            return True
        # An alert without a window (none is raised so, but rows may be written by other tools) counts
        # from the time it was raised.
        at = previous.window_end_ms if previous.window_end_ms is not None else previous.time
        # Inclusive, so the default hour of cooldown silences the next hourly window too.
        if cooldown_ms > 0 and abs(window.end_ms - at) <= cooldown_ms:
            return True
    return False


def _alert(rule: AlertRule, window: WindowRecord, value: float, now: int) -> Alert:
    streak = f" in {rule.windows} consecutive windows" if rule.windows > 1 else ""
    start = datetime.fromtimestamp(window.start_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")
    message = (
        f"{rule.metric} = {value:.6g} {rule.op} {rule.threshold:g}{streak} "
        f"({window.model} v{window.version}, {window.granularity} window from {start} UTC)"
    )
    return Alert(
        model=window.model,
        version=window.version,
        rule=rule.name,
        metric=rule.metric,
        severity=rule.severity,
        value=value,
        threshold=float(rule.threshold),
        message=message,
        time=now,
        window_id=window.window_id,
        window_start_ms=window.start_ms,
        window_end_ms=window.end_ms,
        op=rule.op,
        channels=rule.channels,
    )


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)
