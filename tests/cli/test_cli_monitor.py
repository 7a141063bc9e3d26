"""End-to-end: `loopml monitor run|windows|labels` with the real executable on a served model's log."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from test_cli import cli

import loopml
from loopml.core.settings import load_settings
from loopml.predictions import PredictionBatch, PredictionLog
from loopml.tracking.tracker import Tracker

HOUR = 3_600_000


def test_monitor_computes_windows_once_and_takes_late_labels(tmp_path: Path) -> None:
    assert cli(tmp_path, "init").returncode == 0
    tracker = Tracker(load_settings(project_dir=tmp_path))
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"amount": rng.normal(100, 20, 500)})
    model = LogisticRegression().fit(train, (train["amount"] > 100).astype(int))
    version = loopml.models.register(
        "fraud", model, sample=train, tracker=tracker, onnx=False
    ).version.version
    two_hours_ago = int(time.time() * 1000) - 2 * HOUR
    inputs = pd.DataFrame({"amount": rng.normal(100, 20, 300)})
    proba = model.predict_proba(inputs)
    outputs = {"prediction": model.predict(inputs), "proba_0": proba[:, 0], "proba_1": proba[:, 1]}
    ids = [f"p{i}" for i in range(300)]
    log = PredictionLog(tracker)
    log.append(PredictionBatch("fraud", version, "champion", ids, inputs, outputs, two_hours_ago, 1.0))
    assert log.flush()
    log.close()
    tracker.close()

    first = cli(tmp_path, "monitor", "run", "fraud", "--json")
    assert first.returncode == 0, first.stderr
    windows = json.loads(first.stdout)
    assert [w["rows"] for w in windows] == [300]
    assert windows[0]["drift"]["columns"]["amount"]["drifted"] is False
    assert json.loads(cli(tmp_path, "monitor", "run", "fraud", "--json").stdout) == []  # computed once
    shown = cli(tmp_path, "monitor", "windows", "fraud")
    assert "v1" in shown.stdout
    assert "none" in shown.stdout  # no drifted column

    labels = tmp_path / "labels.csv"
    pd.DataFrame({"prediction_id": ["p1", "p2", "nope"], "label": [1, 0, 1]}).to_csv(labels, index=False)
    taken = cli(tmp_path, "monitor", "labels", "fraud", str(labels))
    assert taken.returncode == 0, taken.stderr
    assert "2 of 3 labels recorded" in taken.stdout
    assert "1 ids are not in the prediction log" in taken.stderr
    bad = cli(tmp_path, "monitor", "run", "nope")
    assert bad.returncode == 2
    assert "no registered model 'nope'" in bad.stderr
    wrong = cli(tmp_path, "monitor", "run", "fraud", "--granularity", "week")
    assert wrong.returncode == 2
    assert "granularity must be one of" in wrong.stderr


def test_check_measures_a_file_against_the_reference_and_exits_1_on_drift(tmp_path: Path) -> None:
    assert cli(tmp_path, "init").returncode == 0
    tracker = Tracker(load_settings(project_dir=tmp_path))
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"amount": rng.normal(100, 20, 2000), "age": rng.normal(40, 10, 2000)})
    model = LogisticRegression().fit(train, (train["amount"] > 100).astype(int))
    loopml.models.register("fraud", model, sample=train, tracker=tracker, onnx=False)
    loopml.models.set_alias("fraud", "champion", 1, tracker=tracker)
    tracker.close()
    same = tmp_path / "same.parquet"
    pd.DataFrame({"amount": rng.normal(100, 20, 3000), "age": rng.normal(40, 10, 3000)}).to_parquet(same)
    moved = tmp_path / "moved.csv"
    pd.DataFrame({"amount": rng.normal(150, 20, 3000), "age": rng.normal(40, 10, 3000)}).to_csv(
        moved, index=False
    )

    quiet = cli(tmp_path, "monitor", "check", "fraud@champion", "--current", str(same), "--json")
    assert quiet.returncode == 0, quiet.stderr
    assert json.loads(quiet.stdout)["drift"]["drifted"] is False
    report = tmp_path / "drift.html"
    loud = cli(tmp_path, "monitor", "check", "fraud@champion", "--current", str(moved), "--html", str(report))
    assert loud.returncode == 1
    assert "amount" in loud.stdout
    assert report.read_text().lstrip().lower().startswith("<!doctype html")
    missing = cli(tmp_path, "monitor", "check", "fraud", "--current", str(tmp_path / "nope.parquet"))
    assert missing.returncode == 2
    assert "no file" in missing.stderr
