"""Promoting a version to an alias: score the challenger and the holder on the same held-out rows, run the
gates, then move the alias (or record the refusal), each with its evidence in the audit trail.

The evaluation rows are what the caller gives (a dataset version, or a frame with its target), else the
held-out dataset version named in the challenger's manifest. They must not overlap either model's training
rows (compared by row hashes stored at registration).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopml.core.errors import InvalidInput, LoopMLError
from loopml.registry.gates import GatePolicy, GateResult, Scores, judge
from loopml.registry.records import AliasEvent, ModelVersion
from loopml.stats import metrics as m

ROW_HASHES = "training_rows.npy"


class PromotionRefused(LoopMLError):
    """A gate failed: the alias did not move (the refusal and its evidence are in the history)."""

    code = "promotion_refused"
    http_status = 409
    exit_code = 1

    def __init__(self, message: str, *, gates: list[GateResult]) -> None:
        super().__init__(message)
        self.gates = gates


@dataclass(frozen=True)
class EvaluationData:
    """Held-out rows with their target, and where they came from."""

    frame: Any  # pandas DataFrame with the feature columns and `target`
    target: str
    source: str


@dataclass(frozen=True)
class Promotion:
    """A promotion that went through: the alias move and the gates it passed."""

    event: AliasEvent
    gates: list[GateResult]
    evaluation: str | None


def row_hashes(frame: Any, columns: list[str]) -> np.ndarray:
    """One 64-bit hash per row of `columns`, the same for equal rows whatever their numeric dtype."""
    import pandas as pd

    normalised = pd.DataFrame(
        {
            c: frame[c].astype("float64") if pd.api.types.is_numeric_dtype(frame[c]) else frame[c].astype(str)
            for c in columns
        }
    )
    hashed: np.ndarray = pd.util.hash_pandas_object(normalised, index=False).to_numpy()
    return hashed


def check_disjoint(
    evaluation: EvaluationData, columns: list[str], trained: dict[str, np.ndarray | None]
) -> None:
    """Refuse evaluation rows that a model was trained on (with the overlap count)."""
    mine = row_hashes(evaluation.frame, columns)
    for label, hashes in trained.items():
        if hashes is None:
            continue
        overlap = int(np.isin(mine, hashes).sum())
        if overlap:
            raise InvalidInput(
                f"{overlap} of {len(mine)} evaluation rows ({evaluation.source}) were training rows of {label}: "
                "gates must score held-out rows; pass a disjoint dataset version"
            )


def score(model: Any, evaluation: EvaluationData, columns: list[str], slice_by: str | None) -> Scores:
    """Metrics of `model` on the evaluation rows (and per slice), with its prediction time per row."""
    features = evaluation.frame[columns]
    truth = evaluation.frame[evaluation.target].to_numpy()
    started = time.perf_counter()
    try:
        predictions = np.asarray(model.predict(features))
        elapsed = time.perf_counter() - started
        probabilities = model.predict_proba(features) if hasattr(model, "predict_proba") else None
    except Exception as error:  # a registered object that is no model, or rows it cannot take
        raise InvalidInput(
            f"the model could not score the evaluation rows: {type(error).__name__}: {error}"
        ) from None
    classes = list(getattr(model, "classes_", [])) or None
    overall = _metrics(truth, predictions, probabilities, classes)
    per_slice: dict[str, dict[str, float]] = {}
    if slice_by is not None:
        if slice_by not in evaluation.frame.columns:
            raise InvalidInput(f"slice column {slice_by!r} is not in the evaluation data")
        keys = evaluation.frame[slice_by].astype(str).to_numpy()
        for value in sorted(set(keys)):
            rows = keys == value
            sliced = probabilities[rows] if probabilities is not None else None
            per_slice[value] = _metrics(truth[rows], predictions[rows], sliced, classes)
    return Scores(overall, per_slice, elapsed * 1000 / max(1, len(features)))


def primary(model: Any) -> str:
    """The default metric of the gates for this model (ROC AUC, macro F1 or RMSE)."""
    classes = getattr(model, "classes_", None)
    if classes is None:
        return m.primary_metric("regression", n_classes=0, has_probabilities=False)[0]
    name, _ = m.primary_metric(
        "classification", n_classes=len(classes), has_probabilities=hasattr(model, "predict_proba")
    )
    return name


def decide(
    policy: GatePolicy,
    *,
    challenger: ModelVersion,
    metric: str,
    challenger_scores: Scores | None,
    holder_scores: Scores | None,
    holder_version: int | None,
) -> list[GateResult]:
    """The gates' verdicts, with the policy's own sanity: a holder with no evaluation data cannot be beaten."""
    if challenger_scores is None and (holder_version is not None or policy.needs_data):
        raise InvalidInput(
            f"no evaluation data to promote {challenger.ref}: pass dataset=NAME@vN (CLI: --dataset), or X and y, "
            "or register the model from a pipeline whose split step registers its held-out rows; "
            "to move the alias without gates use force=True with a reason (CLI: --force --reason)"
        )
    return judge(
        policy,
        metric=metric,
        challenger=challenger_scores,
        holder=holder_scores,
        holder_version=holder_version,
        tags=challenger.tags,
    )


def _metrics(
    truth: np.ndarray, predictions: np.ndarray, probabilities: Any, classes: list[Any] | None
) -> dict[str, float]:
    if classes is None:
        return m.regression_metrics(truth, predictions)
    return m.classification_metrics(truth, predictions, probabilities, classes=classes)
