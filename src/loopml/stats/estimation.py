"""Confidence-based performance estimation (CBPE, after NannyML): a classifier's metrics before labels arrive.

With calibrated probabilities p_ik (row i, class k), row i's label is class k with probability p_ik. Every
cell of the confusion matrix is then a sum of independent Bernoulli variables whose expectation is a sum of
probabilities, and a metric is estimated from the expected cells:

```
accuracy    mean_i p_i,pred(i)
binary      TP = sum of p over rows predicted positive, FN = sum of p over rows predicted negative,
            FP = (predicted positive) - TP; precision TP/(TP+FP), recall TP/(TP+FN), f1 2TP/(2TP+FP+FN)
multiclass  the same per class one-vs-rest, macro-averaged over the classes likely present (predicted at
            least once, or more likely than not to occur among the rows), mirroring `stats.metrics`
roc_auc     binary only: NannyML ranks rows by score and sums expected TP and FP above every threshold into
            expected TPR and FPR curves, then integrates; the area equals
            sum over pairs (i, j), i != j, of p_i (1 - p_j) [s_i > s_j, ties 1/2] / sum of p_i (1 - p_j),
            computed here in one sort (a ratio of expectations, biased by O(1/n) like NannyML's)
```
Rows are ranked by the model's own scores (ties as the registry's `roc_auc` counts them) while the
expectations use the calibrated probabilities, so a calibrator's flat stretches do not add ties.

`sampling_error` is the standard deviation of the realized metric around the estimate when labels are drawn
from the probabilities: the spread the estimate cannot avoid, which NannyML reports as the sampling error of
a chunk. It comes from a first-order (delta-method) expansion of the metric in the labels, exact for accuracy
and within a few percent of simulation for the ratios at a few hundred rows; no resampling.

What CBPE cannot see: concept drift (P(y | x) changes while the inputs and scores do not) and rows drifting
into regions the reference never covered, where calibration is unchecked; realized performance on late
labels catches the first (see `stats.performance.compare_performance`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from loopml.core.errors import InvalidInput
from loopml.stats.calibration import Calibrator, class_list_of, probability_matrix
from loopml.stats.nulls import is_null

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

ESTIMATED = ("accuracy", "precision", "recall", "f1", "roc_auc")


@dataclass(frozen=True)
class EstimatedPerformance:
    """Estimated metrics of a window; a metric that cannot be estimated is None with a reason."""

    rows: int
    metrics: dict[str, float | None]
    sampling_error: dict[str, float | None]
    reasons: dict[str, str] = field(default_factory=dict)
    calibrated: bool = False
    per_slice: dict[str, EstimatedPerformance] = field(default_factory=dict)

    def band(self, metric: str, *, z: float = 3.0) -> tuple[float, float] | None:
        """estimate +- z sampling errors, clipped to [0, 1]; None when the metric was not estimated."""
        value, error = self.metrics.get(metric), self.sampling_error.get(metric)
        if value is None or error is None:
            return None
        return max(0.0, value - z * error), min(1.0, value + z * error)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {
            "rows": self.rows,
            "metrics": dict(self.metrics),
            "sampling_error": dict(self.sampling_error),
            "reasons": dict(self.reasons),
            "calibrated": self.calibrated,
            "per_slice": {key: value.to_dict() for key, value in self.per_slice.items()},
        }


def estimate_performance(
    probabilities: npt.ArrayLike,
    *,
    classes: Sequence[Any] | npt.NDArray[Any],
    y_pred: npt.ArrayLike | None = None,
    calibrator: Calibrator | None = None,
    slices: npt.ArrayLike | None = None,
) -> EstimatedPerformance:
    """Estimate accuracy, precision, recall, f1 and (binary) roc_auc of a window from probabilities alone.

    `probabilities` has one column per entry of `classes` (the model's `classes_`). `y_pred` are the
    model's predicted labels (needed when it thresholds differently from the highest probability; default:
    the class of the highest raw probability). `calibrator`, fitted on a labelled reference window, maps the
    probabilities first; without one they are taken as calibrated. Binary metrics are for the second class,
    as in `stats.metrics`. `slices` (one key per row) adds the same estimates per slice.
    """
    class_list = class_list_of(classes)
    raw = probability_matrix(probabilities, columns=len(class_list))
    if calibrator is not None and list(calibrator.classes) != class_list:
        raise InvalidInput(
            f"the calibrator was fitted for classes {list(calibrator.classes)}, not {class_list}; "
            "refit it on this model's reference window"
        )
    proba = raw if calibrator is None else calibrator.apply(raw)
    predicted = _predicted(y_pred, raw, class_list)
    result = _estimate(raw, proba, predicted, calibrated=calibrator is not None)
    if slices is None:
        return result
    keys = np.asarray(slices, dtype=object).reshape(-1)
    if keys.size != raw.shape[0]:
        raise InvalidInput(f"slices has {keys.size} values but probabilities have {raw.shape[0]} rows")
    names = np.array(["null" if is_null(key) else str(key) for key in keys.tolist()], dtype=object)
    per_slice = {
        name: _estimate(raw[rows], proba[rows], predicted[rows], calibrated=calibrator is not None)
        for name in sorted(set(names.tolist()))
        for rows in [names == name]
    }
    return EstimatedPerformance(
        result.rows, result.metrics, result.sampling_error, result.reasons, result.calibrated, per_slice
    )


def _predicted(y_pred: npt.ArrayLike | None, raw: FloatArray, class_list: list[Any]) -> IntArray:
    """Each row's predicted class as a column index."""
    if y_pred is None:
        return np.asarray(np.argmax(raw, axis=1), dtype=np.intp)
    labels = np.asarray(y_pred, dtype=object).reshape(-1)
    if labels.size != raw.shape[0]:
        raise InvalidInput(f"y_pred has {labels.size} rows but probabilities have {raw.shape[0]}")
    where = {label: column for column, label in enumerate(class_list)}
    found = np.array(
        [
            where.get(label.item() if isinstance(label, np.generic) else label, -1)
            for label in labels.tolist()
        ],
        dtype=np.intp,
    )
    if (found < 0).any():
        raise InvalidInput(
            f"y_pred holds {int((found < 0).sum())} labels that are not among classes {class_list} "
            f"(e.g. {labels[found < 0][0]!r}); pass the model's classes"
        )
    return found


