"""End-to-end: `loopml models ...` with the real executable on a project holding two registered versions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from test_cli import cli

import loopml
from loopml.core.settings import load_settings
from loopml.tracking.tracker import Tracker


@pytest.fixture
def project(tmp_path: Path) -> Path:
    assert cli(tmp_path, "init").returncode == 0
    tracker = Tracker(load_settings(project_dir=tmp_path))
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"amount": rng.normal(100, 20, 60), "age": rng.integers(18, 80, 60)})
    label = (frame["amount"] > 100).astype(int)
    try:
        held = pd.DataFrame({"amount": rng.normal(100, 20, 60), "age": rng.integers(18, 80, 60)})
        loopml.datasets.add("holdout", held.assign(label=(held["amount"] > 100).astype(int)), tracker=tracker)
        for c in (1.0, 0.1):
            model = LogisticRegression(C=c, max_iter=1000).fit(frame, label)
            loopml.models.register("fraud", model, sample=frame, tracker=tracker)
    finally:
        tracker.close()
    return tmp_path


def test_list_versions_show_alias_history_download(project: Path) -> None:
    listed = cli(project, "models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [m["name"] for m in json.loads(listed.stdout)] == ["fraud"]
    versions = json.loads(cli(project, "models", "versions", "fraud", "--json").stdout)
    assert [v["version"] for v in versions] == [2, 1]

    moved = cli(project, "models", "alias", "fraud@champion", "1", "-m", "first model")
    assert moved.returncode == 0, moved.stderr
    assert "unset -> v1" in moved.stdout
    cli(project, "models", "alias", "fraud@champion", "2", "-m", "retrained")
    shown = cli(project, "models", "show", "fraud@champion")
    assert shown.returncode == 0, shown.stderr
    assert "fraud@v2" in shown.stdout
    assert "amount" in shown.stdout
    history = json.loads(cli(project, "models", "history", "fraud", "--json").stdout)
    assert [(e["from_version"], e["to_version"], e["reason"]) for e in history] == [
        (None, 1, "first model"),
        (1, 2, "retrained"),
    ]
    table = cli(project, "models", "history", "fraud")
    assert "retrained" in table.stdout

    target = project / "downloaded"
    downloaded = cli(project, "models", "download", "fraud@champion", "-o", str(target))
    assert downloaded.returncode == 0, downloaded.stderr
    assert (target / "loopml-model.yaml").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "nope"], "no registered model 'nope'"),
        (["show", "fraud@v9"], "has no v9"),
        (["alias", "fraud@champion"], "give a VERSION"),
        (["alias", "fraud", "1"], "NAME@ALIAS"),
        (["alias", "fraud@champion", "5"], "v5"),
        (["versions", "fraud@@"], "no registered model"),
    ],
)
def test_bad_input_exits_2_with_one_line(project: Path, args: list[str], message: str) -> None:
    result = cli(project, "models", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_promote_prints_gates_and_refuses_with_exit_1(project: Path) -> None:
    first = cli(project, "models", "promote", "fraud", "1", "-m", "first champion")
    assert first.returncode == 0, first.stderr
    assert "unset -> v1" in first.stdout
    refused = cli(
        project,
        "models",
        "promote",
        "fraud",
        "2",
        "--dataset",
        "holdout@v1",
        "--target",
        "label",
        "--min-delta",
        "0.5",
    )
    assert refused.returncode == 1
    assert "FAIL" in refused.stdout
    assert "beats v1 on roc_auc" in refused.stdout
    assert "was not promoted" in refused.stderr
    history = json.loads(cli(project, "models", "history", "fraud", "--json").stdout)
    assert history[-1]["outcome"] == "refused"
    no_reason = cli(project, "models", "promote", "fraud", "2", "--force")
    assert no_reason.returncode == 2
    assert "needs a reason" in no_reason.stderr
    no_data = cli(project, "models", "promote", "fraud", "2")
    assert no_data.returncode == 2
    assert "no evaluation data" in no_data.stderr
    passed = cli(
        project,
        "models",
        "promote",
        "fraud",
        "2",
        "--dataset",
        "holdout@v1",
        "--target",
        "label",
        "--min-delta",
        "-1",
    )
    assert passed.returncode == 0, passed.stderr
    assert "pass" in passed.stdout
    assert "v1 -> v2" in passed.stdout


def test_register_a_runs_skops_artifact(project: Path) -> None:
    tracker = Tracker(load_settings(project_dir=project))
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"amount": rng.normal(100, 20, 60), "age": rng.integers(18, 80, 60)})
    label = (frame["amount"] > 100).astype(int)
    try:
        loopml.datasets.add("train_rows", frame.assign(label=label), tracker=tracker)
        import skops.io

        with loopml.start_run(experiment="cli", tracker=tracker) as run:
            model = LogisticRegression(C=5.0, max_iter=1000).fit(frame, label)
            run.log_bytes(skops.io.dumps(model), "model/model.skops")
            run.log_bytes(b"not a model", "model/model.pkl")
    finally:
        tracker.close()
    result = cli(
        project, "models", "register", "fraud", "--run", run.run_id, "--artifact", "model/model.skops",
        "--sample", "train_rows@v1", "--target", "label", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["version"]["version"] == 3
    assert json.loads(result.stdout)["version"]["run_id"] == run.run_id
    pickled = cli(
        project, "models", "register", "fraud", "--run", run.run_id, "--artifact", "model/model.pkl"
    )
    assert pickled.returncode == 2
    assert "never pickle" in pickled.stderr
    missing = cli(project, "models", "register", "fraud", "--run", run.run_id, "--artifact", "nope.skops")
    assert missing.returncode == 2
    assert "its artifacts: model/model.pkl, model/model.skops" in missing.stderr


def test_compare_scores_versions_side_by_side(project: Path) -> None:
    args = ("models", "compare", "fraud", "v1", "v2", "--dataset", "holdout@v1", "--target", "label")
    shown = cli(project, *args)
    assert shown.returncode == 0, shown.stderr
    assert "roc_auc" in shown.stdout
    assert "v1" in shown.stdout
    assert "v2" in shown.stdout
    scores = json.loads(cli(project, *args, "--json").stdout)
    assert set(scores) == {"v1", "v2"}
    assert 0.5 < scores["v1"]["metrics"]["roc_auc"] <= 1.0
    assert scores["v1"]["latency_ms_per_row"] > 0
    one = cli(project, "models", "compare", "fraud", "v1", "--dataset", "holdout@v1", "--target", "label")
    assert one.returncode == 2
    assert "at least two" in one.stderr
    unknown = cli(project, "models", "compare", "fraud", "v1", "v9", "--dataset", "holdout@v1")
    assert unknown.returncode == 2
    assert "v9" in unknown.stderr
    assert "Traceback" not in unknown.stderr
