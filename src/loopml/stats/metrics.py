"""Model-quality metrics in plain numpy: exact, fast, and defined (or absent) on every input.

Used by the registry's promotion gates (two models scored on the same rows, also per slice) and by monitoring.

```
ranking      roc_auc, pr_auc                  binary: scores of the `positive` label vs all other rows
labels       accuracy, precision, recall, f1  binary (`positive` vs the rest) or macro (labels present)
probability  log_loss                         2-D probabilities, one column per entry of `classes`
regression   mae, rmse, r2, mape
bundles      classification_metrics, regression_metrics, primary_metric, HIGHER_IS_BETTER
```
Inputs are lists, numpy arrays or pandas Series (read through `np.asarray`); labels may be numbers, booleans,
strings or objects that sort among themselves. Empty inputs, mismatched lengths, missing labels, NaN or
infinite numbers raise `InvalidInput`. A metric that is undefined for the rows is None (the functions) or
left out (the bundles), never NaN; a ratio with a zero denominator (precision of a label never predicted) is 0.

Results equal scikit-learn's to float rounding, except where scikit-learn warns or raises: `roc_auc` is
None when y_true lacks a class, `pr_auc` None (not 0.0) when it has no positive; `r2` is None for a constant
y_true (not 1.0 or 0.0); `mape` skips rows whose truth is 0 (instead of dividing by 2e-16); binary metrics
with more than two labels score `positive` against the rest (scikit-learn raises); `log_loss` clips at 1e-15
(not at machine epsilon). Counts are summed as exact integers; `roc_auc` is the Mann-Whitney U with ties
counted half, divided once, so it is correctly rounded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from loopml.core.errors import InvalidInput
from loopml.stats.nulls import is_null

Average = Literal["binary", "macro"]
Task = Literal["classification", "regression"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]
Classes = Sequence[Any] | npt.NDArray[Any]  # a list, or a model's `classes_` array

CLIP = 1e-15  # log_loss clips probabilities to [CLIP, 1 - CLIP]

HIGHER_IS_BETTER: Mapping[str, bool] = MappingProxyType(
    {
        "accuracy": True,
        "precision": True,
        "recall": True,
        "f1": True,
        "roc_auc": True,
        "pr_auc": True,
        "log_loss": False,
        "mae": False,
        "rmse": False,
        "r2": True,
        "mape": False,
    }
)
"""Direction of every metric this module computes: True when a larger value is a better model."""


# ---------------------------------------------------------------------------------------------- ranking


def roc_auc(y_true: npt.ArrayLike, scores: npt.ArrayLike, *, positive: Any = 1) -> float | None:
    """Area under the ROC curve of `scores` for the rows whose label is `positive`; None with one class only.

    Computed from ranks (Mann-Whitney U, tied scores count half) in one sort. Rows of other labels are the
    negatives, so a multiclass y_true gives the one-vs-rest AUC of `positive`.
    """
    truth, values = _pair(y_true, scores, "scores")
    return _roc_auc(*_tie_groups(_hits(truth, positive), _numbers(values, "scores")))


def pr_auc(y_true: npt.ArrayLike, scores: npt.ArrayLike, *, positive: Any = 1) -> float | None:
    """Average precision of `scores` for `positive` (as `sklearn.metrics.average_precision_score`).

    The sum over distinct score thresholds of (recall gained) x (precision there); tied scores form one
    threshold. None when no row of y_true is `positive`.
    """
    truth, values = _pair(y_true, scores, "scores")
    return _average_precision(*_tie_groups(_hits(truth, positive), _numbers(values, "scores")))


def _hits(truth: npt.NDArray[Any], positive: Any) -> BoolArray:
    """Whether each row's label is `positive`; checks the labels and that `positive` is one of them."""
    if truth.dtype.kind in "fO":  # only these can hold NaN or None; other dtypes skip the (slower) check
        _unique(truth, "y_true")
    hits = np.asarray(truth == positive, dtype=np.bool_)
    if hits.shape != truth.shape:  # an object whose == does not broadcast
        hits = np.array([value == positive for value in truth.tolist()], dtype=np.bool_)
    if not hits.any():
        labels = _unique(truth, "y_true")[0].tolist()
        if len(labels) > 1:
            raise InvalidInput(
                f"positive label {positive!r} is not in y_true, whose labels are {_show(labels)}; "
                "pass positive= one of them"
            )
    return hits