def _estimate(
    raw: FloatArray, proba: FloatArray, predicted: IntArray, *, calibrated: bool
) -> EstimatedPerformance:
    rows, k = proba.shape
    if rows == 0:
        empty = dict.fromkeys(ESTIMATED, "the window has no rows")
        return EstimatedPerformance(0, dict.fromkeys(ESTIMATED), dict.fromkeys(ESTIMATED), empty, calibrated)
    # Probabilities of a row may not sum to exactly 1 (float rounding, or models that do not normalise);
    # the expectations need a distribution over the classes.
    proba = proba / proba.sum(axis=1, keepdims=True).clip(min=1e-300)
    one_hot = np.zeros((rows, k))
    one_hot[np.arange(rows), predicted] = 1.0
    metrics: dict[str, float | None] = {}
    errors: dict[str, float | None] = {}
    reasons: dict[str, str] = {}

    # accuracy: each row contributes its chance of being right, d accuracy / d y_ik = [k = pred(i)] / n
    metrics["accuracy"] = float(np.sum(proba * one_hot)) / rows
    errors["accuracy"] = _error(one_hot / rows, proba)

    counted = [1] if k == 2 else _present(proba, one_hot)
    for name, (value, weights) in _rates(proba, one_hot, counted).items():
        metrics[name], errors[name] = value, _error(weights, proba)

    if k == 2:
        auc = _roc_auc(raw[:, 1], proba[:, 1])
        if auc is None:
            metrics["roc_auc"] = errors["roc_auc"] = None
            reasons["roc_auc"] = "the probabilities leave no expected positive or no expected negative row"
        else:
            metrics["roc_auc"], errors["roc_auc"] = auc
    else:
        metrics["roc_auc"] = errors["roc_auc"] = None
        reasons["roc_auc"] = "ROC AUC is estimated for binary models only, as `stats.metrics` scores it"
    return EstimatedPerformance(rows, metrics, errors, reasons, calibrated)


