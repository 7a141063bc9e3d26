"""`loopml monitor alerts MODEL`: the alerts monitoring rules raised for a model, and where they went."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from loopml.cli.monitor import JsonOption, app
from loopml.cli.output import print_json, table, when


@app.command("alerts")
def alerts(
    model: Annotated[str, typer.Argument(help="Registered model name")],
    since_hours: Annotated[
        float | None, typer.Option("--since-hours", min=0, help="Only alerts raised this recently")
    ] = None,
    severity: Annotated[
        str | None, typer.Option("--severity", help="Only this severity: info | warning | critical")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """The stored alerts of a model, oldest first, with each channel's delivery outcome."""
    from loopml.core.clock import now_ms
    from loopml.monitoring.alert_store import AlertStore
    from loopml.tracking.tracker import default_tracker

    since = None if since_hours is None else now_ms() - int(since_hours * 3_600_000)
    found = AlertStore(default_tracker().stores.db).alerts(model, since_ms=since, severity=severity)
    if json_output:
        print_json(found)
        return
    rows = [
        (
            when(a.time),
            a.severity,
            a.rule,
            "-" if a.version is None else f"v{a.version}",
            when(a.window_start_ms),
            a.metric,
            a.value,
            a.threshold,
            _delivery(a.delivered),
        )
        for a in found
    ]
    columns = ["raised", "severity", "rule", "version", "window", "metric", "value", "threshold", "delivered"]
    table(f"Alerts of {model}", columns, rows)


def _delivery(delivered: dict[str, Any]) -> str:
    return ", ".join(f"{name}: {outcome.get('status', '?')}" for name, outcome in delivered.items()) or "-"
