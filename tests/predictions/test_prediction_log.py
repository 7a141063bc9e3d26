"""PredictionLog: segments rotated by rows, by age and by schema; a bounded queue that drops instead of
blocking; write errors counted without killing the writer; a blob without a row is harmless."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from prediction_batches import MakeBatch, features

import loopml
from loopml.core.errors import InvalidInput, NotFound
from loopml.predictions import PredictionLog, read_predictions, segments
from loopml.predictions.segments import write_segment
from loopml.tracking.tracker import Tracker

OpenLog = Callable[..., PredictionLog]


def wait_for(condition: Callable[[], bool]) -> None:
    """Wait for the writer thread to reach a state (a generous deadline only guards against a hang)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "the prediction log writer did not get there"
        time.sleep(0.005)


def test_rotation_by_rows_and_exact_values_read_back(
    models: list[str], open_log: OpenLog, make_batch: MakeBatch, tracker: Tracker
) -> None:
    log = open_log(max_rows=5)
    for i in range(4):
        assert log.append(make_batch(3 * i, 3, time_ms=1_000 + i)) is True
    assert log.flush()
    found = segments(tracker, "fraud")
    assert [s.rows for s in found] == [5, 5, 2]
    assert [(s.start_time, s.end_time) for s in found] == [(1_000, 1_001), (1_001, 1_003), (1_003, 1_003)]
    assert {(s.version, s.route, s.source) for s in found} == {(1, "champion", "serve")}
    assert log.written_rows == 12
    assert log.dropped_rows == 0

    frame = read_predictions(tracker, "fraud")
    expected = features(12)
    assert frame["prediction_id"].tolist() == [f"p{i}" for i in range(12)]
    assert frame["time_ms"].tolist() == [1_000] * 3 + [1_001] * 3 + [1_002] * 3 + [1_003] * 3
    assert frame["in.amount"].tolist() == expected["amount"].tolist()
    assert frame["in.age"].tolist() == expected["age"].tolist()
    assert frame["in.email"].tolist() == expected["email"].tolist()
    assert frame["out.prediction"].tolist() == [i % 2 for i in range(12)]
    assert frame["out.proba_1"].tolist() == np.tile(np.linspace(0, 1, 3), 4).tolist()
    assert set(frame["latency_ms"]) == {1.5}
    assert set(frame["route"]) == {"champion"}
    assert set(frame["version"]) == {1}

    window = read_predictions(tracker, "fraud", start_ms=1_001, end_ms=1_003)
    assert window["prediction_id"].tolist() == [f"p{i}" for i in range(3, 9)]
    assert segments(tracker, "fraud", start_ms=1_002, end_ms=1_003) == [found[1]]
    assert read_predictions(tracker, "churn").empty


def test_rotation_by_age_with_the_clock_of_the_log(
    models: list[str], open_log: OpenLog, make_batch: MakeBatch, tracker: Tracker
) -> None:
    now = [0.0]
    log = open_log(max_age_s=60, clock=lambda: now[0])
    log.append(make_batch(0, 3))
    wait_for(lambda: log.pending_rows == 3)
    now[0] = 61.0
    log.append(make_batch(3, 2))  # the first segment is over a minute old: this batch starts the next one
    wait_for(lambda: log.written_rows == 3)  # closed without a flush
    assert log.pending_rows == 2
    now[0] = 200.0
    wait_for(lambda: log.written_rows == 5)  # an idle open segment is closed by age too
    assert [s.rows for s in segments(tracker, "fraud")] == [3, 2]


def test_routes_versions_and_schemas_get_segments_of_their_own(
    models: list[str], open_log: OpenLog, make_batch: MakeBatch, tracker: Tracker
) -> None:
    log = open_log()
    log.append(make_batch(0, 2))
    log.append(make_batch(2, 2, route="challenger", version=2))
    log.append(make_batch(4, 2, source="batch", route="batch"))
    log.append(make_batch(6, 2, model="churn"))
    log.append(make_batch(10, 1, inputs=features(11).iloc[10:].assign(email=None)))  # all null: joins
    narrow = make_batch(8, 2).inputs[["amount"]]
    log.append(make_batch(8, 2, inputs=narrow, time_ms=1_001))  # a column fewer: a segment of its own
    assert log.flush()
    found = segments(tracker, "fraud")
    assert sorted((s.version, s.route, s.source, s.rows) for s in found) == [
        (1, "batch", "batch", 2),
        (1, "champion", "serve", 2),
        (1, "champion", "serve", 3),
        (2, "challenger", "serve", 2),
    ]
    assert [s.rows for s in segments(tracker, "churn")] == [2]
    assert [s.rows for s in segments(tracker, "fraud", version=2)] == [2]
    frame = read_predictions(tracker, "fraud", routes=["champion"])
    assert frame["prediction_id"].tolist() == ["p0", "p1", "p10", "p8", "p9"]
    assert frame["in.email"].isna().tolist() == [False, False, True, True, True]  # p8, p9: no such column


def test_a_full_queue_drops_and_counts_instead_of_blocking(
    models: list[str], open_log: OpenLog, make_batch: MakeBatch, tracker: Tracker
) -> None:
    entered, release = threading.Event(), threading.Event()

    def stalled_clock() -> float:
        # The writer asks the clock before each batch: holding it here holds the writer, as a slow disk would.
        if not release.is_set():
            entered.set()
            release.wait()
        return 0.0

    log = open_log(queue_size=2, clock=stalled_clock)
    assert log.append(make_batch(0, 3))
    entered.wait(timeout=30)
    assert log.append(make_batch(3, 3))
    assert log.append(make_batch(6, 3))
    assert log.queue_depth == 2
    assert log.append(make_batch(9, 4)) is False  # full: refused at once, not waited for
    assert log.append(make_batch(13, 1)) is False
    assert log.dropped_rows == 5
    release.set()
    assert log.flush()
    assert read_predictions(tracker, "fraud")["prediction_id"].tolist() == [f"p{i}" for i in range(9)]
    log.close()
    assert log.append(make_batch(20, 2)) is False
    assert log.dropped_rows == 7


