"""Monitoring pages over windows a real monitoring cycle computed from logged predictions: the overview, a
model's drift heatmap, charts and alerts, and a window's reference vs current distributions; errors as HTML
pages; server time with 48 windows x 30 features; and the pages drawn in a real browser."""

from __future__ import annotations

import json
import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from starlette.exceptions import StarletteDeprecationWarning

import loopml
from loopml.monitoring.alert_store import AlertStore
from loopml.monitoring.cycle import monitor_cycle
from loopml.monitoring.store import MonitorStore, WindowRecord
from loopml.predictions import PredictionBatch, PredictionLog, record_feedback
from loopml.server.ui.app import local_ui_app
from loopml.server.ui.pages import num
from loopml.tracking.tracker import Tracker

with warnings.catch_warnings():
    # Starlette asks for `httpx2`, which the dev environment does not pin; the test client works with httpx.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

HOSTILE = "<img src=x onerror=alert(1)>"  # a category: shown as text everywhere, never as markup
HOUR = 3_600_000
START = 1_800_000_000_000 - 1_800_000_000_000 % HOUR  # an hour boundary in 2027
RULES = """
[[models.fraud.monitoring.alerts]]
name = "amount-moved"
metric = "drift.amount.drifted"
threshold = 1
severity = "critical"
"""


def _normal(rng: np.random.Generator, rows: int, mean: float, std: float) -> np.ndarray:
    """Evenly spaced quantiles of a normal distribution, shuffled: a stable window matches the reference
    closely, so no test on it fires by chance and the expected verdicts are certain."""
    quantiles = [NormalDist(mean, std).inv_cdf((i + 0.5) / rows) for i in range(rows)]
    return rng.permutation(np.array(quantiles))


def _inputs(rng: np.random.Generator, rows: int, *, shift: float, extra: int) -> pd.DataFrame:
    """`amount` (moves by `shift`), `merchant` (four categories in equal shares) and `extra` stable features."""
    columns: dict[str, Any] = {
        "amount": _normal(rng, rows, 100 + shift, 20),
        "merchant": rng.permutation(np.resize(np.array(["grocer", "fuel", "online", HOSTILE]), rows)),
    }
    for i in range(extra):
        columns[f"f{i:02d}"] = _normal(rng, rows, 0, 1)
    return pd.DataFrame(columns)


def _monitor(tracker: Tracker, folder: Path, *, hours: int, shifted: set[int], rows: int, extra: int) -> None:
    """Register `fraud`, log `hours` hours of predictions (amount shifted in the `shifted` hours), label the
    first hour's predictions, and run one monitoring cycle (the alert rule of RULES included)."""
    (folder / "loopml.toml").write_text(RULES)
    rng = np.random.default_rng(7)
    train = _inputs(rng, 2000, shift=0.0, extra=extra)
    model = DummyClassifier(strategy="prior").fit(train, (train["amount"] > 100).astype(int))
    loopml.models.register("fraud", model, sample=train, tracker=tracker, onnx=False)
    log = PredictionLog(tracker)
    for hour in range(hours):
        inputs = _inputs(rng, rows, shift=60.0 if hour in shifted else 0.0, extra=extra)
        p1 = rng.uniform(0.05, 0.95, rows)
        outputs = {"prediction": (p1 > 0.5).astype(int), "proba_0": 1 - p1, "proba_1": p1}
        ids = [f"h{hour}-{i}" for i in range(rows)]
        log.append(
            PredictionBatch("fraud", 1, "champion", ids, inputs, outputs, START + hour * HOUR + 1000, 3.0)
        )
    assert log.flush()
    log.close()
    record_feedback(tracker, [(f"h0-{i}", i % 2) for i in range(rows)])
    monitor_cycle(tracker, "fraud", now_ms=START + (hours + 1) * HOUR)


@pytest.fixture
def monitored(tracker: Tracker, tmp_path: Path) -> list[WindowRecord]:
    """Four hourly windows of `fraud`: amount drifts in the last two, which raises `amount-moved`."""
    _monitor(tracker, tmp_path, hours=4, shifted={2, 3}, rows=300, extra=1)
    return MonitorStore(tracker.stores.db).windows("fraud")


@pytest.fixture
def client(tracker: Tracker) -> TestClient:
    return TestClient(local_ui_app(tracker), base_url="http://127.0.0.1")


def _heatmap(html: str) -> ET.Element:
    found = re.search(r'<svg class="heatmap".*?</svg>', html, re.S)
    assert found, "no heatmap on the page"
    return ET.fromstring(found.group(0))


def _cells(svg: ET.Element) -> dict[tuple[str, str], ET.Element]:
    """(feature, window id) -> the cell's rect."""
    ns = "{http://www.w3.org/2000/svg}"
    return {
        (rect.attrib["data-feature"], column.attrib["data-window"]): rect
        for column in svg.iter(f"{ns}g")
        if "data-window" in column.attrib
        for rect in column.iter(f"{ns}rect")
    }


def _charts(html: str) -> list[dict[str, Any]]:
    return [json.loads(s) for s in re.findall(r'<script type="application/json">(.*?)</script>', html, re.S)]


