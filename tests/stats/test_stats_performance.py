"""Realized performance of windows with late labels, and the estimated-vs-realized comparison on a simulated stream."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from loopml.core.errors import InvalidInput
from loopml.stats import metrics as m
from loopml.stats.calibration import fit_calibrator
from loopml.stats.performance import (
    compare_performance,
    estimate_performance,
    realized_performance,
)

WEIGHTS = np.array([1.5, -1.0])
BIAS = 0.3
ROWS = 5_000


def window(
    seed: int, mean: tuple[float, float], *, rows: int = ROWS, flip: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs around `mean`; labels from the true logistic P(y | x), or with y flipped where x1 > 0.8."""
    rng = np.random.default_rng(seed)
    x = rng.normal(mean, 1.0, size=(rows, 2))
    y = (rng.random(rows) < 1.0 / (1.0 + np.exp(-(x @ WEIGHTS + BIAS)))).astype(int)
    if flip:  # concept drift: the same inputs, a different label relationship in part of the space
        y = np.where(x[:, 1] > 0.8, 1 - y, y)
    return x, y


# -------------------------------------------------------------------------------- the simulated stream


def sharpened(proba: np.ndarray, power: float) -> np.ndarray:
    """The model's probabilities with logits times `power`: power 1 is the model, above 1 overconfident."""
    logit = np.log(proba[:, 1]) - np.log(proba[:, 0])
    positive = 1.0 / (1.0 + np.exp(-power * logit))
    return np.column_stack([1.0 - positive, positive])


# Only the inputs move: the reference itself, towards the boundary (less sure), away from it (surer),
# along it, and far out into regions the reference barely covers.
SHIFTED = [(1.0, 0.0), (0.5, 0.5), (0.0, 0.5), (2.0, -1.0), (-1.5, -1.5), (0.0, 1.5), (-2.0, 0.0)]


@pytest.mark.parametrize(("power", "method"), [(1.0, "identity"), (2.5, "platt")])
def test_estimated_accuracy_tracks_realized_under_covariate_shift_and_concept_drift_is_named(
    power: float, method: str
) -> None:
    """Issue 7's "Done when" for performance: a logistic model of logistic data is calibrated by construction.

    power 2.5 makes the same model overconfident; the calibrator fitted on the reference must repair it.
    """
    train_x, train_y = window(0, (1.0, 0.0), rows=20_000)
    model = LogisticRegression().fit(train_x, train_y)
    classes = model.classes_

    def outputs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return model.predict(x), sharpened(model.predict_proba(x), power)

    ref_x, ref_y = window(1, (1.0, 0.0))
    calibrator = fit_calibrator(ref_y, outputs(ref_x)[1], classes=classes)
    assert calibrator.method == method
    assert calibrator.before.reliable == (power == 1.0)
    assert calibrator.reliable
    reference = realized_performance(ref_y, outputs(ref_x)[0], classes=classes).metrics
    assert reference is not None
    baseline = reference["accuracy"]
    assert baseline is not None

    diagnoses = []
    for i, mean in enumerate(SHIFTED):
        x, y = window(100 + i, mean)
        y_pred, proba = outputs(x)
        estimated = estimate_performance(proba, classes=classes, y_pred=y_pred, calibrator=calibrator)
        realized = realized_performance(y, y_pred, proba, classes=classes)
        assert realized.metrics is not None
        est, real = estimated.metrics["accuracy"], realized.metrics["accuracy"]
        assert est is not None
        assert real is not None
        assert abs(est - real) <= 0.03, f"window {i} at {mean}: estimated {est:.4f}, realized {real:.4f}"
        comparison = compare_performance(estimated, realized, reference=baseline)
        assert comparison.diagnosis != "concept drift"
        diagnoses.append(comparison.diagnosis)
    assert diagnoses[0] == "ok"
    # Moving towards the boundary costs accuracy, and the estimate foresaw it: covariate shift.
    assert diagnoses[2] == "covariate shift"

    # Concept drift: inputs as in the reference, labels flipped where x1 > 0.8 (a fifth of the rows).
    for seed in (200, 201, 202):
        x, y = window(seed, (1.0, 0.0), flip=True)
        y_pred, proba = outputs(x)
        estimated = estimate_performance(proba, classes=classes, y_pred=y_pred, calibrator=calibrator)
        realized = realized_performance(y, y_pred, proba, classes=classes)
        before_labels = compare_performance(estimated, None, reference=baseline)
        assert before_labels.diagnosis == "awaiting labels"
        assert before_labels.fired == ()  # nothing to see before the labels come
        comparison = compare_performance(estimated, realized, reference=baseline)
        assert comparison.diagnosis == "concept drift", comparison.message
        assert comparison.fired == ("realized",)  # the estimate did not move: only late labels caught it
        assert comparison.gap is not None
        assert comparison.gap < -comparison.allowed_gap
        assert "concept drift" in comparison.message
        assert json.loads(json.dumps(comparison.to_dict()))["diagnosis"] == "concept drift"


