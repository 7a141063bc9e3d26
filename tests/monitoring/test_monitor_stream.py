"""A simulated stream with a drift at a known hour, monitored window by window: flagged from that hour on and
not before; business KPIs from `loopml.toml` computed per window (and a failing one recorded, not fatal)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import loopml
from loopml.core.errors import InvalidInput
from loopml.core.settings import load_settings
from loopml.monitoring.config import monitor_config
from loopml.monitoring.runner import run
from loopml.monitoring.store import MonitorStore
from loopml.predictions import PredictionBatch, PredictionLog
from loopml.stats import TableProfile
from loopml.tracking.tracker import Tracker

HOUR = 3_600_000
START = 1_800_000_000_000 - 1_800_000_000_000 % HOUR
DRIFT_FROM = 3

KPI_MODULE = """
def blocked(window):
    return float((window["out.prediction"] == 1).sum())

def broken(window):
    raise RuntimeError("the finance table is down")
"""


def stream_frame(hour: int, rows: int = 1200) -> pd.DataFrame:
    rng = np.random.default_rng(100 + hour)
    shift = 25.0 if hour >= DRIFT_FROM else 0.0  # 1.25 sigma from the third hour on
    return pd.DataFrame(
        {
            "amount": rng.normal(100 + shift, 20, rows),
            "age": rng.normal(45, 12, rows),
            "channel": rng.choice(["web", "shop", "phone"], rows),
        }
    )


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Tracker]:
    (tmp_path / "loopml.toml").write_text(
        '[models.fraud.monitoring.kpis]\nblocked = "stream_kpis:blocked"\nbroken = "stream_kpis:broken"\n'
    )
    (tmp_path / "stream_kpis.py").write_text(KPI_MODULE)
    tracker = Tracker(load_settings(project_dir=tmp_path))
    yield tracker
    tracker.close()


def test_drift_is_flagged_from_the_known_hour_on_and_kpis_are_computed(project: Tracker) -> None:
    train = stream_frame(0, 3000)
    encode = ColumnTransformer(
        [
            ("num", StandardScaler(), ["amount", "age"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"]),
        ]
    )
    model = Pipeline([("encode", encode), ("model", LogisticRegression(max_iter=1000))])
    model.fit(train, (train["amount"] > 110).astype(int))
    version = loopml.models.register(
        "fraud", model, sample=train, tracker=project, onnx=False
    ).version.version
    log = PredictionLog(project)
    for hour in range(6):
        inputs = stream_frame(hour)
        proba = model.predict_proba(inputs)
        outputs = {"prediction": model.predict(inputs), "proba_0": proba[:, 0], "proba_1": proba[:, 1]}
        ids = [f"{hour}-{i}" for i in range(len(inputs))]
        log.append(
            PredictionBatch("fraud", version, "champion", ids, inputs, outputs, START + hour * HOUR + 5, 1.0)
        )
    assert log.flush()
    log.close()

    windows = run(project, "fraud", now_ms=START + 7 * HOUR)
    assert len(windows) == 6
    flagged = [sorted(n for n, c in (w.drift or {})["columns"].items() if c["drifted"]) for w in windows]
    assert flagged == [[], [], [], ["amount"], ["amount"], ["amount"]]
    for hour, window in enumerate(windows):
        assert window.performance is not None
        assert window.performance["kpis"]["blocked"] == float(model.predict(stream_frame(hour)).sum())
        assert window.performance["kpi_errors"]["broken"] == "RuntimeError: the finance table is down"
    # Prediction drift: outputs against the version's first window; the scores move with the amounts.
    assert "predictions" not in (windows[0].drift or {})
    scores = [(w.drift or {})["predictions"]["columns"]["proba_1"]["drifted"] for w in windows[1:]]
    assert scores == [False, False, True, True, True]
    # More amounts above the training threshold once the stream drifted: the KPI follows the data.
    assert windows[4].performance["kpis"]["blocked"] > windows[1].performance["kpis"]["blocked"]


def test_monitoring_settings_are_checked(tmp_path: Path) -> None:
    (tmp_path / "loopml.toml").write_text(
        "[models.fraud.monitoring.drift]\ndrift_share = 0.3\ncolumns = { amount = { threshold = 0.2 } }\n"
    )
    config = monitor_config(tmp_path, "fraud")
    assert config.drift.drift_share == 0.3
    assert config.drift.columns["amount"].threshold == 0.2
    assert monitor_config(tmp_path, "other").kpis == {}
    (tmp_path / "loopml.toml").write_text("[models.fraud.monitoring.drift]\nshare = 0.3\n")
    with pytest.raises(InvalidInput, match=r"monitoring.drift\].*unknown DriftConfig settings \['share'\]"):
        monitor_config(tmp_path, "fraud")
    (tmp_path / "loopml.toml").write_text('[models.fraud.monitoring.kpis]\nmoney = "not a target"\n')
    with pytest.raises(InvalidInput, match="'module:function'"):
        monitor_config(tmp_path, "fraud")


def test_a_day_is_the_merge_of_its_hours(project: Tracker) -> None:
    day = 24 * HOUR
    start = START - START % day
    train = stream_frame(0, 3000)
    model = Pipeline(
        [
            (
                "encode",
                ColumnTransformer(
                    [("num", StandardScaler(), ["amount", "age"]), ("cat", OneHotEncoder(), ["channel"])]
                ),
            ),
            ("model", LogisticRegression(max_iter=1000)),
        ]
    ).fit(train, (train["amount"] > 110).astype(int))
    version = loopml.models.register(
        "fraud", model, sample=train, tracker=project, onnx=False
    ).version.version
    log = PredictionLog(project)
    for hour in range(6):  # hours 3 to 5 drifted: half the day
        inputs = stream_frame(hour)
        ids = [f"{hour}-{i}" for i in range(len(inputs))]
        outputs = {"prediction": model.predict(inputs)}
        log.append(
            PredictionBatch("fraud", version, "champion", ids, inputs, outputs, start + hour * HOUR + 5, 2.0)
        )
    assert log.flush()
    log.close()

    days = run(project, "fraud", granularity="day", now_ms=start + 2 * day)
    assert len(days) == 1
    whole = days[0]
    hours = MonitorStore(project.stores.db).windows("fraud", granularity="hour")
    assert len(hours) == 6  # computed on the way
    assert whole.rows == sum(h.rows for h in hours) == 7200
    assert whole.drift is not None
    assert whole.drift["columns"]["amount"]["drifted"] is True
    assert whole.drift["columns"]["age"]["drifted"] is False
    assert whole.quality["rows"] == 7200
    assert whole.quality["latency_ms_worst_hour"]["p99"] == 2.0
    profile = TableProfile.from_dict(json.loads(project.blobs.get_bytes(whole.profile_digest or "")))
    assert profile.rows == 7200
    assert run(project, "fraud", granularity="day", now_ms=start + 2 * day) == []


def test_a_pinned_reference_is_a_dataset_version_or_a_range_of_past_windows(project: Tracker) -> None:
    import datetime as dt

    from loopml.monitoring.reference import reference_for

    train = stream_frame(0, 3000)
    model = Pipeline(
        [
            (
                "encode",
                ColumnTransformer(
                    [("num", StandardScaler(), ["amount", "age"]), ("cat", OneHotEncoder(), ["channel"])]
                ),
            ),
            ("model", LogisticRegression(max_iter=1000)),
        ]
    ).fit(train, (train["amount"] > 110).astype(int))
    version = loopml.models.register("fraud", model, sample=train, tracker=project, onnx=False).version
    loopml.datasets.add("normal_week", stream_frame(1, 5000), tracker=project)
    pinned = reference_for(project, version, "normal_week@v1")
    assert pinned is not None
    assert pinned.rows == 5000
    log = PredictionLog(project)
    for hour in range(4):
        inputs = stream_frame(hour)
        ids = [f"{hour}-{i}" for i in range(len(inputs))]
        log.append(
            PredictionBatch(
                "fraud",
                version.version,
                "champion",
                ids,
                inputs,
                {"prediction": model.predict(inputs)},
                START + hour * HOUR + 5,
            )
        )
    assert log.flush()
    log.close()
    run(project, "fraud", now_ms=START + 6 * HOUR)
    day = dt.datetime.fromtimestamp(START / 1000, dt.UTC).date()
    week = f"{day - dt.timedelta(days=1)}/{day + dt.timedelta(days=1)}"
    merged = reference_for(project, version, week)
    assert merged is not None
    assert merged.rows == 4 * 1200
    assert set(merged.columns) == {"amount", "age", "channel"}
    with pytest.raises(InvalidInput, match="FROM/TO"):
        reference_for(project, version, "last week")
    with pytest.raises(InvalidInput, match="no computed window"):
        reference_for(project, version, "2001-01-01/2001-01-02")
    (project.settings.project_dir / "loopml.toml").write_text(
        '[models.fraud.monitoring]\nrefrence = "x@v1"\n'
    )
    with pytest.raises(InvalidInput, match="unknown key"):
        monitor_config(project.settings.project_dir, "fraud")
