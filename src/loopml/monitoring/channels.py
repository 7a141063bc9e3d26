"""Where alerts go: a webhook (Slack-compatible JSON), email over SMTP, or the log.

[monitoring.channels.ops]               # a channel name rules refer to
kind = "webhook"
url = "https://hooks.slack.com/services/..."
secret_env = "LOOPML_ALERT_SECRET"      # optional: HMAC-SHA256 of the body in X-LoopML-Signature
timeout_s = 5.0                         # per attempt
attempts = 3                            # bounded retries, waiting backoff_s * attempt between them
backoff_s = 0.5

[monitoring.channels.oncall]
kind = "email"
host = "smtp.example.com"
port = 587
sender = "loopml@example.com"
to = ["oncall@example.com"]
starttls = true
username = "loopml"
password_env = "LOOPML_SMTP_PASSWORD"   # the password is read from this variable when sending

[monitoring.channels.log]               # built in (Python logging, WARNING; CRITICAL for critical alerts)
kind = "log"

Secrets are named by environment variable, never written in `loopml.toml`, never stored with an alert and
never logged. A channel that fails is recorded in the alert's `delivered` outcome; `deliver` never raises.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from loopml.core.clock import now_ms
from loopml.core.errors import InvalidInput
from loopml.core.settings import PROJECT_FILE, read_project_file
from loopml.monitoring.alert_store import Alert
from loopml.registry.webhooks import signature

log = logging.getLogger(__name__)
EVENT = "monitor_alert"
MAX_ATTEMPTS = 10
MAX_BACKOFF_S = 30.0


class DeliveryFailed(OSError):
    """Every attempt to send an alert to one channel failed; `attempts` says how many were made."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


@dataclass(frozen=True)
class WebhookChannel:
    """POST the alert as JSON to `url`."""

    name: str
    url: str
    secret_env: str | None = None
    timeout_s: float = 5.0
    attempts: int = 3
    backoff_s: float = 0.5

    def __post_init__(self) -> None:
        where = _where(self.name)
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise InvalidInput(f"{where}: url must be http:// or https://, got {self.url!r}")
        _check_env_name(self.secret_env, "secret_env", where)
        _check_number(self.timeout_s, "timeout_s", where, low=0, high=300, open_low=True)
        _check_int(self.attempts, "attempts", where, low=1, high=MAX_ATTEMPTS)
        _check_number(self.backoff_s, "backoff_s", where, low=0, high=MAX_BACKOFF_S)

    def send(self, alert: Alert) -> int:
        """Post `alert`; the number of attempts it took. Raises `DeliveryFailed` when every attempt failed."""
        body = json.dumps(payload(alert), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "X-LoopML-Event": EVENT}
        secret = os.environ.get(self.secret_env) if self.secret_env else None
        if self.secret_env and not secret:
            raise DeliveryFailed(f"environment variable {self.secret_env} (the webhook secret) is not set", 0)
        if secret:
            headers["X-LoopML-Signature"] = signature(secret, body)
        problem = ""
        for attempt in range(1, self.attempts + 1):
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310  (http(s) checked)
                    if response.status < 300:
                        return attempt
                    problem = f"HTTP {response.status}"
            except urllib.error.HTTPError as error:
                problem = f"HTTP {error.code}"
                error.close()  # it holds the response; left open it would leak a socket per retry
            except OSError as error:  # URLError, refused, timeouts
                problem = _describe(error)
            if attempt < self.attempts:
                time.sleep(min(self.backoff_s * attempt, MAX_BACKOFF_S))
        raise DeliveryFailed(problem, self.attempts)


