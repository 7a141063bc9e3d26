"""A window's performance: realized on the labels that have arrived, and estimated from probabilities (CBPE).

The logged outputs say what kind of model it is: `proba_<class>` columns make it a classifier (their names are
its classes, in order), none a regressor. Labels are the latest feedback per prediction id. The estimate
assumes calibrated probabilities; `stats.calibration` can fit a map on a labelled reference window, and the
comparison (`stats.performance.compare_performance`) says which signal fired.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from loopml.core.errors import LoopMLError
from loopml.monitoring.quality import outputs_of
from loopml.predictions import labels_for
from loopml.stats.performance import estimate_performance, realized_performance

if TYPE_CHECKING:
    import pandas as pd

    from loopml.tracking.tracker import Tracker

PREDICTION = "prediction"
PROBA_PREFIX = "proba_"


def window_labels(tracker: Tracker, frame: pd.DataFrame) -> dict[str, Any]:
    """The latest label of each prediction of a window that has one."""
    return labels_for(tracker, frame["prediction_id"].astype(str).tolist()) if len(frame) else {}


def window_performance(frame: pd.DataFrame, labels: dict[str, Any]) -> dict[str, Any] | None:
    """Realized (on `labels`) and estimated performance of one window of logged predictions, as JSON."""
    outputs = outputs_of(frame)
    if PREDICTION not in outputs.columns or not len(frame):
        return None
    ids = frame["prediction_id"].astype(str).tolist()
    y_pred = outputs[PREDICTION].to_numpy()
    names = [c for c in outputs.columns if str(c).startswith(PROBA_PREFIX)]
    result: dict[str, Any] = {}
    classes = _classes([str(n)[len(PROBA_PREFIX) :] for n in names], y_pred) if names else None
    probabilities = outputs[names].to_numpy(dtype=np.float64) if names else None
    # A window the model's outputs do not fit (one probability column logged, labels of another kind) is a
    # finding recorded with the window, not a failure of the whole run.
    if probabilities is not None and classes is not None:
        try:
            result["estimated"] = estimate_performance(
                probabilities, classes=classes, y_pred=y_pred
            ).to_dict()
        except LoopMLError as error:
            result["estimated_error"] = error.message
    if labels:
        y_true = np.array([labels.get(i) for i in ids], dtype=object)
        try:
            if probabilities is not None:
                realized = realized_performance(y_true, y_pred, probabilities, classes=classes)
            else:
                realized = realized_performance(y_true, y_pred, task="regression")
            result["realized"] = realized.to_dict()
        except LoopMLError as error:
            result["realized_error"] = error.message
    return result or None


def _classes(names: list[str], predictions: Any) -> list[Any]:
    """The class labels as the model predicts them: "1" back to 1 when the predictions are integers."""
    kind = np.asarray(predictions).dtype.kind
    try:
        if kind in "iu":
            return [int(n) for n in names]
        if kind == "b":
            return [n == "True" for n in names]
        if kind == "f":
            return [float(n) for n in names]
    except ValueError:
        pass
    return names
