"""Prediction log records: what a server hands to the log (`PredictionBatch`) and what the store indexes
(`Segment`, one closed Parquet file)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

ROUTES = ("champion", "challenger", "shadow", "batch")
SOURCES = ("serve", "batch")

# Column names inside a segment file. Inputs and outputs are prefixed so a feature called "prediction" can
# never collide with the model's output of the same name.
PREDICTION_ID = "prediction_id"
TIME_MS = "time_ms"
LATENCY_MS = "latency_ms"
ROUTE = "route"
INPUT_PREFIX = "in."
OUTPUT_PREFIX = "out."


@dataclass(frozen=True)
class PredictionBatch:
    """The predictions of one request (or one batch-scoring chunk), one row per prediction.

    `inputs` is the validated model input; `outputs` maps an output name ("prediction", "proba_1", ...) to one
    value per row. `time_ms` is when the request arrived (epoch ms); `latency_ms` how long it took.
    """

    model: str
    version: int
    route: str
    prediction_ids: Sequence[str]
    inputs: pd.DataFrame
    outputs: Mapping[str, Any]
    time_ms: int
    latency_ms: float | None = None
    source: str = "serve"

    @property
    def rows(self) -> int:
        """Number of predictions in the batch."""
        return len(self.prediction_ids)


@dataclass(frozen=True)
class Segment:
    """One closed segment of the prediction log: a Parquet file in the blob store and its index row.

    `start_time` / `end_time` are the first and last prediction times in it (epoch ms); `digest` names the
    file in the blob store.
    """

    segment_id: str
    model: str
    version: int
    route: str
    source: str
    digest: str
    rows: int
    bytes: int
    start_time: int
    end_time: int
    created_time: int