@dataclass(frozen=True)
class EmailChannel:
    """Send the alert as a plain-text email over SMTP (optionally STARTTLS and login)."""

    name: str
    host: str
    sender: str
    to: tuple[str, ...]
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        where = _where(self.name)
        if not isinstance(self.host, str) or not self.host:
            raise InvalidInput(f"{where}: host must be a host name, got {self.host!r}")
        if not isinstance(self.sender, str) or "@" not in self.sender:
            raise InvalidInput(f"{where}: sender must be an email address, got {self.sender!r}")
        if (
            not isinstance(self.to, tuple)
            or not self.to
            or not all(isinstance(r, str) and "@" in r for r in self.to)
        ):
            raise InvalidInput(f"{where}: to must be a list of email addresses, got {self.to!r}")
        _check_int(self.port, "port", where, low=1, high=65535)
        if not isinstance(self.starttls, bool):
            raise InvalidInput(f"{where}: starttls must be true or false, got {self.starttls!r}")
        if self.username is not None and not isinstance(self.username, str):
            raise InvalidInput(f"{where}: username must be a string, got {self.username!r}")
        _check_env_name(self.password_env, "password_env", where)
        if self.username is not None and self.password_env is None:
            raise InvalidInput(f"{where}: username needs password_env (the variable holding the password)")
        _check_number(self.timeout_s, "timeout_s", where, low=0, high=300, open_low=True)

    def send(self, alert: Alert) -> int:
        """Send `alert` once (SMTP servers queue and retry themselves); raises `DeliveryFailed` on failure."""
        message = EmailMessage()
        message["Subject"] = f"[LoopML {alert.severity}] {alert.model}: {alert.rule}"
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message.set_content(text_body(alert))
        password = None
        if self.username is not None and self.password_env is not None:
            password = os.environ.get(self.password_env)
            if not password:
                raise DeliveryFailed(
                    f"environment variable {self.password_env} (the SMTP password) is not set", 0
                )
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username is not None and password is not None:
                    smtp.login(self.username, password)
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as error:  # refused, timeouts; recipients, auth, protocol
            raise DeliveryFailed(_describe(error), 1) from None
        return 1


@dataclass(frozen=True)
class LogChannel:
    """Write the alert to Python logging (`loopml.monitoring.channels`)."""

    name: str = "log"

    def send(self, alert: Alert) -> int:
        """Log `alert` at WARNING (CRITICAL for a critical alert, INFO for info)."""
        level = {"critical": logging.CRITICAL, "info": logging.INFO}.get(alert.severity, logging.WARNING)
        log.log(level, "loopml alert: %s", alert.message)
        return 1


Channel = WebhookChannel | EmailChannel | LogChannel
_KINDS: dict[str, type[WebhookChannel] | type[EmailChannel] | type[LogChannel]] = {
    "webhook": WebhookChannel,
    "email": EmailChannel,
    "log": LogChannel,
}


