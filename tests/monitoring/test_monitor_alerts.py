"""Alert rules over monitored windows: config, streaks, cooldown, absence, and real delivery (HTTP, SMTP, log)."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import logging
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sklearn.linear_model import LogisticRegression

import loopml
from loopml.core.errors import InvalidInput
from loopml.core.settings import load_settings
from loopml.monitoring.alert_store import Alert, AlertStore
from loopml.monitoring.alerts import AlertRule, alert, evaluate, load_rules
from loopml.monitoring.channels import load_channels
from loopml.monitoring.metrics import window_metrics
from loopml.monitoring.runner import run
from loopml.monitoring.store import MonitorStore, WindowRecord
from loopml.predictions import PredictionBatch, PredictionLog
from loopml.tracking.tracker import Tracker

HOUR = 3_600_000
START = 1_800_000_000_000 - 1_800_000_000_000 % HOUR  # an hour boundary in 2027


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Tracker, Path]]:
    """A project with a registered model `fraud` (version 1) and an empty loopml.toml."""
    (tmp_path / "loopml.toml").write_text("")
    tracker = Tracker(load_settings(project_dir=tmp_path))
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"amount": rng.normal(100, 20, 400)})
    model = LogisticRegression().fit(train, (train["amount"] > 100).astype(int))
    loopml.models.register("fraud", model, sample=train, tracker=tracker, onnx=False)
    yield tracker, tmp_path
    tracker.close()


def configure(folder: Path, text: str) -> None:
    (folder / "loopml.toml").write_text(text)


def save(
    tracker: Tracker,
    hour: int,
    *,
    drift: float | None = None,
    accuracy: float | None = None,
    kpis: dict[str, Any] | None = None,
    version: int = 1,
) -> WindowRecord:
    """Store a window as the runner would, with the given drift score of `amount` and realized accuracy."""
    quality: dict[str, Any] = {"rows": 100, "columns": {}, "missing_columns": []}
    drift_json = None
    if drift is not None:
        drifted = drift >= 0.1
        drift_json = {
            "share": 1.0 if drifted else 0.0,
            "drifted_count": int(drifted),
            "columns": {"amount": {"drifted": drifted, "score": drift, "method": "wasserstein"}},
        }
    performance: dict[str, Any] | None = None
    if accuracy is not None:
        performance = {"realized": {"status": "ok", "metrics": {"accuracy": accuracy, "roc_auc": None}}}
    if kpis is not None:  # as the runner stores them: values, and the errors of the functions that failed
        performance = performance or {}
        performance["kpis"] = {k: v for k, v in kpis.items() if not isinstance(v, dict)}
        performance["kpi_errors"] = {k: v["error"] for k, v in kpis.items() if isinstance(v, dict)}
    return MonitorStore(tracker.stores.db).save(
        "fraud",
        version=version,
        granularity="hour",
        start_ms=START + hour * HOUR,
        end_ms=START + (hour + 1) * HOUR,
        rows=100,
        profile_digest=None,
        quality=quality,
        drift=drift_json,
        performance=performance,
    )


def hour_of(alert: Alert) -> int:
    """The hour (since START) of the window an alert was raised on."""
    assert alert.window_start_ms is not None
    return (alert.window_start_ms - START) // HOUR


RULE = """
[[models.fraud.monitoring.alerts]]
name = "amount-drift"
metric = "drift.amount"
threshold = 0.1
windows = {windows}
cooldown_s = {cooldown}
severity = "critical"
"""


# --- metrics -------------------------------------------------------------------------------------------


def test_window_metrics_of_real_windows(project: tuple[Tracker, Path]) -> None:
    tracker, _ = project
    rng = np.random.default_rng(1)
    log = PredictionLog(tracker)
    for hour, shift in ((0, 0.0), (1, 60.0)):
        inputs = pd.DataFrame({"amount": rng.normal(100 + shift, 20, 300)})
        outputs = {
            "prediction": np.ones(300, dtype=int),
            "proba_0": np.full(300, 0.2),
            "proba_1": np.full(300, 0.8),
        }
        ids = [f"h{hour}-{i}" for i in range(300)]
        log.append(
            PredictionBatch("fraud", 1, "champion", ids, inputs, outputs, START + hour * HOUR + 1000, 2.0)
        )
    assert log.flush()
    log.close()
    first, second = run(tracker, "fraud", now_ms=START + 3 * HOUR)

    metrics = window_metrics(second)
    assert metrics["rows"] == 300
    assert metrics["drift.share"] == 1.0
    assert metrics["drift.drifted_count"] == 1
    # 300 rows are a small sample: the column is decided by a test, whose p-value has its own name.
    assert "drift.amount" not in metrics
    assert metrics["drift.amount.p_value"] < 0.001
    assert metrics["drift.amount.drifted"] == 1.0
    assert metrics["quality.amount.null_share"] == 0.0
    assert metrics["quality.amount.out_of_range_share"] > 0
    assert metrics["quality.missing_columns"] == 0
    assert metrics["latency.p50"] == metrics["latency.p99"] == 2.0
    assert metrics["estimated.accuracy"] == pytest.approx(0.8)
    assert not any(name.startswith(("performance.", "kpi.")) for name in metrics)  # no labels, no KPIs
    assert window_metrics(first)["drift.amount.drifted"] == 0.0
    assert window_metrics(first)["drift.amount.p_value"] > 0.01


def test_missing_values_are_absent_not_zero(project: tuple[Tracker, Path]) -> None:
    tracker, _ = project
    kpis = {"money": 12.5, "broken": {"value": None, "error": "ZeroDivisionError"}, "nan": float("nan")}
    metrics = window_metrics(save(tracker, 0, kpis=kpis))
    assert metrics == {"rows": 100.0, "quality.missing_columns": 0.0, "kpi.money": 12.5}
    with_labels = window_metrics(save(tracker, 1, drift=0.05, accuracy=0.9))
    assert with_labels["performance.accuracy"] == 0.9
    assert "performance.roc_auc" not in with_labels  # undefined metric: None in the window, absent here


# --- configuration -------------------------------------------------------------------------------------


def test_rules_and_channels_come_from_loopml_toml(project: tuple[Tracker, Path]) -> None:
    _, folder = project
    configure(
        folder,
        """