def test_the_overview_shows_each_model_with_its_latest_window(
    client: TestClient, monitored: list[WindowRecord]
) -> None:
    response = client.get("/ui/monitoring")
    assert response.status_code == 200
    row = re.search(r'<tr data-model="fraud">(.*?)</tr>', response.text, re.S)
    assert row, response.text
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    latest = monitored[-1]
    assert 'class="badge status-firing"' in cells[1]  # the amount alert still holds in the newest window
    assert "v1" in cells[3]
    assert num(latest.rows) in cells[4]
    assert f"{100 * latest.drift['share']:.0f}%" in cells[5]  # type: ignore[index]
    assert "(1/3)" in cells[5]
    assert "amount" in cells[6]
    assert "merchant" not in cells[6]
    assert cells[7].strip() == "accuracy"
    assert cells[8].strip() == ""  # the newest window has no labels
    estimated = latest.performance["estimated"]["metrics"]["accuracy"]  # type: ignore[index]
    assert cells[9].strip() == num(estimated)
    assert cells[10].strip() == "1"


def test_the_model_page_marks_drifted_cells_and_shows_alerts_and_performance(
    client: TestClient, tracker: Tracker, monitored: list[WindowRecord]
) -> None:
    response = client.get("/ui/monitoring/fraud")
    assert response.status_code == 200
    html = response.text
    cells = _cells(_heatmap(html))
    features = ["amount", "merchant", "f00"]
    assert set(cells) == {(f, w.window_id) for f in features for w in monitored}
    for w, moved in zip(monitored, (False, False, True, True), strict=True):
        assert ("drifted" in cells[("amount", w.window_id)].attrib["class"]) is moved
        assert "drifted" not in cells[("merchant", w.window_id)].attrib["class"]
    title = cells[("amount", monitored[-1].window_id)].find("{http://www.w3.org/2000/svg}title")
    assert title is not None
    assert "DRIFTED" in (title.text or "")
    # Red past the threshold, near white well under it.
    assert cells[("amount", monitored[-1].window_id)].attrib["fill"] == "#b91c1c"
    assert cells[("merchant", monitored[0].window_id)].attrib["fill"].startswith("#ff")

    open_table = re.search(r'<table class="grid open-alerts">.*?</table>', html, re.S)
    assert open_table
    assert "amount-moved" in open_table.group(0)
    assert "drift.amount.drifted" in open_table.group(0)
    [stored] = AlertStore(tracker.stores.db).alerts("fraud")
    assert stored.rule == "amount-moved"
    assert stored.window_id == monitored[2].window_id  # the cooldown keeps the next window quiet
    recent = re.search(r'<table class="grid alerts">.*?</table>', html, re.S)
    assert recent
    assert stored.message in recent.group(0).replace("&gt;", ">")

    first = monitored[0]
    realized = first.performance["realized"]["metrics"]["accuracy"]  # type: ignore[index]
    row = re.search(rf'<tr data-window="{first.window_id}">(.*?)</tr>', html, re.S)
    assert row
    assert re.search(rf'<td class="num realized">{re.escape(num(realized))}</td>', row.group(1))
    estimated = first.performance["estimated"]["metrics"]["accuracy"]  # type: ignore[index]
    assert re.search(rf'<td class="num estimated">{re.escape(num(estimated))}</td>', row.group(1))

    specs = _charts(html)
    performance = next(s for s in specs if s["y_label"] == "accuracy")
    series = {s["label"]: s["values"] for s in performance["series"]}
    assert series["realized accuracy"][0] == pytest.approx(realized)
    assert series["realized accuracy"][1:] == [None, None, None]
    assert performance["x"] == [-3, -2, -1, 0]
    drift_share = next(
        s for s in specs if s["y_label"] == "share" and s["series"][0]["label"] == "drifted share"
    )
    assert drift_share["series"][0]["values"][-1] == pytest.approx(monitored[-1].drift["share"])  # type: ignore[index]


def test_the_window_page_overlays_reference_and_current_per_feature(
    client: TestClient, monitored: list[WindowRecord]
) -> None:
    latest = monitored[-1]
    response = client.get(f"/ui/monitoring/fraud/windows/{latest.window_id}")
    assert response.status_code == 200
    html = response.text
    features = re.search(r'<table class="grid features">.*?</table>', html, re.S)
    assert features
    assert 'data-feature="amount" data-drifted="1"' in features.group(0)
    assert 'data-feature="merchant" data-drifted="0"' in features.group(0)
    amount = latest.drift["columns"]["amount"]  # type: ignore[index]
    assert amount["method"] in features.group(0)
    assert num(amount["score"]) in features.group(0)

    specs = _charts(html)
    bars = [s for s in specs if s["kind"] == "bars"]
    assert len(bars) >= 3 + 3  # every feature, and the three outputs against the first window
    histogram = amount["histogram"]
    drawn = next(s for s in bars if s["labels"] == histogram["labels"])
    assert [s["label"] for s in drawn["series"]] == ["reference", "current"]
    assert drawn["series"][1]["values"] == pytest.approx(histogram["current"])
    merchant = next(s for s in bars if "online" in s["labels"])
    assert set(merchant["labels"]) >= {"grocer", "fuel", "online", HOSTILE}
    assert HOSTILE not in html  # escaped in the chart JSON and in the stats line
    assert "&lt;img src=x" in html

    first = monitored[0]
    page = client.get(f"/ui/monitoring/fraud/windows/{first.window_id}").text
    realized = first.performance["realized"]["metrics"]["accuracy"]  # type: ignore[index]
    row = re.search(r'<tr data-metric="accuracy">(.*?)</tr>', page, re.S)
    assert row
    assert num(realized) in row.group(1)
    assert 'rel="next"' in page
    assert 'rel="prev"' not in page