def channels_from_config(table: Any) -> dict[str, Channel]:
    """Channels of a `[monitoring.channels]` table, plus the built-in `log` unless it is redefined."""
    found: dict[str, Channel] = {"log": LogChannel()}
    if table is None:
        return found
    if not isinstance(table, Mapping):
        raise InvalidInput(f"{PROJECT_FILE} [monitoring.channels] must be a table of channels")
    for name, entry in table.items():
        where = _where(name)
        if not isinstance(entry, Mapping):
            raise InvalidInput(f"{where} must be a table with a kind")
        kind = entry.get("kind")
        if kind not in _KINDS:
            raise InvalidInput(f"{where}: kind must be one of {', '.join(_KINDS)}, got {kind!r}")
        cls = _KINDS[kind]
        values = {k: v for k, v in entry.items() if k != "kind"}
        if "secret" in values or "password" in values:
            raise InvalidInput(
                f"{where}: do not write secrets in {PROJECT_FILE}; name the environment variable that holds "
                "it with secret_env / password_env"
            )
        known = {f.name for f in fields(cls)} - {"name"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInput(
                f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if kind == "email" and isinstance(values.get("to"), list | str):
            to = values["to"]
            values["to"] = (to,) if isinstance(to, str) else tuple(to)
        try:
            found[str(name)] = cls(name=str(name), **values)
        except TypeError as error:  # a required key is missing
            raise InvalidInput(f"{where}: {error}") from None
    return found


def load_channels(project_dir: Path) -> dict[str, Channel]:
    """The alert channels the project's `loopml.toml` configures (`[monitoring.channels.NAME]`)."""
    path = project_dir / PROJECT_FILE
    project = read_project_file(path) if path.is_file() else {}
    monitoring = project.get("monitoring", {})
    if not isinstance(monitoring, Mapping):
        raise InvalidInput(f"{PROJECT_FILE} [monitoring] must be a table")
    return channels_from_config(monitoring.get("channels"))


def deliver(alert: Alert, channels: Mapping[str, Channel]) -> dict[str, Any]:
    """Send `alert` to each of its channels; the outcome per channel. Never raises: a failure is data."""
    outcome: dict[str, Any] = {}
    for name in alert.channels:
        channel = channels.get(name)
        if channel is None:
            outcome[name] = {"status": "failed", "attempts": 0, "error": "channel is not configured"}
            continue
        try:
            attempts = channel.send(alert)
        except Exception as error:  # a broken channel must not stop the monitoring run
            # The error text names the variable of a missing secret, never a secret's value; the URL of a
            # webhook is not logged, as a Slack URL is itself a credential.
            log.warning("loopml: alert channel %s failed (%s)", name, _describe(error))
            attempts = error.attempts if isinstance(error, DeliveryFailed) else 1
            outcome[name] = {
                "status": "failed",
                "attempts": attempts,
                "error": _describe(error),
                "time": now_ms(),
            }
        else:
            outcome[name] = {"status": "delivered", "attempts": attempts, "time": now_ms()}
    return outcome


def payload(alert: Alert) -> dict[str, Any]:
    """The webhook body: Slack's `text` (and a section block) plus LoopML's structured fields."""
    return {
        "text": summary(alert),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text_body(alert)}}],
        "event": EVENT,
        "alert_id": alert.alert_id,
        "model": alert.model,
        "version": alert.version,
        "rule": alert.rule,
        "metric": alert.metric,
        "op": alert.op,
        "value": alert.value,
        "threshold": alert.threshold,
        "severity": alert.severity,
        "window_id": alert.window_id,
        "window_start": _iso(alert.window_start_ms),
        "window_end": _iso(alert.window_end_ms),
        "window_start_ms": alert.window_start_ms,
        "window_end_ms": alert.window_end_ms,
        "time": alert.time,
        "message": alert.message,
    }


def summary(alert: Alert) -> str:
    """One line: severity, model and version, rule."""
    version = f" v{alert.version}" if alert.version is not None else ""
    return f"[{alert.severity.upper()}] {alert.model}{version}: {alert.rule}: {alert.message}"


def text_body(alert: Alert) -> str:
    """The plain-text description of an alert (email body, Slack block)."""
    lines = [
        summary(alert),
        "",
        f"model:     {alert.model}" + (f" version {alert.version}" if alert.version is not None else ""),
        f"rule:      {alert.rule} ({alert.severity})",
        f"metric:    {alert.metric} = {_number(alert.value)} ({alert.op or 'vs'} {_number(alert.threshold)})",
        f"window:    {_iso(alert.window_start_ms) or '-'} to {_iso(alert.window_end_ms) or '-'}",
    ]
    return "\n".join(lines) + "\n"


def _where(name: Any) -> str:
    return f"{PROJECT_FILE} [monitoring.channels.{name}]"


def _check_env_name(value: Any, key: str, where: str) -> None:
    if value is not None and (not isinstance(value, str) or not value.replace("_", "a").isalnum()):
        raise InvalidInput(f"{where}: {key} must name an environment variable, got {value!r}")


def _check_int(value: Any, key: str, where: str, *, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{where}: {key} must be an integer in [{low}, {high}], got {value!r}")


def _check_number(
    value: Any, key: str, where: str, *, low: float, high: float, open_low: bool = False
) -> None:
    ok = not isinstance(value, bool) and isinstance(value, int | float)
    if not ok or not (low < value <= high if open_low else low <= value <= high):
        bracket = "(" if open_low else "["
        raise InvalidInput(f"{where}: {key} must be a number in {bracket}{low:g}, {high:g}], got {value!r}")


def _describe(error: BaseException) -> str:
    text = str(error)
    if isinstance(error, DeliveryFailed):
        return text
    name = type(error).__name__
    return f"{name}: {text}" if text and not text.startswith(name) else name


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()
