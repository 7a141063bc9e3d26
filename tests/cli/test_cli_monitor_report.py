"""End-to-end: `loopml monitor report MODEL -o report.html --json report.json` with the real executable."""

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


def test_monitor_report_writes_html_and_json_and_refuses_bad_input(tmp_path: Path) -> None:
    assert cli(tmp_path, "init").returncode == 0
    tracker = Tracker(load_settings(project_dir=tmp_path))
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"amount": rng.normal(100, 20, 2000)})
    model = LogisticRegression().fit(train, (train["amount"] > 100).astype(int))
    version = loopml.models.register(
        "fraud", model, sample=train, tracker=tracker, onnx=False
    ).version.version
    loopml.models.register("idle", model, sample=train, tracker=tracker, onnx=False)
    log = PredictionLog(tracker)
    now = int(time.time() * 1000)
    for hours_ago, shift in ((3, 0.0), (2, 60.0)):  # two different closed hours; the later one shifted
        inputs = pd.DataFrame({"amount": rng.normal(100 + shift, 20, 1200)})
        proba = model.predict_proba(inputs)
        outputs = {"prediction": model.predict(inputs), "proba_0": proba[:, 0], "proba_1": proba[:, 1]}
        ids = [f"h{hours_ago}-{i}" for i in range(len(inputs))]
        batch = PredictionBatch(
            "fraud", version, "champion", ids, inputs, outputs, now - hours_ago * HOUR, 1.0
        )
        assert log.append(batch)
    assert log.flush()
    log.close()
    tracker.close()

    early = cli(tmp_path, "monitor", "report", "fraud", "-o", "report.html")
    assert early.returncode == 2
    assert early.stderr.strip().count("\n") == 0  # one line
    assert "run `loopml monitor run fraud` first" in early.stderr
    assert not (tmp_path / "report.html").exists()

    assert cli(tmp_path, "monitor", "run", "fraud").returncode == 0
    made = cli(tmp_path, "monitor", "report", "fraud", "-o", "report.html", "--json", "report.json")
    assert made.returncode == 0, made.stderr
    assert "2 windows of fraud" in made.stdout
    html = (tmp_path / "report.html").read_text()
    assert "<title>LoopML monitoring report: fraud</title>" in html
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["summary"]["windows"] == 2
    assert [c["drifted"] for c in data["drift"]["cells"]["amount"]] == [False, True]
    assert data["distributions"]["features"]["amount"]["current_rows"] == 2400
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".report")) == []  # no temp files

    last = cli(
        tmp_path, "monitor", "report", "fraud", "-o", "last.html", "--json", "last.json", "--last", "1"
    )
    assert last.returncode == 0, last.stderr
    assert json.loads((tmp_path / "last.json").read_text())["summary"]["windows"] == 1

    for args, message in (
        (["nope", "-o", "x.html"], "no registered model 'nope'"),
        (["idle", "-o", "x.html"], "run `loopml monitor run idle` first"),
        (["fraud", "-o", "missing/x.html"], "cannot write"),
        (["fraud", "-o", "x.html", "--version", "9"], "fraud"),
    ):
        bad = cli(tmp_path, "monitor", "report", *args)
        assert bad.returncode == 2, (args, bad.stderr)
        assert message in bad.stderr, (args, bad.stderr)
        assert bad.stderr.strip().count("\n") == 0, (args, bad.stderr)
        assert "Traceback" not in bad.stderr
    assert not (tmp_path / "x.html").exists()
