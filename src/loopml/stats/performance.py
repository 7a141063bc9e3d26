"""Realized performance of a monitoring window once labels arrive, and how it compares with the estimate.

```
realized_performance(y_true, y_pred, proba, classes=...)  -> RealizedPerformance   metrics of the labelled rows
estimate_performance(proba, classes=..., calibrator=...)   -> EstimatedPerformance  before labels (estimation.py)
compare_performance(estimated, realized, reference=...)   -> PerformanceComparison which signal fired, and why
```
Labels come late and partly: rows whose label is still missing (None, NaN, NA) are counted but not scored, and
a window with no label yet has status "no labels" and metrics None. The metrics are those of
`stats.metrics.classification_metrics` / `regression_metrics` (what the registry's gates use); one that is
undefined for the labelled rows is None with a reason, e.g. ROC AUC when only one class is present.

Why compare: a drop that the estimate foresaw came from the inputs moving to regions where the model is less
sure (covariate shift, also visible as feature drift). A drop in realized performance that the estimate did
not foresee means the labels no longer follow the inputs as they did (concept drift); neither feature drift
nor confidence-based estimates can see it, only late labels can.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from loopml.core.errors import InvalidInput
from loopml.stats import metrics as m
from loopml.stats.estimation import ESTIMATED, EstimatedPerformance, estimate_performance
from loopml.stats.nulls import is_null

__all__ = [
    "Diagnosis",
    "EstimatedPerformance",
    "PerformanceComparison",
    "RealizedPerformance",
    "compare_performance",
    "estimate_performance",
    "realized_performance",
]

Status = Literal["ok", "no labels"]
Diagnosis = Literal["ok", "awaiting labels", "covariate shift", "concept drift", "estimate not confirmed"]

_CLASSIFICATION = ("accuracy", "precision", "recall", "f1")
_REGRESSION = ("mae", "rmse", "r2", "mape")


@dataclass(frozen=True)
class RealizedPerformance:
    """Metrics of a window's labelled rows; see `realized_performance`."""

    status: Status
    rows: int
    labelled_rows: int
    metrics: dict[str, float | None] | None
    reasons: dict[str, str] = field(default_factory=dict)
    unknown_labels: dict[str, int] = field(default_factory=dict)
    per_slice: dict[str, RealizedPerformance] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {
            "status": self.status,
            "rows": self.rows,
            "labelled_rows": self.labelled_rows,
            "metrics": None if self.metrics is None else dict(self.metrics),
            "reasons": dict(self.reasons),
            "unknown_labels": dict(self.unknown_labels),
            "per_slice": {key: value.to_dict() for key, value in self.per_slice.items()},
        }


def realized_performance(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    probabilities: npt.ArrayLike | None = None,
    *,
    classes: Sequence[Any] | npt.NDArray[Any] | None = None,
    positive: Any = None,
    task: m.Task = "classification",
    slices: npt.ArrayLike | None = None,
) -> RealizedPerformance:
    """Metrics of the rows whose label is known, overall and per slice.

    `y_true` holds a label per row, missing (None, NaN, pandas NA) where it has not arrived; `y_pred` and
    `probabilities` (one column per entry of `classes`) are the model's outputs for every row. Pass the
    model's `classes` so that binary vs macro, the positive class (default: the second) and the probability
    columns are the same in every window and slice; labels that are not among them are counted in
    `unknown_labels` (they are scored as wrong predictions, and log_loss is then None). `slices` holds one
    key per row (missing keys become "null").
    """
    truth = _column(y_true, "y_true")
    pred = _column(y_pred, "y_pred")
    if pred.size != truth.size:
        raise InvalidInput(f"y_true has {truth.size} rows but y_pred has {pred.size}; pass one per row")
    proba = None if probabilities is None else np.asarray(probabilities)
    if proba is not None and (proba.ndim != 2 or proba.shape[0] != truth.size):
        raise InvalidInput(
            f"probabilities must have one row per label ({truth.size}); got shape {proba.shape}"
        )
    class_list = None if classes is None else [_plain(c) for c in np.asarray(classes, dtype=object).tolist()]
    score = _Scorer(task, class_list, positive)
    overall = score(truth, pred, proba)
    if slices is None:
        return overall
    keys = _column(slices, "slices")
    if keys.size != truth.size:
        raise InvalidInput(f"slices has {keys.size} values but y_true has {truth.size}; pass one per row")
    names = np.array(["null" if is_null(key) else str(key) for key in keys.tolist()], dtype=object)
    per_slice = {}
    for name in sorted(set(names.tolist())):
        rows = names == name
        per_slice[name] = score(truth[rows], pred[rows], None if proba is None else proba[rows])
    return RealizedPerformance(
        overall.status,
        overall.rows,
        overall.labelled_rows,
        overall.metrics,
        overall.reasons,
        overall.unknown_labels,
        per_slice,
    )


