"""evaluate: metrics against scikit-learn, slices, confusion matrix, calibration, plots, undefined metrics."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression, RidgeClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from loopml.core.errors import InvalidInput
from loopml.pipelines.evaluation import Evaluation, evaluate
from loopml.pipelines.tabular import split, train

PNG = b"\x89PNG\r\n\x1a\n"


def assert_plain_metrics(metrics: dict[str, float]) -> None:
    for name, value in metrics.items():
        assert type(value) is float, name
        assert math.isfinite(value), name


@pytest.fixture(scope="module")
def cancer() -> tuple[Pipeline, pd.DataFrame]:
    frame = load_breast_cancer(as_frame=True).frame
    parts = split(frame, target="target", seed=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    model.fit(parts.train.drop(columns="target"), parts.train["target"])
    return model, parts.test


@pytest.fixture(scope="module")
def cancer_evaluation(cancer: tuple[Pipeline, pd.DataFrame]) -> Evaluation:
    model, test = cancer
    band = pd.cut(test["mean radius"], bins=[0, 12, 15, 100], labels=["small", "medium", "large"])
    return evaluate(model, test.assign(band=band), target="target", slice_by="band")


def test_binary_classification_metrics(
    cancer: tuple[Pipeline, pd.DataFrame], cancer_evaluation: Evaluation
) -> None:
    model, test = cancer
    result = cancer_evaluation
    assert result.task == "classification"
    assert set(result.metrics) == {"accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "log_loss"}
    assert_plain_metrics(result.metrics)
    assert result.metrics["roc_auc"] > 0.9
    assert (result.primary_metric, result.higher_is_better) == ("roc_auc", True)
    features, truth = test.drop(columns="target"), test["target"]
    proba = model.predict_proba(features)[:, 1]
    assert result.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(truth, proba))
    assert result.metrics["pr_auc"] == pytest.approx(skm.average_precision_score(truth, proba))
    assert result.metrics["recall"] == pytest.approx(skm.recall_score(truth, model.predict(features)))


def test_slices_confusion_matrix_and_calibration_account_for_every_row(cancer_evaluation: Evaluation) -> None:
    result = cancer_evaluation
    rows = 114
    assert set(result.per_slice) == {"small", "medium", "large"}
    assert sum(found["rows"] for found in result.per_slice.values()) == rows
    for found in result.per_slice.values():
        assert_plain_metrics(found)
    assert result.labels == ["0", "1"]
    assert sum(map(sum, result.confusion_matrix)) == rows
    assert all(type(count) is int for row in result.confusion_matrix for count in row)
    calibration = result.calibration
    assert sum(calibration["count"]) == rows
    assert all(
        0.0 <= value <= 1.0 for value in calibration["observed_frequency"] + calibration["mean_predicted"]
    )
    assert all(
        low < high for low, high in zip(calibration["bin_lower"], calibration["bin_upper"], strict=True)
    )
    assert set(result.plots) == {"roc.png", "pr.png", "confusion_matrix.png"}
    assert all(image.startswith(PNG) for image in result.plots.values())
    summary = json.loads(json.dumps(result.to_dict()))
    assert summary["plot_names"] == ["confusion_matrix.png", "pr.png", "roc.png"]
    assert "plots" not in summary


def test_positive_label_switches_the_class_scored(cancer: tuple[Pipeline, pd.DataFrame]) -> None:
    model, test = cancer
    result = evaluate(model, test, target="target", positive_label=0, plots=False)
    predicted = model.predict(test.drop(columns="target"))
    assert result.metrics["recall"] == pytest.approx(skm.recall_score(test["target"], predicted, pos_label=0))
    assert result.plots == {}
    with pytest.raises(
        InvalidInput, match=r"positive_label 'yes' is not one of the model's classes \[0, 1\]"
    ):
        evaluate(model, test, target="target", positive_label="yes")


def test_undefined_metrics_are_left_out_never_nan(cancer: tuple[Pipeline, pd.DataFrame]) -> None:
    model, test = cancer
    one_class = test[test["target"] == 1]
    result = evaluate(model, one_class, target="target", slice_by="mean radius")
    assert "roc_auc" not in result.metrics
    assert "pr_auc" not in result.metrics
    assert "roc.png" not in result.plots
    assert result.metrics["accuracy"] > 0.9
    assert_plain_metrics(result.metrics)
    assert len(result.per_slice) > 10  # one slice per distinct radius, mostly single rows
    for found in result.per_slice.values():
        assert_plain_metrics(found)
        assert "accuracy" in found


def test_decision_function_scores_when_there_is_no_predict_proba(
    cancer: tuple[Pipeline, pd.DataFrame],
) -> None:
    _, test = cancer
    frame = load_breast_cancer(as_frame=True).frame
    model = make_pipeline(StandardScaler(), RidgeClassifier()).fit(
        frame.drop(columns="target"), frame["target"]
    )
    result = evaluate(model, test, target="target")
    assert result.metrics["roc_auc"] > 0.9
    assert "log_loss" not in result.metrics
    assert result.calibration == {}
    assert result.primary_metric == "roc_auc"


def test_multiclass_uses_macro_f1_and_ovr_auc() -> None:
    frame = load_iris(as_frame=True).frame
    frame["target"] = frame["target"].map({0: "setosa", 1: "versicolor", 2: "virginica"})
    parts = split(frame, target="target", seed=1)
    model = train(parts.train, target="target", estimator="LogisticRegression", params={"max_iter": 1000})
    result = evaluate(model, parts.test, target="target")
    assert (result.primary_metric, result.higher_is_better) == ("f1", True)
    assert {"roc_auc", "log_loss", "f1"} <= set(result.metrics)
    assert "pr_auc" not in result.metrics
    predicted = model.predict(parts.test.drop(columns="target"))
    assert result.metrics["f1"] == pytest.approx(
        skm.f1_score(parts.test["target"], predicted, average="macro")
    )
    assert result.labels == ["setosa", "versicolor", "virginica"]
    assert sum(map(sum, result.confusion_matrix)) == len(parts.test)
    assert set(result.plots) == {"confusion_matrix.png"}
    assert result.calibration == {}


def test_regression_metrics_match_scikit_learn() -> None:
    frame = load_diabetes(as_frame=True).frame
    parts = split(frame, target="target", seed=2)
    model = LinearRegression().fit(parts.train.drop(columns="target"), parts.train["target"])
    result = evaluate(model, parts.test, target="target")
    truth, predicted = parts.test["target"], model.predict(parts.test.drop(columns="target"))
    assert result.task == "regression"
    assert (result.primary_metric, result.higher_is_better) == ("rmse", False)
    assert result.metrics == pytest.approx(
        {
            "mae": skm.mean_absolute_error(truth, predicted),
            "rmse": skm.root_mean_squared_error(truth, predicted),
            "r2": skm.r2_score(truth, predicted),
            "mape": skm.mean_absolute_percentage_error(truth, predicted),  # same: no target is 0
        }
    )
    assert_plain_metrics(result.metrics)
    assert result.confusion_matrix == []
    assert set(result.plots) == {"residuals.png"}
    assert result.plots["residuals.png"].startswith(PNG)


class FixedModel:
    """Not a scikit-learn estimator: predicts what it is given, so metrics can be worked out by hand."""

    def __init__(self, predictions: list[float]) -> None:
        self.predictions = np.asarray(predictions)
        self.feature_names_in_ = np.asarray(["x"], dtype=object)

    def predict(self, features: pd.DataFrame) -> Any:
        return self.predictions[features.index.to_numpy()]


def test_mape_skips_zero_targets_and_one_row_slices_omit_r2() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [0.0, 2.0, 4.0, 5.0], "g": ["a", "a", "b", "c"]})
    result = evaluate(FixedModel([1.0, 1.0, 5.0, 5.0]), frame, target="y", slice_by="g", plots=False)
    assert result.task == "regression"  # from the float target: the model has no scikit-learn tags
    assert result.metrics["mape"] == pytest.approx((0.5 + 0.25 + 0.0) / 3)
    assert result.metrics["mae"] == pytest.approx(3 / 4)
    assert result.per_slice["b"] == {"rows": 1.0, "mae": 1.0, "rmse": 1.0, "mape": 0.25}
    assert "mape" not in evaluate(FixedModel([1.0] * 4), frame.head(1), target="y", slice_by="g").metrics


def test_evaluation_is_deterministic() -> None:
    frame = load_breast_cancer(as_frame=True).frame
    results = []
    for _ in range(2):
        parts = split(frame, target="target", seed=3)
        model = train(
            parts.train, target="target", estimator="RandomForestClassifier", params={"n_estimators": 10}
        )
        results.append(evaluate(model, parts.test, target="target", plots=False))
    assert results[0] == results[1]


def test_evaluate_errors_name_the_problem(cancer: tuple[Pipeline, pd.DataFrame]) -> None:
    model, test = cancer
    with pytest.raises(InvalidInput, match=r"target column 'label' is not in the frame"):
        evaluate(model, test, target="label")
    with pytest.raises(InvalidInput, match="empty frame"):
        evaluate(model, test.head(0), target="target")
    with pytest.raises(InvalidInput, match=r"missing \['mean radius'\], not seen in training \['extra'\]"):
        evaluate(model, test.drop(columns="mean radius").assign(extra=1.0), target="target")
    with pytest.raises(InvalidInput, match=r"slice_by column 'region' is not in the frame"):
        evaluate(model, test, target="target", slice_by="region")
    unfitted = make_pipeline(StandardScaler(), LogisticRegression())
    with pytest.raises(InvalidInput, match="not fitted"):
        evaluate(unfitted, test, target="target")
    shuffled = test[list(reversed(test.columns))]  # column order does not matter
    assert evaluate(model, shuffled, target="target", plots=False).metrics["roc_auc"] > 0.9


def test_plots_leave_pyplot_alone() -> None:
    code = (
        "import sys, pandas as pd\n"
        "from sklearn.dummy import DummyClassifier\n"
        "from loopml.pipelines.evaluation import evaluate\n"
        "frame = pd.DataFrame({'x': [0.0, 1.0, 2.0, 3.0], 'y': [0, 1, 0, 1]})\n"
        "model = DummyClassifier(strategy='stratified', random_state=0).fit(frame[['x']], frame['y'])\n"
        "result = evaluate(model, frame, target='y')\n"
        "assert set(result.plots) == {'roc.png', 'pr.png', 'confusion_matrix.png'}, result.plots\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, timeout=120)
