"""End-to-end: `loopml score` and `loopml predictions` with the real executable on a real project."""

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


def rows(count: int, seed: int = 1, prefix: str = "r") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": [f"{prefix}{i}" for i in range(count)],
            "amount": rng.normal(100, 20, count),
            "age": rng.integers(18, 80, count),
        }
    )


def registered_project(folder: Path) -> Path:
    """A project in `folder` with model `fraud` v1 as its champion."""
    assert cli(folder, "init").returncode == 0
    tracker = Tracker(load_settings(project_dir=folder))
    frame = rows(80).drop(columns="id")
    try:
        model = LogisticRegression(max_iter=1000).fit(frame, (frame["amount"] > 100).astype(int))
        loopml.models.register("fraud", model, sample=frame, tracker=tracker)
        loopml.models.set_alias("fraud", "champion", 1, tracker=tracker)
    finally:
        tracker.close()
    return folder


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return registered_project(tmp_path)


def test_a_large_file_is_scored_in_chunks_with_rejects_and_logged(project: Path) -> None:
    data = rows(200).astype({"age": object})
    data.loc[[7, 150], "age"] = ["old", None]
    data.to_csv(project / "big.csv", index=False)
    result = cli(
        project, "score", "fraud@champion", "big.csv", "-o", "scored.parquet", "--chunk-rows", "20",
        "--rejects", "rejects.csv", "--id-column", "id", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    done = json.loads(result.stdout)
    # "Larger than memory": 200 rows read 20 at a time, never more than one chunk in hand.
    assert (done["rows"], done["chunks"], done["max_chunk_rows"]) == (200, 10, 20)
    assert (done["scored"], done["rejected"], done["version"]) == (198, 2, 1)
    scored = pd.read_parquet(project / "scored.parquet")
    assert len(scored) == 198
    assert scored.columns.tolist() == ["id", "amount", "age", "prediction", "proba_0", "proba_1"]
    rejects = pd.read_csv(project / "rejects.csv")
    assert rejects["_row"].tolist() == [7, 150]
    assert rejects["id"].tolist() == ["r7", "r150"]
    assert "'old' is not a number" in rejects["_reasons"][0]
    assert "column 'age' (null)" in rejects["_reasons"][1]

    listed = cli(project, "predictions", "list", "fraud", "--json")
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    assert sum(s["rows"] for s in found) == 198
    assert {(s["route"], s["source"]) for s in found} == {("batch", "batch")}
    table = cli(project, "predictions", "list", "fraud")
    assert "batch" in table.stdout

    dry = cli(project, "predictions", "prune", "fraud", "--older-than-days", "0")
    assert "Would prune" in dry.stdout
    pruned = cli(project, "predictions", "prune", "--older-than-days", "0", "--yes", "--json")
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["rows"] == 198
    assert json.loads(cli(project, "predictions", "list", "fraud", "--json").stdout) == []


def test_fail_mode_exits_1_and_leaves_no_output(project: Path) -> None:
    data = rows(60).astype({"age": object})
    data.loc[55, "age"] = "x"
    data.to_csv(project / "in.csv", index=False)
    before = sorted(p.name for p in project.iterdir())
    result = cli(
        project, "score", "fraud", "in.csv", "-o", "out.csv", "--chunk-rows", "10", "--on-error", "fail"
    )
    assert result.returncode == 1, result.stderr
    assert "row 55 of the input" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in project.iterdir()) == before
    assert json.loads(cli(project, "predictions", "list", "fraud", "--json").stdout) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "in.csv", "-o", "out.csv"], "no registered model 'nope'"),
        (["fraud", "missing.csv", "-o", "out.csv"], "does not exist"),
        (["fraud", "in.csv", "-o", "out.txt"], "unsupported file type"),
        (["fraud", "in.csv", "-o", "o.csv", "--rejects", "r.csv", "--on-error", "fail"], "contradict"),
        (["fraud", "in.csv", "-o", "o.csv", "--on-error", "reject"], "needs a reject file"),
        (["fraud", "narrow.csv", "-o", "out.csv"], "lacks the model's input column(s) ['age']"),
    ],
)
def test_bad_input_exits_2_with_one_line(project: Path, args: list[str], message: str) -> None:
    rows(3).to_csv(project / "in.csv", index=False)
    rows(3).drop(columns="age").to_csv(project / "narrow.csv", index=False)
    before = sorted(p.name for p in project.iterdir())
    result = cli(project, "score", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in project.iterdir()) == before


def test_predictions_list_of_an_unknown_model_exits_2(project: Path) -> None:
    result = cli(project, "predictions", "list", "nope")
    assert result.returncode == 2
    assert "no registered model 'nope'" in result.stderr
