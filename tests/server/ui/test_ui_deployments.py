"""Deployments pages: every deployed model's versions with live request rates, error rates and latency
percentiles computed from the logged predictions and request counts; one model's page with its canary,
charts and history; fast enough with 100k logged predictions; in a real browser and through plain HTTP."""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression

import loopml
from loopml.core.clock import now_ms
from loopml.predictions import PredictionBatch, PredictionLog
from loopml.predictions.requests import write_request_counts
from loopml.predictions.segments import write_segment
from loopml.registry.deployments import DeploymentStore
from loopml.registry.store import RegistryStore
from loopml.tracking.tracker import Tracker

if TYPE_CHECKING:
    from conftest import Watched

MINUTE = 60_000


def _register(tracker: Tracker, name: str, versions: int) -> None:
    frame = pd.DataFrame({"amount": np.linspace(0, 200, 40), "age": np.arange(40) % 60 + 18.0})
    label = (frame["amount"] > 100).astype(int)
    for c in (1.0, 0.1, 0.01)[:versions]:  # a different C: a different model, so a new version
        model = LogisticRegression(C=c, max_iter=500).fit(frame, label)
        loopml.models.register(name, model, sample=frame, onnx=False, tracker=tracker)


def _serve(
    log: PredictionLog,
    *,
    version: int,
    route: str,
    requests: int,
    at: int,
    latency_ms: float,
    failed: int = 0,
    over_ms: int = 3 * MINUTE,
) -> None:
    """`requests` answered one-row requests of fraud `version` spread over `over_ms` from `at` on, and
    `failed` failed ones, logged and counted as a server does."""
    for i in range(requests):
        moment = at + i * over_ms // requests
        log.append(
            PredictionBatch(
                model="fraud",
                version=version,
                route=route,
                prediction_ids=[f"{route}-{version}-{at}-{i}"],
                inputs=pd.DataFrame({"amount": [float(i)], "age": [30.0]}),
                outputs={"prediction": np.array([i % 2])},
                time_ms=moment,
                latency_ms=latency_ms,
            )
        )
        log.count_request("fraud", version, moment, 200)
    for i in range(failed):
        log.count_request("fraud", version, at + i * over_ms // failed, 500)


@pytest.fixture
def canary(tracker: Tracker) -> int:
    """fraud v1 champion and v2 in a 25% canary, begun ten minutes ago, with traffic: v1 answered 30 requests
    in the last five minutes (2 ms each) and 60 half an hour ago (4 ms each); v2 answered 10 in the last five
    minutes (10 ms each) and failed 2."""
    _register(tracker, "fraud", 2)
    loopml.models.set_alias("fraud", "champion", 1, tracker=tracker)
    loopml.models.set_alias("fraud", "challenger", 2, tracker=tracker)
    loopml.models.deploy(
        "fraud",
        challenger="challenger",
        mode="canary",
        share=0.25,
        limits={"max_error_rate": 0.5},
        reason="try v2 on a quarter",
        tracker=tracker,
    )
    now = now_ms()
    _backdate(tracker, "fraud", now - 10 * MINUTE)
    log = PredictionLog(tracker)
    try:
        _serve(log, version=1, route="champion", requests=30, at=now - 4 * MINUTE, latency_ms=2.0)
        _serve(log, version=1, route="champion", requests=60, at=now - 35 * MINUTE, latency_ms=4.0)
        _serve(
            log, version=2, route="challenger", requests=10, at=now - 4 * MINUTE, latency_ms=10.0, failed=2
        )
        assert log.flush(timeout_s=60)
    finally:
        log.close()
    return now


def _backdate(tracker: Tracker, model: str, time_ms: int) -> None:
    """Make the deployment's changes so far look made at `time_ms` (the canary began before its traffic)."""
    from sqlalchemy import update

    from loopml.storage.metadata import schema as t

    model_id = RegistryStore(tracker.stores.db).get_model(model).model_id

    def change(conn: Any) -> None:
        conn.execute(
            update(t.deployments).where(t.deployments.c.model_id == model_id).values(updated_time=time_ms)
        )
        conn.execute(
            update(t.deployment_events).where(t.deployment_events.c.model_id == model_id).values(time=time_ms)
        )

    tracker.stores.db.transact(change)


def _cells(html: str, attributes: str) -> dict[str, str]:
    """The numbers of the table row whose opening tag carries `attributes`, by cell class."""
    row = re.search(rf"<tr {re.escape(attributes)}>(.*?)</tr>", html, re.S)
    assert row is not None, attributes
    cells = re.findall(r'<td class="num ([\w-]+)">\s*(.*?)\s*</td>', row.group(1), re.S)
    return dict(cells)


def test_the_list_shows_each_versions_live_numbers(http: httpx.Client, canary: int) -> None:
    page = http.get("/ui/deployments")
    assert page.status_code == 200
    assert '<body data-refresh="15">' in page.text
    champion = _cells(page.text, 'data-model="fraud" data-version="1"')
    assert champion["share"] == "75%"
    assert champion["requests-1h"] == "90"
    assert champion["failed-1h"] == "0"
    assert champion["error-rate"] == "0.00%"
    assert (champion["p50"], champion["p95"], champion["p99"]) == ("4", "4", "4")  # 60 of 90 took 4 ms
    challenger = _cells(page.text, 'data-model="fraud" data-version="2"')
    assert challenger["share"] == "25%"
    assert challenger["requests-1h"] == "12"
    assert challenger["failed-1h"] == "2"
    assert challenger["error-rate"] == "16.67%"  # 2 of 12
    assert challenger["p99"] == "10"
    assert 'href="/ui/deployments/fraud"' in page.text
    assert 'href="/ui/models/fraud/2"' in page.text
    assert '<span class="badge status-canary">canary</span>' in page.text


def test_the_request_rate_of_the_last_five_minutes_counts_only_them(http: httpx.Client, canary: int) -> None:
    page = http.get("/ui/deployments/fraud")
    assert page.status_code == 200
    champion = _cells(page.text, 'data-version="1"')
    # 30 of v1's 90 requests came in the last five minutes: its 5-minute rate is the higher one.
    assert float(champion["rate-5m"]) > float(champion["rate-1h"]) > 0
    spans = re.search(r"over the last ([\d.]+) and ([\d.]+)\s+minutes", page.text)
    assert spans is not None
    assert 4 <= float(spans.group(1)) <= 5
    assert 59 <= float(spans.group(2)) <= 60
    assert float(champion["rate-5m"]) == pytest.approx(30 / float(spans.group(1)), abs=0.2)
    assert float(champion["rate-1h"]) == pytest.approx(90 / float(spans.group(2)), abs=0.05)


def test_a_models_page_shows_its_canary_charts_and_history(http: httpx.Client, canary: int) -> None:
    page = http.get("/ui/deployments/fraud")
    assert page.status_code == 200
    assert '<body data-refresh="15">' in page.text
    text = page.text
    assert '<h2 id="rollout">Canary' in text
    assert "25% of requests" in text
    assert "max_error_rate = 0.5" in text
    live = re.search(r'<tr data-role="canary">(.*?)</tr>', text, re.S)
    assert live is not None
    assert '<td class="num requests">12</td>' in live.group(1)
    assert '<td class="num failed">2</td>' in live.group(1)
    specs = re.findall(r'<script type="application/json">(.*?)</script>', text)
    titles = re.findall(r"<figcaption>(.*?)</figcaption>", text)
    assert titles == ["Requests per minute", "Error rate", "Latency of v1 (ms)", "Latency of v2 (ms)"]
    requests_chart = specs[0]
    assert '"label":"v1"' in requests_chart
    assert '"label":"v2"' in requests_chart
    assert len(re.findall(r'"x":\[([^\]]*)\]', requests_chart)[0].split(",")) == 180  # 3 hours by the minute
    history = re.findall(r'<tr data-kind="(\w+)">', text)
    assert history == ["set"]
    assert "try v2 on a quarter" in text


def test_a_server_cutting_the_challenger_and_the_controllers_comparison_show(
    http: httpx.Client, tracker: Tracker, canary: int
) -> None:
    from dataclasses import replace

    from loopml.automation.store import AutomationStore, Event, LoopState

    store = DeploymentStore(tracker.stores.db)
    current = store.get("fraud")
    assert current is not None
    store.set(
        replace(current, share=0.0),
        user="loopml-server",
        kind="limit_breached",
        detail={"reason": "fraud@v2: error rate 16.7% over 12 requests > 10.0%"},
        expected_revision=current.revision,
    )
    automation = AutomationStore(tracker.stores.db)
    lease = automation.acquire("fraud", "test", now_ms=canary, ttl_ms=60_000)
    assert lease is not None
    evidence = {
        "since_ms": canary - 5 * MINUTE,
        "until_ms": canary,
        "champion": {"version": 1, "requests": 30, "failed": 0, "error_rate": 0.0},
        "challenger": {"version": 2, "requests": 12, "failed": 2, "error_rate": 2 / 12, "p99_ms": 10.0},
    }
    state = LoopState(phase="rollout", candidate=2, rollout={"started_ms": canary, "evidence": evidence})
    automation.write(lease, state, [Event("rollout_started", "canary of v2")], now_ms=canary)

    page = http.get("/ui/deployments/fraud")
    assert page.status_code == 200
    assert "stopped: share 0" in page.text
    assert "A server cut the challenger" in page.text
    assert "error rate 16.7% over 12 requests" in page.text
    assert re.findall(r'<tr data-kind="(\w+)">', page.text) == ["limit_breached", "set"]
    recorded = re.search(r'<table class="grid compare-recorded">(.*?)</table>', page.text, re.S)
    assert recorded is not None
    assert "16.67%" in recorded.group(1)
    assert '<td class="num">12</td>' in recorded.group(1)


def test_traffic_outside_the_deployment_and_models_without_one(http: httpx.Client, tracker: Tracker) -> None:
    _register(tracker, "fraud", 3)
    loopml.models.set_alias("fraud", "champion", 1, tracker=tracker)
    log = PredictionLog(tracker)
    try:  # v3 pinned by a client, with no deployment record at all
        _serve(log, version=3, route="pinned", requests=5, at=now_ms() - 4 * MINUTE, latency_ms=1.0)
        assert log.flush(timeout_s=60)
    finally:
        log.close()
    listed = http.get("/ui/deployments")
    assert _cells(listed.text, 'data-model="fraud" data-version="3"')["requests-1h"] == "5"
    page = http.get("/ui/deployments/fraud")
    assert page.status_code == 200
    assert "No deployment" in page.text
    assert _cells(page.text, 'data-version="3"')["requests-1h"] == "5"


def test_an_empty_project_and_bad_requests(http: httpx.Client, tracker: Tracker) -> None:
    empty = http.get("/ui/deployments")
    assert empty.status_code == 200
    assert "No deployments yet" in empty.text
    assert http.get("/ui/deployments/nope").status_code == 404
    _register(tracker, "fraud", 1)
    assert http.get("/ui/deployments/fraud").status_code == 200
    for hours in ("0", "25", "x", "-1", "1.5"):
        page = http.get("/ui/deployments/fraud", params={"hours": hours})
        assert page.status_code == 400, hours
        assert "hours must be a whole number" in page.text
    assert http.get("/ui/deployments/fraud", params={"hours": "24"}).status_code == 200


@pytest.fixture
def busy(tracker: Tracker) -> int:
    """100,000 predictions of fraud in the last hour (ten segments, as a busy server writes them) and a
    request count for every minute of it; v1 champion, v2 in a 10% canary."""
    _register(tracker, "fraud", 2)
    loopml.models.set_alias("fraud", "champion", 1, tracker=tracker)
    loopml.models.set_alias("fraud", "challenger", 2, tracker=tracker)
    loopml.models.deploy("fraud", challenger="challenger", mode="canary", share=0.1, tracker=tracker)
    now = now_ms()
    stores = tracker.stores
    model_id = RegistryStore(stores.db).get_model("fraud").model_id
    rng = np.random.default_rng(0)
    for segment in range(10):
        rows = 10_000
        version = 2 if segment == 9 else 1
        times = np.sort(rng.integers(now - 59 * MINUTE, now, size=rows))
        table = pa.table(
            {
                "prediction_id": [f"s{segment}-{i}" for i in range(rows)],
                "time_ms": times,
                "latency_ms": rng.gamma(2.0, 2.0, size=rows),
                "route": ["challenger" if version == 2 else "champion"] * rows,
                "in.amount": rng.normal(100, 30, size=rows),
                "in.age": rng.integers(18, 80, size=rows),
                "out.prediction": rng.integers(0, 2, size=rows),
            }
        )
        route = "challenger" if version == 2 else "champion"
        write_segment(
            stores, table, model_id=model_id, model="fraud", version=version, route=route, source="serve"
        )
    counts: Counter[tuple[str, int, int, int]] = Counter()
    start = now - now % MINUTE - 59 * MINUTE
    for minute in range(60):
        counts["fraud", 1, start + minute * MINUTE, 200] += 1500
        counts["fraud", 2, start + minute * MINUTE, 200] += 160
        counts["fraud", 2, start + minute * MINUTE, 500] += 7
    write_request_counts(tracker, counts)
    return now


def test_pages_sum_a_hundred_thousand_predictions(http: httpx.Client, busy: int) -> None:
    for path in ("/ui/deployments", "/ui/deployments/fraud"):
        assert http.get(path).status_code == 200  # timings: bench/ui.py, not a test threshold
    page = http.get("/ui/deployments/fraud")
    challenger = _cells(page.text, 'data-version="2"')
    assert challenger["requests-1h"] == "10,020"  # (160 + 7) x 60
    assert challenger["failed-1h"] == "420"
    assert challenger["error-rate"] == "4.19%"
    assert "latency from" not in page.text  # all 100,000 read: under the page's bound
    champion = _cells(page.text, 'data-version="1"')
    assert float(champion["p50"]) == pytest.approx(3.36, rel=0.05)  # the median of a gamma(2, 2)
    assert float(champion["p99"]) == pytest.approx(13.3, rel=0.05)


def test_deployment_pages_in_a_browser(page: Watched, ui: str, canary: int) -> None:
    page.open(f"{ui}/ui/deployments")
    page.page.click("a[href='/ui/deployments/fraud']")
    page.page.wait_for_load_state("load")
    assert page.page.url.endswith("/ui/deployments/fraud")
    drawn = page.charts()
    assert len(drawn) == 4
    assert all(state == "1" for state in drawn)
    assert page.canvases_drawn() > 0
    page.page.select_option("select[name=hours]", "6")
    page.page.click("button:has-text('Show')")
    page.page.wait_for_load_state("load")
    assert page.page.url.endswith("hours=6")
    assert all(state == "1" for state in page.charts())
