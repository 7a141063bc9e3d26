"""Retention: `prune` drops old segment rows (per model or all), gc then frees exactly their files."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prediction_batches import MakeBatch

import loopml
from loopml.core.errors import InvalidInput, NotFound
from loopml.predictions import PredictionLog, prune, read_predictions, segments
from loopml.predictions.retention import DAY_MS, forget
from loopml.tracking.tracker import Tracker

NOW = 100 * DAY_MS


def test_prune_old_segments_and_gc_their_files(
    models: list[str], open_log: Callable[..., PredictionLog], make_batch: MakeBatch, tracker: Tracker
) -> None:
    log = open_log()
    log.append(make_batch(0, 2, time_ms=NOW - 40 * DAY_MS))
    assert log.flush()
    log.append(make_batch(2, 3, time_ms=NOW - 10 * DAY_MS))
    log.append(make_batch(5, 1, time_ms=NOW - 50 * DAY_MS, model="churn"))
    assert log.flush()
    old, recent = segments(tracker, "fraud")

    dry = prune(tracker, "fraud", now_ms=NOW, dry_run=True)
    assert (dry.segments, dry.rows, dry.cutoff_ms, dry.dry_run) == (1, 2, NOW - 30 * DAY_MS, True)
    assert len(segments(tracker, "fraud")) == 2

    done = prune(tracker, "fraud", now_ms=NOW)
    assert (done.segments, done.rows, done.bytes) == (1, 2, old.bytes)
    assert segments(tracker, "fraud") == [recent]
    assert [s.rows for s in segments(tracker, "churn")] == [1]  # another model: untouched
    assert read_predictions(tracker, "fraud")["prediction_id"].tolist() == ["p2", "p3", "p4"]

    loopml.Client(tracker).gc(blob_grace_s=0)
    remaining = set(tracker.blobs.loose_digests())
    assert old.digest not in remaining
    assert recent.digest in remaining
    assert read_predictions(tracker, "fraud")["prediction_id"].tolist() == ["p2", "p3", "p4"]

    everything = prune(tracker, older_than_days=0, now_ms=NOW)
    assert (everything.segments, everything.rows) == (2, 4)


def test_forget_removes_named_segments(
    models: list[str], open_log: Callable[..., PredictionLog], make_batch: MakeBatch, tracker: Tracker
) -> None:
    log = open_log()
    log.append(make_batch(0, 2))
    assert log.flush()
    assert forget(tracker, [s.segment_id for s in log.written]) == 1
    assert forget(tracker, []) == 0
    assert segments(tracker, "fraud") == []


def test_prune_bad_input(models: list[str], tracker: Tracker) -> None:
    with pytest.raises(InvalidInput, match="0 or more"):
        prune(tracker, older_than_days=-1)
    with pytest.raises(NotFound, match="no registered model 'nope'"):
        prune(tracker, "nope")
