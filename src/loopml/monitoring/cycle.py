"""One monitoring cycle of a model: due windows computed, late labels folded in, alert rules evaluated.

`loopml monitor run` runs one cycle and exits; the automation controller runs one per tick before it looks
at its triggers, so a drift alert raised now can start a retrain in the same tick.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loopml.monitoring.alert_store import Alert
from loopml.monitoring.alerts import alert
from loopml.monitoring.runner import refresh_performance, run
from loopml.monitoring.store import WindowRecord
from loopml.monitoring.windows import DEFAULT_GRACE_MS

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Cycle:
    """What one cycle did: windows computed, windows whose performance late labels changed, alerts raised."""

    computed: list[WindowRecord]
    refreshed: list[WindowRecord]
    alerts: list[Alert]


def monitor_cycle(
    tracker: Tracker,
    model: str,
    *,
    granularity: str = "hour",
    now_ms: int | None = None,
    label_days: float = 30.0,
    grace_ms: int = DEFAULT_GRACE_MS,
) -> Cycle:
    """Compute the due windows of `model`, refresh the performance of windows from the last `label_days`
    whose labels arrived since, and evaluate the alert rules on everything that changed."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    computed = run(tracker, model, granularity=granularity, now_ms=now, grace_ms=grace_ms)
    refreshed = refresh_performance(
        tracker, model, since_ms=now - int(label_days * DAY_MS), granularity=granularity
    )
    changed = computed + refreshed
    return Cycle(computed, refreshed, alert(tracker, model, changed) if changed else [])
