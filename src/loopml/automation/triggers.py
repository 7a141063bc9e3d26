"""Which triggers of a policy fired since the loop last looked, and whether its guards hold a retrain back.

Every trigger reads a cursor of the loop's state (the last scheduled time handled, the dataset version last
seen, the last alert and manual request considered, the last window judged) and returns the cursor's new
value, so a trigger fires once per cause. The first look only sets the cursors: a controller started today
does not retrain for last month's alerts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loopml.automation.policy import Policy
from loopml.automation.store import AutomationStore, LoopState

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MANUAL = "manual_request"


@dataclass(frozen=True)
class Fired:
    """One trigger that fired, with why and the numbers behind it."""

    kind: str  # schedule | new_data | drift | alert | performance | estimated | manual
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, kept in the loop's state and its timeline."""
        return {"kind": self.kind, "reason": self.reason, "evidence": self.evidence}


@dataclass
class Look:
    """What one look at the triggers found: the fired ones, and the cursors to store."""

    fired: list[Fired]
    cursors: dict[str, Any]
    data: dict[str, Any] | None = None  # the dataset's latest version: {"ref", "version", "rows"}


def look(
    tracker: Tracker, policy: Policy, state: LoopState, *, now_ms: int, champion: int | None = None
) -> Look:
    """The triggers of `policy` that fired after the cursors of `state`, up to `now_ms`. Monitoring signals
    count only for the `champion` version: a canary's old champion drifting is the problem being fixed."""
    fired: list[Fired] = []
    cursors: dict[str, Any] = {}
    first = state.schedule_ms is None  # never looked before: set the cursors, fire nothing but manual
    schedule = policy.triggers.schedule
    if schedule is not None and not first and state.schedule_ms is not None:
        due = schedule.latest_between(state.schedule_ms, now_ms)
        if due is not None:
            fired.append(
                Fired("schedule", f"scheduled retrain ({schedule.cron} {schedule.timezone})", {"due_ms": due})
            )
    cursors["schedule_ms"] = now_ms
    data = _latest_data(tracker, policy, state, cursors)
    if data is not None:
        newer = (
            data["version"] > state.data_version
            if state.data_version is not None
            else not first  # the dataset's first version appeared after the first look
        )
        if policy.triggers.new_data and newer:
            fired.append(
                Fired("new_data", f"new data: {data['ref']}", {"dataset": data["ref"], "rows": data["rows"]})
            )
        if state.data_version is None:
            cursors["data_version"], cursors["data_rows"] = data["version"], data["rows"]
    fired += _alerts(tracker, policy, state, cursors, first=first, champion=champion)
    fired += _performance(tracker, policy, state, cursors, first=first, champion=champion)
    fired += _manual(tracker, policy, state, cursors)
    return Look(fired, cursors, data)


def held_back(policy: Policy, state: LoopState, fired: list[Fired], look: Look, *, now_ms: int) -> str | None:
    """Why the guards hold this retrain back, or None. A manual request passes every guard: a person asked."""
    if any(f.kind == "manual" for f in fired):
        return None
    guards = policy.guards
    recent = [t for t in state.retrains if t > now_ms - DAY_MS]
    if len(recent) >= guards.max_retrains_per_day:
        return f"{len(recent)} retrains in the last 24 hours (max_retrains_per_day = {guards.max_retrains_per_day})"
    if state.promoted_ms is not None and now_ms - state.promoted_ms < guards.quiet_hours * HOUR_MS:
        hours = (now_ms - state.promoted_ms) / HOUR_MS
        return f"a promotion {hours:.1f} hours ago (quiet_hours = {guards.quiet_hours:g})"
    if guards.min_new_rows and look.data is not None:
        trained = state.data_rows
        gained = look.data["rows"] - int(trained or 0)
        if trained is not None and gained < guards.min_new_rows:
            return f"only {gained} new rows since the last retrain (min_new_rows = {guards.min_new_rows})"
    return None


def request_manual(tracker: Tracker, model: str, *, reason: str, actor: str | None, now_ms: int) -> int:
    """Ask the loop of `model` to retrain at its next tick (`loopml agent trigger`); returns the request id."""
    from loopml.automation.store import Event

    event = AutomationStore(tracker.stores.db).add_event(
        model, Event(kind=MANUAL, message=f"manual retrain requested: {reason}", actor=actor), now_ms=now_ms
    )
    return int(event.event_id or 0)


