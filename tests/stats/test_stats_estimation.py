"""CBPE: estimates equal the mean of realized metrics over labels drawn from the probabilities, errors their spread."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from loopml.core.errors import InvalidInput
from loopml.stats import metrics as m
from loopml.stats.calibration import fit_calibrator
from loopml.stats.estimation import ESTIMATED, estimate_performance

DRAWS = 2_000


def binary_probabilities(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    positive = 1.0 / (1.0 + np.exp(-rng.normal(0.4, 1.6, size=n)))
    return np.column_stack([1.0 - positive, positive])


def realized_draws(
    proba: np.ndarray, y_pred: np.ndarray, classes: list[Any], seed: int
) -> dict[str, np.ndarray]:
    """The realized metrics over DRAWS label vectors drawn row by row from `proba`."""
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(proba, axis=1)
    found: dict[str, list[float]] = {name: [] for name in ESTIMATED}
    for _ in range(DRAWS):
        columns = (rng.random((proba.shape[0], 1)) > cumulative).sum(axis=1).clip(max=len(classes) - 1)
        labels = np.asarray(classes)[columns]
        scored = m.classification_metrics(labels, y_pred, proba, classes=classes)
        for name in ESTIMATED:
            if name in scored:
                found[name].append(scored[name])
    return {name: np.array(values) for name, values in found.items() if values}


# -------------------------------------------------------------------------------- against simulation


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_binary_estimates_match_simulated_labels(threshold: float) -> None:
    proba = binary_probabilities(0, 600)
    y_pred = (proba[:, 1] > threshold).astype(int)  # a model that thresholds below 0.5 still gets its cells
    estimate = estimate_performance(proba, classes=[0, 1], y_pred=y_pred)
    draws = realized_draws(proba, y_pred, [0, 1], seed=1)
    for name in ESTIMATED:
        value, error = estimate.metrics[name], estimate.sampling_error[name]
        assert value is not None
        assert error is not None
        spread = float(draws[name].std())
        # The mean of DRAWS realized values has standard error spread / sqrt(DRAWS) ~ 0.0005; the ratios
        # (precision, recall, f1, roc_auc) are ratios of expectations, biased by O(1/n) ~ 0.002.
        assert value == pytest.approx(float(draws[name].mean()), abs=0.002), name
        assert error == pytest.approx(spread, rel=0.06), name


def test_multiclass_macro_estimates_match_simulated_labels() -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(0.0, 1.5, size=(800, 3)) + np.array([0.5, 0.0, -0.7])
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    classes = ["ant", "bee", "cat"]
    y_pred = np.asarray(classes)[proba.argmax(axis=1)]
    estimate = estimate_performance(proba, classes=classes, y_pred=y_pred)
    draws = realized_draws(proba, y_pred, classes, seed=3)
    for name in ("accuracy", "precision", "recall", "f1"):
        value, error = estimate.metrics[name], estimate.sampling_error[name]
        assert value is not None
        assert error is not None
        assert value == pytest.approx(float(draws[name].mean()), abs=0.003), name
        assert error == pytest.approx(float(draws[name].std()), rel=0.1), name
    assert estimate.metrics["roc_auc"] is None
    assert "binary" in estimate.reasons["roc_auc"]


def test_roc_auc_ranks_by_raw_scores_not_by_calibrated_ties() -> None:
    """A calibrator's flat stretches must not add ties to the ranking the realized ROC AUC uses."""
    rng = np.random.default_rng(4)
    proba = binary_probabilities(5, 4_000)
    labels = (rng.random(4_000) < proba[:, 1]).astype(int)
    calibrator = fit_calibrator(labels, proba, classes=[0, 1], method="isotonic")
    fresh = binary_probabilities(6, 4_000)
    truth = (rng.random(4_000) < fresh[:, 1]).astype(int)
    estimate = estimate_performance(fresh, classes=[0, 1], calibrator=calibrator)
    realized = m.roc_auc(truth, fresh[:, 1])
    assert estimate.metrics["roc_auc"] is not None
    assert realized is not None
    assert abs(estimate.metrics["roc_auc"] - realized) < 3 * (estimate.sampling_error["roc_auc"] or 0) + 0.005


# -------------------------------------------------------------------------------------------- properties


