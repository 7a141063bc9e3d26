"""Feedback: labels recorded by prediction id in one transaction, every bad item reported, latest label wins."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from prediction_batches import MakeBatch

from loopml.core.errors import InvalidInput, NotFound
from loopml.predictions import PredictionLog, labels_for, predictions_with_labels, record_feedback
from loopml.tracking.tracker import Tracker


def test_labels_join_predictions_and_the_latest_wins(
    models: list[str], open_log: Callable[..., PredictionLog], make_batch: MakeBatch, tracker: Tracker
) -> None:
    log = open_log()
    log.append(make_batch(0, 4))
    assert log.flush()
    assert record_feedback(tracker, [("p0", 1), ("p1", "spam"), ("p2", 0.5)], model="fraud") == 3
    assert record_feedback(tracker, [("p0", 0), ("unknown-id", True), ("p3", np.int64(7))]) == 3
    assert labels_for(tracker, ["p0", "p1", "p2", "p3", "nothing"]) == {
        "p0": 0,
        "p1": "spam",
        "p2": 0.5,
        "p3": 7,
    }
    joined = predictions_with_labels(tracker, "fraud")
    assert joined["prediction_id"].tolist() == ["p0", "p1", "p2", "p3"]
    assert joined["label"].tolist() == [0, "spam", 0.5, 7]
    record_feedback(tracker, [("p1", "ham")])
    labelled = predictions_with_labels(tracker, "fraud", labelled_only=True)
    assert dict(zip(labelled["prediction_id"], labelled["label"], strict=True))["p1"] == "ham"


def test_every_bad_item_is_reported_by_index_and_nothing_is_recorded(
    models: list[str], tracker: Tracker
) -> None:
    items = [
        ("ok", 1),
        ("", 1),
        ("x" * 129, 1),
        (7, 1),
        ("list", [1, 2]),
        ("nan", float("nan")),
        ("none", None),
        "not a pair",
        ("fine", "yes"),
    ]
    with pytest.raises(InvalidInput) as error:
        record_feedback(tracker, items)  # type: ignore[arg-type]
    message = error.value.message
    assert message.startswith("7 bad feedback items (nothing recorded)")
    for index in (1, 2, 3, 4, 5, 6, 7):
        assert f"item {index}:" in message
    assert "item 0:" not in message
    assert "item 8:" not in message
    assert "129 characters" in message
    assert labels_for(tracker, ["ok", "fine"]) == {}
    with pytest.raises(InvalidInput, match="no feedback"):
        record_feedback(tracker, [])
    with pytest.raises(NotFound, match="no registered model 'nope'"):
        record_feedback(tracker, [("a", 1)], model="nope")
    assert labels_for(tracker, ["a"]) == {}


def test_labels_for_many_ids_reads_them_in_chunks(models: list[str], tracker: Tracker) -> None:
    ids = [f"id-{i}" for i in range(1_234)]
    assert record_feedback(tracker, [(i, n % 3) for n, i in enumerate(ids)]) == 1_234
    found = labels_for(tracker, ids)
    assert len(found) == 1_234
    assert found["id-1000"] == 1000 % 3