def _tie_groups(hits: BoolArray, scores: FloatArray) -> tuple[IntArray, IntArray]:
    """Positives and negatives per distinct score, in ascending score order."""
    order = np.argsort(scores)
    ordered = scores[order]
    ends = np.append(np.flatnonzero(ordered[1:] != ordered[:-1]), ordered.size - 1)
    positives = np.diff(np.cumsum(hits[order], dtype=np.intp)[ends], prepend=0)
    sizes = np.diff(ends, prepend=-1)
    return positives, sizes - positives


def _roc_auc(positives: IntArray, negatives: IntArray) -> float | None:
    n_pos, n_neg = int(positives.sum()), int(negatives.sum())
    if n_pos == 0 or n_neg == 0:
        return None
    below = np.cumsum(negatives) - negatives  # negatives with a strictly lower score
    twice_u = 2 * int(np.dot(positives, below)) + int(np.dot(positives, negatives))  # exact integers
    return twice_u / (2 * n_pos * n_neg)


def _average_precision(positives: IntArray, negatives: IntArray) -> float | None:
    n_pos = int(positives.sum())
    if n_pos == 0:
        return None
    gained = positives[::-1]  # thresholds from the highest score down
    true_positives = np.cumsum(gained)
    selected = np.cumsum(gained + negatives[::-1])
    return float(np.sum(gained * (true_positives / selected))) / n_pos


# ----------------------------------------------------------------------------------------------- labels


def accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Share of rows whose predicted label equals the true one."""
    _, truth, pred = _codes(*_pair(y_true, y_pred, "y_pred"))
    return float(np.count_nonzero(truth == pred)) / truth.size


def precision(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, *, average: Average = "macro", positive: Any = 1
) -> float:
    """Precision: binary (of `positive`) or macro (unweighted mean over the labels present); 0 if undefined."""
    return _rates(y_true, y_pred, average=average, positive=positive)[0]


def recall(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, *, average: Average = "macro", positive: Any = 1
) -> float:
    """Recall: binary (of `positive`) or macro (unweighted mean over the labels present); 0 if undefined."""
    return _rates(y_true, y_pred, average=average, positive=positive)[1]


def f1(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, *, average: Average = "macro", positive: Any = 1
) -> float:
    """F1 score: binary (of `positive`) or macro; 0 if undefined.

    Macro averages the per-label F1 over the labels present in y_true or y_pred (scikit-learn's rule: a
    label with no rows and no predictions does not count). Binary scores `positive` against every other
    label, and is 0 when `positive` appears in neither input.
    """
    return _rates(y_true, y_pred, average=average, positive=positive)[2]


def _rates(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, *, average: Average, positive: Any
) -> tuple[float, float, float]:
    labels, truth, pred = _codes(*_pair(y_true, y_pred, "y_pred"))
    if average == "macro":
        return _label_rates(len(labels), truth, pred, None)
    if average != "binary":
        raise InvalidInput(f"unknown average {average!r}; use 'binary' or 'macro'")
    index = _index_of(labels, positive)
    if index is None and len(labels) > 1:
        raise InvalidInput(
            f"positive label {positive!r} is in neither y_true nor y_pred, whose labels are "
            f"{_show(labels)}; pass positive= one of them"
        )
    return _label_rates(len(labels), truth, pred, -1 if index is None else index)


def _label_rates(k: int, truth: IntArray, pred: IntArray, positive: int | None) -> tuple[float, float, float]:
    """(precision, recall, f1) from label codes; `positive` is a code (binary; -1: absent) or None (macro)."""
    if positive is not None:
        hit_true, hit_pred = truth == positive, pred == positive
        tp = np.array([np.count_nonzero(hit_true & hit_pred)])
        n_true, n_pred = np.array([np.count_nonzero(hit_true)]), np.array([np.count_nonzero(hit_pred)])
    else:
        tp = np.bincount(truth[truth == pred], minlength=k)
        n_true, n_pred = np.bincount(truth, minlength=k), np.bincount(pred, minlength=k)
    return (
        float(np.mean(_ratio(tp, n_pred))),
        float(np.mean(_ratio(tp, n_true))),
        float(np.mean(_ratio(2 * tp, n_true + n_pred))),
    )


def _ratio(numerator: IntArray, denominator: IntArray) -> FloatArray:
    """numerator / denominator, 0 where the denominator is 0 (and no warning)."""
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


# ------------------------------------------------------------------------------------------ probability


def log_loss(y_true: npt.ArrayLike, probabilities: npt.ArrayLike, *, classes: Classes) -> float:
    """Mean negative log of the probability given to each row's true label.

    `probabilities` has one row per label and one column per entry of `classes` (a model's `classes_`),
    values in [0, 1]; they are clipped to [1e-15, 1 - 1e-15] and not renormalised. Every label of y_true
    must be among `classes`.
    """
    truth = _column(y_true, "y_true")
    class_list = _class_list(classes)
    proba = _probabilities(probabilities, rows=truth.size, columns=len(class_list))
    columns, unknown = _class_columns(truth, class_list)
    if unknown:
        raise InvalidInput(
            f"y_true holds labels that are not among classes {_show(class_list)}: {_show(unknown)}; "
            "pass the classes the probability columns are for"
        )
    return _log_loss(proba, columns)


def _log_loss(proba: FloatArray, columns: IntArray) -> float:
    chosen = np.clip(proba[np.arange(columns.size), columns], CLIP, 1.0 - CLIP)
    return float(-np.mean(np.log(chosen)))


def _class_list(classes: Classes) -> list[Any]:
    class_list = list(np.asarray(classes, dtype=object).reshape(-1).tolist())
    if not class_list:
        raise InvalidInput(
            "classes is empty; pass the model's classes in the order of the probability columns"
        )
    if len(set(class_list)) != len(class_list):
        raise InvalidInput(f"classes {_show(class_list)} holds duplicates; each class must appear once")
    return class_list


def _class_columns(truth: npt.NDArray[Any], class_list: list[Any]) -> tuple[IntArray, list[Any]]:
    """The column of each row's label in `class_list`, and the labels that are not classes (then -1)."""
    uniques, inverse = _unique(truth, "y_true")
    where = {label: column for column, label in enumerate(class_list)}
    found = [where.get(label, -1) for label in uniques.tolist()]
    unknown = [label for label, column in zip(uniques.tolist(), found, strict=True) if column < 0]
    return np.array(found, dtype=np.intp)[inverse], unknown


def _probabilities(values: npt.ArrayLike, *, rows: int, columns: int) -> FloatArray:
    raw = np.asarray(values)
    if raw.ndim != 2 or raw.shape[0] != rows or raw.shape[1] != columns:
        raise InvalidInput(
            f"probabilities must have shape ({rows}, {columns}), one row per label and one column per "
            f"class; got shape {raw.shape}"
        )
    proba = _numbers(raw.reshape(-1), "probabilities").reshape(raw.shape)
    outside = (proba < 0.0) | (proba > 1.0)
    if outside.any():
        raise InvalidInput(
            f"probabilities must lie in [0, 1]; found {float(proba[outside][0])!r}; pass predict_proba output, "
            "not decision scores"
        )
    return proba


# ------------------------------------------------------------------------------------------- regression


def mae(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Mean absolute error."""
    truth, pred = _numeric_pair(y_true, y_pred)
    with np.errstate(over="ignore"):  # 1e308 - -1e308 is inf, which is the honest answer
        return float(np.mean(np.abs(truth - pred)))


def rmse(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Root mean squared error."""
    truth, pred = _numeric_pair(y_true, y_pred)
    with np.errstate(over="ignore"):  # beyond ~1e154 the square is inf, as in `mae`
        return math.sqrt(float(np.mean(np.square(truth - pred))))


def r2(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float | None:
    """Coefficient of determination; None when y_true is constant (including a single row)."""
    truth, pred = _numeric_pair(y_true, y_pred)
    if truth.min() == truth.max():
        return None
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        residual = float(np.sum(np.square(truth - pred)))
        total = float(np.sum(np.square(truth - truth.mean())))
    if total == 0.0 or not math.isfinite(total) or not math.isfinite(residual):  # squares under/overflowed
        return None
    return 1.0 - residual / total


def mape(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float | None:
    """Mean absolute percentage error as a fraction (0.1 = 10%) over the rows whose truth is not 0.

    Rows with truth 0 are skipped rather than divided by a tiny number; None when no row is left.
    """
    truth, pred = _numeric_pair(y_true, y_pred)
    kept = truth != 0.0
    if not kept.any():
        return None
    with np.errstate(over="ignore"):
        return float(np.mean(np.abs((truth[kept] - pred[kept]) / truth[kept])))


def _numeric_pair(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    truth, pred = _pair(y_true, y_pred, "y_pred")
    return _numbers(truth, "y_true"), _numbers(pred, "y_pred")


# ---------------------------------------------------------------------------------------------- bundles


def classification_metrics(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    probabilities: npt.ArrayLike | None = None,
    *,
    classes: Classes | None = None,
    positive: Any = None,
) -> dict[str, float]:
    """accuracy, precision, recall, f1; with probabilities also log_loss, and roc_auc, pr_auc when binary.

    Binary when `positive` is given or there are two classes (`classes`, else the labels of y_true and
    y_pred), `positive` defaulting to the second class in sorted order; otherwise macro. Pass the model's
    `classes` when scoring slices, so every slice follows the same rule and reads the same columns; without
    them, classes are the sorted labels of y_true and y_pred, which must match the probability columns.
    Metrics undefined for these rows are left out: roc_auc and pr_auc when y_true lacks a class, log_loss
    when y_true holds a label that is not a class.
    """
    truth, pred = _pair(y_true, y_pred, "y_pred")
    labels, truth_codes, pred_codes = _codes(truth, pred)
    class_list = None if classes is None else _class_list(classes)
    proba = None
    if probabilities is not None:
        if class_list is None:
            class_list = labels
        proba = _probabilities(probabilities, rows=truth.size, columns=len(class_list))
    if positive is None and class_list is not None and len(class_list) == 2:
        positive = _sorted(class_list, "classes")[1]
    elif positive is None and class_list is None and len(labels) == 2:
        positive = labels[1]
    if positive is not None and class_list is not None and _index_of(class_list, positive) is None:
        where = "classes" if classes is not None else "the labels of y_true and y_pred"
        raise InvalidInput(
            f"positive label {positive!r} is not among {where} {_show(class_list)}; pass positive= one of them"
        )

    index = None if positive is None else _index_of(labels, positive)
    code = None if positive is None else (-1 if index is None else index)
    precision_, recall_, f1_ = _label_rates(len(labels), truth_codes, pred_codes, code)
    found: dict[str, float | None] = {
        "accuracy": float(np.count_nonzero(truth_codes == pred_codes)) / truth.size,
        "precision": precision_,
        "recall": recall_,
        "f1": f1_,
    }
    if proba is not None and class_list is not None:
        if positive is not None:
            column = _index_of(class_list, positive)
            hits = truth_codes == code
            groups = _tie_groups(hits, proba[:, column])
            found["roc_auc"] = _roc_auc(*groups)
            found["pr_auc"] = _average_precision(*groups)
        columns, unknown = _class_columns(truth, class_list)
        found["log_loss"] = None if unknown else _log_loss(proba, columns)
    return {name: value for name, value in found.items() if value is not None and math.isfinite(value)}


def regression_metrics(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> dict[str, float]:
    """mae, rmse, r2 and mape; r2 and mape are left out when undefined (see `r2`, `mape`)."""
    truth, pred = _numeric_pair(y_true, y_pred)
    found = {
        "mae": mae(truth, pred),
        "rmse": rmse(truth, pred),
        "r2": r2(truth, pred),
        "mape": mape(truth, pred),
    }
    return {name: value for name, value in found.items() if value is not None and math.isfinite(value)}


def primary_metric(task: Task, *, n_classes: int, has_probabilities: bool) -> tuple[str, bool]:
    """The metric to compare models by, and whether higher is better.

    roc_auc for binary classifiers with probabilities; f1 for other classifiers (macro when multiclass,
    which unlike accuracy does not hide a minority class never predicted); rmse for regression.
    `n_classes` is ignored for regression.
    """
    if task == "regression":
        return "rmse", False
    if task != "classification":
        raise InvalidInput(f"unknown task {task!r}; use 'classification' or 'regression'")
    if n_classes < 1:
        raise InvalidInput(f"n_classes must be at least 1 for classification; got {n_classes}")
    return ("roc_auc" if n_classes == 2 and has_probabilities else "f1"), True


# ----------------------------------------------------------------------------------------------- inputs


def _column(values: npt.ArrayLike, name: str) -> npt.NDArray[Any]:
    try:
        array = np.asarray(values)
    except ValueError as exc:  # ragged nested lists
        raise InvalidInput(f"{name} must be one-dimensional (one value per row): {exc}") from exc
    if array.ndim != 1:
        raise InvalidInput(f"{name} must be one-dimensional (one value per row); got shape {array.shape}")
    if array.size == 0:
        raise InvalidInput(f"{name} is empty; metrics need at least one row")
    return array


def _pair(
    y_true: npt.ArrayLike, other: npt.ArrayLike, name: str
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    truth, values = _column(y_true, "y_true"), _column(other, name)
    if truth.size != values.size:
        raise InvalidInput(
            f"y_true has {truth.size} rows but {name} has {values.size}; pass one {name} value per row"
        )
    return truth, values


def _numbers(array: npt.NDArray[Any], name: str) -> FloatArray:
    """`array` as finite float64; raises for non-numbers, missing values and infinities."""
    if array.dtype.kind not in "biufO":
        raise InvalidInput(f"{name} must hold numbers; got dtype {array.dtype}")
    try:
        numbers = array.astype(np.float64)
    except (TypeError, ValueError) as exc:
        nulls = sum(1 for value in array.tolist() if is_null(value))
        if nulls:
            raise InvalidInput(f"{name} holds {nulls} missing values; drop or fill those rows first") from exc
        raise InvalidInput(f"{name} must hold numbers: {exc}") from exc
    bad = ~np.isfinite(numbers)
    if bad.any():
        first = int(np.argmax(bad))
        raise InvalidInput(
            f"{name} holds {int(bad.sum())} missing or infinite values (the first at row {first}: "
            f"{float(numbers[first])!r}); drop or fill those rows first"
        )
    return numbers


def _unique(array: npt.NDArray[Any], name: str) -> tuple[npt.NDArray[Any], IntArray]:
    """Sorted distinct labels and each row's position among them; raises for missing or mixed labels."""
    if array.dtype.kind == "O":
        uniques, inverse = _unique_objects(array, name)
    else:
        uniques, inverse = np.unique(array, return_inverse=True)
        _check_missing(uniques, inverse, name)
    return uniques, inverse.reshape(-1).astype(np.intp, copy=False)


def _check_missing(values: Sequence[Any] | npt.NDArray[Any], positions: IntArray, name: str) -> None:
    """Raise if a distinct label is missing (None, NaN, NA, NaT); `positions` point rows at `values`."""
    missing = [i for i, value in enumerate(values) if is_null(value)]
    if missing:
        count = int(np.isin(positions, missing).sum())
        raise InvalidInput(
            f"{name} holds {count} missing labels ({_plain(values[missing[0]])!r}); drop those rows first"
        )


def _unique_objects(array: npt.NDArray[Any], name: str) -> tuple[npt.NDArray[Any], IntArray]:
    """`np.unique` for object arrays (what pandas string columns become), by hashing: ~6x faster.

    Only the distinct values are sorted, so values that do not sort together are reported by type.
    """
    seen: dict[Any, int] = {}
    try:
        first_seen = np.fromiter(
            (seen.setdefault(value, len(seen)) for value in array.tolist()), dtype=np.intp, count=array.size
        )
    except TypeError as exc:  # unhashable values (lists, dicts)
        raise InvalidInput(f"{name} holds values that cannot be labels: {exc}") from exc
    values = list(seen)
    _check_missing(values, first_seen, name)
    try:
        order = sorted(range(len(values)), key=values.__getitem__)
    except TypeError as exc:
        kinds = sorted({type(value).__name__ for value in values})
        raise InvalidInput(
            f"{name} mixes label types ({', '.join(kinds)}) that do not sort together; use one type"
        ) from exc
    rank = np.empty(len(values), dtype=np.intp)
    rank[order] = np.arange(len(values))
    uniques = np.empty(len(values), dtype=object)
    uniques[:] = [values[i] for i in order]
    return uniques, rank[first_seen]


def _codes(truth: npt.NDArray[Any], pred: npt.NDArray[Any]) -> tuple[list[Any], IntArray, IntArray]:
    """The sorted labels of y_true and y_pred together, and each row's true and predicted label index."""
    true_uniques, true_inverse = _unique(truth, "y_true")
    pred_uniques, pred_inverse = _unique(pred, "y_pred")
    true_values, pred_values = true_uniques.tolist(), pred_uniques.tolist()
    labels = _sorted(list(set(true_values) | set(pred_values)), "y_true and y_pred")
    index = {label: i for i, label in enumerate(labels)}
    true_codes = np.array([index[value] for value in true_values], dtype=np.intp)[true_inverse]
    pred_codes = np.array([index[value] for value in pred_values], dtype=np.intp)[pred_inverse]
    return labels, true_codes, pred_codes


def _sorted(values: list[Any], name: str) -> list[Any]:
    try:
        return sorted(values)
    except TypeError as exc:
        kinds = sorted({type(value).__name__ for value in values})
        raise InvalidInput(
            f"the labels of {name} mix types ({', '.join(kinds)}) that do not sort together; use one type"
        ) from exc


def _index_of(labels: list[Any], label: Any) -> int | None:
    for i, candidate in enumerate(labels):
        if candidate == label:
            return i
    return None


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds, so messages read 1.5 rather than np.float64(1.5)."""
    return value.item() if isinstance(value, np.generic) else value


def _show(values: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(repr(_plain(value)) for value in list(values)[:limit])
    more = f", ... ({len(values)} in all)" if len(values) > limit else ""
    return f"[{shown}{more}]"
