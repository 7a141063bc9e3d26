"""Monitoring results and the automation loop over HTTP: what the monitor computed, what it alerted on, and
what the loop decided and why.

```
GET  /api/v1/models/{name}/monitoring/windows?version=&granularity=&limit=   reader   newest `limit` windows
GET  /api/v1/models/{name}/monitoring/alerts?since_ms=&severity=&rule=&limit= reader
GET  /api/v1/models/{name}/timeline?after_id=&kind=                          reader   events and the loop's state
GET  /api/v1/policies                                                        reader   the [models.*] tables of
                                                                                      the workspace's loopml.toml
POST /api/v1/models/{name}/retrain  {reason?}                                editor   a manual trigger, acted on
                                                                                      at the loop's next tick
```
The monitor and the agent keep running where they run (`loopml monitor run`, `loopml agent`, `loopml serve
--agent`) against the server's stores; these routes read what they wrote and record a person's request.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool

from loopml.core.plain import to_plain as plain
from loopml.server.fields import BIGGEST, INT_MAX, text, who

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

MAX_ITEMS = 10_000


def loop_routes(app: FastAPI, tracker: Tracker, read_body: Any) -> None:
    """Add the monitoring and automation routes to `app`."""
    from loopml.automation.store import AutomationStore
    from loopml.monitoring.alert_store import AlertStore
    from loopml.monitoring.store import MonitorStore

    monitor, alerts, automation = (
        MonitorStore(tracker.stores.db),
        AlertStore(tracker.stores.db),
        AutomationStore(tracker.stores.db),
    )

    @app.get("/api/v1/models/{name}/monitoring/windows")
    async def windows(
        name: str,
        request: Request,
        *,
        version: Annotated[int | None, Query(ge=1, le=INT_MAX)] = None,
        granularity: Annotated[str | None, Query(pattern="^(minute|hour|day)$")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_ITEMS)] = 500,
    ) -> Any:
        who(request).require("read", model=name)
        found = await run_in_threadpool(monitor.windows, name, version=version, granularity=granularity)
        return {"windows": plain(found[-limit:])}

    @app.get("/api/v1/models/{name}/monitoring/alerts")
    async def list_alerts(
        name: str,
        request: Request,
        *,
        since_ms: Annotated[int | None, Query(ge=0, le=BIGGEST)] = None,
        severity: str | None = None,
        rule: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_ITEMS)] = 500,
    ) -> Any:
        who(request).require("read", model=name)
        found = await run_in_threadpool(
            lambda: alerts.alerts(name, since_ms=since_ms, severity=severity, rule=rule, limit=limit)
        )
        return {"alerts": plain(found)}

    @app.get("/api/v1/models/{name}/timeline")
    async def timeline(
        name: str,
        request: Request,
        *,
        after_id: Annotated[int, Query(ge=0, le=INT_MAX)] = 0,
        kind: Annotated[list[str] | None, Query()] = None,
    ) -> Any:
        who(request).require("read", model=name)

        def read() -> dict[str, Any]:
            events = automation.events(name, after_id=after_id, kinds=kind)
            return {"state": plain(automation.state(name)), "events": plain(events[-MAX_ITEMS:])}

        return await run_in_threadpool(read)

    @app.get("/api/v1/policies")
    async def policies(request: Request) -> Any:
        who(request).require("read")
        # Only the [models.*] tables (gates, monitoring, KPIs, automation): the file may also hold store URLs
        # and webhook addresses, which are the server's secrets.
        return {"models": await run_in_threadpool(_model_tables, tracker.settings.project_dir)}

    @app.post("/api/v1/models/{name}/retrain")
    async def retrain(name: str, request: Request) -> Any:
        caller = who(request)
        caller.require("write", model=name)
        reason = text(await read_body(request), "reason", required=False) or "asked for"
        from loopml.automation.policy import policy_of
        from loopml.automation.triggers import request_manual

        def ask() -> int:
            policy_of(tracker.settings.project_dir, name)  # a model without a policy would never act on it
            return request_manual(
                tracker, name, reason=reason, actor=caller.name, now_ms=int(time.time() * 1000)
            )

        return {"model": name, "request": await run_in_threadpool(ask)}


def _model_tables(project_dir: Path) -> dict[str, Any]:
    import tomllib

    from loopml.core.errors import InvalidInput

    try:
        with (project_dir / "loopml.toml").open("rb") as source:
            document = tomllib.load(source)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as error:
        raise InvalidInput(f"the server's loopml.toml does not parse: {error}") from None
    models = document.get("models", {})
    return models if isinstance(models, dict) else {}
