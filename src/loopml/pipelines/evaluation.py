"""Evaluate a fitted model on a frame: metrics, metrics per slice, confusion matrix, calibration and plots.

`evaluate` is a pure function: it predicts, computes and draws, and returns an `Evaluation` of plain values
(floats, ints, strings, PNG bytes) that can be logged or compared as they are. It writes no files.

Metric values are Python floats and always finite: a metric that is undefined for the rows given (ROC AUC
with one class present, R² of one row, precision with no positive prediction) is left out, never NaN, and
never raises. Plots are drawn on `matplotlib.figure.Figure` with the Agg canvas, not through pyplot, so no
global backend or figure registry is touched.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn import metrics as skm
from sklearn.base import is_classifier, is_regressor
from sklearn.exceptions import NotFittedError

from loopml.core.errors import InvalidInput
from loopml.pipelines.tabular import task_of

__all__ = ["Evaluation", "evaluate"]

Task = Literal["classification", "regression"]
Array = np.ndarray[Any, Any]

CALIBRATION_BINS = 10
MAX_PLOTTED_POINTS = 5000  # residual scatter plots subsample beyond this, so drawing stays fast


@dataclass(frozen=True)
class Evaluation:
    """What `evaluate` found; every field but `plots` is JSON-able (see `to_dict`).

    - `metrics`: name -> finite float; see `evaluate` for the names per task.
    - `per_slice`: slice value as str ("null" for missing) -> the same metrics on those rows, plus "rows".
    - `confusion_matrix`, `labels`: classification only; rows are true labels, columns predicted ones, in
      the order of `labels` (the model's classes, then any other label seen, as str).
    - `calibration`: binary classification with predict_proba only; per non-empty bin of width 0.1:
      "bin_lower", "bin_upper", "mean_predicted", "observed_frequency", "count".
    - `plots`: file name -> PNG bytes ("roc.png", "pr.png", "confusion_matrix.png" or "residuals.png").
    - `primary_metric`, `higher_is_better`: the one metric to compare models by; it may be missing from
      `metrics` when undefined for these rows (for instance ROC AUC on a test set of one class).
    """

    task: Task
    metrics: dict[str, float]
    primary_metric: str
    higher_is_better: bool
    per_slice: dict[str, dict[str, float]] = field(default_factory=dict)
    confusion_matrix: list[list[int]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    calibration: dict[str, list[float]] = field(default_factory=dict)
    plots: dict[str, bytes] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Every field except `plots` as plain JSON-able values; plot names are listed under "plot_names"."""
        data = asdict(self)
        data["plot_names"] = sorted(data.pop("plots"))
        return data


def evaluate(
    model: Any,
    frame: pd.DataFrame,
    *,
    target: str,
    task: Literal["auto", "classification", "regression"] = "auto",
    slice_by: str | None = None,
    positive_label: Any = None,
    plots: bool = True,
) -> Evaluation:
    """Score the fitted `model` on `frame` (features plus the `target` column); returns an `Evaluation`.

    task="auto" follows the model (scikit-learn classifier or regressor), else `tabular.task_of(target)`.
    The frame must hold exactly the columns the model was fitted on plus `target` (and `slice_by`, which may
    or may not be a feature); they are reordered as the model expects. A model fitted on arrays has no
    column names to check against, so it gets the frame minus `target` as it is.

    Classification metrics: accuracy; precision, recall and f1 (binary: of the positive label, multiclass:
    macro over the labels present); roc_auc (binary: from predict_proba, else decision_function;
    multiclass: one-vs-rest macro, from predict_proba, when every class is present); pr_auc (average
    precision, binary); log_loss (with predict_proba). The positive label defaults to the model's second
    class (1 of 0/1, True of booleans); `positive_label` is for binary models only. The primary metric is
    roc_auc for binary models that give scores, else f1; multiclass uses f1 (macro), which, unlike
    accuracy, does not hide a minority class the model never gets right.

    Regression metrics: mae, rmse, r2 (two rows or more), and mape as a fraction (0.1 = 10%) over the rows
    whose target is not 0, which are skipped rather than divided by a tiny number as scikit-learn does;
    the primary metric is rmse (lower is better).

    `plots=False` skips drawing. Raises InvalidInput for an empty frame, a missing target or slice column,
    rows without a target, columns the model did not see or lacks, a `positive_label` the model does not
    know, or an unfitted model.
    """
    _check_frame(frame, target=target, slice_by=slice_by, task=task)
    features = _features(model, frame, target=target, slice_by=slice_by)
    y_true = frame[target].to_numpy()
    resolved: Task = task if task != "auto" else _task(model, frame[target])
    try:
        y_pred = np.asarray(model.predict(features))
    except NotFittedError as exc:
        raise InvalidInput(f"the model is not fitted; train it before evaluating: {exc}") from exc
    slices = _slices(frame[slice_by]) if slice_by is not None else {}

    if resolved == "regression":
        per_slice = {key: _regression_metrics(y_true[rows], y_pred[rows]) for key, rows in slices.items()}
        return Evaluation(
            task="regression",
            metrics=_regression_metrics(y_true, y_pred),
            primary_metric="rmse",
            higher_is_better=False,
            per_slice=_with_rows(per_slice, slices),
            plots={"residuals.png": _png(_draw_residuals, y_true, y_pred)} if plots else {},
        )

    classes = _classes(model, y_true, y_pred)
    positive = _positive(classes, positive_label)
    proba = np.asarray(model.predict_proba(features)) if hasattr(model, "predict_proba") else None
    score = _binary_score(model, features, classes, positive, proba)
    scorer = _ClassificationScorer(classes=classes, positive=positive)
    seen = set(y_true.tolist()) | set(y_pred.tolist())
    labels = classes + sorted((v for v in seen if v not in classes), key=str)
    matrix = skm.confusion_matrix(y_true, y_pred, labels=labels)
    label_names = [str(label) for label in labels]
    drawn: dict[str, bytes] = {}
    calibration: dict[str, list[float]] = {}
    if positive is not None:
        hits = (y_true == positive).astype(float)
        if proba is not None:
            calibration = _calibration(hits, proba[:, classes.index(positive)])
        if plots and score is not None and 0 < hits.sum() < len(hits):
            drawn["roc.png"] = _png(_draw_roc, hits, score)
            drawn["pr.png"] = _png(_draw_pr, hits, score)
    if plots:
        drawn["confusion_matrix.png"] = _png(_draw_confusion, matrix, label_names)

    def subset(values: Array | None, rows: Array) -> Array | None:
        return None if values is None else values[rows]

    per_slice = {
        key: scorer(y_true[rows], y_pred[rows], subset(proba, rows), subset(score, rows))
        for key, rows in slices.items()
    }
    return Evaluation(
        task="classification",
        metrics=scorer(y_true, y_pred, proba, score),
        primary_metric="roc_auc" if positive is not None and score is not None else "f1",
        higher_is_better=True,
        per_slice=_with_rows(per_slice, slices),
        confusion_matrix=[[int(count) for count in row] for row in matrix],
        labels=label_names,
        calibration=calibration,
        plots=drawn,
    )


@dataclass(frozen=True)
class _ClassificationScorer:
    """Classification metrics for a set of rows; `positive` is None for multiclass."""

    classes: list[Any]
    positive: Any

    def __call__(
        self, y_true: Array, y_pred: Array, proba: Array | None, score: Array | None
    ) -> dict[str, float]:
        """The defined metrics of these rows (see `evaluate`)."""
        average: dict[str, Any] = (
            {"average": "macro"}
            if self.positive is None
            else {"average": "binary", "pos_label": self.positive}
        )
        found: dict[str, float | None] = {
            "accuracy": _safe(lambda: skm.accuracy_score(y_true, y_pred)),
            # zero_division=nan marks an undefined ratio, which is then left out instead of faked as 0.
            "precision": _safe(lambda: skm.precision_score(y_true, y_pred, zero_division=np.nan, **average)),
            "recall": _safe(lambda: skm.recall_score(y_true, y_pred, zero_division=np.nan, **average)),
            "f1": _safe(lambda: skm.f1_score(y_true, y_pred, zero_division=np.nan, **average)),
        }
        present = set(y_true.tolist())
        known = present <= set(self.classes)
        if self.positive is not None and score is not None:
            hits = y_true == self.positive
            if 0 < hits.sum() < len(hits):
                found["roc_auc"] = _safe(lambda: skm.roc_auc_score(hits, score))
                found["pr_auc"] = _safe(lambda: skm.average_precision_score(hits, score))
        elif proba is not None and known and len(present) == len(self.classes) > 2:
            found["roc_auc"] = _safe(
                lambda: skm.roc_auc_score(
                    y_true, proba, multi_class="ovr", average="macro", labels=self.classes
                )
            )
        if proba is not None and known:
            found["log_loss"] = _safe(lambda: skm.log_loss(y_true, proba, labels=self.classes))
        return {name: value for name, value in found.items() if value is not None}


def _regression_metrics(y_true: Array, y_pred: Array) -> dict[str, float]:
    nonzero = y_true != 0
    found = {
        "mae": _safe(lambda: skm.mean_absolute_error(y_true, y_pred)),
        "rmse": _safe(lambda: skm.root_mean_squared_error(y_true, y_pred)),
        # R² of fewer than two rows is undefined (scikit-learn warns and returns NaN).
        "r2": _safe(lambda: skm.r2_score(y_true, y_pred)) if len(y_true) >= 2 else None,
        "mape": _safe(
            lambda: (
                np.mean(np.abs((y_true[nonzero] - y_pred[nonzero]) / y_true[nonzero]))
                if nonzero.any()
                else math.nan
            )
        ),
    }
    return {name: value for name, value in found.items() if value is not None}


def _safe(compute: Callable[[], Any]) -> float | None:
    """The metric as a finite float, or None when it is undefined for these rows."""
    try:
        value = float(compute())
    # Warning: under `-W error` scikit-learn's UndefinedMetricWarning arrives as an exception.
    except (ValueError, TypeError, ZeroDivisionError, Warning):
        return None
    return value if math.isfinite(value) else None


def _check_frame(frame: pd.DataFrame, *, target: str, slice_by: str | None, task: str) -> None:
    if task not in ("auto", "classification", "regression"):
        raise InvalidInput(f"unknown task {task!r}; use one of auto, classification, regression")
    if frame.empty:
        raise InvalidInput("cannot evaluate on an empty frame")
    for role, name in (("target", target), ("slice_by", slice_by)):
        if name is not None and name not in frame.columns:
            raise InvalidInput(
                f"{role} column {name!r} is not in the frame; columns are {list(frame.columns)}"
            )
    missing = int(frame[target].isna().sum())
    if missing:
        raise InvalidInput(f"{missing} rows have no value for target {target!r}; drop them before evaluating")


def _features(model: Any, frame: pd.DataFrame, *, target: str, slice_by: str | None) -> pd.DataFrame:
    """`frame` without the target, in the model's column order; checked against the model's columns."""
    features = frame.drop(columns=[target])
    seen = getattr(model, "feature_names_in_", None)
    if seen is None:  # fitted on arrays: nothing to check by name
        return features
    seen = list(seen)
    if slice_by is not None and slice_by not in seen and slice_by != target:
        features = features.drop(columns=[slice_by])
    lacking = [name for name in seen if name not in features.columns]
    unseen = [name for name in features.columns if name not in seen]
    if lacking or unseen:
        raise InvalidInput(
            f"the frame does not match the model's columns: missing {lacking}, not seen in training {unseen}"
        )
    return features[seen]


def _task(model: Any, target: pd.Series) -> Task:
    try:
        if is_classifier(model):
            return "classification"
        if is_regressor(model):
            return "regression"
    except AttributeError:  # not a scikit-learn estimator: it has no tags to ask
        pass
    return task_of(target)


def _classes(model: Any, y_true: Array, y_pred: Array) -> list[Any]:
    classes = getattr(model, "classes_", None)
    if classes is not None:
        return list(np.asarray(classes).tolist())  # Python scalars, so they print and compare plainly
    return sorted(set(y_true.tolist()) | set(y_pred.tolist()), key=str)


def _positive(classes: list[Any], positive_label: Any) -> Any:
    """The positive label of a binary model, or None for multiclass."""
    if len(classes) != 2:
        if positive_label is not None:
            raise InvalidInput(f"positive_label is for binary models; this one has classes {classes}")
        return None
    if positive_label is None:
        return classes[1]
    if positive_label not in classes:
        raise InvalidInput(f"positive_label {positive_label!r} is not one of the model's classes {classes}")
    return positive_label


def _binary_score(
    model: Any, features: pd.DataFrame, classes: list[Any], positive: Any, proba: Array | None
) -> Array | None:
    """A score that grows with the chance of the positive label, or None (multiclass, or no scores)."""
    if positive is None:
        return None
    if proba is not None:
        return proba[:, classes.index(positive)]
    if hasattr(model, "decision_function"):
        decision = np.asarray(model.decision_function(features), dtype=float)
        # decision_function favours classes_[1]; flip it when the positive label is the other class.
        return decision if positive == classes[1] else -decision
    return None


def _slices(values: pd.Series) -> dict[str, Array]:
    """Slice key -> row mask, keyed by str(value), "null" for missing values, in key order."""
    keys = np.where(values.notna().to_numpy(), values.astype(str).to_numpy(dtype=object), "null")
    return {key: keys == key for key in sorted(set(keys.tolist()))}


def _with_rows(
    per_slice: dict[str, dict[str, float]], slices: dict[str, Array]
) -> dict[str, dict[str, float]]:
    return {key: {"rows": float(slices[key].sum()), **found} for key, found in per_slice.items()}


def _calibration(hits: Array, probability: Array) -> dict[str, list[float]]:
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    index = np.clip(np.searchsorted(edges, probability, side="right") - 1, 0, CALIBRATION_BINS - 1)
    count = np.bincount(index, minlength=CALIBRATION_BINS)
    used = count > 0
    predicted = np.bincount(index, weights=probability, minlength=CALIBRATION_BINS)[used] / count[used]
    observed = np.bincount(index, weights=hits, minlength=CALIBRATION_BINS)[used] / count[used]
    return {
        "bin_lower": edges[:-1][used].tolist(),
        "bin_upper": edges[1:][used].tolist(),
        "mean_predicted": predicted.tolist(),
        "observed_frequency": observed.tolist(),
        "count": count[used].astype(float).tolist(),
    }


def _png(draw: Callable[..., None], *args: Any) -> bytes:
    """Draw on a fresh 5x4 in, 100 dpi figure and return it as PNG bytes."""
    figure = Figure(figsize=(5, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    try:
        draw(figure.add_subplot(), *args)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        figure.clear()  # the figure is not registered with pyplot, so this is all the closing it needs


def _draw_roc(axes: Axes, hits: Array, score: Array) -> None:
    fpr, tpr, _ = skm.roc_curve(hits, score)
    axes.plot(fpr, tpr, label=f"AUC = {skm.auc(fpr, tpr):.3f}")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    axes.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC curve")
    axes.legend(loc="lower right")


def _draw_pr(axes: Axes, hits: Array, score: Array) -> None:
    precision, recall, _ = skm.precision_recall_curve(hits, score)
    axes.step(recall, precision, where="post", label=f"AP = {skm.average_precision_score(hits, score):.3f}")
    axes.axhline(float(hits.mean()), linestyle="--", color="grey", linewidth=1)
    axes.set(xlabel="Recall", ylabel="Precision", title="Precision-recall curve", ylim=(0, 1.05))
    axes.legend(loc="lower left")


def _draw_confusion(axes: Axes, matrix: Array, labels: list[str]) -> None:
    axes.imshow(matrix, cmap="Blues")
    axes.set(xlabel="Predicted", ylabel="True", title="Confusion matrix")
    if len(labels) > 20:  # beyond that neither the labels nor the counts fit in a 5x4 in figure
        return
    ticks = range(len(labels))
    short = [label if len(label) <= 12 else label[:11] + "…" for label in labels]
    axes.set_xticks(ticks, short, rotation=45, ha="right")
    axes.set_yticks(ticks, short)
    threshold = matrix.max() / 2
    for (row, column), count in np.ndenumerate(matrix):
        color = "white" if count > threshold else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=color, fontsize=8)


def _draw_residuals(axes: Axes, y_true: Array, y_pred: Array) -> None:
    predicted, residual = y_pred.astype(float), y_true.astype(float) - y_pred.astype(float)
    if len(predicted) > MAX_PLOTTED_POINTS:
        keep = np.random.default_rng(0).choice(len(predicted), MAX_PLOTTED_POINTS, replace=False)
        predicted, residual = predicted[keep], residual[keep]
    axes.scatter(predicted, residual, s=8, alpha=0.5)
    axes.axhline(0.0, color="grey", linewidth=1)
    axes.set(xlabel="Predicted", ylabel="Residual (true - predicted)", title="Residuals")