[monitoring.channels.ops]
kind = "webhook"
url = "http://127.0.0.1:9/hook"
secret_env = "ALERT_SECRET"

[monitoring.channels.oncall]
kind = "email"
host = "127.0.0.1"
port = 2525
sender = "loopml@example.com"
to = "oncall@example.com"

[[models.fraud.monitoring.alerts]]
name = "low-accuracy"
metric = "performance.accuracy"
threshold = 0.8
op = "<="
windows = 3
cooldown_s = 600
severity = "warning"
channels = ["ops", "oncall", "log"]

[[models.fraud.monitoring.alerts]]
name = "slow"
metric = "latency.p99"
threshold = 250
""",
    )
    rules = load_rules(folder, "fraud")
    assert rules == [
        AlertRule("low-accuracy", "performance.accuracy", 0.8, op="<=", windows=3, cooldown_s=600,
                  severity="warning", channels=("ops", "oncall", "log")),
        AlertRule("slow", "latency.p99", 250),
    ]  # fmt: skip
    assert rules[1].to_dict() == {
        "name": "slow",
        "metric": "latency.p99",
        "threshold": 250,
        "op": ">=",
        "windows": 1,
        "cooldown_s": 3600,
        "severity": "warning",
        "channels": ["log"],
    }
    assert AlertRule.from_dict(json.loads(json.dumps(rules[0].to_dict()))) == rules[0]
    channels = load_channels(folder)
    assert sorted(channels) == ["log", "oncall", "ops"]
    assert load_rules(folder, "other") == []


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ('name = "r"\nmetric = "accuracy.f1"\nthreshold = 1', "unknown kind 'accuracy'"),
        ('name = "r"\nmetric = "quality.amount.nulls"\nthreshold = 1', "metric 'quality.amount.nulls'"),
        ('name = "r"\nmetric = "rows"\nthreshold = 1\nop = ">"', "op must be"),
        ('name = "r"\nmetric = "rows"\nthreshold = 1\nwindows = -1', "windows must be an integer >= 1"),
        ('name = "r"\nmetric = "rows"\nthreshold = 1\ncooldown_s = -5', "cooldown_s"),
        ('name = "r"\nmetric = "rows"\nthreshold = 1\nseverity = "urgent"', "severity"),
        (
            'name = "r"\nmetric = "rows"\nthreshold = 1\nchannels = ["pager"]',
            "channels: unknown channel(s) pager",
        ),
        ('name = "r"\nmetric = "rows"\nthreshold = 1\nwindow = 2', "unknown key(s) window"),
        ('name = "r"\nmetric = "rows"', "missing key(s) threshold"),
    ],
)
def test_bad_rules_name_the_key(project: tuple[Tracker, Path], entry: str, named: str) -> None:
    tracker, folder = project
    configure(folder, f"[[models.fraud.monitoring.alerts]]\n{entry}\n")
    with pytest.raises(InvalidInput) as raised:
        load_rules(folder, "fraud")
    assert "[[models.fraud.monitoring.alerts]] #1" in raised.value.message
    assert named in raised.value.message
    with pytest.raises(InvalidInput):  # the runner's hook refuses the same way
        alert(tracker, "fraud", [save(tracker, 0, drift=0.5)])


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('kind = "pager"', "kind must be one of webhook, email, log"),
        ('kind = "webhook"\nurl = "ftp://x"', "url must be http:// or https://"),
        ('kind = "webhook"\nurl = "http://x"\nsecret = "hunter2"', "do not write secrets"),
        ('kind = "webhook"\nurl = "http://x"\nattempts = 0', "attempts must be an integer in [1, 10]"),
        ('kind = "email"\nhost = "h"\nsender = "a@b"\nto = ["c@d"]\nport = 0', "port"),
        (
            'kind = "email"\nhost = "h"\nsender = "a@b"\nto = ["c@d"]\nusername = "u"',
            "username needs password_env",
        ),
        ('kind = "email"\nhost = "h"\nsender = "a@b"', "missing 1 required"),
    ],
)
def test_bad_channels_name_the_key(project: tuple[Tracker, Path], table: str, named: str) -> None:
    _, folder = project
    configure(folder, f"[monitoring.channels.ops]\n{table}\n")
    with pytest.raises(InvalidInput) as raised:
        load_channels(folder)
    assert "[monitoring.channels.ops]" in raised.value.message
    assert named in raised.value.message
    assert "hunter2" not in raised.value.message


# --- semantics -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("backlog", [False, True], ids=["window-by-window", "backlog-at-once"])
def test_streak_needs_consecutive_breaches_and_absence_breaks_it(
    project: tuple[Tracker, Path], backlog: bool
) -> None:
    tracker, folder = project
    configure(folder, RULE.format(windows=2, cooldown=3600))
    scores = [0.05, 0.3, 0.3, None, 0.3, 0.3, 0.3]  # hour 3 has no drift (no reference): the streak breaks
    fired: list[int] = []
    records = []
    for hour, score in enumerate(scores):
        records.append(save(tracker, hour, drift=score))
        if not backlog:
            fired += [hour_of(a) for a in alert(tracker, "fraud", [records[-1]])]
    if backlog:
        fired = [hour_of(a) for a in alert(tracker, "fraud", records)]
    # Hour 1 alone is one window; hour 2 completes the streak; hours 4-5 form a new one after the gap,
    # hour 5 ending three hours after the alert's window; hour 6 is within the cooldown of hour 5.
    assert fired == [2, 5]
    stored = AlertStore(tracker.stores.db).alerts("fraud")
    assert [(a.rule, a.severity, hour_of(a)) for a in stored] == [
        ("amount-drift", "critical", 2),
        ("amount-drift", "critical", 5),
    ]
    assert stored[0].value == 0.3
    assert stored[0].threshold == 0.1
    assert "drift.amount = 0.3 >= 0.1 in 2 consecutive windows" in stored[0].message
    assert alert(tracker, "fraud", records) == []  # evaluating again never fires twice on a window


def test_cooldown_is_counted_in_window_time(project: tuple[Tracker, Path]) -> None:
    tracker, folder = project
    configure(folder, RULE.format(windows=1, cooldown=2 * 3600))
    records = [save(tracker, hour, drift=0.5) for hour in range(5)]
    fired = alert(tracker, "fraud", records)
    assert [hour_of(a) for a in fired] == [0, 3]  # hours 1 and 2 end within two hours of hour 0's end


def test_missing_window_breaks_the_streak(project: tuple[Tracker, Path]) -> None:
    tracker, folder = project
    configure(folder, RULE.format(windows=2, cooldown=0))
    records = [save(tracker, 0, drift=0.5), save(tracker, 2, drift=0.5)]  # no predictions in hour 1
    assert alert(tracker, "fraud", records) == []
    assert [hour_of(a) for a in alert(tracker, "fraud", [save(tracker, 3, drift=0.5)])] == [3]


def test_absence_never_fires(project: tuple[Tracker, Path]) -> None:
    tracker, folder = project
    configure(
        folder,
        """
