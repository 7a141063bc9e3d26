"""Calibrators: fitted on labelled reference rows, judged out of fold, stored as plain JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from loopml.core.errors import InvalidInput
from loopml.stats.calibration import (
    Calibrator,
    calibration_error,
    check_calibration,
    fit_calibrator,
)
from loopml.stats.estimation import estimate_performance


def calibrated(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from the probabilities themselves: calibrated by construction."""
    rng = np.random.default_rng(seed)
    positive = 1.0 / (1.0 + np.exp(-rng.normal(0.3, 1.5, size=n)))
    labels = (rng.random(n) < positive).astype(int)
    return labels, np.column_stack([1.0 - positive, positive])


def overconfident(proba: np.ndarray, power: float = 4.0) -> np.ndarray:
    """The same ranking with logits multiplied by `power`: a model far surer than it should be."""
    logit = np.log(proba[:, 1]) - np.log(proba[:, 0])
    positive = 1.0 / (1.0 + np.exp(-power * logit))
    return np.column_stack([1.0 - positive, positive])


def softmax_window(seed: int, n: int, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.2, size=(n, 3))
    truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = (rng.random((n, 1)) > np.cumsum(truth, axis=1)).sum(axis=1).clip(max=2)
    shown = np.exp(logits * temperature) / np.exp(logits * temperature).sum(axis=1, keepdims=True)
    return np.array(["ant", "bee", "cat"])[labels], shown


def test_a_calibrated_model_passes_the_check() -> None:
    labels, proba = calibrated(0, 5_000)
    check = check_calibration(labels, proba, classes=[0, 1])
    assert check.verdict == "calibrated"
    assert check.reliable
    assert check.ece <= check.noise + 0.01
    assert calibration_error(labels, proba, classes=[0, 1]) == check.ece


def test_an_overconfident_model_is_flagged_and_the_calibrator_repairs_it() -> None:
    labels, truth = calibrated(1, 5_000)
    proba = overconfident(truth)
    calibrator = fit_calibrator(labels, proba, classes=[0, 1])
    assert calibrator.before.verdict == "miscalibrated"
    assert not calibrator.before.reliable
    assert "unreliable" in calibrator.before.message
    assert calibrator.method == "platt"  # a pure temperature error is what Platt scaling models
    assert calibrator.after.verdict == "calibrated"
    assert calibrator.reliable

    # On a fresh window, CBPE from the raw probabilities is far off; through the calibrator it is not.
    fresh_labels, fresh_truth = calibrated(2, 5_000)
    fresh = overconfident(fresh_truth)
    realized = float(np.mean(fresh_labels == fresh.argmax(axis=1)))
    raw = estimate_performance(fresh, classes=[0, 1]).metrics["accuracy"]
    fixed = estimate_performance(fresh, classes=[0, 1], calibrator=calibrator).metrics["accuracy"]
    assert raw is not None
    assert fixed is not None
    assert raw - realized > 0.05
    assert abs(fixed - realized) < 0.02


def test_platt_scaling_recovers_the_temperature() -> None:
    labels, truth = calibrated(3, 20_000)
    calibrator = fit_calibrator(labels, overconfident(truth, power=4.0), classes=[0, 1], method="platt")
    assert calibrator.method == "platt"
    ((a,), (b,)) = calibrator.maps[0]
    assert a == pytest.approx(0.25, abs=0.02)
    assert b == pytest.approx(0.0, abs=0.05)


def test_a_small_reference_is_inconclusive() -> None:
    labels, proba = calibrated(4, 150)
    check = check_calibration(labels, proba, classes=[0, 1])
    assert check.verdict == "inconclusive"
    assert not check.reliable
    assert check.noise > check.tolerance
    assert "too few" in check.message


def test_probabilities_that_pass_the_check_are_left_alone() -> None:
    labels, proba = calibrated(10, 5_000)
    calibrator = fit_calibrator(labels, proba, classes=[0, 1], method="isotonic")
    assert calibrator.method == "identity"
    assert calibrator.after == calibrator.before
    np.testing.assert_array_equal(calibrator.apply(proba), proba)


def test_auto_picks_isotonic_when_the_distortion_is_not_logistic() -> None:
    labels, truth = calibrated(12, 5_000)
    cubed = truth[:, 1] ** 3  # not a straight line in logit space, so Platt cannot undo it
    proba = np.column_stack([1.0 - cubed, cubed])
    auto = fit_calibrator(labels, proba, classes=[0, 1])
    platt = fit_calibrator(labels, proba, classes=[0, 1], method="platt")
    assert auto.method == "isotonic"
    assert auto.reliable
    assert auto.after.ece < platt.after.ece


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_a_kept_map_lowers_the_out_of_fold_error(method: str) -> None:
    labels, truth = calibrated(14, 3_000)
    calibrator = fit_calibrator(labels, overconfident(truth, 3.0), classes=[0, 1], method=method)  # type: ignore[arg-type]
    assert calibrator.method == method
    assert calibrator.after.ece < calibrator.before.ece