def _latest_data(
    tracker: Tracker, policy: Policy, state: LoopState, cursors: dict[str, Any]
) -> dict[str, Any] | None:
    if policy.data is None:
        return None
    if policy.data_path is not None:
        _version_files(tracker, policy, state, cursors)
    from loopml.core.errors import NotFound
    from loopml.data.records import VersionRef
    from loopml.data.store import DatasetStore

    try:
        version = DatasetStore(tracker.stores.db).get_version(VersionRef.parse(policy.data))
    except NotFound:  # no version yet: its first one will be new data (`loopml agent status` shows the wait)
        return None
    return {"ref": version.ref, "version": version.version, "rows": int(version.row_count or 0)}


def _version_files(tracker: Tracker, policy: Policy, state: LoopState, cursors: dict[str, Any]) -> None:
    """The table files matching the policy's `data.path`, together, as a new version of its dataset when
    they changed (names, sizes and modification times are looked at first, so an idle tick reads nothing;
    identical content adds no version)."""
    import hashlib

    root = tracker.settings.project_dir
    paths = sorted(p for p in root.glob(policy.data_path or "") if p.is_file())
    if not paths:
        return
    listing = [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    stamp = hashlib.blake2b(repr(listing).encode(), digest_size=16).hexdigest()
    if stamp == state.data_files:
        return
    import pandas as pd

    from loopml.datasets import add
    from loopml.monitoring.checking import read_table

    frame = pd.concat([read_table(p) for p in paths], ignore_index=True)
    add(
        str(policy.data),
        frame,
        message=f"automation: {len(paths)} file(s) in {policy.data_path}",
        tracker=tracker,
    )
    cursors["data_files"] = stamp


def _alerts(
    tracker: Tracker,
    policy: Policy,
    state: LoopState,
    cursors: dict[str, Any],
    *,
    first: bool,
    champion: int | None,
) -> list[Fired]:
    """Monitoring alerts raised since the last look (the cursor moves even when no alert trigger is set, so
    enabling one later does not fire on history)."""
    from loopml.monitoring.alert_store import AlertStore

    triggers = policy.triggers
    alerts = [
        a for a in AlertStore(tracker.stores.db).alerts(policy.model) if (a.alert_id or 0) > state.alert_id
    ]
    if alerts:
        cursors["alert_id"] = max(a.alert_id or 0 for a in alerts)
    fired: list[Fired] = []
    if first:
        return fired
    for found in alerts:
        if champion is not None and found.version not in (None, champion):
            continue  # about a version not in charge (the old champion of a rollout just finished)
        evidence = {
            "alert_id": found.alert_id,
            "rule": found.rule,
            "metric": found.metric,
            "value": found.value,
            "threshold": found.threshold,
            "version": found.version,
            "window_start_ms": found.window_start_ms,
        }
        if triggers.drift and found.metric.startswith("drift."):
            fired.append(Fired("drift", f"drift alert: {found.message}", evidence))
        elif found.rule in triggers.alerts:
            fired.append(Fired("alert", f"alert {found.rule}: {found.message}", evidence))
    return fired


def _performance(
    tracker: Tracker,
    policy: Policy,
    state: LoopState,
    cursors: dict[str, Any],
    *,
    first: bool,
    champion: int | None,
) -> list[Fired]:
    """Realized or estimated performance of the champion's windows written (computed, or refreshed by late
    labels) since the last look, below the policy's floors."""
    triggers = policy.triggers
    if not (triggers.performance_below or triggers.estimated_below):
        return []
    from loopml.monitoring.metrics import window_metrics
    from loopml.monitoring.store import MonitorStore

    windows = [
        w for w in MonitorStore(tracker.stores.db).windows(policy.model) if w.changed_time > state.window_ms
    ]
    if windows:
        cursors["window_ms"] = max(w.changed_time for w in windows)
    fired: list[Fired] = []
    if first:
        return fired
    for window in windows:
        if champion is not None and window.version != champion:
            continue
        metrics = window_metrics(window)
        for prefix, floors, kind in (
            ("performance", triggers.performance_below, "performance"),
            ("estimated", triggers.estimated_below, "estimated"),
        ):
            for name, floor in floors.items():
                value = metrics.get(f"{prefix}.{name}")
                if value is not None and value < floor:
                    fired.append(
                        Fired(
                            kind,
                            f"{'realized' if kind == 'performance' else 'estimated'} {name} {value:.4f} "
                            f"below {floor:g} in the window from {window.start_ms}",
                            {"metric": name, "value": value, "floor": floor, "window_id": window.window_id},
                        )
                    )
    return fired


def _manual(tracker: Tracker, policy: Policy, state: LoopState, cursors: dict[str, Any]) -> list[Fired]:
    requests = AutomationStore(tracker.stores.db).events(
        policy.model, after_id=state.manual_id, kinds=[MANUAL]
    )
    if not requests:
        return []
    cursors["manual_id"] = max(r.event_id or 0 for r in requests)
    last = requests[-1]
    return [Fired("manual", last.message, {"request_id": last.event_id, "actor": last.actor})]
