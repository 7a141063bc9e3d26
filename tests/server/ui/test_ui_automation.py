"""The automation timeline: decisions newest first with their reasons and links to the runs, model versions,
dataset versions and monitoring behind them; filtered by model and kind, paged; a decision's page with its
full evidence and its loop; in a real browser and through plain HTTP.

The decisions are written through the controller's own store, in the shapes the controller records them
(`loopml.automation.controller` and `.rollout`), so no pipeline has to train.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import loopml
from loopml.automation.store import AutomationStore, Event
from loopml.core.clock import now_ms
from loopml.tracking.tracker import Tracker

if TYPE_CHECKING:
    from conftest import Watched

HOLDER = "loopml-agent (test)"


def _register(tracker: Tracker, name: str, run_id: str | None = None) -> None:
    frame = pd.DataFrame({"amount": np.linspace(0, 200, 40), "age": np.arange(40) % 60 + 18.0})
    label = (frame["amount"] > 100).astype(int)
    for c in (1.0, 0.1):
        model = LogisticRegression(C=c, max_iter=500).fit(frame, label)
        loopml.models.register(name, model, sample=frame, onnx=False, run=run_id, tracker=tracker)


def _write(store: AutomationStore, model: str, events: list[Event], at: int) -> None:
    """Events of `model`'s loop as the controller writes them: under its lease, one transaction."""
    lease = store.acquire(model, HOLDER, now_ms=at, ttl_ms=60_000)
    assert lease is not None
    store.write(lease, None, events, now_ms=at)
    store.release(lease)


@pytest.fixture
def decisions(tracker: Tracker) -> dict[str, Any]:
    """fraud: a manual request, then a loop (trigger on new data, drift and the request; a training; v2
    trained by a run; a canary after the gates passed; a rollback on the canary's error rate). churn: a
    refusal by the gates."""
    with loopml.start_run("fraud-training", "retrain", tracker=tracker) as run:
        loopml.log_metric("accuracy", 0.91)
    _register(tracker, "fraud")
    _register(tracker, "churn")
    store = AutomationStore(tracker.stores.db)
    start = now_ms() - 3_600_000
    request = store.add_event(
        "fraud", Event("manual_request", "manual retrain requested: new labels", actor="ann"), now_ms=start
    )
    loop = "loop0001"
    triggers = [
        {
            "kind": "new_data",
            "reason": "new data: fraud_data@v2",
            "evidence": {"dataset": "fraud_data@v2", "rows": 1200},
        },
        {
            "kind": "drift",
            "reason": "drift alert: amount drifted (psi 0.31 > 0.2)",
            "evidence": {"alert_id": 7, "rule": "drift", "metric": "drift.amount", "value": 0.31},
        },
        {
            "kind": "manual",
            "reason": "manual retrain requested: new labels",
            "evidence": {"request_id": request.event_id, "actor": "ann"},
        },
    ]
    gates = [
        {"gate": "beats champion v1 on accuracy", "passed": True, "detail": "0.9100 vs 0.8800 (min_delta 0)"},
        {"gate": "accuracy >= 0.85", "passed": True, "detail": "0.9100"},
        {"policy": {"metric": "accuracy", "min_delta": 0.0}, "evaluation": "dataset fraud_holdout@v3"},
    ]
    canary = {
        "since_ms": start + 60_000,
        "until_ms": start + 1_800_000,
        "champion": {"version": 1, "requests": 900, "failed": 9, "error_rate": 0.01},
        "challenger": {"version": 2, "requests": 100, "failed": 12, "error_rate": 0.12, "p99_ms": 41.5},
    }
    reason = "challenger error rate 12.0% over 5.0%"
    _write(
        store,
        "fraud",
        [
            Event(
                "triggered",
                "new data: fraud_data@v2; also drift alert: amount drifted",
                {"triggers": triggers, "data": {"ref": "fraud_data@v2", "version": 2, "rows": 1200}},
                loop_id=loop,
                actor=HOLDER,
            ),
            Event(
                "training_started",
                "training train.py:train (attempt 1) on fraud_data@v2",
                {"params": {"data": "fraud_data@v2"}},
                loop_id=loop,
                actor=HOLDER,
            ),
            Event("trained", "retrained: fraud@v2", loop_id=loop, run_id=run.run_id, version=2, actor=HOLDER),
            Event(
                "rollout_started",
                "gates passed: beats champion v1 on accuracy (0.9100 vs 0.8800); canary of v2 at 10% beside champion v1",
                {"gates": gates, "deployment": {"mode": "canary", "share": 0.1}},
                loop_id=loop,
                run_id=run.run_id,
                version=2,
                actor=HOLDER,
            ),
        ],
        start + 60_000,
    )
    _write(
        store,
        "fraud",
        [
            Event(
                "rolled_back",
                f"v2 rolled back: {reason}; the champion stays",
                {"evidence": canary},
                loop_id=loop,
                run_id=run.run_id,
                version=2,
                actor=HOLDER,
            )
        ],
        start + 1_800_000,
    )
    refused_gates = [
        {"gate": "beats champion v1 on auc", "passed": False, "detail": "0.7000 vs 0.7500"},
        {"policy": {"metric": "auc"}, "evaluation": "dataset churn_holdout@v1"},
    ]
    _write(
        store,
        "churn",
        [
            Event(
                "refused",
                "churn@v2 refused for champion: beats champion v1 on auc (0.7000 vs 0.7500)",
                {"gates": refused_gates},
                loop_id="loop0002",
                version=2,
                actor=HOLDER,
            )
        ],
        start + 2_000_000,
    )
    events = {e.kind: e for e in store.timeline(limit=100)}
    return {"run": run.run_id, "reason": reason, "events": events, "request": request.event_id}