@pytest.mark.parametrize(
    ("estimated", "realized", "diagnosis", "fired"),
    [
        (0.90, 0.90, "ok", ()),
        (0.80, 0.79, "covariate shift", ("estimated", "realized")),
        (0.90, 0.70, "concept drift", ("realized",)),
        (0.80, 0.60, "concept drift", ("estimated", "realized")),
        (0.80, 0.90, "estimate not confirmed", ("estimated",)),
    ],
)
def test_comparison_names_the_signal_that_fired(
    estimated: float, realized: float, diagnosis: str, fired: tuple[str, ...]
) -> None:
    proba = np.tile([1.0 - estimated, estimated], (1_000, 1))
    estimate = estimate_performance(proba, classes=[0, 1], y_pred=np.ones(1_000, dtype=int))
    right = round(realized * 1_000)
    labels = np.r_[np.ones(right, dtype=int), np.zeros(1_000 - right, dtype=int)]
    real = realized_performance(labels, np.ones(1_000, dtype=int), classes=[0, 1])
    comparison = compare_performance(estimate, real, reference=0.9)
    assert comparison.diagnosis == diagnosis
    assert comparison.fired == fired
    assert comparison.allowed_gap == pytest.approx(max(0.03, 3 * (estimate.sampling_error["accuracy"] or 0)))


def test_comparison_rejects_metrics_that_are_not_estimated() -> None:
    estimate = estimate_performance([[0.2, 0.8]], classes=[0, 1])
    with pytest.raises(InvalidInput, match="not estimated"):
        compare_performance(estimate, None, reference=0.9, metric="log_loss")


# ---------------------------------------------------------------------------------- realized performance


def test_realized_scores_the_labelled_rows_with_the_registry_metrics() -> None:
    rng = np.random.default_rng(3)
    proba = rng.dirichlet([1.0, 1.0], size=400)
    y_pred = proba.argmax(axis=1)
    truth = (rng.random(400) < proba[:, 1]).astype(int)
    late = truth.astype(object)
    late[::4] = None  # a quarter of the labels have not arrived
    result = realized_performance(late, y_pred, proba, classes=[0, 1])
    assert result.status == "ok"
    assert result.rows == 400
    assert result.labelled_rows == 300
    keep = np.ones(400, dtype=bool)
    keep[::4] = False
    assert result.metrics == m.classification_metrics(truth[keep], y_pred[keep], proba[keep], classes=[0, 1])
    assert set(result.metrics) == {"accuracy", "precision", "recall", "f1", "log_loss", "roc_auc", "pr_auc"}
    assert result.reasons == {}
    assert result.unknown_labels == {}


def test_nan_labels_in_a_float_column_are_unlabelled_rows() -> None:
    truth = np.array([1.0, np.nan, 0.0, 1.0])
    result = realized_performance(truth, [1.0, 1.0, 0.0, 0.0], classes=[0.0, 1.0])
    assert (result.rows, result.labelled_rows) == (4, 3)
    assert result.metrics is not None
    assert result.metrics["accuracy"] == pytest.approx(2 / 3)