[[models.fraud.monitoring.alerts]]
name = "accuracy"
metric = "performance.accuracy"
threshold = 0.9
op = "<="

[[models.fraud.monitoring.alerts]]
name = "money"
metric = "kpi.money"
threshold = 0
op = "<="

[[models.fraud.monitoring.alerts]]
name = "drift"
metric = "drift.share"
threshold = 0
""",
    )
    # No labels, no KPI (its function raised), no reference: every metric is absent, nothing may fire,
    # even with thresholds that a 0 standing in for "missing" would breach.
    records = [save(tracker, hour, kpis={"money": {"value": None, "error": "boom"}}) for hour in range(3)]
    assert alert(tracker, "fraud", records) == []
    assert alert(tracker, "fraud") == []  # the newest stored window of each version
    assert AlertStore(tracker.stores.db).alerts("fraud") == []
    late = save(tracker, 3, accuracy=0.7)  # labels came for hour 3: now the rule has something to judge
    assert [a.rule for a in alert(tracker, "fraud", [late])] == ["accuracy"]


def test_evaluate_alone_per_version(project: tuple[Tracker, Path]) -> None:
    tracker, _ = project
    rule = AlertRule("acc", "performance.accuracy", 0.8, op="<=", windows=2, cooldown_s=0)
    v1 = [save(tracker, h, accuracy=0.7) for h in range(2)]
    v2 = [save(tracker, h, accuracy=a, version=2) for h, a in ((0, 0.7), (1, 0.95))]
    raised = evaluate([rule], [*v2, *v1], time_ms=START)
    assert [(a.version, a.value, a.op, a.time) for a in raised] == [(1, 0.7, "<=", START)]
    assert raised[0].alert_id is None  # evaluate stores nothing


# --- delivery ------------------------------------------------------------------------------------------


class _Receiver(http.server.ThreadingHTTPServer):
    received: list[tuple[Message, bytes]]
    statuses: list[int]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.headers, body))  # case-insensitive, as HTTP headers are
        self.send_response(self.server.statuses.pop(0) if self.server.statuses else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # the base class's argument name
        pass


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver(("127.0.0.1", 0), _Handler)
    server.received, server.statuses = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_webhook_receives_a_signed_slack_compatible_alert(
    project: tuple[Tracker, Path], receiver: _Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker, folder = project
    monkeypatch.setenv("ALERT_SECRET", "s3cret-value")
    receiver.statuses = [503]  # the first attempt fails: delivered on the retry
    port = receiver.server_address[1]
    configure(
        folder,
        f"""
