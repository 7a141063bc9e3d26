"""The automation timeline: what the controller decided for each model and why (a trigger fired, a retrain
ran or failed, the gates passed or refused, a canary started, a version was promoted or rolled back),
newest first, filtered by model and kind and paged on the server, each decision linked to the runs, model
versions, dataset versions and monitoring behind it; and one decision's page with its full evidence and the
rest of its loop. The same events as `loopml timeline MODEL` and `GET /api/v1/models/{name}/timeline`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from loopml.automation.store import AutomationStore, Event
from loopml.core.errors import InvalidInput, NotFound
from loopml.registry.store import RegistryStore
from loopml.server.fields import who
from loopml.server.ui.pages import Pages, bounded, caller, link

PAGE_SIZES = (25, 50, 100, 200)
INT_MAX = 2**31 - 1  # event ids are 32-bit integers in the database
LOOP_EVENTS = 200  # events of one loop listed on a decision's page
MAX_DEPTH = 8  # how deep links are looked for in evidence
KIND = re.compile(r"^[a-z_]{1,32}$")
KINDS = (
    "manual_request",
    "triggered",
    "held",
    "training_started",
    "training_failed",
    "trained",
    "no_candidate",
    "refused",
    "rollout_started",
    "promoted",
    "rolled_back",
    "superseded",
)
# The badge of each kind: the stylesheet's status colours (green done, red bad, blue in progress, grey none).
BADGES = {
    "manual_request": "pending",
    "triggered": "started",
    "held": "skipped",
    "training_started": "running",
    "training_failed": "failed",
    "trained": "finished",
    "no_candidate": "skipped",
    "refused": "refused",
    "rollout_started": "canary",
    "promoted": "promoted",
    "rolled_back": "rolled_back",
    "superseded": "skipped",
}
_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # evidence is free-form JSON: only a plain id becomes a link
_DATASET_REF = re.compile(r"^(?:dataset )?(?P<name>[A-Za-z0-9][A-Za-z0-9_.\-]*)@v(?P<version>\d+)$")


@dataclass(frozen=True)
class Link:
    """Something a decision involved, as a link: `kind` run | version | dataset | monitoring | decision |
    deployment."""

    kind: str
    text: str
    href: str


def routes(app: FastAPI, pages: Pages) -> None:
    db = pages.tracker.stores.db
    store = AutomationStore(db)

    @app.get("/automation", response_class=HTMLResponse)
    def timeline(  # noqa: PLR0917  # FastAPI reads the query parameters from the signature
        request: Request,
        model: str = "",
        kind: str = "",
        before: str = "",
        after: str = "",
        size: str = "",
    ) -> HTMLResponse:
        caller(request, "read", model=model or None)
        if model:
            RegistryStore(db).get_model(model)  # NotFound (404) for an unknown model
        if kind and not KIND.match(kind):
            raise InvalidInput(f"kind is one of {', '.join(KINDS)}, got {kind[:40]!r}")
        if before and after:
            raise InvalidInput("give before or after, not both")
        per_page = bounded(size, "size", 50, 1, max(PAGE_SIZES))
        before_id = bounded(before, "before", 0, 1, INT_MAX) or None
        after_id = bounded(after, "after", 0, 0, INT_MAX) if after else None
        narrow: dict[str, Any] = {"model": model or None, "kinds": [kind] if kind else None}
        events = store.timeline(**narrow, before_id=before_id, after_id=after_id, limit=per_page)
        newer = older = False
        if events:
            newest, oldest = events[0].event_id or 0, events[-1].event_id or 0
            newer = bool(store.timeline(**narrow, after_id=newest, limit=1))
            older = bool(store.timeline(**narrow, before_id=oldest, limit=1))
        return pages.render(
            request,
            "automation.html",
            section="automation",
            entries=[_entry(request, e) for e in events],
            model=model,
            kind=kind,
            kinds=KINDS,
            size=per_page,
            sizes=PAGE_SIZES,
            newer=newer,
            older=older,
            paged=before_id is not None or after_id is not None,
            models=[m.name for m in RegistryStore(db).list_models() if who(request).can("read", m.name)],
        )

    @app.get("/automation/{decision_id}", response_class=HTMLResponse)
    def decision(request: Request, decision_id: str) -> HTMLResponse:
        number = bounded(decision_id, "decision id", 0, 1, INT_MAX)
        event = store.event(number)  # NotFound (404)
        if not who(request).can("read", event.model):  # as if missing: the refusal would name the model
            raise NotFound(f"no automation decision {number}")
        loop = store.timeline(event.model, loop_id=event.loop_id, limit=LOOP_EVENTS) if event.loop_id else []
        return pages.render(
            request,
            "automation_decision.html",
            section="automation",
            entry=_entry(request, event),
            loop=[_entry(request, e) for e in loop],
            triggers=_triggers(event.detail),
            gates=_gates(event.detail),
            # promoted: the evidence that passed the canary; rolled back: the evidence that failed it
            canary=canary_rows(event.detail.get("canary") or event.detail.get("evidence")),
            evidence=json.dumps(event.detail, indent=2, sort_keys=True, default=str),
        )


def _entry(request: Request, event: Event) -> dict[str, Any]:
    """What the timeline shows of an event: its badge, the summary of its evidence, and its links."""
    return {
        "event": event,
        "badge": BADGES.get(event.kind, "skipped"),
        "links": links(request, event),
        "summary": _summary(event),
    }


def links(request: Request, event: Event) -> list[Link]:
    """The runs, model versions, dataset versions, monitoring and other decisions `event` involved: its own
    run and version, and those its evidence names (a trigger's dataset version or alert, the gates' held-out
    dataset, a manual request)."""
    model = event.model
    found: list[Link] = []
    if event.run_id and _RUN_ID.match(event.run_id):
        found.append(Link("run", f"run {event.run_id[:8]}", link(request, f"/runs/{event.run_id}")))
    if event.version:
        found.append(
            Link(
                "version",
                f"{model}@v{event.version}",
                link(request, f"/models/{quote(model, safe='')}/{event.version}"),
            )
        )
    for key, value in _walk(event.detail):
        found.extend(_link_of(request, model, key, value))
    if event.kind in ("rollout_started", "promoted", "rolled_back", "superseded"):
        found.append(
            Link("deployment", f"{model} deployment", link(request, f"/deployments/{quote(model, safe='')}"))
        )
    unique: dict[str, Link] = {}
    for item in found:
        unique.setdefault(item.href, item)
    return list(unique.values())


def _walk(value: Any, key: str = "", depth: int = 0) -> Iterator[tuple[str, Any]]:
    """Every (key, value) of nested evidence, the key being the nearest dictionary key above the value."""
    if depth > MAX_DEPTH:
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k), v
            yield from _walk(v, str(k), depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _walk(item, key, depth + 1)


def _link_of(request: Request, model: str, key: str, value: Any) -> list[Link]:
    if key == "run_id" and isinstance(value, str) and _RUN_ID.match(value):
        return [Link("run", f"run {value[:8]}", link(request, f"/runs/{value}"))]
    if key in ("dataset", "ref", "evaluation") and isinstance(value, str):
        match = _DATASET_REF.match(value.strip())
        if match:
            name, version = match["name"], int(match["version"])
            return [
                Link(
                    "dataset",
                    f"{name}@v{version}",
                    link(request, f"/datasets/{quote(name, safe='/')}/v{version}"),
                )
            ]
    if key in ("alert_id", "window_id") and value is not None:
        return [
            Link("monitoring", f"{model} monitoring", link(request, f"/monitoring/{quote(model, safe='')}"))
        ]
    if key == "request_id" and isinstance(value, int) and not isinstance(value, bool):
        return [Link("decision", f"request #{value}", link(request, f"/automation/{value}"))]
    return []


def _summary(event: Event) -> list[str]:
    """The evidence in a few words for the timeline (the decision's page shows all of it)."""
    detail = event.detail
    if event.kind in ("triggered", "held"):
        return [f"{t.get('kind')}: {t.get('reason')}" for t in _triggers(detail)]
    gates = _gates(detail)
    if gates:
        return [f"{'passed' if g['passed'] else 'FAILED'} {g['gate']}" for g in gates["results"]]
    if event.kind == "training_failed" and detail.get("error"):
        return [str(detail["error"]).strip().splitlines()[-1][:200]]
    return []


def _triggers(detail: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The triggers that fired, each with its kind, reason and evidence."""
    fired = detail.get("triggers")
    return [t for t in fired if isinstance(t, Mapping)] if isinstance(fired, list) else []


def _gates(detail: Mapping[str, Any]) -> dict[str, Any] | None:
    """The gate verdicts, and the policy and held-out data they were judged on, of a gate decision."""
    gates = detail.get("gates")
    if not isinstance(gates, list):
        return None
    results = [g for g in gates if isinstance(g, Mapping) and "gate" in g]
    extra = next((g for g in gates if isinstance(g, Mapping) and "policy" in g), {})
    return {"results": results, "policy": extra.get("policy"), "evaluation": extra.get("evaluation")}


def canary_rows(found: Any) -> list[tuple[str, Any, Any]]:
    """A canary's evidence, as `loopml.automation.canary.evidence` records it, as (what, champion,
    challenger) rows; none for anything else."""
    if not isinstance(found, Mapping) or not isinstance(found.get("challenger"), Mapping):
        return []
    champion, challenger = found.get("champion") or {}, found["challenger"]
    rows: list[tuple[str, Any, Any]] = [
        ("version", _version(champion.get("version")), _version(challenger.get("version"))),
        ("requests", champion.get("requests"), challenger.get("requests")),
        ("failed", champion.get("failed"), challenger.get("failed")),
        ("error rate", _percent(champion.get("error_rate")), _percent(challenger.get("error_rate"))),
        ("p99 latency (ms)", champion.get("p99_ms"), challenger.get("p99_ms")),
    ]
    labelled = found.get("labelled")
    if isinstance(labelled, Mapping):
        metric = labelled.get("metric")
        rows.append((f"{metric} on labelled traffic", labelled.get("champion"), labelled.get("challenger")))
        counted = labelled.get("labelled_rows") or {}
        rows.append(("labelled rows", counted.get("champion"), counted.get("challenger")))
    return rows


def _version(number: Any) -> str:
    return f"v{number}" if number is not None else ""


def _percent(value: Any) -> str:
    return f"{value:.2%}" if isinstance(value, int | float) and not isinstance(value, bool) else ""
