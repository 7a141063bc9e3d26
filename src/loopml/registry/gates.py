"""Promotion gates: what a challenger must show before an alias moves to it. Pure: scores in, verdicts out.

Gates never pass by absence: a threshold on a metric the evaluation could not compute fails, and so does a
comparison with a holder that could not be scored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loopml.core.errors import InvalidInput

LOWER_IS_BETTER = frozenset({"rmse", "mae", "mape", "log_loss"})
# What scoring a model on evaluation rows can produce (loopml.stats.metrics), the names gates may use.
KNOWN_METRICS = frozenset(
    {"accuracy", "precision", "recall", "f1", "log_loss", "roc_auc", "pr_auc", "mae", "rmse", "r2", "mape"}
)


@dataclass(frozen=True)
class GatePolicy:
    """The gates of one alias. Stored as given (it is recorded with every promotion).

    `metric`: the metric compared with the holder (default: the primary metric of the task: ROC AUC for
    binary classifiers with probabilities, macro F1 for other classifiers, RMSE for regressors).
    `min_delta`: how much better than the holder the challenger must be (0: not worse).
    `thresholds`: absolute bounds per metric (a floor for higher-is-better metrics, a ceiling for rmse, mae,
    mape and log_loss). `slice_by` + `max_slice_regression`: no slice's metric may drop by more than this.
    `max_latency_ms_per_row`: prediction time per row. `required_tags`: version tags that must be set.
    """

    metric: str | None = None
    min_delta: float = 0.0
    thresholds: Mapping[str, float] = field(default_factory=dict)
    slice_by: str | None = None
    max_slice_regression: float | None = None
    max_latency_ms_per_row: float | None = None
    required_tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_slice_regression is not None and self.slice_by is None:
            raise InvalidInput(
                "a gate policy with max_slice_regression needs slice_by (the column to slice on)"
            )
        for name, bound in self.thresholds.items():
            if not isinstance(bound, int | float):
                raise InvalidInput(f"threshold {name!r} must be a number, got {bound!r}")

    @property
    def needs_data(self) -> bool:
        """Whether any gate of this policy scores the model (then evaluation data is required)."""
        return bool(self.thresholds) or self.slice_by is not None or self.max_latency_ms_per_row is not None

    def to_dict(self) -> dict[str, Any]:
        """The policy as recorded in the audit trail."""
        return {
            "metric": self.metric,
            "min_delta": self.min_delta,
            "thresholds": dict(self.thresholds),
            "slice_by": self.slice_by,
            "max_slice_regression": self.max_slice_regression,
            "max_latency_ms_per_row": self.max_latency_ms_per_row,
            "required_tags": list(self.required_tags),
        }


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict with the numbers behind it."""

    gate: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in the audit trail."""
        return {"gate": self.gate, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class Scores:
    """What scoring one model on the evaluation rows gave."""

    metrics: Mapping[str, float]
    per_slice: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    latency_ms_per_row: float | None = None


def higher_is_better(metric: str) -> bool:
    """False for error metrics (rmse, mae, mape, log_loss)."""
    return metric not in LOWER_IS_BETTER


def judge(
    policy: GatePolicy,
    *,
    metric: str,
    challenger: Scores | None,
    holder: Scores | None,
    holder_version: int | None,
    tags: Mapping[str, str],
) -> list[GateResult]:
    """Every gate of `policy` for a challenger (and the current holder, if the alias has one)."""
    results = [_required_tag(key, tags) for key in policy.required_tags]
    if challenger is None:
        return results
    for name, bound in sorted(policy.thresholds.items()):
        results.append(_threshold(name, bound, challenger.metrics.get(name)))
    if holder_version is not None:
        results.append(_versus_holder(metric, policy.min_delta, challenger, holder, holder_version))
    if policy.slice_by is not None and policy.max_slice_regression is not None and holder is not None:
        results.extend(_slices(metric, policy.max_slice_regression, challenger, holder))
    if policy.max_latency_ms_per_row is not None:
        latency = challenger.latency_ms_per_row
        passed = latency is not None and latency <= policy.max_latency_ms_per_row
        shown = f"{latency:.4f}" if latency is not None else "unmeasured"
        results.append(
            GateResult("latency", passed, f"{shown} ms/row (limit {policy.max_latency_ms_per_row} ms/row)")
        )
    return results


def _required_tag(key: str, tags: Mapping[str, str]) -> GateResult:
    if key in tags:
        return GateResult(f"tag {key}", True, f"{key}={tags[key]}")
    return GateResult(f"tag {key}", False, f"version has no tag {key!r}")


def _threshold(name: str, bound: float, value: float | None) -> GateResult:
    if value is None:
        return GateResult(f"threshold {name}", False, f"{name} could not be computed on the evaluation data")
    if higher_is_better(name):
        return GateResult(f"threshold {name}", value >= bound, f"{name} = {value:.6g} (must be >= {bound:g})")
    return GateResult(f"threshold {name}", value <= bound, f"{name} = {value:.6g} (must be <= {bound:g})")


def _versus_holder(
    metric: str, min_delta: float, challenger: Scores, holder: Scores | None, holder_version: int
) -> GateResult:
    gate = f"beats v{holder_version} on {metric}"
    mine = challenger.metrics.get(metric)
    theirs = holder.metrics.get(metric) if holder is not None else None
    if mine is None or theirs is None:
        missing = "the challenger" if mine is None else f"v{holder_version}"
        return GateResult(gate, False, f"{metric} could not be computed for {missing} on the evaluation data")
    gain = mine - theirs if higher_is_better(metric) else theirs - mine
    need = f"by >= {min_delta:g}" if min_delta > 0 else "(not worse)"
    return GateResult(gate, gain >= min_delta, f"{mine:.6g} vs {theirs:.6g}: {gain:+.6g} {need}")


def _slices(metric: str, limit: float, challenger: Scores, holder: Scores) -> list[GateResult]:
    results = []
    for value in sorted(challenger.per_slice.keys() & holder.per_slice.keys()):
        mine = challenger.per_slice[value].get(metric)
        theirs = holder.per_slice[value].get(metric)
        if mine is None or theirs is None:
            continue  # a slice too small for the metric tells nothing either way
        drop = theirs - mine if higher_is_better(metric) else mine - theirs
        results.append(
            GateResult(
                f"slice {value}",
                drop <= limit,
                f"{metric} {mine:.6g} vs {theirs:.6g}: drop {drop:+.6g} (at most {limit:g})",
            )
        )
    return results