[monitoring.channels.ops]
kind = "webhook"
url = "http://127.0.0.1:{port}/hooks/loopml"
secret_env = "ALERT_SECRET"
backoff_s = 0
"""
        + RULE.format(windows=1, cooldown=3600).replace(
            'severity = "critical"', 'severity = "critical"\nchannels = ["ops"]'
        ),
    )
    window = save(tracker, 0, drift=0.42)
    (fired,) = alert(tracker, "fraud", [window])
    assert fired.delivered["ops"]["status"] == "delivered"
    assert fired.delivered["ops"]["attempts"] == 2

    headers, body = receiver.received[-1]
    assert len(receiver.received) == 2
    expected = hmac.new(b"s3cret-value", body, hashlib.sha256).hexdigest()
    assert headers["X-LoopML-Signature"] == f"sha256={expected}"
    assert headers["X-LoopML-Event"] == "monitor_alert"
    payload = json.loads(body)
    assert payload["text"].startswith("[CRITICAL] fraud v1: amount-drift")
    assert payload["blocks"][0]["type"] == "section"
    assert {
        k: payload[k] for k in ("model", "version", "rule", "metric", "value", "threshold", "severity")
    } == {
        "model": "fraud",
        "version": 1,
        "rule": "amount-drift",
        "metric": "drift.amount",
        "value": 0.42,
        "threshold": 0.1,
        "severity": "critical",
    }
    assert payload["window_start_ms"] == START
    assert payload["window_end_ms"] == START + HOUR
    assert payload["window_start"].startswith("2027-")
    assert payload["alert_id"] == fired.alert_id
    assert "http" not in json.dumps(payload)  # link-free
    assert "s3cret-value" not in body.decode()
    (stored,) = AlertStore(tracker.stores.db).alerts("fraud")
    assert stored.delivered == fired.delivered
    assert "s3cret-value" not in json.dumps(stored.delivered)


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def test_email_goes_through_a_real_smtp_server_with_login(
    project: tuple[Tracker, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tracker, folder = project
    logins: list[tuple[bytes, bytes]] = []

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"mail-pass")

    mailbox = _Mailbox()
    port = free_port()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=port, authenticator=authenticate, auth_require_tls=False
    )
    controller.start()
    monkeypatch.setenv("SMTP_PASSWORD", "mail-pass")
    configure(
        folder,
        f"""