one_hot_rows = st.integers(min_value=2, max_value=4).flatmap(
    lambda k: st.tuples(
        st.just(k),
        st.lists(st.integers(0, k - 1), min_size=1, max_size=60),
        st.lists(st.integers(0, k - 1), min_size=60, max_size=60),
    )
)


@given(one_hot_rows)
def test_sure_probabilities_estimate_the_realized_metrics_exactly(
    case: tuple[int, list[int], list[int]],
) -> None:
    """With probabilities 0 or 1 the labels are known, so every estimate equals the metric, with no error."""
    k, truth, predicted = case
    y_pred = np.asarray(predicted[: len(truth)])
    proba = np.eye(k)[truth]
    classes = list(range(k))
    estimate = estimate_performance(proba, classes=classes, y_pred=y_pred)
    realized = m.classification_metrics(np.asarray(truth), y_pred, classes=classes)
    for name in ("accuracy", "precision", "recall", "f1"):
        assert estimate.metrics[name] == pytest.approx(realized[name], abs=1e-12), name
        assert estimate.sampling_error[name] == pytest.approx(0.0, abs=1e-12), name


@settings(max_examples=60)
@given(
    st.integers(min_value=2, max_value=5).flatmap(
        lambda k: hnp.arrays(
            np.float64,
            st.tuples(st.integers(1, 40), st.just(k)),
            elements=st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False),
        )
    )
)
def test_estimates_lie_in_unit_interval(raw: np.ndarray) -> None:
    totals = raw.sum(axis=1, keepdims=True)
    proba = np.where(totals > 0, raw / np.where(totals > 0, totals, 1.0), 1.0 / raw.shape[1])
    estimate = estimate_performance(proba, classes=list(range(raw.shape[1])))
    for name, value in estimate.metrics.items():
        error = estimate.sampling_error[name]
        if value is None:
            assert error is None
            assert name in estimate.reasons
            continue
        assert 0.0 <= value <= 1.0, name
        assert error is not None, name
        assert 0.0 <= error < 1.0, name


# ---------------------------------------------------------------------------------------- edges, slices


def test_empty_window_has_no_estimates_and_says_why() -> None:
    estimate = estimate_performance(np.empty((0, 2)), classes=[0, 1])
    assert estimate.rows == 0
    assert all(value is None for value in estimate.metrics.values())
    assert estimate.reasons["accuracy"] == "the window has no rows"


def test_slices_estimate_each_subset_and_to_dict_is_json() -> None:
    proba = binary_probabilities(7, 300)
    keys = np.array(["eu", "us", None] * 100, dtype=object)
    estimate = estimate_performance(proba, classes=[0, 1], slices=keys)
    assert sorted(estimate.per_slice) == ["eu", "null", "us"]
    alone = estimate_performance(proba[keys == "eu"], classes=[0, 1])
    assert estimate.per_slice["eu"].metrics == alone.metrics
    assert estimate.per_slice["eu"].rows == 100
    assert json.loads(json.dumps(estimate.to_dict()))["per_slice"]["us"]["rows"] == 100


def test_band_is_clipped_and_absent_for_missing_metrics() -> None:
    estimate = estimate_performance(np.array([[0.0, 1.0], [0.0, 1.0]]), classes=[0, 1])
    assert estimate.band("accuracy") == (1.0, 1.0)
    assert estimate.band("roc_auc") is None  # no expected negative row
    assert "no expected" in estimate.reasons["roc_auc"]


def test_bad_inputs_raise_invalid_input() -> None:
    proba = binary_probabilities(8, 10)
    with pytest.raises(InvalidInput, match="one column per class"):
        estimate_performance(proba, classes=[0, 1, 2])
    with pytest.raises(InvalidInput, match="not among classes"):
        estimate_performance(proba, classes=[0, 1], y_pred=[2] * 10)
    with pytest.raises(InvalidInput, match=r"in \[0, 1\]"):
        estimate_performance(proba * 2.0, classes=[0, 1])
    with pytest.raises(InvalidInput, match="at least two"):
        estimate_performance(proba[:, :1], classes=[0])
    labels = (np.random.default_rng(0).random(200) < 0.5).astype(int)
    calibrator = fit_calibrator(labels, binary_probabilities(9, 200), classes=[0, 1])
    with pytest.raises(InvalidInput, match="refit"):
        estimate_performance(proba, classes=["no", "yes"], calibrator=calibrator)