def _rows(html: str) -> list[tuple[str, str]]:
    """(event id, kind) of the timeline's rows, top to bottom."""
    return re.findall(r'<tr data-event="(\d+)" data-kind="(\w+)">', html)


def _row(html: str, event_id: int | None) -> str:
    found = re.search(rf'<tr data-event="{event_id}" data-kind="\w+">(.*?)</tr>', html, re.S)
    assert found is not None, event_id
    return found.group(1)


def test_the_timeline_is_newest_first_with_reasons_and_links(
    http: httpx.Client, decisions: dict[str, Any]
) -> None:
    page = http.get("/ui/automation")
    assert page.status_code == 200
    kinds = [kind for _, kind in _rows(page.text)]
    assert kinds == [
        "refused",
        "rolled_back",
        "rollout_started",
        "trained",
        "training_started",
        "triggered",
        "manual_request",
    ]
    events = decisions["events"]
    rolled = _row(page.text, events["rolled_back"].event_id)
    assert decisions["reason"] in rolled
    assert f'href="/ui/runs/{decisions["run"]}"' in rolled
    assert 'href="/ui/models/fraud/2"' in rolled
    assert 'href="/ui/deployments/fraud"' in rolled
    assert f'href="/ui/automation/{events["rolled_back"].event_id}"' in rolled

    triggered = _row(page.text, events["triggered"].event_id)
    assert 'href="/ui/datasets/fraud_data/v2"' in triggered  # the new data that fired
    assert 'href="/ui/monitoring/fraud"' in triggered  # the drift alert
    assert f'href="/ui/automation/{decisions["request"]}"' in triggered  # the manual request
    assert "drift: drift alert: amount drifted (psi 0.31 &gt; 0.2)" in triggered

    started = _row(page.text, events["rollout_started"].event_id)
    assert 'href="/ui/datasets/fraud_holdout/v3"' in started  # the gates' held-out rows
    assert "passed beats champion v1 on accuracy" in started
    refused = _row(page.text, events["refused"].event_id)
    assert "FAILED beats champion v1 on auc" in refused
    assert 'href="/ui/datasets/churn_holdout/v1"' in refused


