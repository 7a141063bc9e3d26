"""`monitoring.run`: the closed windows of a served model's prediction log are computed once each."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import loopml
import loopml.predictions
from loopml.core.settings import load_settings
from loopml.monitoring.runner import refresh_performance, run
from loopml.monitoring.store import MonitorStore
from loopml.predictions import PredictionBatch, PredictionLog
from loopml.stats import TableProfile
from loopml.storage.gc import referenced_digests
from loopml.tracking.tracker import Tracker

HOUR = 3_600_000
START = 1_800_000_000_000 - 1_800_000_000_000 % HOUR  # an hour boundary in 2027


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[Tracker]:
    (tmp_path / "loopml.toml").write_text("")
    opened = Tracker(load_settings(project_dir=tmp_path))
    yield opened
    opened.close()


def frame(rows: int, shift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"amount": rng.normal(100 + shift, 20, rows), "age": rng.integers(18, 80, rows).astype(float)}
    )


def test_windows_are_profiled_checked_and_measured_once(tracker: Tracker) -> None:
    train = frame(2000, 0, 0)
    model = LogisticRegression().fit(train, (train["amount"] > 100).astype(int))
    registered = loopml.models.register("fraud", model, sample=train, tracker=tracker, onnx=False)
    version = registered.version.version
    log = PredictionLog(tracker)
    for hour, shift in ((0, 0.0), (1, 60.0)):  # the second hour's amounts moved by three standard deviations
        inputs = frame(1500, shift, 10 + hour)
        proba = model.predict_proba(inputs)
        outputs = {"prediction": model.predict(inputs), "proba_0": proba[:, 0], "proba_1": proba[:, 1]}
        ids = [f"h{hour}-{i}" for i in range(len(inputs))]
        batch = PredictionBatch(
            "fraud", version, "champion", ids, inputs, outputs, START + hour * HOUR + 1000, 1.0
        )
        assert log.append(batch)
    assert log.flush()
    log.close()

    assert run(tracker, "fraud", now_ms=START + HOUR + 60_000) == []  # the first hour is still in its grace
    computed = run(tracker, "fraud", now_ms=START + 3 * HOUR)
    assert [(w.start_ms - START) // HOUR for w in computed] == [0, 1]
    assert [w.rows for w in computed] == [1500, 1500]
    assert run(tracker, "fraud", now_ms=START + 3 * HOUR) == []  # computed once
    stored = MonitorStore(tracker.stores.db).windows("fraud")
    assert [w.window_id for w in stored] == [w.window_id for w in computed]

    first, second = computed
    assert first.quality["missing_columns"] == []
    assert first.quality["columns"]["amount"]["null_share"] == 0.0
    assert second.quality["columns"]["amount"]["out_of_range"] > 0  # beyond the training maximum
    assert first.drift is not None
    assert second.drift is not None
    assert _drifted(first.drift) == set()
    assert _drifted(second.drift) == {"amount"}

    assert first.performance is not None
    assert 0.5 < first.performance["estimated"]["metrics"]["accuracy"] <= 1.0
    assert "realized" not in first.performance  # no label yet
    assert first.labelled_rows == 0

    # Labels arrive later for half of the first hour: its realized accuracy is filled in, once.
    truth = frame(1500, 0.0, 10)
    labels = [(f"h0-{i}", int(truth["amount"][i] > 100)) for i in range(0, 1500, 2)]
    loopml.predictions.record_feedback(tracker, labels, "fraud")
    assert [w.start_ms for w in refresh_performance(tracker, "fraud", since_ms=START)] == [START]
    assert refresh_performance(tracker, "fraud", since_ms=START) == []
    updated = MonitorStore(tracker.stores.db).windows("fraud")[0]
    assert updated.labelled_rows == 750
    assert updated.performance is not None
    realized = updated.performance["realized"]["metrics"]["accuracy"]
    assert realized == pytest.approx(updated.performance["estimated"]["metrics"]["accuracy"], abs=0.05)

    profile = TableProfile.from_dict(json.loads(tracker.blobs.get_bytes(second.profile_digest or "")))
    assert profile.rows == 1500
    assert {"in.amount", "in.age", "out.prediction", "out.proba_1"} <= set(profile.columns)
    assert second.profile_digest in referenced_digests(tracker.stores.db, tracker.blobs)  # gc keeps it


def _drifted(drift: dict[str, object]) -> set[str]:
    columns = drift["columns"]
    assert isinstance(columns, dict)
    return {name for name, result in columns.items() if result["drifted"]}


def test_the_drift_share_is_weighted_by_the_models_feature_importance(tracker: Tracker) -> None:
    from sklearn.ensemble import RandomForestClassifier

    train = frame(3000, 0, 0)
    label = (train["age"] > 50).astype(int)  # only age matters to the model
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(train, label)
    version = loopml.models.register("ages", model, sample=train, tracker=tracker, onnx=False).version.version
    inputs = frame(1500, 60.0, 3)  # amount moves three standard deviations: a column the model ignores
    log = PredictionLog(tracker)
    log.append(
        PredictionBatch(
            "ages",
            version,
            "champion",
            [f"a{i}" for i in range(1500)],
            inputs,
            {"prediction": model.predict(inputs)},
            START + 10,
        )
    )
    assert log.flush()
    log.close()
    (window,) = run(tracker, "ages", now_ms=START + 2 * HOUR)
    assert window.drift is not None
    assert window.drift["columns"]["amount"]["drifted"] is True
    assert window.drift["share"] == 0.5
    assert window.drift["weighted_share"] < 0.1  # amount carries almost none of the model's importance
    assert window.drift["drifted"] is False