def test_multiclass_calibration_renormalises_and_flags_overconfidence() -> None:
    classes = ["ant", "bee", "cat"]
    labels, proba = softmax_window(5, 6_000)
    assert check_calibration(labels, proba, classes=classes).verdict == "calibrated"
    labels, sharp = softmax_window(6, 6_000, temperature=3.0)
    calibrator = fit_calibrator(labels, sharp, classes=classes)
    assert calibrator.before.verdict == "miscalibrated"
    assert calibrator.after.ece < calibrator.before.ece / 2
    assert len(calibrator.maps) == 3
    out = calibrator.apply(sharp)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    assert ((out >= 0.0) & (out <= 1.0)).all()


@pytest.mark.parametrize("method", ["isotonic", "platt", "identity"])
def test_json_round_trip_gives_the_same_calibrated_probabilities(method: str) -> None:
    labels, truth = calibrated(7, 3_000)
    classes = np.array(["no", "yes"], dtype=object)  # string classes, as a model's classes_ may be
    proba = overconfident(truth, power=2.0)
    calibrator = fit_calibrator(np.array(["no", "yes"])[labels], proba, classes=classes, method=method)  # type: ignore[arg-type]
    text = json.dumps(calibrator.to_dict())
    again = Calibrator.from_dict(json.loads(text))
    assert again == calibrator
    fresh = overconfident(calibrated(8, 1_000)[1], power=2.0)
    np.testing.assert_array_equal(again.apply(fresh), calibrator.apply(fresh))
    assert len(text) < 20_000  # thresholds of the flat stretches only, not one point per row


def test_multiclass_json_round_trip() -> None:
    labels, sharp = softmax_window(9, 3_000, temperature=2.0)
    calibrator = fit_calibrator(labels, sharp, classes=["ant", "bee", "cat"])
    again = Calibrator.from_dict(json.loads(json.dumps(calibrator.to_dict())))
    np.testing.assert_array_equal(again.apply(sharp), calibrator.apply(sharp))


def test_from_dict_rejects_malformed_data() -> None:
    labels, proba = calibrated(11, 1_000)
    data = fit_calibrator(labels, overconfident(proba), classes=[0, 1]).to_dict()
    with pytest.raises(InvalidInput, match="format"):
        Calibrator.from_dict({**data, "format": 99})
    with pytest.raises(InvalidInput, match="method"):
        Calibrator.from_dict({**data, "method": "magic"})
    with pytest.raises(InvalidInput, match="needs 1 maps"):
        Calibrator.from_dict({**data, "maps": data["maps"] * 2})


def test_bad_inputs_raise_invalid_input() -> None:
    labels, proba = calibrated(12, 200)
    with pytest.raises(InvalidInput, match="not classes"):
        fit_calibrator(labels + 5, proba, classes=[0, 1])
    with pytest.raises(InvalidInput, match="missing labels"):
        check_calibration(np.where(labels == 1, None, 0), proba, classes=[0, 1])
    with pytest.raises(InvalidInput, match="rows"):
        check_calibration(labels[:-1], proba, classes=[0, 1])
    with pytest.raises(InvalidInput, match="duplicates"):
        check_calibration(labels, proba, classes=[1, 1])
    with pytest.raises(InvalidInput, match="unknown calibration method"):
        fit_calibrator(labels, proba, classes=[0, 1], method="magic")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="per fold"):
        fit_calibrator(labels[:6], proba[:6], classes=[0, 1])


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(20, 80), elements=st.floats(0.0, 1.0, allow_subnormal=False)),
    st.integers(0, 2**16),
)
def test_isotonic_map_is_monotone_and_bounded(scores: np.ndarray, seed: int) -> None:
    labels = (np.random.default_rng(seed).random(scores.size) < scores).astype(int)
    calibrator = fit_calibrator(labels, np.column_stack([1.0 - scores, scores]), classes=[0, 1], folds=2)
    grid = np.linspace(-0.1, 1.1, 121).clip(0.0, 1.0)
    out = calibrator.apply(np.column_stack([1.0 - grid, grid]))[:, 1]
    assert (np.diff(out) >= -1e-12).all()
    assert ((out >= 0.0) & (out <= 1.0)).all()
