"""Late labels from a file are joined to logged predictions; unknown ids are counted, not recorded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import loopml
from loopml.core.errors import InvalidInput
from loopml.core.settings import load_settings
from loopml.monitoring.labels import ingest_labels
from loopml.predictions import PredictionBatch, PredictionLog, labels_for
from loopml.tracking.tracker import Tracker


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[Tracker]:
    (tmp_path / "loopml.toml").write_text("")
    opened = Tracker(load_settings(project_dir=tmp_path))
    frame = pd.DataFrame({"amount": np.arange(20.0)})
    model = LogisticRegression().fit(frame, (frame["amount"] > 9).astype(int))
    registered = loopml.models.register("fraud", model, sample=frame, tracker=opened, onnx=False)
    log = PredictionLog(opened)
    ids = [f"p{i}" for i in range(20)]
    log.append(
        PredictionBatch(
            "fraud",
            registered.version.version,
            "champion",
            ids,
            frame,
            {"prediction": model.predict(frame)},
            1,
        )
    )
    assert log.flush()
    log.close()
    yield opened
    opened.close()


def test_labels_join_on_prediction_ids_and_unknown_ones_are_reported(
    tracker: Tracker, tmp_path: Path
) -> None:
    path = tmp_path / "labels.csv"
    pd.DataFrame({"id": ["p1", "p2", "zz9", "p3"], "outcome": [1, 0, 1, 1]}).to_csv(path, index=False)
    result = ingest_labels(tracker, "fraud", path, id_column="id", label_column="outcome")
    assert (result.rows, result.recorded, result.unknown_ids) == (4, 3, 1)
    assert result.unknown_examples == ["zz9"]
    assert labels_for(tracker, ["p1", "p2", "p3", "zz9"]) == {"p1": 1, "p2": 0, "p3": 1}
    with pytest.raises(InvalidInput, match="no column 'label'"):
        ingest_labels(tracker, "fraud", path, id_column="id")
    with pytest.raises(InvalidInput, match=r"\.csv or \.parquet"):
        ingest_labels(tracker, "fraud", tmp_path / "loopml.toml")
    with pytest.raises(InvalidInput, match="no file"):
        ingest_labels(tracker, "fraud", tmp_path / "nope.csv")
