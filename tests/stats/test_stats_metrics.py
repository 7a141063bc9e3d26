"""Model-quality metrics: equal to scikit-learn on random data, None or left out when undefined, clear errors."""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn import metrics as skm

from loopml.core.errors import InvalidInput
from loopml.stats.metrics import (
    HIGHER_IS_BETTER,
    accuracy,
    classification_metrics,
    f1,
    log_loss,
    mae,
    mape,
    pr_auc,
    precision,
    primary_metric,
    r2,
    recall,
    regression_metrics,
    rmse,
    roc_auc,
)

SEEDS = [0, 1, 2, 3, 4]
REL = 1e-12


def tied_binary(seed: int, n: int = 2_000) -> tuple[np.ndarray, np.ndarray]:
    """Labels 0/1 and scores rounded to 2 decimals, so many scores tie, also across the classes."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(np.int64)
    scores = np.round(rng.random(n) * 0.7 + 0.3 * y * rng.random(n), 2)
    return y, scores


def multiclass(seed: int, n: int = 1_500) -> tuple[np.ndarray, np.ndarray]:
    """String labels; predictions never use "dove" and sometimes use "emu", which y_true never holds."""
    rng = np.random.default_rng(seed)
    y_true = rng.choice(np.array(["ant", "bee", "cat", "dove"]), size=n, p=[0.4, 0.3, 0.25, 0.05])
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.choice(np.array(["ant", "bee", "cat", "emu"]), size=n))
    y_pred[y_pred == "dove"] = "cat"
    return y_true, y_pred


def dirichlet(seed: int, n: int, k: int) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(k), size=n)


# ---------------------------------------------------------------------------------------------- ranking


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_auc_and_pr_auc_equal_sklearn_with_ties(seed: int) -> None:
    y, scores = tied_binary(seed)
    assert np.unique(scores).size < scores.size / 10  # ties are the point
    assert roc_auc(y, scores) == pytest.approx(skm.roc_auc_score(y, scores), rel=REL)
    assert pr_auc(y, scores) == pytest.approx(skm.average_precision_score(y, scores), rel=REL)
    # the negative class as positive: AUC mirrors, AP is that of the flipped problem
    assert roc_auc(y, -scores, positive=0) == pytest.approx(skm.roc_auc_score(1 - y, -scores), rel=REL)
    assert pr_auc(y, -scores, positive=0) == pytest.approx(
        skm.average_precision_score(y, -scores, pos_label=0), rel=REL
    )


def exact_auc(y: list[int], scores: list[int]) -> float:
    """Mann-Whitney by brute force over all pairs, in exact fractions."""
    pos = [s for label, s in zip(y, scores, strict=True) if label == 1]
    neg = [s for label, s in zip(y, scores, strict=True) if label != 1]
    wins = sum(Fraction(1) if p > q else Fraction(1, 2) if p == q else Fraction(0) for p in pos for q in neg)
    return float(wins / (len(pos) * len(neg)))


@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(-3, 3)), min_size=2, max_size=60).filter(
        lambda rows: len({label for label, _ in rows}) == 2
    )
)
def test_roc_auc_is_exact_mann_whitney(rows: list[tuple[int, int]]) -> None:
    y, scores = [label for label, _ in rows], [score for _, score in rows]
    assert roc_auc(y, scores) == exact_auc(y, scores)  # correctly rounded, not approximately
    assert pr_auc(y, scores) == pytest.approx(skm.average_precision_score(y, scores), rel=REL)


def test_ranking_with_string_labels_bool_scores_and_multiclass_truth() -> None:
    y, scores = tied_binary(7)
    named = np.where(y == 1, "spam", "ham")
    assert roc_auc(named, scores, positive="spam") == pytest.approx(skm.roc_auc_score(y, scores), rel=REL)
    assert pr_auc(list(named), scores.tolist(), positive="spam") == pytest.approx(
        skm.average_precision_score(y, scores), rel=REL
    )
    flags = scores > 0.5
    assert roc_auc(y, flags) == pytest.approx(skm.roc_auc_score(y, flags), rel=REL)
    # a multiclass y_true: `positive` against the rest
    three = np.random.default_rng(3).integers(0, 3, y.size)
    assert roc_auc(three, scores, positive=2) == pytest.approx(skm.roc_auc_score(three == 2, scores), rel=REL)


def test_ranking_undefined_with_one_class() -> None:
    assert roc_auc([0, 0, 0], [0.1, 0.5, 0.9]) is None
    assert roc_auc([1, 1], [0.1, 0.5]) is None
    assert pr_auc([0, 0, 0], [0.1, 0.5, 0.9]) is None  # no positive: no recall to gain
    assert pr_auc([1, 1], [0.1, 0.5]) == 1.0  # every threshold is all precision
    assert roc_auc(["a", "a"], [0.1, 0.2], positive="b") is None  # a slice without the positive class


def test_ranking_rejects_unknown_positive_and_bad_scores() -> None:
    with pytest.raises(
        InvalidInput, match=r"positive label 1 is not in y_true, whose labels are \['a', 'b'\]"
    ):
        roc_auc(["a", "b"], [0.1, 0.2])
    with pytest.raises(InvalidInput, match=r"scores holds 1 missing or infinite values \(the first at row 1"):
        roc_auc([0, 1], [0.1, np.nan])
    with pytest.raises(InvalidInput, match="scores holds 1 missing or infinite values"):
        pr_auc([0, 1], [0.1, np.inf])
    with pytest.raises(InvalidInput, match="scores must hold numbers; got dtype <U1"):
        roc_auc([0, 1], ["a", "b"])
    with pytest.raises(InvalidInput, match="y_true holds 1 missing labels"):
        roc_auc(np.array([0, None, 1], dtype=object), [0.1, 0.2, 0.3])
    with pytest.raises(InvalidInput, match="y_true holds 1 missing labels"):
        roc_auc([0.0, np.nan, 1.0], [0.1, 0.2, 0.3])


def test_roc_auc_speed_on_a_million_rows() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1_000_000)
    scores = np.round(rng.random(y.size) + 0.3 * y, 4)
    started = time.perf_counter()
    ours = roc_auc(y, scores)
    middle = time.perf_counter()
    theirs = skm.roc_auc_score(y, scores)
    ended = time.perf_counter()
    assert ours == pytest.approx(theirs, rel=REL)
    print(f"\nroc_auc on 1,000,000 rows: loopml {middle - started:.3f}s, scikit-learn {ended - middle:.3f}s")


# ----------------------------------------------------------------------------------------------- labels


@pytest.mark.parametrize("seed", SEEDS)
def test_macro_metrics_equal_sklearn_on_string_labels(seed: int) -> None:
    y_true, y_pred = multiclass(seed)
    assert accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred), rel=REL)
    for ours, theirs in [(precision, skm.precision_score), (recall, skm.recall_score), (f1, skm.f1_score)]:
        expected = theirs(y_true, y_pred, average="macro", zero_division=0.0)
        assert ours(y_true, y_pred) == pytest.approx(expected, rel=REL), ours.__name__
        assert ours(list(y_true), pd.Series(y_pred), average="macro") == pytest.approx(expected, rel=REL)


def test_macro_counts_only_labels_present() -> None:
    # "c" is in neither input: it does not drag the mean down; "b" is never predicted: precision 0 for it
    y_true, y_pred = ["a", "a", "b", "b"], ["a", "a", "a", "a"]
    assert precision(y_true, y_pred) == pytest.approx(0.25)
    assert recall(y_true, y_pred) == pytest.approx(0.5)
    assert f1(y_true, y_pred) == pytest.approx(skm.f1_score(y_true, y_pred, average="macro", zero_division=0))


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_metrics_equal_sklearn(seed: int) -> None:
    y, scores = tied_binary(seed)
    y_pred = (scores > 0.5).astype(np.int64)
    for ours, theirs in [(precision, skm.precision_score), (recall, skm.recall_score), (f1, skm.f1_score)]:
        for positive in (0, 1):
            expected = theirs(y, y_pred, average="binary", pos_label=positive, zero_division=0.0)
            assert ours(y, y_pred, average="binary", positive=positive) == pytest.approx(expected, rel=REL)


def test_binary_with_more_labels_scores_positive_against_the_rest() -> None:
    y_true, y_pred = multiclass(5)
    for ours, theirs in [(precision, skm.precision_score), (recall, skm.recall_score), (f1, skm.f1_score)]:
        expected = theirs(y_true, y_pred, labels=["bee"], average="micro", zero_division=0.0)
        assert ours(y_true, y_pred, average="binary", positive="bee") == pytest.approx(expected, rel=REL)


def test_zero_division_is_zero_not_a_warning() -> None:
    assert precision([1, 1, 0], [0, 0, 0], average="binary") == 0.0  # positive never predicted
    assert recall([0, 0], [0, 0], average="binary") == 0.0  # positive in neither input
    assert f1([0, 0], [0, 0], average="binary") == 0.0
    assert f1([0, 0], [0, 0]) == 1.0  # macro over the one label present, all correct


def test_labels_of_mixed_dtypes() -> None:
    assert accuracy(np.array([True, False, True]), [1, 0, 0]) == pytest.approx(2 / 3)
    assert accuracy([1, 2, 3], np.array([1.0, 2.0, 4.0])) == pytest.approx(2 / 3)
    assert accuracy(pd.Series(["x", "y"], dtype="category"), ["x", "x"]) == 0.5
    with pytest.raises(InvalidInput, match=r"the labels of y_true and y_pred mix types \(int, str\)"):
        accuracy([1, 2], ["1", "2"])
    with pytest.raises(
        InvalidInput, match=r"y_true mixes label types \(int, str\) that do not sort together"
    ):
        accuracy(np.array([1, "a"], dtype=object), [1, 1])
    with pytest.raises(InvalidInput, match="y_pred holds 1 missing labels"):
        accuracy([1, 2], np.array([1, None], dtype=object))
    listed = np.empty(2, dtype=object)
    listed[0], listed[1] = [1], [2]
    with pytest.raises(
        InvalidInput, match="y_true holds values that cannot be labels: unhashable type: 'list'"
    ):
        accuracy(listed, [1, 2])


def test_label_errors() -> None:
    with pytest.raises(InvalidInput, match="positive label 1 is in neither y_true nor y_pred"):
        f1(["a", "b"], ["a", "a"], average="binary")
    with pytest.raises(InvalidInput, match="unknown average 'micro'; use 'binary' or 'macro'"):
        f1([1, 0], [1, 0], average="micro")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ probability


@pytest.mark.parametrize("seed", SEEDS)
def test_log_loss_equals_sklearn(seed: int) -> None:
    y_true, _ = multiclass(seed)
    classes = ["ant", "bee", "cat", "dove"]
    proba = dirichlet(seed, y_true.size, 4)
    expected = skm.log_loss(y_true, proba, labels=classes)
    assert log_loss(y_true, proba, classes=classes) == pytest.approx(expected, rel=REL)
    # columns follow `classes` as given, not their sorted order
    shuffled = [2, 0, 3, 1]
    assert log_loss(y_true, proba[:, shuffled], classes=[classes[i] for i in shuffled]) == pytest.approx(
        expected, rel=REL
    )
    # classes absent from y_true still own a column
    rows = y_true != "dove"
    assert log_loss(y_true[rows], proba[rows], classes=np.array(classes)) == pytest.approx(
        skm.log_loss(y_true[rows], proba[rows], labels=classes), rel=REL
    )


def test_log_loss_clips_at_1e_15() -> None:
    proba = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert log_loss([1, 1], proba, classes=[0, 1]) == pytest.approx(-np.log(1e-15) / 2, rel=REL)
    assert log_loss([0, 1], proba, classes=[0, 1]) == pytest.approx(-np.log1p(-1e-15), rel=1e-6)


def test_log_loss_errors() -> None:
    proba = dirichlet(0, 3, 2)
    with pytest.raises(InvalidInput, match=r"y_true holds labels that are not among classes \[0, 1\]: \[2\]"):
        log_loss([0, 1, 2], proba, classes=[0, 1])
    with pytest.raises(InvalidInput, match=r"probabilities must have shape \(3, 2\).*got shape \(3,\)"):
        log_loss([0, 1, 1], proba[:, 1], classes=[0, 1])
    with pytest.raises(InvalidInput, match=r"probabilities must have shape \(3, 3\)"):
        log_loss([0, 1, 1], proba, classes=[0, 1, 2])
    with pytest.raises(
        InvalidInput, match=r"probabilities must lie in \[0, 1\]; found -0.5; pass predict_proba"
    ):
        log_loss([0, 1, 1], [[0.5, 0.5], [-0.5, 1.5], [0.2, 0.8]], classes=[0, 1])
    holed = proba.copy()
    holed[1, 1] = np.nan
    with pytest.raises(InvalidInput, match="probabilities holds 1 missing or infinite values"):
        log_loss([0, 1, 1], holed, classes=[0, 1])
    with pytest.raises(InvalidInput, match=r"classes \[0, 0\] holds duplicates"):
        log_loss([0, 1, 1], proba, classes=[0, 0])
    with pytest.raises(InvalidInput, match="classes is empty"):
        log_loss([0, 1, 1], proba, classes=[])


# ------------------------------------------------------------------------------------------- regression


@pytest.mark.parametrize("seed", SEEDS)
def test_regression_equals_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = np.round(rng.normal(5, 3, 3_000), 1)
    y_true[rng.integers(0, y_true.size, 200)] = 0.0
    y_pred = y_true + rng.normal(0, 1, y_true.size)
    assert mae(y_true, y_pred) == pytest.approx(skm.mean_absolute_error(y_true, y_pred), rel=REL)
    assert rmse(y_true, y_pred) == pytest.approx(skm.root_mean_squared_error(y_true, y_pred), rel=REL)
    assert r2(y_true, y_pred) == pytest.approx(skm.r2_score(y_true, y_pred), rel=REL)
    kept = y_true != 0
    assert (~kept).sum() > 0
    assert mape(y_true, y_pred) == pytest.approx(
        skm.mean_absolute_percentage_error(y_true[kept], y_pred[kept]), rel=REL
    )
    assert regression_metrics(pd.Series(y_true), list(y_pred)) == pytest.approx(
        {
            "mae": mae(y_true, y_pred),
            "rmse": rmse(y_true, y_pred),
            "r2": r2(y_true, y_pred),
            "mape": mape(y_true, y_pred),
        },
        rel=REL,
    )


def test_regression_on_integers_and_by_hand() -> None:
    y_true, y_pred = [0, 2, 4, 10], [1, 2, 2, 11]
    assert mae(y_true, y_pred) == 1.0
    assert rmse(y_true, y_pred) == pytest.approx(np.sqrt(6 / 4))
    assert mape(y_true, y_pred) == pytest.approx((0 + 0.5 + 0.1) / 3)  # the row with truth 0 is skipped
    big = np.array([2**62, 0], dtype=np.int64)
    assert mae(big, -big) == pytest.approx(2.0**62)  # no int64 overflow


def test_regression_undefined() -> None:
    assert r2([3.0, 3.0, 3.0], [1.0, 2.0, 3.0]) is None
    assert r2([0.1] * 3, [0.1] * 3) is None  # constant, although the float mean is not exactly 0.1
    assert r2([5.0], [4.0]) is None
    assert mape([0, 0], [1, 2]) is None
    assert r2([1e-200, 2e-200], [0.0, 0.0]) is None  # the squares underflow to 0
    # the squares overflow: rmse is inf and left out, r2 is undefined; no warning either way
    assert regression_metrics([1e200, -1e200], [-1e200, 1e200]) == {"mae": 2e200, "mape": 2.0}
    assert regression_metrics([0.0, 0.0], [1.0, 3.0]) == {"mae": 2.0, "rmse": pytest.approx(np.sqrt(5))}


def test_regression_errors() -> None:
    with pytest.raises(InvalidInput, match=r"y_pred holds 1 missing or infinite values \(the first at row 0"):
        rmse([1.0, 2.0], [np.nan, 2.0])
    with pytest.raises(InvalidInput, match="y_true holds 1 missing values; drop or fill those rows first"):
        mae(np.array([1.0, pd.NA], dtype=object), [1.0, 2.0])
    with pytest.raises(
        InvalidInput, match=r"y_true holds 1 missing or infinite values \(the first at row 1: nan\)"
    ):
        mae(pd.Series([1.0, None], dtype="Float64"), [1.0, 2.0])
    with pytest.raises(InvalidInput, match="y_true must hold numbers; got dtype <U1"):
        mae(["a"], [1.0])


# ---------------------------------------------------------------------------------------------- bundles


@pytest.mark.parametrize("seed", SEEDS)
def test_classification_metrics_binary_equal_sklearn(seed: int) -> None:
    y, _ = tied_binary(seed)
    named = np.where(y == 1, "yes", "no")
    proba = np.round(dirichlet(seed, y.size, 2), 2)  # ties
    # away from 0 and 1, where the clipping differs (1e-15 here, machine epsilon in scikit-learn)
    proba[:, 1] = np.clip(proba[:, 1] + 0.2 * y, 0.01, 0.99)
    proba[:, 0] = 1.0 - proba[:, 1]
    predicted = np.where(proba[:, 1] > 0.5, "yes", "no")
    found = classification_metrics(named, predicted, proba, classes=["no", "yes"])
    score = proba[:, 1]
    expected = {
        "accuracy": skm.accuracy_score(named, predicted),
        "precision": skm.precision_score(named, predicted, pos_label="yes"),
        "recall": skm.recall_score(named, predicted, pos_label="yes"),
        "f1": skm.f1_score(named, predicted, pos_label="yes"),
        "roc_auc": skm.roc_auc_score(y, score),
        "pr_auc": skm.average_precision_score(y, score),
        "log_loss": skm.log_loss(named, proba, labels=["no", "yes"]),
    }
    assert list(found) == list(expected)
    assert found == pytest.approx(expected, rel=REL)
    # without classes: inferred from the labels, positive is the second in sorted order ("yes")
    assert classification_metrics(named, predicted, proba) == pytest.approx(expected, rel=REL)
    # positive chosen explicitly
    flipped = classification_metrics(named, predicted, proba, classes=["no", "yes"], positive="no")
    assert flipped["f1"] == pytest.approx(skm.f1_score(named, predicted, pos_label="no"), rel=REL)
    assert flipped["roc_auc"] == pytest.approx(skm.roc_auc_score(1 - y, proba[:, 0]), rel=REL)


@pytest.mark.parametrize("seed", SEEDS)
def test_classification_metrics_multiclass_equal_sklearn(seed: int) -> None:
    y_true, y_pred = multiclass(seed)
    y_pred[y_pred == "emu"] = "ant"  # a model predicts its own classes
    classes = ["ant", "bee", "cat", "dove"]
    proba = dirichlet(seed, y_true.size, 4)
    found = classification_metrics(y_true, y_pred, proba, classes=classes)
    expected = {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "precision": skm.precision_score(y_true, y_pred, average="macro", zero_division=0.0),
        "recall": skm.recall_score(y_true, y_pred, average="macro", zero_division=0.0),
        "f1": skm.f1_score(y_true, y_pred, average="macro", zero_division=0.0),
        "log_loss": skm.log_loss(y_true, proba, labels=classes),
    }
    assert list(found) == list(expected)
    assert found == pytest.approx(expected, rel=REL)
    assert list(classification_metrics(y_true, y_pred)) == ["accuracy", "precision", "recall", "f1"]


def test_classification_metrics_on_slices_follow_the_model_classes() -> None:
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2]])
    # a slice with only negatives: still binary (positive 1), ranking metrics left out, never NaN
    found = classification_metrics([0, 0, 0], [0, 0, 1], proba, classes=[0, 1])
    assert found == pytest.approx(
        {
            "accuracy": 2 / 3,
            "precision": 0.0,
            "recall": 0.0,
            "f1": 0.0,
            "log_loss": -np.mean(np.log([0.9, 0.6, 0.8])),
        }
    )
    # a label the model does not know: log_loss is undefined and left out; the rest is positive vs others
    found = classification_metrics([0, 1, 2], [0, 1, 1], proba, classes=[0, 1])
    assert set(found) == {"accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc"}
    assert found["precision"] == 0.5
    assert found["roc_auc"] == 1.0
    # booleans: the positive class is True
    found = classification_metrics([True, False], [True, True], proba[:2], classes=np.array([False, True]))
    assert found["precision"] == 0.5
    assert found["recall"] == 1.0


def test_classification_metrics_errors() -> None:
    proba = dirichlet(0, 3, 3)
    with pytest.raises(InvalidInput, match=r"probabilities must have shape \(3, 2\)"):
        classification_metrics([0, 1, 1], [0, 1, 1], proba)  # classes inferred from the labels: 0 and 1
    with pytest.raises(InvalidInput, match=r"positive label 'x' is not among classes \[0, 1, 2\]"):
        classification_metrics([0, 1, 1], [0, 1, 1], proba, classes=[0, 1, 2], positive="x")
    with pytest.raises(
        InvalidInput, match=r"positive label 2 is not among the labels of y_true and y_pred \[0, 1\]"
    ):
        classification_metrics([0, 1, 1], [0, 1, 1], proba[:, :2], positive=2)
    with pytest.raises(InvalidInput, match=r"the labels of classes mix types \(int, str\)"):
        classification_metrics([0, 1, 1], [0, 1, 1], classes=[0, "a"])


# ------------------------------------------------------------------------------------- primary, errors


@pytest.mark.parametrize(
    ("task", "n_classes", "has_probabilities", "expected"),
    [
        ("classification", 2, True, ("roc_auc", True)),
        ("classification", 2, False, ("f1", True)),
        ("classification", 5, True, ("f1", True)),
        ("classification", 1, False, ("f1", True)),
        ("regression", 0, False, ("rmse", False)),
    ],
)
def test_primary_metric(
    task: Any, n_classes: int, has_probabilities: bool, expected: tuple[str, bool]
) -> None:
    assert primary_metric(task, n_classes=n_classes, has_probabilities=has_probabilities) == expected
    assert HIGHER_IS_BETTER[expected[0]] is expected[1]


def test_primary_metric_errors() -> None:
    with pytest.raises(InvalidInput, match="unknown task 'ranking'"):
        primary_metric("ranking", n_classes=2, has_probabilities=True)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="n_classes must be at least 1 for classification; got 0"):
        primary_metric("classification", n_classes=0, has_probabilities=False)


def test_every_metric_has_a_direction() -> None:
    classified = classification_metrics([0, 1, 1], [0, 1, 0], dirichlet(1, 3, 2))
    regressed = regression_metrics([1.0, 2.0, 4.0], [1.5, 2.0, 3.0])
    assert set(classified) | set(regressed) == set(HIGHER_IS_BETTER)


@pytest.mark.parametrize(
    "metric", [accuracy, f1, precision, recall, roc_auc, pr_auc, mae, rmse, r2, mape, regression_metrics]
)
def test_shape_errors(metric: Any) -> None:
    other = "scores" if metric in (roc_auc, pr_auc) else "y_pred"
    with pytest.raises(
        InvalidInput, match=f"y_true has 3 rows but {other} has 2; pass one {other} value per row"
    ):
        metric([0, 1, 1], [0, 1])
    with pytest.raises(InvalidInput, match="y_true is empty; metrics need at least one row"):
        metric([], [])
    with pytest.raises(
        InvalidInput, match=r"y_true must be one-dimensional \(one value per row\); got shape \(2, 2\)"
    ):
        metric([[0, 1], [1, 0]], [0, 1])
    with pytest.raises(InvalidInput, match=r"must be one-dimensional \(one value per row\); got shape \(\)"):
        metric(1, 1)


def test_classification_metrics_shape_errors() -> None:
    with pytest.raises(InvalidInput, match="y_true has 2 rows but y_pred has 1"):
        classification_metrics([0, 1], [0])
    with pytest.raises(InvalidInput, match="y_pred is empty"):
        classification_metrics(np.array([0]), np.array([], dtype=np.int64))
    with pytest.raises(InvalidInput, match="y_true is empty"):
        log_loss([], np.zeros((0, 2)), classes=[0, 1])