def test_the_timeline_filters_by_model_and_kind_and_pages(
    http: httpx.Client, decisions: dict[str, Any]
) -> None:
    fraud = http.get("/ui/automation", params={"model": "fraud"})
    assert fraud.status_code == 200
    assert len(_rows(fraud.text)) == 6
    assert "refused" not in [kind for _, kind in _rows(fraud.text)]
    churn = http.get("/ui/automation", params={"model": "churn"})
    assert [kind for _, kind in _rows(churn.text)] == ["refused"]
    rollbacks = http.get("/ui/automation", params={"kind": "rolled_back"})
    assert [kind for _, kind in _rows(rollbacks.text)] == ["rolled_back"]

    first = http.get("/ui/automation", params={"model": "fraud", "size": "4"})
    ids = [int(i) for i, _ in _rows(first.text)]
    assert len(ids) == 4
    assert 'rel="prev"' not in first.text
    older = re.search(r'<a rel="next" href="([^"]+)"', first.text)
    assert older is not None
    second = http.get(older.group(1).replace("&amp;", "&"))
    rest = [int(i) for i, _ in _rows(second.text)]
    assert len(rest) == 2
    assert max(rest) < min(ids)
    assert 'rel="next"' not in second.text
    newer = re.search(r'<a rel="prev" href="([^"]+)"', second.text)
    assert newer is not None
    back = http.get(newer.group(1).replace("&amp;", "&"))
    assert [int(i) for i, _ in _rows(back.text)] == ids


def test_a_decisions_page_shows_all_its_evidence_and_its_loop(
    http: httpx.Client, decisions: dict[str, Any]
) -> None:
    events = decisions["events"]
    page = http.get(f"/ui/automation/{events['rolled_back'].event_id}")
    assert page.status_code == 200
    canary = re.search(r'<table class="grid canary">(.*?)</table>', page.text, re.S)
    assert canary is not None
    assert "12.00%" in canary.group(1)
    assert "41.5" in canary.group(1)
    loop = re.findall(r'<tr data-event="(\d+)"', page.text)
    assert len(loop) == 5  # triggered .. rolled_back of loop0001, not the manual request
    assert "&#34;p99_ms&#34;: 41.5" in page.text  # the evidence as recorded (escaped)

    started = http.get(f"/ui/automation/{events['rollout_started'].event_id}")
    verdicts = re.findall(r'<tr data-passed="(\w+)"><td>(.*?)</td>', started.text)
    assert verdicts == [("true", "beats champion v1 on accuracy"), ("true", "accuracy &gt;= 0.85")]
    assert "Judged on dataset fraud_holdout@v3." in started.text
    triggered = http.get(f"/ui/automation/{events['triggered'].event_id}")
    assert "<code>alert_id</code> 7" in triggered.text


def test_unknown_models_and_decisions_are_404_bad_parameters_400(
    http: httpx.Client, decisions: dict[str, Any]
) -> None:
    assert http.get("/ui/automation", params={"model": "nope"}).status_code == 404
    assert http.get("/ui/automation/999999").status_code == 404
    for params in (
        {"size": "0"},
        {"size": "x"},
        {"before": "-1"},
        {"before": "1", "after": "1"},
        {"after": "99999999999"},
        {"kind": "Robert'); DROP"},
    ):
        page = http.get("/ui/automation", params=params)
        assert page.status_code == 400, params
        assert "Traceback" not in page.text
    assert http.get("/ui/automation/abc").status_code == 400
    assert http.get("/ui/automation/0").status_code == 400
    empty = http.get("/ui/automation", params={"kind": "promoted"})
    assert empty.status_code == 200
    assert "No decisions match." in empty.text


def test_an_empty_timeline(http: httpx.Client, tracker: Tracker) -> None:
    page = http.get("/ui/automation")
    assert page.status_code == 200
    assert "Nothing decided yet" in page.text


def test_the_timeline_in_a_browser(page: Watched, ui: str, decisions: dict[str, Any]) -> None:
    page.open(f"{ui}/ui/automation")
    assert page.page.locator("tr[data-event]").count() == 7
    page.page.fill("input[name=model]", "churn")
    page.page.click("button:has-text('Show')")
    page.page.wait_for_load_state("load")
    assert page.page.locator("tr[data-event]").count() == 1
    page.open(f"{ui}/ui/automation?model=fraud")
    page.page.click(f"tr[data-event='{decisions['events']['rolled_back'].event_id}'] a.evidence-link")
    page.page.wait_for_load_state("load")
    assert page.page.locator("table.canary").count() == 1
    assert page.page.locator("table.loop tr.current").count() == 1
