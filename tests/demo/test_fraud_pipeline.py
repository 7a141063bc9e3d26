"""The demo's training pipeline in an isolated project: dataset in, model registered, retrained, promoted."""

from __future__ import annotations

import pandas as pd
import pytest

import loopml
from loopml.core.errors import InvalidInput
from loopml.demo.fraud_data import FEATURES, TARGET, TIME, transactions
from loopml.demo.fraud_pipeline import fraud_columns, train_fraud
from loopml.tracking.tracker import Tracker

FAST = {"n_estimators": 20}


def _inputs(ref: str) -> list[str]:
    signature = loopml.models.get(ref).signature
    assert signature is not None
    return [column["name"] for column in signature["inputs"]]


def test_training_registers_a_model_of_the_features_and_retraining_on_drifted_data_a_better_one(
    sqlite_tracker: Tracker,
) -> None:
    loopml.datasets.add("transactions", transactions(3_000, seed=0))
    first = train_fraud.run(FAST)
    assert first.value["model"] == "fraud@v1"
    assert first.value["evaluation"]["primary_metric"] == "roc_auc"
    assert first.value["evaluation"]["metrics"]["roc_auc"] > 0.8
    assert _inputs("fraud@v1") == list(FEATURES)
    holdout = loopml.datasets.load("fraud_holdout@v1")
    assert len(holdout) == 600
    assert list(holdout.columns) == [*FEATURES, TARGET]
    loopml.models.promote("fraud", 1)

    loopml.datasets.add("transactions", transactions(3_000, seed=1, drift=1.0))
    second = train_fraud.run(FAST)
    assert second.value["model"] == "fraud@v2"
    assert second.record.params["data"] == "transactions@v2"
    assert _inputs("fraud@v2") == list(FEATURES)

    # The gates score both on v2's held-out rows of the new regime, where v1's pattern no longer holds.
    scores = loopml.models.compare("fraud", "champion", "v2", dataset="fraud_holdout@v2", target=TARGET)
    assert scores["v2"].metrics["roc_auc"] > scores["champion"].metrics["roc_auc"] + 0.1
    promotion = loopml.models.promote("fraud", 2)
    assert promotion.event.to_version == 2
    assert promotion.evaluation == "dataset fraud_holdout@v2"
    assert promotion.gates
    assert all(gate.passed for gate in promotion.gates)
    assert loopml.models.get("fraud@champion").version == 2


def test_the_model_name_sets_the_registered_model_and_its_holdout(sqlite_tracker: Tracker) -> None:
    loopml.datasets.add("cards", transactions(1_000, seed=4))
    result = train_fraud.run({"data": "cards@latest", "model": "cards_fraud", **FAST})
    assert result.value["model"] == "cards_fraud@v1"
    assert len(loopml.datasets.load("cards_fraud_holdout@v1")) == 200


def test_fraud_columns_drops_the_time_and_names_missing_columns() -> None:
    frame = transactions(10, seed=0)
    assert list(fraud_columns(frame).columns) == [*FEATURES, TARGET]
    assert TIME not in fraud_columns(frame[[TIME, *reversed(FEATURES), TARGET]]).columns
    with pytest.raises(InvalidInput, match=r"lack columns \['country'\]"):
        fraud_columns(pd.DataFrame(frame.drop(columns=["country"])))