def _present(proba: FloatArray, one_hot: FloatArray) -> list[int]:
    """Classes a realized macro average would likely count: predicted, or more likely than not to occur."""
    with np.errstate(divide="ignore"):  # log1p(-1) = -inf: a sure row makes absence impossible, as meant
        log_absent = np.sum(np.log1p(-proba), axis=0)
    likely = np.exp(log_absent) < 0.5
    return [column for column in range(proba.shape[1]) if one_hot[:, column].any() or likely[column]]


def _rates(proba: FloatArray, one_hot: FloatArray, counted: list[int]) -> dict[str, tuple[float, FloatArray]]:
    """precision, recall, f1 averaged over `counted` classes, each with its weights d metric / d y_ik.

    Per class: m predicted rows (fixed), A = sum of p over them (expected TP), T = sum of p (expected true
    rows), B = T - A (expected FN). A ratio whose denominator is 0 counts 0, as in `stats.metrics`.
    """
    m = one_hot.sum(axis=0)[counted]
    a = (proba * one_hot).sum(axis=0)[counted]
    t = proba.sum(axis=0)[counted]
    b = t - a
    share = 1.0 / len(counted)
    predicted = one_hot[:, counted]

    def weights(grad_a: FloatArray, grad_b: FloatArray) -> FloatArray:
        # A row's label adds to A of its predicted class and to B of every other class.
        out = np.zeros_like(proba)
        out[:, counted] = share * (predicted * grad_a + (1.0 - predicted) * grad_b)
        return out

    zero = np.zeros_like(a)
    precision = _div(a, m)
    recall = _div(a, t)
    f1 = _div(2.0 * a, m + t)
    return {
        "precision": (float(precision.mean()), weights(_div(np.ones_like(a), m), zero)),
        "recall": (float(recall.mean()), weights(_div(b, t**2), -_div(a, t**2))),
        "f1": (float(f1.mean()), weights(_div(2.0 * (m + b), (m + t) ** 2), -_div(2.0 * a, (m + t) ** 2))),
    }


# A metric in [0, 1] cannot vary by more than 0.5 (the standard deviation of a fair coin between 0 and 1);
# the linear (delta-method) approximation can exceed it on a handful of rows, where it means nothing.
MAX_ERROR = 0.5


def _roc_auc(scores: FloatArray, p: FloatArray) -> tuple[float, float] | None:
    """Expected ROC AUC of `scores` when row i is positive with probability p_i, and its sampling error."""
    order = np.argsort(scores, kind="stable")
    ordered, p = scores[order], p[order]
    q = 1.0 - p
    ends = np.append(np.flatnonzero(ordered[1:] != ordered[:-1]), ordered.size - 1)
    group = np.repeat(np.arange(ends.size), np.diff(ends, prepend=-1))
    pos = np.diff(np.cumsum(p)[ends], prepend=0.0)  # expected positives per tie group, ascending score
    neg = np.diff(np.cumsum(q)[ends], prepend=0.0)
    both = np.diff(np.cumsum(p * q)[ends], prepend=0.0)  # a row is never paired with itself
    below = np.cumsum(neg) - neg  # expected negatives strictly below each group
    above = pos.sum() - np.cumsum(pos)  # expected positives strictly above
    pairs = float(pos.sum() * neg.sum() - both.sum())
    if pairs <= 0.0:
        return None
    auc = float(np.sum(pos * below + 0.5 * (pos * neg - both))) / pairs
    # d(pairs ranked right)/d y_i and d(pairs)/d y_i, then the quotient rule
    d_num = below[group] + 0.5 * (neg[group] - q) - above[group] - 0.5 * (pos[group] - p)
    d_den = (neg.sum() - q) - (pos.sum() - p)
    grad = (d_num - auc * d_den) / pairs
    error = math.sqrt(float(np.sum(grad**2 * p * q)))
    return min(1.0, max(0.0, auc)), min(error, MAX_ERROR)


def _error(weights: FloatArray, proba: FloatArray) -> float:
    """Standard deviation of sum_ik w_ik y_ik when each row's label is one draw from its probabilities."""
    variance = np.sum(weights**2 * proba, axis=1) - np.sum(weights * proba, axis=1) ** 2
    return min(math.sqrt(max(0.0, float(variance.sum()))), MAX_ERROR)


def _div(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out
