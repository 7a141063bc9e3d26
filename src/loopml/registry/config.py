"""The registry's part of `loopml.toml`: promotion gates per model and alias, and event webhooks.

[models.fraud.gates.champion]
min_delta = 0.005
thresholds = { roc_auc = 0.8 }
slice_by = "region"
max_slice_regression = 0.02
required_tags = ["approved-by"]

[[registry.webhooks]]
url = "https://ci.example.com/hooks/loopml"
events = ["version_registered", "alias_moved", "promotion_refused"]   # default: all
secret_env = "LOOPML_WEBHOOK_SECRET"    # HMAC-SHA256 of the body in X-LoopML-Signature; never logged
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopml.core.errors import InvalidInput
from loopml.core.settings import PROJECT_FILE, read_project_file
from loopml.registry.gates import GatePolicy

EVENTS = ("version_registered", "alias_moved", "promotion_refused")


@dataclass(frozen=True)
class Webhook:
    """Where registry events are posted."""

    url: str
    events: tuple[str, ...] = EVENTS
    secret_env: str | None = None


def _project(project_dir: Path) -> dict[str, Any]:
    path = project_dir / PROJECT_FILE
    return read_project_file(path) if path.is_file() else {}


def gate_policy(project_dir: Path, name: str, alias: str) -> GatePolicy | None:
    """The policy `loopml.toml` sets for `name@alias`, or None."""
    table = _project(project_dir).get("models", {}).get(name, {}).get("gates", {}).get(alias)
    if table is None:
        return None
    where = f"{PROJECT_FILE} [models.{name}.gates.{alias}]"
    if not isinstance(table, dict):
        raise InvalidInput(f"{where} must be a table of gate settings")
    known = {f.name for f in dataclasses.fields(GatePolicy)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise InvalidInput(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values = dict(table)
    if "required_tags" in values:
        values["required_tags"] = tuple(values["required_tags"])
    try:
        return GatePolicy(**values)
    except TypeError as error:
        raise InvalidInput(f"{where}: {error}") from None


def webhooks(project_dir: Path) -> list[Webhook]:
    """The webhooks `loopml.toml` configures (`[[registry.webhooks]]`)."""
    entries = _project(project_dir).get("registry", {}).get("webhooks", [])
    hooks = []
    for index, entry in enumerate(entries if isinstance(entries, list) else [entries]):
        where = f"{PROJECT_FILE} [[registry.webhooks]] #{index + 1}"
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise InvalidInput(f"{where} needs a url")
        if not entry["url"].startswith(("http://", "https://")):
            raise InvalidInput(f"{where}: url must be http:// or https://, got {entry['url']!r}")
        events = tuple(entry.get("events", EVENTS))
        bad = sorted(set(events) - set(EVENTS))
        if bad:
            raise InvalidInput(f"{where}: unknown event(s) {', '.join(bad)}; known: {', '.join(EVENTS)}")
        hooks.append(Webhook(entry["url"], events, entry.get("secret_env")))
    return hooks
