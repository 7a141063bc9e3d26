"""End-to-end: `loopml monitor alerts MODEL` with the real executable lists the alerts the rules raised."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from test_cli import cli

import loopml
from loopml.core.settings import load_settings
from loopml.monitoring.alerts import alert
from loopml.monitoring.store import MonitorStore
from loopml.tracking.tracker import Tracker

HOUR = 3_600_000
START = 1_800_000_000_000 - 1_800_000_000_000 % HOUR

RULES = """
[[models.fraud.monitoring.alerts]]
name = "amount-drift"
metric = "drift.amount"
threshold = 0.1
severity = "critical"

[[models.fraud.monitoring.alerts]]
name = "volume"
metric = "rows"
threshold = 10
op = "<="
severity = "info"
"""


def _project(folder: Path) -> None:
    """A project with model `fraud`, one stored window that drifted, and the alerts it raised."""
    assert cli(folder, "init").returncode == 0
    with (folder / "loopml.toml").open("a") as config:
        config.write(RULES)
    tracker = Tracker(load_settings(project_dir=folder))
    try:
        rng = np.random.default_rng(0)
        train = pd.DataFrame({"amount": rng.normal(100, 20, 300)})
        model = LogisticRegression().fit(train, (train["amount"] > 100).astype(int))
        loopml.models.register("fraud", model, sample=train, tracker=tracker, onnx=False)
        window = MonitorStore(tracker.stores.db).save(
            "fraud",
            version=1,
            granularity="hour",
            start_ms=START,
            end_ms=START + HOUR,
            rows=5,
            profile_digest=None,
            quality={"rows": 5, "columns": {}, "missing_columns": []},
            drift={"share": 1.0, "drifted_count": 1, "columns": {"amount": {"drifted": True, "score": 0.4}}},
        )
        assert [a.rule for a in alert(tracker, "fraud", [window])] == ["amount-drift", "volume"]
    finally:
        tracker.close()


def test_alerts_are_listed_as_table_and_json(tmp_path: Path) -> None:
    _project(tmp_path)
    shown = cli(tmp_path, "monitor", "alerts", "fraud")
    assert shown.returncode == 0, shown.stderr
    assert "amount-drift" in shown.stdout
    assert "critical" in shown.stdout
    assert "log: delivered" in shown.stdout

    listed = cli(tmp_path, "monitor", "alerts", "fraud", "--json", "--since-hours", "1")
    assert listed.returncode == 0, listed.stderr
    alerts = json.loads(listed.stdout)
    assert [(a["rule"], a["severity"], a["value"], a["threshold"]) for a in alerts] == [
        ("amount-drift", "critical", 0.4, 0.1),
        ("volume", "info", 5.0, 10.0),
    ]
    assert alerts[0]["window_start_ms"] == START
    assert alerts[0]["delivered"]["log"]["status"] == "delivered"

    critical = cli(tmp_path, "monitor", "alerts", "fraud", "--json", "--severity", "critical")
    assert [a["rule"] for a in json.loads(critical.stdout)] == ["amount-drift"]
    assert (
        json.loads(cli(tmp_path, "monitor", "alerts", "fraud", "--json", "--since-hours", "0").stdout) == []
    )


def test_bad_input_exits_2(tmp_path: Path) -> None:
    _project(tmp_path)
    unknown = cli(tmp_path, "monitor", "alerts", "nope")
    assert unknown.returncode == 2
    assert "no registered model 'nope'" in unknown.stderr
    severity = cli(tmp_path, "monitor", "alerts", "fraud", "--severity", "urgent")
    assert severity.returncode == 2
    assert "severity must be one of info, warning, critical" in severity.stderr
    negative = cli(tmp_path, "monitor", "alerts", "fraud", "--since-hours", "-1")
    assert negative.returncode == 2