@dataclass(frozen=True)
class _Scorer:
    task: m.Task
    classes: list[Any] | None
    positive: Any

    def __call__(
        self, truth: npt.NDArray[Any], pred: npt.NDArray[Any], proba: npt.NDArray[Any] | None
    ) -> RealizedPerformance:
        labelled = ~_missing(truth)
        count = int(labelled.sum())
        if count == 0:
            return RealizedPerformance(
                "no labels", int(truth.size), 0, None, {"all": "no label has arrived yet"}
            )
        rows = int(truth.size)
        truth, pred = truth[labelled], pred[labelled]
        if self.task == "regression":
            found = m.regression_metrics(truth.astype(np.float64), pred)
            return self._result(
                rows=rows, count=count, found=found, expected=_REGRESSION, truth=truth, unknown={}
            )
        if self.task != "classification":
            raise InvalidInput(f"unknown task {self.task!r}; use 'classification' or 'regression'")
        sliced = None if proba is None else proba[labelled]
        found = m.classification_metrics(truth, pred, sliced, classes=self.classes, positive=self.positive)
        unknown: dict[str, int] = {}
        if self.classes is not None:
            known = set(self.classes)
            for label in truth.tolist():
                if _plain(label) not in known:
                    unknown[str(label)] = unknown.get(str(label), 0) + 1
        expected = list(_CLASSIFICATION)
        if proba is not None:
            expected.append("log_loss")
            if self._binary(truth, pred):
                expected += ["roc_auc", "pr_auc"]
        return self._result(
            rows=rows, count=count, found=found, expected=tuple(expected), truth=truth, unknown=unknown
        )

    def _binary(self, truth: npt.NDArray[Any], pred: npt.NDArray[Any]) -> bool:
        if self.positive is not None:
            return True
        if self.classes is not None:
            return len(self.classes) == 2
        return len({_plain(v) for v in truth.tolist()} | {_plain(v) for v in pred.tolist()}) == 2

    def _result(
        self,
        *,
        rows: int,
        count: int,
        found: dict[str, float],
        expected: tuple[str, ...],
        truth: npt.NDArray[Any],
        unknown: dict[str, int],
    ) -> RealizedPerformance:
        metrics: dict[str, float | None] = {name: found.get(name) for name in expected}
        reasons = {name: self._reason(name, truth, unknown) for name in expected if metrics[name] is None}
        return RealizedPerformance("ok", rows, count, metrics, reasons, unknown)

    def _reason(self, name: str, truth: npt.NDArray[Any], unknown: dict[str, int]) -> str:
        present = sorted({str(_plain(v)) for v in truth.tolist()})
        if name == "roc_auc":
            return f"the labelled rows hold one class only ({', '.join(present)}); ROC AUC needs two"
        if name == "pr_auc":
            return "no labelled row is of the positive class"
        if name == "log_loss":
            return f"{sum(unknown.values())} labelled rows hold labels that are not among the model's classes"
        if name == "r2":
            return "the true values are constant"
        if name == "mape":
            return "every true value is 0"
        return "undefined for these rows"


def _column(values: npt.ArrayLike, name: str) -> npt.NDArray[Any]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise InvalidInput(f"{name} must be one-dimensional (one value per row); got shape {array.shape}")
    return array