def test_write_errors_are_counted_logged_once_and_the_writer_carries_on(
    models: list[str],
    open_log: OpenLog,
    make_batch: MakeBatch,
    tracker: Tracker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = open_log()
    with caplog.at_level(logging.ERROR, logger="loopml.predictions"):
        log.append(make_batch(0, 2, model="nope"))
        assert log.flush()
        log.append(make_batch(2, 3, model="nope"))
        log.append(make_batch(5, 2, prediction_ids=["a"]))  # two rows, one id: malformed
        log.append(make_batch(7, 2))
        assert log.flush()
    assert log.write_errors == 3
    assert log.dropped_rows == 2 + 3 + 1  # a batch counts as many rows as it has prediction ids
    assert log.written_rows == 2
    assert len([r for r in caplog.records if "NotFound" in r.getMessage() or "nope" in r.getMessage()]) == 1
    assert read_predictions(tracker, "fraud")["prediction_id"].tolist() == ["p7", "p8"]


def test_a_blob_without_its_row_is_harmless_and_gc_removes_only_it(
    models: list[str], open_log: OpenLog, make_batch: MakeBatch, tracker: Tracker
) -> None:
    log = open_log()
    log.append(make_batch(0, 2))
    assert log.flush()
    live = segments(tracker, "fraud")[0]
    orphan = pa.table({"prediction_id": ["x"], "time_ms": [5]})
    with pytest.raises(Exception):  # noqa: B017, PT011 - the database refuses a row for no model
        write_segment(
            tracker.stores, orphan, model_id="0" * 32, model="ghost", version=1, route="batch", source="batch"
        )  # a crash between the blob and its row looks like this: the blob stored, no row
    assert [s.segment_id for s in segments(tracker, "fraud")] == [live.segment_id]
    stored = set(tracker.blobs.loose_digests())
    loopml.Client(tracker).gc(blob_grace_s=0)
    assert live.digest in set(tracker.blobs.loose_digests())
    assert len(stored - set(tracker.blobs.loose_digests())) == 1  # the orphan only
    assert read_predictions(tracker, "fraud")["prediction_id"].tolist() == ["p0", "p1"]


def test_redacted_columns_are_left_out_and_hashed_ones_keyed(
    models: list[str], open_log: OpenLog, make_batch: MakeBatch, tracker: Tracker
) -> None:
    import blake3

    key = bytes(range(32))
    log = open_log(redact={"age"}, hash={"email"}, hash_key=key)
    log.append(make_batch(0, 5, inputs=features(5).assign(email=["a", "b", "a", None, "c"])))
    assert log.flush()
    frame = read_predictions(tracker, "fraud")
    assert "in.age" not in frame.columns
    digests = frame["in.email"].tolist()
    assert digests[0] == digests[2] == blake3.blake3(b"str:a", key=key).hexdigest()
    assert pd.isna(digests[3])
    assert len(set(digests)) == 4

    project_keyed = open_log(hash={"email"})  # no key given: one random key per project, kept private
    project_keyed.append(make_batch(10, 1, model="churn", inputs=features(1).assign(email=["a"])))
    assert project_keyed.flush()
    key_file = tracker.settings.home_dir / "secrets" / "prediction-hash.key"
    assert key_file.stat().st_mode & 0o077 == 0
    expected = blake3.blake3(b"str:a", key=key_file.read_bytes()).hexdigest()
    assert read_predictions(tracker, "churn")["in.email"].tolist() == [expected]


def test_bad_configuration_and_unknown_models(tracker: Tracker, models: list[str]) -> None:
    with pytest.raises(InvalidInput, match="both redacted and hashed"):
        PredictionLog(tracker, redact={"a"}, hash={"a"})
    with pytest.raises(InvalidInput, match="32 bytes"):
        PredictionLog(tracker, hash={"a"}, hash_key=b"short")
    with pytest.raises(InvalidInput, match="at least 1"):
        PredictionLog(tracker, max_rows=0)
    with pytest.raises(NotFound, match="no registered model 'nope'; registered models: churn, fraud"):
        segments(tracker, "nope")
    with pytest.raises(NotFound, match="nope"):
        read_predictions(tracker, "nope")


def test_a_segment_converted_in_chunks_reads_back_whole(
    models: list[str],
    open_log: OpenLog,
    make_batch: MakeBatch,
    tracker: Tracker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from loopml.predictions import log as log_module

    monkeypatch.setattr(log_module, "CHUNK_BATCHES", 3)  # chunks of 3 batches: 10 batches -> 4 tables
    log = open_log(max_rows=100)
    for i in range(10):
        assert log.append(make_batch(2 * i, 2, time_ms=1_000 + i))
    assert log.flush()
    assert [s.rows for s in segments(tracker, "fraud")] == [20]
    frame = read_predictions(tracker, "fraud")
    assert frame["prediction_id"].tolist() == [f"p{i}" for i in range(20)]
    assert frame["in.amount"].tolist() == features(20)["amount"].tolist()
    assert frame["time_ms"].tolist() == [1_000 + i // 2 for i in range(20)]