def test_no_labels_yet_gives_status_and_no_metrics() -> None:
    result = realized_performance([None, None, None], [1, 0, 1], [[0.2, 0.8]] * 3, classes=[0, 1])
    assert result.status == "no labels"
    assert result.metrics is None
    assert (result.rows, result.labelled_rows) == (3, 0)
    empty = realized_performance(np.array([], dtype=object), np.array([], dtype=int), classes=[0, 1])
    assert empty.status == "no labels"
    assert empty.rows == 0


def test_a_single_class_leaves_roc_auc_undefined_with_a_reason() -> None:
    result = realized_performance([1, 1, 1], [1, 0, 1], [[0.1, 0.9], [0.6, 0.4], [0.3, 0.7]], classes=[0, 1])
    assert result.metrics is not None
    assert result.metrics["roc_auc"] is None
    assert "one class only" in result.reasons["roc_auc"]
    assert result.metrics["accuracy"] == pytest.approx(2 / 3)
    only_negatives = realized_performance([0, 0], [0, 1], [[0.9, 0.1], [0.4, 0.6]], classes=[0, 1])
    assert only_negatives.metrics is not None
    assert only_negatives.metrics["pr_auc"] is None
    assert "positive" in only_negatives.reasons["pr_auc"]


def test_labels_outside_the_model_classes_are_counted_and_reported() -> None:
    truth = np.array(["cat", "dog", "emu", "emu", "cat", None], dtype=object)
    y_pred = np.array(["cat", "dog", "cat", "dog", "cat", "dog"], dtype=object)
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2], [0.5, 0.5]])
    result = realized_performance(truth, y_pred, proba, classes=["cat", "dog"])
    assert result.unknown_labels == {"emu": 2}
    assert result.metrics is not None
    assert result.metrics["accuracy"] == pytest.approx(3 / 5)
    assert result.metrics["log_loss"] is None
    assert "2 labelled rows" in result.reasons["log_loss"]


def test_slices_are_scored_on_their_own_rows() -> None:
    truth = np.array([1, 0, 1, 1, 0, 0, None, 1], dtype=object)
    y_pred = np.array([1, 0, 0, 1, 1, 0, 1, 1])
    keys = np.array(["eu", "eu", "us", "us", "us", None, "eu", "us"], dtype=object)
    result = realized_performance(truth, y_pred, classes=[0, 1], slices=keys)
    assert sorted(result.per_slice) == ["eu", "null", "us"]
    eu = result.per_slice["eu"]
    assert (eu.rows, eu.labelled_rows) == (3, 2)
    assert eu.metrics is not None
    assert eu.metrics["accuracy"] == 1.0
    assert result.per_slice["us"].metrics == m.classification_metrics(
        [1, 1, 0, 1], [0, 1, 1, 1], classes=[0, 1]
    )
    assert json.loads(json.dumps(result.to_dict()))["per_slice"]["null"]["labelled_rows"] == 1


def test_regression_windows_skip_missing_targets() -> None:
    truth = np.array([1.0, 2.0, np.nan, 4.0])
    result = realized_performance(truth, [1.5, 2.0, 3.0, 3.0], task="regression")
    assert result.labelled_rows == 3
    assert result.metrics == m.regression_metrics([1.0, 2.0, 4.0], [1.5, 2.0, 3.0])
    constant = realized_performance([2.0, 2.0], [1.0, 3.0], task="regression")
    assert constant.metrics is not None
    assert constant.metrics["r2"] is None
    assert "constant" in constant.reasons["r2"]


def test_realized_bad_inputs_raise_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="rows"):
        realized_performance([1, 0], [1], classes=[0, 1])
    with pytest.raises(InvalidInput, match="one row per label"):
        realized_performance([1, 0], [1, 0], [[0.5, 0.5]], classes=[0, 1])
    with pytest.raises(InvalidInput, match="slices"):
        realized_performance([1, 0], [1, 0], classes=[0, 1], slices=["a"])
    with pytest.raises(InvalidInput, match="unknown task"):
        realized_performance([1, 0], [1, 0], task="ranking")  # type: ignore[arg-type]