def _missing(truth: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    if truth.dtype.kind == "f":
        return np.asarray(np.isnan(truth), dtype=np.bool_)
    if truth.dtype.kind == "O":
        return np.fromiter((is_null(v) for v in truth.tolist()), dtype=np.bool_, count=truth.size)
    return np.zeros(truth.size, dtype=np.bool_)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# ------------------------------------------------------------------------------------------ comparison


@dataclass(frozen=True)
class PerformanceComparison:
    """Estimated vs realized value of one metric in one window, and which signal fired.

    `fired` lists "estimated" when the estimate fell more than `max_drop` below `reference`, and "realized"
    when the realized value did. `diagnosis`: "concept drift" when the realized value fell and lies below
    the estimate by more than the allowed gap (max(tolerance, z sampling errors)); "covariate shift" when it
    fell as the estimate foresaw; "estimate not confirmed" when only the estimate fell; "awaiting labels"
    when no label has arrived; else "ok".
    """

    metric: str
    reference: float
    estimated: float | None
    sampling_error: float | None
    realized: float | None
    allowed_gap: float
    fired: tuple[str, ...]
    diagnosis: Diagnosis
    message: str

    @property
    def gap(self) -> float | None:
        """realized - estimated; negative when the model does worse than its probabilities promise."""
        if self.estimated is None or self.realized is None:
            return None
        return self.realized - self.estimated

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (with `gap`)."""
        return {
            "metric": self.metric,
            "reference": self.reference,
            "estimated": self.estimated,
            "sampling_error": self.sampling_error,
            "realized": self.realized,
            "gap": self.gap,
            "allowed_gap": self.allowed_gap,
            "fired": list(self.fired),
            "diagnosis": self.diagnosis,
            "message": self.message,
        }


def compare_performance(
    estimated: EstimatedPerformance,
    realized: RealizedPerformance | None,
    *,
    reference: float,
    metric: str = "accuracy",
    max_drop: float = 0.05,
    tolerance: float = 0.03,
    z: float = 3.0,
) -> PerformanceComparison:
    """Compare a window's estimate with its realized value (None or "no labels" while labels are missing).

    `reference` is the metric's realized value on the reference window (where the calibrator was fitted);
    a drop is a fall of more than `max_drop` below it. The realized value may differ from the estimate by
    sampling alone; a gap counts only beyond `max(tolerance, z * sampling_error)`.
    """
    if metric not in ESTIMATED:
        raise InvalidInput(f"metric {metric!r} is not estimated; use one of {', '.join(ESTIMATED)}")
    est = estimated.metrics.get(metric)
    error = estimated.sampling_error.get(metric)
    real = None if realized is None or realized.metrics is None else realized.metrics.get(metric)
    allowed = max(tolerance, z * error) if error is not None else tolerance
    est_fell = est is not None and reference - est > max_drop
    real_fell = real is not None and reference - real > max_drop
    below = est is not None and real is not None and est - real > allowed
    fired = tuple(name for name, hit in (("estimated", est_fell), ("realized", real_fell)) if hit)

    def show(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    figures = f"{metric}: reference {reference:.3f}, estimated {show(est)}, realized {show(real)}"
    diagnosis: Diagnosis
    if real is None:
        diagnosis = "awaiting labels"
        note = "estimated drop, labels not in yet" if est_fell else "no labels yet; the estimate holds"
    elif real_fell and below:
        diagnosis = "concept drift"
        note = (
            "realized fell below what the probabilities promise: the labels no longer follow the inputs as "
            "in the reference (concept drift), which feature drift and the estimate cannot see"
        )
    elif real_fell:
        diagnosis = "covariate shift"
        note = "realized fell as estimated: the inputs moved to where the model is less sure"
    elif est_fell:
        diagnosis = "estimate not confirmed"
        note = "the estimate fell but realized did not: check calibration on the new inputs"
    else:
        diagnosis = "ok"
        note = "no drop"
    return PerformanceComparison(
        metric, reference, est, error, real, allowed, fired, diagnosis, f"{figures}; {note}"
    )
