"""Tumbling windows over the prediction log, and the quality findings of a window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopml.core.errors import InvalidInput
from loopml.monitoring.days import merge_quality
from loopml.monitoring.metrics import check_metric_name
from loopml.monitoring.quality import window_quality
from loopml.monitoring.windows import Window, due_windows
from loopml.predictions.requests import request_summary
from loopml.registry.signature import ColumnSpec, Signature

HOUR = 3_600_000


def test_windows_are_aligned_closed_after_the_grace_and_computed_once() -> None:
    spans = [
        (1, 10 * HOUR + 5, 10 * HOUR + 9),
        (1, 10 * HOUR + 50, 12 * HOUR + 1),
        (2, 11 * HOUR + 3, 11 * HOUR + 4),
    ]
    now = 13 * HOUR + 60_000  # the 12:00 window ended a minute ago: still within the grace
    due = due_windows(spans, granularity="hour", now_ms=now, done=set())
    assert due == [
        Window(1, 10 * HOUR, 11 * HOUR),
        Window(1, 11 * HOUR, 12 * HOUR),
        Window(2, 11 * HOUR, 12 * HOUR),
    ]
    later = due_windows(spans, granularity="hour", now_ms=now + HOUR, done={(1, 10 * HOUR), (1, 11 * HOUR)})
    assert later == [Window(2, 11 * HOUR, 12 * HOUR), Window(1, 12 * HOUR, 13 * HOUR)]
    days = due_windows(spans, granularity="day", now_ms=3 * 24 * HOUR, done=set())
    assert days == [Window(1, 0, 24 * HOUR), Window(2, 0, 24 * HOUR)]
    with pytest.raises(InvalidInput, match="granularity must be one of minute, hour, day"):
        due_windows(spans, granularity="week", now_ms=now, done=set())


def test_quality_reports_nulls_ranges_unseen_levels_schema_and_latency() -> None:
    signature = Signature(
        (
            ColumnSpec("amount", "float", False, None, 0.0, 100.0),
            ColumnSpec("channel", "category", False, ("web", "shop")),
            ColumnSpec("age", "integer", True, None, 18.0, 90.0),
        )
    )
    frame = pd.DataFrame(
        {
            "in.amount": [10.0, 150.0, np.nan, -1.0],
            "in.channel": ["web", "fax", "fax", "phone"],
            "in.extra": [1, 2, 3, 4],
            "latency_ms": [1.0, 2.0, 3.0, 4.0],
        }
    )
    found = window_quality(frame, signature)
    assert found["rows"] == 4
    assert found["missing_columns"] == ["age"]
    assert found["unexpected_columns"] == ["extra"]
    amount = found["columns"]["amount"]
    assert amount["null_share"] == 0.25
    assert amount["nulls_in_training"] is False
    assert amount["out_of_range"] == 2
    channel = found["columns"]["channel"]
    assert channel["unseen_levels"] == {"fax": 2, "phone": 1}
    assert channel["unseen_share"] == 0.75
    assert found["latency_ms"]["p50"] == pytest.approx(2.5)
    empty = window_quality(frame.iloc[:0], signature)
    assert empty["rows"] == 0
    assert empty["columns"]["amount"]["null_share"] == 0.0


def test_a_days_request_counts_are_the_sum_of_its_hours() -> None:
    hours = [
        {"rows": 10, "requests": request_summary({200: 10, 400: 2})},
        {"rows": 5, "requests": request_summary({200: 5, 503: 3})},
        {"rows": 0},  # an hour before request counting existed
    ]
    assert merge_quality(hours)["requests"] == request_summary({200: 15, 400: 2, 500: 3})


def test_error_metrics_have_names_rules_can_use() -> None:
    assert check_metric_name("errors.rate", "rule") == "errors.rate"
    assert check_metric_name("requests", "rule") == "requests"
    with pytest.raises(InvalidInput, match=r"errors is one of errors\.rate"):
        check_metric_name("errors.p99", "rule")
    with pytest.raises(InvalidInput, match="'requests' takes no suffix"):
        check_metric_name("requests.total", "rule")


def test_minute_windows_and_their_settings(tmp_path: Path) -> None:
    from loopml.monitoring.config import monitor_config

    spans = [(1, 5 * 60_000 + 10, 6 * 60_000 + 59_000)]
    due = due_windows(spans, granularity="minute", now_ms=7 * 60_000 + 5_000, done=set(), grace_ms=3_000)
    assert due == [Window(1, 5 * 60_000, 6 * 60_000), Window(1, 6 * 60_000, 7 * 60_000)]
    (tmp_path / "loopml.toml").write_text(
        '[models.m.monitoring]\ngranularity = "minute"\ngrace_seconds = 3\n'
    )
    config = monitor_config(tmp_path, "m")
    assert (config.granularity, config.grace_ms) == ("minute", 3_000)
    (tmp_path / "loopml.toml").write_text('[models.m.monitoring]\ngranularity = "week"\n')
    with pytest.raises(InvalidInput, match="granularity is one of minute, hour, day"):
        monitor_config(tmp_path, "m")
    (tmp_path / "loopml.toml").write_text("[models.m.monitoring]\ngrace_seconds = -1\n")
    with pytest.raises(InvalidInput, match="grace_seconds"):
        monitor_config(tmp_path, "m")