def test_an_alert_closes_when_the_newest_window_is_back_to_normal(tracker: Tracker, tmp_path: Path) -> None:
    _monitor(tracker, tmp_path, hours=4, shifted={1}, rows=300, extra=1)
    client = TestClient(local_ui_app(tracker), base_url="http://127.0.0.1")
    [raised] = AlertStore(tracker.stores.db).alerts("fraud")
    html = client.get("/ui/monitoring/fraud").text
    assert "No open alert" in html
    recent = re.search(r'<table class="grid alerts">.*?</table>', html, re.S)
    assert recent
    assert raised.rule in recent.group(0)
    row = re.search(r'<tr data-model="fraud">(.*?)</tr>', client.get("/ui/monitoring").text, re.S)
    assert row
    assert 'status-ok"' in row.group(1)


def test_unknown_models_and_windows_are_404_and_bad_parameters_400(
    client: TestClient, monitored: list[WindowRecord]
) -> None:
    assert client.get("/ui/monitoring/nope").status_code == 404
    assert client.get("/ui/monitoring/nope/windows/abc").status_code == 404
    assert client.get("/ui/monitoring/fraud/windows/abc").status_code == 404
    assert client.get("/ui/monitoring/fraud?version=9").status_code == 404
    for query in (
        "granularity=week",
        "last=0",
        "last=1000",
        "last=x",
        "version=0",
        "version=-1",
        "version=v1",
    ):
        response = client.get(f"/ui/monitoring/fraud?{query}")
        assert response.status_code == 400, query
        assert "<html" in response.text
    day = client.get("/ui/monitoring/fraud?granularity=day&last=2")
    assert day.status_code == 200
    assert "No day window computed" in day.text
    two = client.get("/ui/monitoring/fraud?last=2&version=1").text
    assert len({w for _, w in _cells(_heatmap(two))}) == 2


def test_a_model_without_windows_says_how_to_compute_them(client: TestClient, tracker: Tracker) -> None:
    frame = pd.DataFrame({"amount": np.arange(20.0)})
    model = DummyClassifier().fit(frame, frame["amount"] > 9)
    loopml.models.register("quiet", model, sample=frame, tracker=tracker, onnx=False)
    assert "No monitored model yet" in client.get("/ui/monitoring").text
    page = client.get("/ui/monitoring/quiet")
    assert page.status_code == 200
    assert "loopml monitor run quiet" in page.text


@pytest.fixture
def busy(tracker: Tracker, tmp_path: Path) -> list[WindowRecord]:
    """48 hourly windows of 30 features (amount drifts in the last two hours)."""
    _monitor(tracker, tmp_path, hours=48, shifted={46, 47}, rows=60, extra=28)
    return MonitorStore(tracker.stores.db).windows("fraud")


def test_pages_render_48_windows_of_30_features(client: TestClient, busy: list[WindowRecord]) -> None:
    assert len(busy) == 48
    urls = ["/ui/monitoring", "/ui/monitoring/fraud", f"/ui/monitoring/fraud/windows/{busy[-1].window_id}"]
    for url in urls:
        assert client.get(url).status_code == 200  # timings: bench/ui.py, not a test threshold
    assert len(_cells(_heatmap(client.get("/ui/monitoring/fraud").text))) == 48 * 30


def test_the_pages_draw_in_a_browser(page: Any, ui: str, busy: list[WindowRecord]) -> None:
    page.open(f"{ui}/ui/monitoring")
    page.page.click("table.monitored a:text('fraud')")
    page.page.wait_for_load_state("load")
    assert page.page.locator("svg.heatmap rect.cell").count() == 48 * 30
    assert page.page.locator("svg.heatmap rect.cell.drifted[data-feature=amount]").count() == 2
    assert page.page.locator("svg.heatmap rect.cell.drifted[data-feature=merchant]").count() == 0
    assert page.charts()
    assert all(state == "1" for state in page.charts())
    assert page.canvases_drawn() > 0

    page.page.locator("svg.heatmap rect.cell.drifted[data-feature=amount]").last.click()
    page.page.wait_for_load_state("load")
    assert busy[-1].window_id in page.page.url
    assert page.page.locator("table.features tr[data-feature=amount][data-drifted='1']").count() == 1
    assert page.charts()
    assert all(state == "1" for state in page.charts())
    assert page.canvases_drawn() > 0
