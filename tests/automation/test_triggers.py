"""Monitoring signals start retrains: drift alerts, named alerts, realized and estimated performance below a
floor; guards hold automatic ones back; every decision reaches the policy's channels (a real webhook)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import Project, toy_rows
from loopml.automation.store import AutomationStore
from loopml.automation.triggers import request_manual
from loopml.core.clock import now_ms
from loopml.monitoring.alert_store import Alert, AlertStore
from loopml.monitoring.store import MonitorStore


def _alert(project: Project, *, rule: str, metric: str, value: float, version: int = 1) -> None:
    AlertStore(project.tracker.stores.db).add(
        [
            Alert(
                model="toy",
                version=version,
                rule=rule,
                metric=metric,
                severity="warning",
                value=value,
                threshold=0.1,
                message=f"{metric} = {value}",
                time=now_ms(),
            )
        ]
    )


def _window(project: Project, start_ms: int, *, realized: float | None, estimated: float | None) -> None:
    performance: dict[str, Any] = {}
    if realized is not None:
        performance["realized"] = {"metrics": {"roc_auc": realized}}
    if estimated is not None:
        performance["estimated"] = {"metrics": {"roc_auc": estimated}}
    MonitorStore(project.tracker.stores.db).save(
        "toy",
        version=1,
        granularity="hour",
        start_ms=start_ms,
        end_ms=start_ms + 3_600_000,
        rows=100,
        profile_digest=None,
        quality={"rows": 100},
        drift=None,
        performance=performance,
        labelled_rows=100 if realized is not None else 0,
    )


def test_a_drift_alert_starts_a_retrain_and_other_alerts_do_not(project: Project) -> None:
    project.policy('[models.toy.automation.triggers]\ndrift = true\nalerts = ["auc-floor"]')
    controller = project.controller()
    _alert(project, rule="old", metric="drift.x0", value=0.5)
    assert controller.tick()[0].action == "nothing"  # alerts before the first look are history
    _alert(project, rule="latency", metric="latency.p99", value=900)
    assert controller.tick()[0].action == "nothing"  # neither a drift metric nor a named rule
    _alert(project, rule="x0-drift", metric="drift.x0", value=0.4)
    _alert(project, rule="auc-floor", metric="performance.roc_auc", value=0.6)
    outcome = controller.tick()[0]
    assert outcome.action == "promoted"
    triggered = AutomationStore(project.tracker.stores.db).events("toy", kinds=["triggered"])[0]
    assert [t["kind"] for t in triggered.detail["triggers"]] == ["drift", "alert"]
    assert "drift alert" in triggered.message
    assert "also alert auc-floor" in triggered.message


def test_realized_and_estimated_performance_below_their_floors_start_a_retrain(project: Project) -> None:
    project.policy(
        "[models.toy.automation.triggers]\n"
        "performance_below = { roc_auc = 0.8 }\nestimated_below = { roc_auc = 0.7 }"
    )
    controller = project.controller()
    _window(project, 0, realized=0.6, estimated=None)
    assert controller.tick()[0].action == "nothing"  # judged at the first look: history
    _window(project, 3_600_000, realized=0.85, estimated=0.75)
    assert controller.tick()[0].action == "nothing"  # above both floors
    _window(project, 7_200_000, realized=None, estimated=0.65)
    assert controller.tick()[0].action == "promoted"
    triggered = AutomationStore(project.tracker.stores.db).events("toy", kinds=["triggered"])[0]
    assert triggered.detail["triggers"][0]["kind"] == "estimated"
    assert "estimated roc_auc 0.6500 below 0.7" in triggered.message


def test_max_retrains_per_day_and_the_quiet_period_hold_automatic_triggers(project: Project) -> None:
    project.policy(
        "[models.toy.automation.triggers]\ndrift = true\n"
        "[models.toy.automation.guards]\nmax_retrains_per_day = 1\nquiet_hours = 2"
    )
    controller = project.controller()
    controller.tick()
    _alert(project, rule="d", metric="drift.x0", value=0.4)
    assert controller.tick()[0].action == "promoted"
    project.clock.advance(hours=1)
    _alert(project, rule="d", metric="drift.x1", value=0.4)  # about v1, no longer the champion
    assert controller.tick()[0].action == "nothing"
    _alert(project, rule="d", metric="drift.x1", value=0.4, version=2)
    held = controller.tick()[0]
    assert held.action == "held"
    assert "max_retrains_per_day" in held.message
    project.clock.advance(hours=24)
    project.policy(
        "[models.toy.automation.triggers]\ndrift = true\n"
        "[models.toy.automation.guards]\nmax_retrains_per_day = 5\nquiet_hours = 30"
    )
    _alert(project, rule="d", metric="drift.x2", value=0.4, version=2)
    quiet = project.controller().tick()[0]
    assert quiet.action == "held"
    assert "quiet_hours" in quiet.message
    kinds = project.kinds()
    assert kinds.count("held") == 2
    assert kinds.count("training_started") == 1


class _Receiver(http.server.ThreadingHTTPServer):
    received: list[dict[str, Any]]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver(("127.0.0.1", 0), _Handler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_failed_training_and_a_promotion_are_sent_to_the_policys_channels(
    project: Project, receiver: _Receiver
) -> None:
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    channels = f'[monitoring.channels.team]\nkind = "webhook"\nurl = "{url}"\n'
    project.policy(
        'params = { fail = true }\n[models.toy.automation.notify]\nchannels = ["team"]', extra=channels
    )
    request_manual(project.tracker, "toy", reason="test", actor="me", now_ms=project.clock())
    assert project.controller().tick()[0].action == "failed"
    project.policy('[models.toy.automation.notify]\nchannels = ["team"]', extra=channels)
    request_manual(project.tracker, "toy", reason="again", actor="me", now_ms=project.clock())
    assert project.controller().tick()[0].action == "promoted"
    texts = [body["text"] for body in receiver.received]
    assert any("training failed" in t and "the training data is broken" in t for t in texts), texts
    assert any("promoted to champion" in t for t in texts), texts


def test_late_labels_that_sink_a_windows_performance_start_a_retrain(project: Project) -> None:
    project.policy("[models.toy.automation.triggers]\nperformance_below = { roc_auc = 0.8 }")
    controller = project.controller()
    _window(project, 0, realized=None, estimated=None)
    assert controller.tick()[0].action == "nothing"
    store = MonitorStore(project.tracker.stores.db)
    window = store.windows("toy")[0]
    import time

    time.sleep(0.01)  # the refresh is written later than the window was computed
    store.set_performance(window.window_id, {"realized": {"metrics": {"roc_auc": 0.55}}}, 100)
    outcome = controller.tick()[0]
    assert outcome.action == "promoted"


def test_a_held_cause_is_told_once_and_the_first_dataset_version_counts_as_new_data(project: Project) -> None:
    import pandas as pd

    import loopml

    (project.folder / "loopml.toml").write_text(
        '[models.toy.automation]\npipeline = "toy_pipeline.py:train_toy"\ndata = "fresh"\n'
        "[models.toy.automation.triggers]\nnew_data = true\n"
        "[models.toy.automation.guards]\nmin_new_rows = 1000\n"
    )
    controller = project.controller()
    assert controller.tick()[0].action == "nothing"  # first look: no dataset "fresh" yet
    first = toy_rows(600, seed=11)
    loopml.datasets.add("fresh", first, tracker=project.tracker)
    assert controller.tick()[0].action == "promoted"  # its first version is new data
    more = pd.concat([first, toy_rows(100, seed=12)], ignore_index=True)
    loopml.datasets.add("fresh", more, tracker=project.tracker)
    held = controller.tick()[0]
    assert held.action == "held"
    assert "only 100 new rows" in held.message
    assert controller.tick()[0].action == "nothing"  # told once, not at every tick
    assert project.kinds().count("held") == 1
