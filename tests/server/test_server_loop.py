"""Monitoring results and the automation timeline over HTTP: what the monitor and the agent wrote on the server's
stores, read by role; a bad query parameter is a 400 in the server's error shape."""

from __future__ import annotations

from server_helpers import client as _client

from loopml.automation.store import AutomationStore, Event
from loopml.automation.triggers import request_manual
from loopml.core.clock import now_ms
from loopml.monitoring.alert_store import Alert, AlertStore
from loopml.server.accounts import AccountStore
from loopml.tracking.tracker import Tracker


def test_alerts_and_the_timeline_are_read_by_role(server: str, tracker: Tracker) -> None:
    accounts = AccountStore(tracker.stores.db)
    admin = accounts.create_admin("ana")
    accounts.create_user("rui")
    accounts.grant("rui", "reader", model="churn")
    rui_token = accounts.token_for("rui", "t")
    now = now_ms()
    alert = Alert("fraud", 1, "auc-floor", "performance.roc_auc", "critical", 0.61, 0.7, "AUC fell", now)
    AlertStore(tracker.stores.db).add([alert])
    AutomationStore(tracker.stores.db).add_event(
        "fraud", Event("retrain_started", "drift on amount", {"drift_share": 0.4}, actor="agent"), now_ms=now
    )
    request_manual(tracker, "fraud", reason="new labels", actor="ana", now_ms=now)
    with _client(server, admin) as ana, _client(server, rui_token) as rui:
        found = ana.get("/api/v1/models/fraud/monitoring/alerts").json()["alerts"]
        assert [(a["rule"], a["value"], a["severity"]) for a in found] == [("auc-floor", 0.61, "critical")]
        assert ana.get("/api/v1/models/fraud/monitoring/alerts?severity=critical&limit=1").status_code == 200
        timeline = ana.get("/api/v1/models/fraud/timeline").json()
        assert timeline["events"][0]["kind"] == "retrain_started"
        assert timeline["events"][0]["detail"] == {"drift_share": 0.4}
        assert timeline["state"]["phase"] == "idle"
        later = ana.get(f"/api/v1/models/fraud/timeline?after_id={timeline['events'][0]['event_id']}").json()
        assert len(later["events"]) == len(timeline["events"]) - 1
        assert ana.get("/api/v1/models/fraud/monitoring/windows").json() == {"windows": []}
        assert rui.get("/api/v1/models/churn/timeline").status_code == 200
        assert rui.get("/api/v1/models/fraud/timeline").status_code == 403
        assert rui.post("/api/v1/models/churn/retrain", json={}).status_code == 403
        for bad in (
            "/api/v1/models/fraud/monitoring/windows?granularity=week",
            "/api/v1/models/fraud/monitoring/windows?limit=0",
            "/api/v1/models/fraud/monitoring/alerts?severity=loud",
            "/api/v1/models/fraud/timeline?after_id=-1",
        ):
            answer = ana.get(bad)
            assert answer.status_code == 400, (bad, answer.text)
            assert answer.json()["code"] == "invalid_input"
        assert ana.get("/api/v1/models/nope/timeline").status_code == 404
        no_policy = ana.post("/api/v1/models/fraud/retrain", json={"reason": "try"})
        assert no_policy.status_code in (400, 404)
        assert "automation" in no_policy.json()["error"]
