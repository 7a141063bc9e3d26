"""Late labels from a file: `loopml monitor labels MODEL labels.csv` joins true outcomes to logged predictions.

Labels often come days later (chargebacks, defaults) as an export with a prediction id and an outcome. Each
row is recorded as feedback (the same store `/feedback` writes); ids the model's prediction log does not hold
are counted and reported, not recorded, so a wrong export cannot silently pollute the accuracy of a window.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopml.core.errors import InvalidInput
from loopml.monitoring.checking import read_table
from loopml.predictions import read_predictions, record_feedback
from loopml.tracking.tracker import Tracker


@dataclass(frozen=True)
class LabelsResult:
    """What a labels file did: rows read, labels recorded, ids the prediction log does not know."""

    rows: int
    recorded: int
    unknown_ids: int
    unknown_examples: list[str]


def ingest_labels(
    tracker: Tracker,
    model: str,
    source: str | Path | Any,
    *,
    id_column: str = "prediction_id",
    label_column: str = "label",
) -> LabelsResult:
    """Record the labels in `source` (a CSV or Parquet path, or a DataFrame) for the predictions of `model`."""
    frame = read_table(source, text_columns=(id_column,))
    missing = [c for c in (id_column, label_column) if c not in frame.columns]
    if missing:
        raise InvalidInput(
            f"the labels have no column {', '.join(map(repr, missing))}; columns: {', '.join(map(str, frame.columns))} "
            "(choose them with --id-column / --label-column)"
        )
    ids = frame[id_column].astype(str).tolist()
    known = set(read_predictions(tracker, model)["prediction_id"].astype(str))
    labels = frame[label_column].tolist()
    pairs = [(i, _plain(label)) for i, label in zip(ids, labels, strict=True) if i in known]
    unknown = [i for i in ids if i not in known]
    recorded = record_feedback(tracker, pairs, model) if pairs else 0
    return LabelsResult(len(frame), recorded, len(unknown), unknown[:10])


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
