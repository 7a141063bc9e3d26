"""Alerts in the metadata store (`monitor_alerts`): what a rule raised, on which window, and where it went.

An alert row is written before its delivery is attempted (so a crash while a mail server hangs loses no
alert), then its `delivered_json` is rewritten with each channel's outcome. Nothing else of a row changes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, select

from loopml.core.errors import InvalidInput
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.database import Database
from loopml.storage.metadata.lookups import model_id_of

SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class Alert:
    """One firing of a rule on a model's window. `alert_id` is None until the alert is stored.

    `delivered` maps a channel name to its outcome: `{"status": "pending" | "delivered" | "failed",
    "attempts": n, "error": "..."}`.
    """

    model: str
    version: int | None
    rule: str
    metric: str
    severity: str
    value: float | None
    threshold: float | None
    message: str
    time: int
    window_id: str | None = None
    window_start_ms: int | None = None
    window_end_ms: int | None = None
    op: str | None = None  # not stored: known when the alert is raised, None when read back
    channels: tuple[str, ...] = ()
    delivered: dict[str, Any] = field(default_factory=dict)
    alert_id: int | None = None


class AlertStore:
    """Reads and writes `monitor_alerts`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, alerts: Sequence[Alert]) -> list[Alert]:
        """Store `alerts` in one transaction, each with its channels marked pending; returns them with ids."""
        if not alerts:
            return []

        def insert(conn: Connection) -> list[Alert]:
            ids: dict[str, str] = {}
            stored = []
            for alert in alerts:
                if alert.model not in ids:
                    ids[alert.model] = model_id_of(conn, alert.model)
                pending = {name: {"status": "pending"} for name in alert.channels}
                result = conn.execute(
                    t.monitor_alerts.insert(),
                    {
                        "model_id": ids[alert.model],
                        "version": alert.version,
                        "rule": alert.rule,
                        "metric": alert.metric,
                        "severity": alert.severity,
                        "window_id": alert.window_id,
                        "value": alert.value,
                        "threshold": alert.threshold,
                        "message": alert.message,
                        "delivered_json": json.dumps(pending, sort_keys=True),
                        "time": alert.time,
                    },
                )
                key = result.inserted_primary_key
                assert key is not None  # an INSERT always has one
                stored.append(replace(alert, alert_id=int(key[0]), delivered=pending))
            return stored

        return self.db.transact(insert)

    def set_delivery(self, alert_id: int, delivered: dict[str, Any]) -> None:
        """Record the delivery outcome of a stored alert, per channel."""
        a = t.monitor_alerts.c

        def update(conn: Connection) -> None:
            conn.execute(
                t.monitor_alerts.update()
                .where(a.alert_id == alert_id)
                .values(delivered_json=json.dumps(delivered, sort_keys=True, default=str))
            )

        self.db.transact(update)

    def alerts(
        self,
        model: str,
        *,
        since_ms: int | None = None,
        severity: str | None = None,
        rule: str | None = None,
        limit: int | None = None,
    ) -> list[Alert]:
        """The stored alerts of `model`, oldest first; `limit` keeps the newest ones."""
        if severity is not None and severity not in SEVERITIES:
            raise InvalidInput(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
        a, w = t.monitor_alerts.c, t.monitor_windows.c
        with self.db.read() as conn:
            query = (
                select(t.monitor_alerts, w.start_time.label("w_start"), w.end_time.label("w_end"))
                .select_from(t.monitor_alerts.outerjoin(t.monitor_windows, a.window_id == w.window_id))
                .where(a.model_id == model_id_of(conn, model))
            )
            if since_ms is not None:
                query = query.where(a.time >= since_ms)
            if severity is not None:
                query = query.where(a.severity == severity)
            if rule is not None:
                query = query.where(a.rule == rule)
            query = query.order_by(a.time.desc(), a.alert_id.desc())
            if limit is not None:
                query = query.limit(limit)
            rows = conn.execute(query).all()
        return [_alert(model, row) for row in reversed(rows)]


def _alert(model: str, row: Any) -> Alert:
    delivered = json.loads(row.delivered_json) if row.delivered_json else {}
    return Alert(
        model=model,
        version=row.version,
        rule=row.rule,
        metric=row.metric,
        severity=row.severity,
        value=row.value,
        threshold=row.threshold,
        message=row.message,
        time=row.time,
        window_id=row.window_id,
        window_start_ms=row.w_start,
        window_end_ms=row.w_end,
        channels=tuple(delivered),
        delivered=delivered,
        alert_id=row.alert_id,
    )
