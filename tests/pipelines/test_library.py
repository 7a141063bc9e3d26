"""The tabular step library in a real pipeline: dataset input, held-out split registered, metrics logged."""

from __future__ import annotations

from typing import Any

import pandas as pd

import loopml
from loopml.pipelines import library as lib
from loopml.tracking.client import Client
from loopml.tracking.tracker import Tracker

CLIENT_SUITE = True  # every test runs embedded and through a team server


@loopml.pipeline(executor="threads")
def train(data: loopml.DatasetRef = "wine_small@latest", C: float = 1.0) -> Any:  # type: ignore[assignment]
    frame = lib.load_dataset(data)
    cleaned, _report = lib.clean_data(frame, target="target")
    train_rows, test_rows = lib.split_data(cleaned, target="target", register_as="wine_holdout")
    features = lib.build_features(train_rows, target="target")
    model = lib.train_model(
        train_rows,
        target="target",
        estimator="LogisticRegression",
        params={"C": C, "max_iter": 5000},
        features=features,
    )
    return lib.evaluate_model(model, test_rows, target="target")


def wine() -> pd.DataFrame:
    from sklearn.datasets import load_wine

    frame: pd.DataFrame = load_wine(as_frame=True).frame
    return frame


def test_a_dataset_pipeline_records_inputs_registers_the_holdout_and_logs_metrics(
    sqlite_tracker: Tracker,
) -> None:
    loopml.datasets.add("wine_small", wine())
    result = train.run()
    assert result.value["primary_metric"] == "f1"
    assert result.value["metrics"]["accuracy"] > 0.8
    client = Client(sqlite_tracker)
    inputs = client.list_inputs(result.run_id)
    assert [(i.dataset, i.version) for i in inputs] == [("wine_small", "v1")]
    split_run = client.get_run(result.record.step("split_data").run_id or "")
    assert split_run.tags["loopml.eval.dataset"] == "wine_holdout@v1"
    assert split_run.tags["loopml.eval.target"] == "target"
    holdout = loopml.datasets.load("wine_holdout@v1")
    assert len(holdout) == 36  # 20% of 178, stratified
    evaluate_run = client.get_run(result.record.step("evaluate_model").run_id or "")
    assert evaluate_run.metrics["accuracy"] == result.value["metrics"]["accuracy"]
    plots = {a.path for a in client.list_artifacts(evaluate_run.run_id)}
    assert "plots/confusion_matrix.png" in plots
    assert "outputs/output.skops" in {
        a.path for a in client.list_artifacts(result.record.step("train_model").run_id or "")
    }


def test_latest_resolves_to_content_so_a_new_version_reruns_only_when_content_changes(
    sqlite_tracker: Tracker,
) -> None:
    loopml.datasets.add("wine_small", wine())
    train.run()
    changed = wine().iloc[:150]
    loopml.datasets.add("wine_small", changed)
    second = train.run()
    assert second.record.step("load_dataset").status.value == "finished"
    assert second.record.params == {"C": 1.0, "data": "wine_small@v2"}
    third = train.run({"data": "wine_small@v2"})
    assert {s.status.value for s in third.record.steps} == {"cached"}
