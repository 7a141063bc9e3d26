"""Fixtures of the prediction log tests: a project (SQLite or PostgreSQL) with registered models, and batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from prediction_batches import MakeBatch, features
from sklearn.linear_model import LogisticRegression

import loopml
from loopml.predictions import PredictionBatch, PredictionLog
from loopml.tracking.tracker import Tracker


@pytest.fixture
def models(tracker: Tracker) -> list[str]:
    """Two registered models, `fraud` and `churn` (the prediction log only needs them to exist)."""
    frame = features(40)[["amount", "age"]]
    label = (frame["amount"] > 100).astype(int)
    for name in ("fraud", "churn"):
        model = LogisticRegression(max_iter=500).fit(frame, label)
        loopml.models.register(name, model, sample=frame, onnx=False, tracker=tracker)
    return ["fraud", "churn"]


@pytest.fixture
def make_batch() -> MakeBatch:
    """`make_batch(start, rows, time_ms=..., **fields)`: ids `p<start>`..., deterministic inputs and outputs."""

    def make(start: int, rows: int, *, time_ms: int = 1_000, **fields: Any) -> PredictionBatch:
        inputs = features(start + rows).iloc[start:].reset_index(drop=True)
        values: dict[str, Any] = {
            "model": "fraud",
            "version": 1,
            "route": "champion",
            "prediction_ids": [f"p{i}" for i in range(start, start + rows)],
            "inputs": inputs,
            "outputs": {
                "prediction": np.arange(start, start + rows) % 2,
                "proba_1": np.linspace(0, 1, rows),
            },
            "time_ms": time_ms,
            "latency_ms": 1.5,
        }
        values.update(fields)
        return PredictionBatch(**values)

    return make


@pytest.fixture
def open_log(tracker: Tracker) -> Iterator[Callable[..., PredictionLog]]:
    """`open_log(**config)`: a PredictionLog on the project, closed after the test."""
    opened: list[PredictionLog] = []

    def make(**config: Any) -> PredictionLog:
        log = PredictionLog(tracker, **config)
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close()
