"""Feedback: the true labels of earlier predictions, sent later by id, and joined to the logged predictions.

Feedback is append-only; when a prediction id gets several labels, the latest one recorded wins. Labels are
JSON scalars (strings, finite numbers, booleans), stored as JSON so `1` and `"1"` stay different.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from loopml.core.clock import now_ms
from loopml.core.errors import InvalidInput
from loopml.predictions.records import PREDICTION_ID
from loopml.predictions.segments import read_predictions, stores_of
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.lookups import model_id_of

if TYPE_CHECKING:
    import pandas as pd

    from loopml.storage.stores import Stores
    from loopml.tracking.tracker import Tracker

MAX_ID_LENGTH = 128  # the width of feedback.prediction_id
LABEL = "label"
_CHUNK = 500  # ids per IN (...) query: well under every database's parameter limit


def record_feedback(
    project: Tracker | Stores, items: Iterable[tuple[str, Any]], model: str | None = None
) -> int:
    """Record `(prediction_id, label)` pairs in one transaction; returns how many.

    `model` (a registered model name) is optional: ids join on their own. Every bad item is reported at once,
    by its index, in one `InvalidInput`, and then nothing is recorded.
    """
    pairs = list(items)
    if not pairs:
        raise InvalidInput("no feedback given: send a list of (prediction_id, label) pairs")
    problems: list[str] = []
    rows: list[tuple[str, str]] = []
    for index, item in enumerate(pairs):
        problem, row = _check(item)
        if problem is not None:
            problems.append(f"item {index}: {problem}")
        elif row is not None:
            rows.append(row)
    if problems:
        count = f"{len(problems)} bad feedback item{'s' if len(problems) != 1 else ''}"
        raise InvalidInput(f"{count} (nothing recorded): {'; '.join(problems)}")
    stores = stores_of(project)
    received = now_ms()

    def insert(conn: Connection) -> int:
        model_id = model_id_of(conn, model) if model is not None else None
        values = [
            {"prediction_id": pid, "model_id": model_id, "label_json": label, "received_time": received}
            for pid, label in rows
        ]
        conn.execute(t.feedback.insert(), values)
        return len(values)

    return stores.db.transact(insert)


def _check(item: Any) -> tuple[str | None, tuple[str, str] | None]:
    if not isinstance(item, tuple | list) or len(item) != 2:
        return f"expected a (prediction_id, label) pair, got {item!r:.60}", None
    prediction_id, label = item
    if not isinstance(prediction_id, str) or not prediction_id.strip():
        return f"prediction id must be a non-empty string, got {prediction_id!r:.60}", None
    if len(prediction_id) > MAX_ID_LENGTH:
        return f"prediction id is {len(prediction_id)} characters; at most {MAX_ID_LENGTH}", None
    if hasattr(label, "item") and not isinstance(label, str):
        label = label.item()  # a numpy scalar from a frame stands for the Python value
    if isinstance(label, float) and not math.isfinite(label):
        return f"label {label!r} is not a finite number", None
    if label is None or not isinstance(label, str | int | float | bool):
        return f"label must be a string, number or boolean, got {label!r:.60}", None
    return None, (prediction_id, json.dumps(label))


def labels_for(project: Tracker | Stores, prediction_ids: Collection[str]) -> dict[str, Any]:
    """The latest label recorded for each of `prediction_ids` that has one."""
    wanted = sorted({str(i) for i in prediction_ids})
    found: dict[str, Any] = {}
    f = t.feedback.c
    with stores_of(project).db.read() as conn:
        for start in range(0, len(wanted), _CHUNK):
            query = (
                select(f.prediction_id, f.label_json)
                .where(f.prediction_id.in_(wanted[start : start + _CHUNK]))
                .order_by(f.feedback_id)
            )
            for prediction_id, label in conn.execute(query):
                found[prediction_id] = json.loads(label)  # later rows overwrite: the latest wins
    return found


def predictions_with_labels(
    project: Tracker | Stores,
    model: str,
    *,
    version: int | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    routes: Sequence[str] | None = None,
    labelled_only: bool = False,
) -> pd.DataFrame:
    """`read_predictions` with a `label` column: the latest feedback per prediction id, None where none came
    (`labelled_only`: only the rows that have one)."""
    frame = read_predictions(project, model, version=version, start_ms=start_ms, end_ms=end_ms, routes=routes)
    labels = labels_for(project, frame[PREDICTION_ID].tolist())
    frame[LABEL] = [labels.get(i) for i in frame[PREDICTION_ID].tolist()]
    if labelled_only:
        frame = frame[frame[PREDICTION_ID].isin(list(labels))].reset_index(drop=True)
    return frame