[monitoring.channels.oncall]
kind = "email"
host = "127.0.0.1"
port = {port}
sender = "loopml@example.com"
to = ["oncall@example.com", "ml@example.com"]
username = "loopml"
password_env = "SMTP_PASSWORD"

[[models.fraud.monitoring.alerts]]
name = "accuracy-drop"
metric = "performance.accuracy"
threshold = 0.8
op = "<="
channels = ["oncall", "log"]
""",
    )
    try:
        with caplog.at_level(logging.DEBUG):
            (fired,) = alert(tracker, "fraud", [save(tracker, 0, accuracy=0.61)])
    finally:
        controller.stop()
    assert fired.delivered["oncall"]["status"] == "delivered"
    assert fired.delivered["log"]["status"] == "delivered"
    assert logins == [(b"loopml", b"mail-pass")]
    ((sender, recipients, content),) = mailbox.messages
    assert sender == "loopml@example.com"
    assert recipients == ["oncall@example.com", "ml@example.com"]
    message = message_from_bytes(content, _class=EmailMessage, policy=policy.default)
    assert message["Subject"] == "[LoopML warning] fraud: accuracy-drop"
    text = message.get_content()
    assert "performance.accuracy = 0.61 (<= 0.8)" in text
    assert "2027-" in text
    assert message.get_content_type() == "text/plain"
    assert any("performance.accuracy = 0.61" in r.getMessage() for r in caplog.records)  # the log channel
    assert "mail-pass" not in caplog.text
    assert "mail-pass" not in json.dumps(fired.delivered)


def test_a_failing_channel_is_recorded_not_raised(
    project: tuple[Tracker, Path], caplog: pytest.LogCaptureFixture
) -> None:
    tracker, folder = project
    closed = free_port()  # nothing listens there
    configure(
        folder,
        f"""
[monitoring.channels.ops]
kind = "webhook"
url = "http://127.0.0.1:{closed}/hook"
attempts = 2
backoff_s = 0

[monitoring.channels.mail]
kind = "email"
host = "127.0.0.1"
port = {closed}
sender = "loopml@example.com"
to = "oncall@example.com"

[monitoring.channels.nopass]
kind = "webhook"
url = "http://127.0.0.1:{closed}/hook"
secret_env = "LOOPML_TEST_UNSET_SECRET"

[[models.fraud.monitoring.alerts]]
name = "volume"
metric = "rows"
threshold = 50
severity = "info"
channels = ["ops", "mail", "nopass", "log"]
""",
    )
    with caplog.at_level(logging.WARNING):
        (fired,) = alert(tracker, "fraud", [save(tracker, 0)])
    outcome = fired.delivered
    assert outcome["ops"]["status"] == "failed"
    assert outcome["ops"]["attempts"] == 2
    assert "Connection refused" in outcome["ops"]["error"]
    assert outcome["mail"]["status"] == "failed"
    assert outcome["nopass"] == {
        "status": "failed",
        "attempts": 0,
        "error": "environment variable LOOPML_TEST_UNSET_SECRET (the webhook secret) is not set",
        "time": outcome["nopass"]["time"],
    }
    assert outcome["log"]["status"] == "delivered"  # one broken channel does not stop the others
    (stored,) = AlertStore(tracker.stores.db).alerts("fraud")
    assert stored.delivered == outcome
    assert stored.channels == ("log", "mail", "nopass", "ops")
    assert "alert channel ops failed" in caplog.text


def test_store_lists_by_since_and_severity(project: tuple[Tracker, Path]) -> None:
    tracker, folder = project
    configure(
        folder,
        RULE.format(windows=1, cooldown=0)
        + '\n[[models.fraud.monitoring.alerts]]\nname = "volume"\nmetric = "rows"\nthreshold = 1\nseverity = "info"\n',
    )
    fired = alert(tracker, "fraud", [save(tracker, 0, drift=0.5)])
    assert sorted(a.rule for a in fired) == ["amount-drift", "volume"]
    store = AlertStore(tracker.stores.db)
    assert [a.rule for a in store.alerts("fraud", severity="critical")] == ["amount-drift"]
    assert store.alerts("fraud", since_ms=fired[0].time + 1) == []
    assert len(store.alerts("fraud", since_ms=fired[0].time)) == 2
    assert len(store.alerts("fraud", limit=1)) == 1
    with pytest.raises(InvalidInput, match="severity must be one of"):
        store.alerts("fraud", severity="urgent")
