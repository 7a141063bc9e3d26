"""`build_report` and its HTML page: a served model's windows, drift rising where the inputs shifted, the
distributions merged from the stored window profiles, which performance signal fired, the alert log, and the
page rendered in a real headless Chromium (skipped without Chromium, except under CI=true)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

import loopml
import loopml.predictions
from loopml.core.errors import InvalidInput, NotFound
from loopml.core.settings import load_settings
from loopml.monitoring import drift_report
from loopml.monitoring.alert_store import Alert, AlertStore
from loopml.monitoring.report import build_report
from loopml.monitoring.runner import refresh_performance, run
from loopml.monitoring.store import MonitorStore, WindowRecord
from loopml.predictions import PredictionBatch, PredictionLog
from loopml.stats import NumericProfile, TableProfile, merge
from loopml.tracking.tracker import Tracker

HOUR = 3_600_000
START = 1_800_000_000_000 - 1_800_000_000_000 % HOUR  # an hour boundary in 2027
HOURS, ROWS, SHIFTED_FROM = 6, 1200, 3  # hours 3, 4 and 5 have their amounts moved by three std deviations
XSS = "<script>alert(1)</script>"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@dataclass
class Served:
    tracker: Tracker
    windows: list[WindowRecord]


def frame(rows: int, shifted: bool, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    channels = [0.2, 0.3, 0.5] if shifted else [0.5, 0.3, 0.2]
    return pd.DataFrame(
        {
            "amount": rng.normal(160 if shifted else 100, 20, rows),
            XSS: rng.normal(0, 1, rows),  # a hostile column name must reach the page only escaped
            "channel": rng.choice(["web", "app", "shop"], rows, p=channels),
        }
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A fraud model served for six hours, shifted from the fourth; labels for hours 0 and 4 (the latter
    with a third of them flipped: concept drift), and one stored alert."""
    root = tmp_path_factory.mktemp("report")
    (root / "loopml.toml").write_text("")
    tracker = Tracker(load_settings(project_dir=root))
    train = frame(2000, False, 0)
    encode = ColumnTransformer(
        [
            ("num", "passthrough", ["amount", XSS]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"]),
        ]
    )
    model = make_pipeline(encode, LogisticRegression(max_iter=500)).fit(
        train, (train["amount"] > 100).astype(int)
    )
    version = loopml.models.register(
        "fraud", model, sample=train, tracker=tracker, onnx=False
    ).version.version
    loopml.models.register("idle", model, sample=train, tracker=tracker, onnx=False)  # never served
    log = PredictionLog(tracker)
    truth = {}
    for hour in range(HOURS):
        inputs = frame(ROWS, hour >= SHIFTED_FROM, 10 + hour)
        proba = model.predict_proba(inputs)
        outputs = {"prediction": model.predict(inputs), "proba_0": proba[:, 0], "proba_1": proba[:, 1]}
        ids = [f"h{hour}-{i}" for i in range(ROWS)]
        truth[hour] = (ids, (inputs["amount"] > 100).astype(int).tolist())
        batch = PredictionBatch(
            "fraud", version, "champion", ids, inputs, outputs, START + hour * HOUR + 1000, 2.0
        )
        assert log.append(batch)
    assert log.flush()
    log.close()
    windows = run(tracker, "fraud", now_ms=START + (HOURS + 1) * HOUR)
    assert len(windows) == HOURS

    ids, labels = truth[0]
    loopml.predictions.record_feedback(tracker, list(zip(ids, labels, strict=True)), "fraud")
    ids, labels = truth[4]
    flipped = [1 - y if i % 3 == 0 else y for i, y in enumerate(labels)]
    loopml.predictions.record_feedback(tracker, list(zip(ids, flipped, strict=True)), "fraud")
    assert len(refresh_performance(tracker, "fraud", since_ms=START)) == 2
    alert = Alert(
        model="fraud",
        version=version,
        rule="amount drift",
        metric="drift.amount",
        severity="critical",
        value=3.0,
        threshold=0.1,
        message="amount <b>drifted</b>",
        time=START + 4 * HOUR,
        window_id=windows[SHIFTED_FROM].window_id,
    )
    AlertStore(tracker.stores.db).add([alert])
    yield Served(tracker, MonitorStore(tracker.stores.db).windows("fraud"))
    tracker.close()


def test_drift_over_time_rises_at_the_shifted_windows(served: Served) -> None:
    report = build_report(served.tracker, "fraud")
    assert [w["start_ms"] for w in report.windows] == [START + h * HOUR for h in range(HOURS)]
    drift = report.drift
    assert set(drift["columns"]) == {"amount", XSS, "channel"}
    amount = drift["cells"]["amount"]
    assert [c["drifted"] for c in amount] == [h >= SHIFTED_FROM for h in range(HOURS)]
    assert all(c["relative"] < 1 for c in amount[:SHIFTED_FROM])
    assert all(
        c["relative"] > 10 for c in amount[SHIFTED_FROM:]
    )  # three sigmas over a threshold of 0.1 sigma
    assert [c["drifted"] for c in drift["cells"]["channel"]] == [h >= SHIFTED_FROM for h in range(HOURS)]
    assert not any(c["drifted"] for c in drift["cells"][XSS])
    summary = report.summary
    assert summary["windows"] == HOURS
    assert summary["rows"] == HOURS * ROWS
    assert summary["latest"]["drifted_columns"] == ["amount", "channel"]
    assert [d["start_ms"] for d in summary["drifted_windows"]] == [
        START + h * HOUR for h in range(SHIFTED_FROM, HOURS)
    ]
    assert any(
        "amount" in f and "out of the training range" in f for f in summary["latest"]["quality_findings"]
    )
    assert report.latency["p50"] == [2.0] * HOURS
    assert report.latency["rows"] == [ROWS] * HOURS


def test_distributions_are_the_merge_of_the_windows_profiles(served: Served) -> None:
    report = build_report(served.tracker, "fraud")
    features = report.distributions["features"]
    amount = features["amount"]
    assert amount["kind"] == "numeric"
    assert amount["reference_rows"] == 2000
    assert amount["windows_merged"] == HOURS
    assert amount["current_rows"] == sum(w.rows for w in served.windows) == HOURS * ROWS
    stored = [
        TableProfile.from_dict(json.loads(served.tracker.blobs.get_bytes(w.profile_digest or "")))
        for w in served.windows
    ]
    merged = merge(*stored).columns["in.amount"]
    assert isinstance(merged, NumericProfile)
    assert amount["current"]["count"] == merged.count
    assert amount["current"]["mean"] == pytest.approx(merged.mean)
    assert amount["current"]["mean"] == pytest.approx(130, abs=2)  # half the hours at 100, half at 160
    assert amount["reference"]["mean"] == pytest.approx(100, abs=2)
    for name in ("amount", "channel"):
        histogram = features[name]["histogram"]
        assert sum(histogram["reference"]) == pytest.approx(1, abs=1e-3)
        assert sum(histogram["current"]) == pytest.approx(1, abs=1e-3)
    channel = features["channel"]
    assert channel["kind"] == "categorical"
    shares = dict(zip(channel["histogram"]["labels"], channel["histogram"]["current"], strict=True))
    assert shares["shop"] == pytest.approx((0.2 + 0.5) / 2, abs=0.03)

    recent = build_report(served.tracker, "fraud", last=2)
    assert [w["start_ms"] for w in recent.windows] == [START + 4 * HOUR, START + 5 * HOUR]
    assert recent.distributions["features"]["amount"]["current_rows"] == 2 * ROWS
    assert recent.distributions["features"]["amount"]["current"]["mean"] == pytest.approx(160, abs=2)
    assert len(recent.drift["cells"]["amount"]) == 2


def test_performance_says_which_signal_fired_and_the_alert_log_is_there(served: Served) -> None:
    report = build_report(served.tracker, "fraud")
    performance = report.performance
    assert performance["metric"] == "accuracy"
    realized = [None if r is None else r["accuracy"] for r in performance["realized"]]
    assert [r is not None for r in realized] == [h in (0, 4) for h in range(HOURS)]
    assert all(e is not None and e["accuracy"] > 0.9 for e in performance["estimated"])
    assert performance["references"]["1"]["source"] == "realized in its first window"
    comparisons = performance["comparisons"]
    assert comparisons[0]["diagnosis"] == "ok"
    assert comparisons[4]["diagnosis"] == "concept drift"  # realized fell a third while the estimate held
    assert comparisons[4]["fired"] == ["realized"]
    assert comparisons[5]["diagnosis"] == "awaiting labels"
    summary = report.summary["performance"]
    assert summary["latest_labelled"] == comparisons[4]
    assert [(f["start_ms"], f["diagnosis"]) for f in summary["fired"]] == [
        (START + 4 * HOUR, "concept drift")
    ]

    assert [a["rule"] for a in report.alerts] == ["amount drift"]
    assert report.alerts[0]["window_start_ms"] == START + SHIFTED_FROM * HOUR
    assert report.summary["alerts"] == 1
    assert build_report(served.tracker, "fraud", last=2).alerts == []  # raised on an earlier window


def test_json_and_html_are_written_and_user_strings_escaped(served: Served, tmp_path: Path) -> None:
    report = build_report(served.tracker, "fraud")
    data_path = report.to_json(tmp_path / "report.json")

    def refuse(constant: str) -> Any:
        raise AssertionError(f"not strict JSON: {constant}")

    assert json.loads(data_path.read_text(), parse_constant=refuse) == report.to_dict()
    html = report.to_html(tmp_path / "report.html").read_text()
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "amount &lt;b&gt;drifted&lt;/b&gt;" in html  # the alert message
    assert "<script" not in html.lower()
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.json"]  # no temp file left


def test_bad_input_is_refused_with_a_clear_message(served: Served, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no registered model 'nope'"):
        build_report(served.tracker, "nope")
    with pytest.raises(NotFound, match="run `loopml monitor run idle` first"):
        build_report(served.tracker, "idle")
    with pytest.raises(NotFound):
        build_report(served.tracker, "fraud", version=7)
    with pytest.raises(InvalidInput, match="last must be"):
        build_report(served.tracker, "fraud", last=0)
    with pytest.raises(InvalidInput, match="granularity"):
        build_report(served.tracker, "fraud", granularity="week")
    report = build_report(served.tracker, "fraud", version=1)
    with pytest.raises(InvalidInput, match="cannot write"):
        report.to_html(tmp_path / "missing" / "report.html")


# ------------------------------------------------------------------------------------------ real browser


def _chromium() -> Any:
    """Playwright's sync API, or skip (locally) / fail (CI=true) when the browser cannot run."""
    in_ci = os.environ.get("CI", "").strip().lower() == "true"

    def missing(reason: str) -> None:
        if in_ci:
            pytest.fail(f"{reason} (CI=true: the browser test must run in CI)", pytrace=False)
        pytest.skip(reason)

    if not CHROMIUM.is_file() or shutil.which(str(CHROMIUM)) is None:
        missing(f"{CHROMIUM} not found (apt-get install chromium); skipping the browser test")
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:
        missing("playwright is not installed; skipping the browser test")
    return sync_playwright


def _open(browser: Any, path: Path) -> tuple[Any, list[str]]:
    """Load `path` from a file:// URL; return the page and every problem seen (console errors, page errors,
    requests other than the page itself, failed requests, dialogs such as an injected alert)."""
    page = browser.new_page()
    url = path.resolve().as_uri()
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: problems.append(f"request: {r.url}") if r.url != url else None)
    page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url}"))

    def dialog(d: Any) -> None:  # an injected alert(); dismissed, or the page would hang waiting for it
        problems.append(f"dialog: {d.message}")
        d.dismiss()

    page.on("dialog", dialog)
    response = page.goto(url, wait_until="load")
    assert response is None or response.ok
    return page, problems


