"""Registry events to webhooks, so existing CD tools can react to a new version or a moved alias.

Delivery happens in a background thread with a short timeout and a few retries: a slow or broken receiver
never delays or fails a registration or a promotion (a failure is logged, without the secret or the body).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loopml.registry.config import Webhook, webhooks
from loopml.registry.records import AliasEvent

log = logging.getLogger(__name__)
TIMEOUT_S = 5.0
ATTEMPTS = 3


def notify(hooks: list[Webhook], event: str, payload: Mapping[str, Any]) -> list[threading.Thread]:
    """Post `event` to every hook subscribed to it; returns the delivery threads (tests join them)."""
    body = json.dumps({"event": event, **payload}, sort_keys=True, default=str).encode()
    threads = []
    for hook in hooks:
        if event in hook.events:
            thread = threading.Thread(
                target=_deliver, args=(hook, event, body), name="loopml-webhook", daemon=True
            )
            thread.start()
            threads.append(thread)
    return threads


def signature(secret: str, body: bytes) -> str:
    """The `X-LoopML-Signature` header value: `sha256=` + HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _deliver(hook: Webhook, event: str, body: bytes) -> None:
    headers = {"Content-Type": "application/json", "X-LoopML-Event": event}
    secret = os.environ.get(hook.secret_env) if hook.secret_env else None
    if secret:
        headers["X-LoopML-Signature"] = signature(secret, body)
    for attempt in range(1, ATTEMPTS + 1):
        request = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310  (http(s) checked)
                if response.status < 300:
                    return
                problem = f"HTTP {response.status}"
        except OSError as error:  # URLError, HTTPError, timeouts
            problem = type(error).__name__ + (f" {error.code}" if hasattr(error, "code") else "")
        if attempt < ATTEMPTS:
            time.sleep(0.5 * attempt)
    log.warning(
        "loopml: webhook %s did not accept %s after %d attempts (%s)", hook.url, event, ATTEMPTS, problem
    )


def announce(project_dir: Path, event: str, payload: Mapping[str, Any]) -> None:
    """Post `event` to the webhooks the project's `loopml.toml` configures (if any)."""
    hooks = webhooks(project_dir)
    if hooks:
        notify(hooks, event, payload)


def alias_payload(event: AliasEvent) -> dict[str, Any]:
    """The webhook body of an alias event."""
    return {
        "model": event.name,
        "alias": event.alias,
        "from_version": event.from_version,
        "to_version": event.to_version,
        "outcome": event.outcome,
        "forced": event.forced,
        "reason": event.reason,
        "gates": event.gates,
        "user": event.user,
        "time": event.time,
    }
