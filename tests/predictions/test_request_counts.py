"""Request counts per model version, minute and status: what a window's error rate is computed from."""

from __future__ import annotations

import pytest

from loopml.core.errors import NotFound
from loopml.predictions import PredictionLog, prune
from loopml.predictions.requests import (
    RequestCounts,
    request_counts,
    request_spans,
    request_summary,
    write_request_counts,
)
from loopml.tracking.tracker import Tracker

HOUR = 3_600_000


def test_counts_from_two_writers_add_up_per_minute_and_status(tracker: Tracker, models: list[str]) -> None:
    first, second = RequestCounts(), RequestCounts()
    for counts in (first, second):
        counts.add("fraud", 1, HOUR + 5_000, 200)
        counts.add("fraud", 1, HOUR + 59_000, 200)  # the same minute
        counts.add("fraud", 1, HOUR + 61_000, 422)  # the next one
        counts.add("fraud", 2, HOUR, 500)
        write_request_counts(tracker, counts.take())
    assert first.take() == {}  # taken means written, nothing left behind
    window = {"start_ms": HOUR, "end_ms": 2 * HOUR}
    assert request_counts(tracker, "fraud", version=1, **window) == {200: 4, 422: 2}
    assert request_counts(tracker, "fraud", version=2, **window) == {500: 2}
    assert request_counts(tracker, "fraud", version=1, start_ms=2 * HOUR, end_ms=3 * HOUR) == {}
    assert sorted(request_spans(tracker, "fraud")) == [(1, HOUR, HOUR + 60_000), (2, HOUR, HOUR)]
    assert request_spans(tracker, "churn") == []


def test_summary_separates_client_and_server_errors() -> None:
    summary = request_summary({200: 90, 400: 4, 422: 2, 500: 3, 504: 1})
    assert summary == {
        "requests": 100,
        "failed": 10,
        "client_errors": 6,
        "server_errors": 4,
        "error_rate": 0.1,
        "client_error_rate": 0.06,
        "server_error_rate": 0.04,
    }
    assert request_summary({}) is None


def test_the_log_writes_counts_on_flush_and_survives_an_unknown_model(
    tracker: Tracker, models: list[str]
) -> None:
    log = PredictionLog(tracker)
    try:
        log.count_request("fraud", 1, HOUR, 200)
        log.count_request("fraud", 1, HOUR, 400)
        log.count_request("nobody", 1, HOUR, 200)  # a model the store does not know loses its own counts
        assert log.flush(timeout_s=30)
        assert log.write_errors == 1
        log.count_request("fraud", 1, HOUR, 200)
        assert log.flush(timeout_s=30)
        assert log.write_errors == 1  # not retried forever
    finally:
        log.close()
    assert request_counts(tracker, "fraud", version=1, start_ms=0, end_ms=2 * HOUR) == {200: 2, 400: 1}


def test_prune_removes_the_counts_of_old_minutes(tracker: Tracker, models: list[str]) -> None:
    counts = RequestCounts()
    counts.add("fraud", 1, HOUR, 200)
    counts.add("fraud", 1, 10 * HOUR, 200)
    write_request_counts(tracker, counts.take())
    prune(tracker, "fraud", older_than_days=0, now_ms=5 * HOUR)
    assert request_spans(tracker, "fraud") == [(1, 10 * HOUR, 10 * HOUR)]


def test_counts_of_an_unknown_model_are_refused_whole(tracker: Tracker, models: list[str]) -> None:
    counts = RequestCounts()
    counts.add("fraud", 1, HOUR, 200)
    counts.add("ghost", 1, HOUR, 200)
    with pytest.raises(NotFound, match="ghost"):
        write_request_counts(tracker, counts.take())
    assert request_spans(tracker, "fraud") == []  # one transaction: nothing half-written