def test_reports_render_in_headless_chromium(served: Served, tmp_path: Path) -> None:
    sync_playwright = _chromium()
    monitor_page = build_report(served.tracker, "fraud").to_html(tmp_path / "report.html")
    current = frame(1500, True, 99)
    standalone = drift_report(reference=frame(1500, False, 98), current=current).to_html(
        tmp_path / "drift.html"
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page, problems = _open(browser, monitor_page)
            assert "fraud" in page.title()
            summary = page.locator("#summary")
            assert summary.is_visible()
            assert "6 hour window(s)" in summary.inner_text()
            assert "drift in amount, channel" in summary.inner_text()
            assert "concept drift" in summary.inner_text()
            for section in ("drift", "performance", "latency", "distributions"):
                chart = page.locator(f"#{section} svg").first
                assert chart.is_visible(), section
                box = chart.bounding_box()
                assert box is not None, section
                assert box["width"] > 100, section
                assert box["height"] > 50, section
            assert page.locator("#distributions svg").count() == 3  # one per feature
            assert page.locator("#drift polyline").count() == 3  # one line per column
            assert XSS in page.locator("#distributions").inner_text()  # shown as text, never run
            assert "amount drift" in page.locator("#alerts").inner_text()
            assert problems == []

            page, problems = _open(browser, standalone)
            assert "drift report" in page.title().lower()
            assert page.locator("h1").inner_text().startswith("Drift report")
            assert page.locator("svg").first.is_visible()
            assert page.locator("svg").count() == 3
            assert XSS in page.locator("table").inner_text()
            assert problems == []
        finally:
            browser.close()
