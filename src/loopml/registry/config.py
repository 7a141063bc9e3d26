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
    return policy_from(table, f"{PROJECT_FILE} [models.{name}.gates.{alias}]")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_KINDS: dict[str, Any] = {
    "metric": lambda v: v is None or isinstance(v, str),
    "min_delta": _number,
    "thresholds": lambda v: isinstance(v, dict) and all(_number(b) for b in v.values()),
    "slice_by": lambda v: v is None or isinstance(v, str),
    "max_slice_regression": lambda v: v is None or _number(v),
    "max_latency_ms_per_row": lambda v: v is None or _number(v),
    "required_tags": lambda v: isinstance(v, list | tuple) and all(isinstance(t, str) for t in v),
}
_KIND_NAMES = {
    "metric": "a metric name",
    "min_delta": "a number",
    "thresholds": "a table of numbers",
    "slice_by": "a column name",
    "max_slice_regression": "a number",
    "max_latency_ms_per_row": "a number",
    "required_tags": "a list of tag names",
}


def policy_from(table: Any, where: str) -> GatePolicy:
    """A gate policy from its table of settings (`loopml.toml`, or a promotion request); `where` names it in
    errors."""
    if not isinstance(table, dict):
        raise InvalidInput(f"{where} must be a table of gate settings")
    known = {f.name for f in dataclasses.fields(GatePolicy)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise InvalidInput(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values = dict(table)
    for key, value in values.items():
        if not _KINDS[key](value):
            raise InvalidInput(f"{where}: {key} must be {_KIND_NAMES[key]}, got {value!r}")
    if "required_tags" in values:
        values["required_tags"] = tuple(values["required_tags"])
    try:
        return GatePolicy(**values)
    except (TypeError, ValueError) as error:
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
