"""Judging a challenger in production: its requests, errors and latency since the rollout began, and, where
labels came back, its realized metric beside the champion's over the same period.

    judge(evidence, rollout, elapsed_ms) -> Verdict("promote" | "rollback" | "wait", why)

A canary splits traffic, so the two versions are compared on their own labelled requests of the same period;
a shadow runs both on the same requests, so they are compared on those very requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from loopml.automation.policy import Rollout
from loopml.registry.gates import higher_is_better

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

MINUTE_MS = 60_000
MIN_LABELLED = 30  # labelled rows per version before their metrics are compared: fewer is noise


@dataclass(frozen=True)
class Verdict:
    """What to do with a challenger now, and why."""

    action: str  # promote | rollback | wait
    reason: str


def evidence(
    tracker: Tracker,
    model: str,
    *,
    champion: int,
    challenger: int,
    since_ms: int,
    until_ms: int,
    metric: str | None,
) -> dict[str, Any]:
    """Requests, error rate, p99 latency and (with labels) the metric of both versions since `since_ms`."""
    from loopml.predictions.requests import request_counts, request_summary

    found: dict[str, Any] = {"since_ms": since_ms, "until_ms": until_ms}
    start = since_ms - since_ms % MINUTE_MS
    for role, version in (("champion", champion), ("challenger", challenger)):
        counts = request_counts(tracker, model, version=version, start_ms=start, end_ms=until_ms + 1)
        found[role] = {"version": version, **(request_summary(counts) or {"requests": 0})}
    frames = _frames(tracker, model, champion, challenger, since_ms=since_ms, until_ms=until_ms)
    p99 = _p99(frames["challenger"])
    if p99 is not None:
        found["challenger"]["p99_ms"] = p99
    compared = _compare(tracker, frames, metric)
    if compared is not None:
        found["labelled"] = compared
    return found


def judge(found: dict[str, Any], rollout: Rollout, *, elapsed_ms: int) -> Verdict:
    """Promote, roll back or wait, by the rollout's limits (see `loopml.automation.policy.Rollout`)."""
    challenger = found.get("challenger", {})
    requests = int(challenger.get("requests", 0))
    error_rate = challenger.get("error_rate")
    if (
        rollout.max_error_rate is not None
        and error_rate is not None
        and requests >= min(rollout.min_requests, 50)
        and error_rate > rollout.max_error_rate
    ):
        return Verdict(
            "rollback", f"challenger error rate {error_rate:.1%} over {rollout.max_error_rate:.1%}"
        )
    p99 = challenger.get("p99_ms")
    if rollout.max_p99_ms is not None and p99 is not None and p99 > rollout.max_p99_ms:
        return Verdict("rollback", f"challenger p99 latency {p99:.1f} ms over {rollout.max_p99_ms:g} ms")
    labelled = found.get("labelled")
    if (
        rollout.max_metric_drop is not None
        and labelled
        and min(labelled["labelled_rows"].values()) >= MIN_LABELLED
    ):
        drop = labelled["drop"]
        if drop > rollout.max_metric_drop:
            return Verdict(
                "rollback",
                f"challenger {labelled['metric']} {labelled['challenger']:.4f} vs champion "
                f"{labelled['champion']:.4f} on labelled traffic: worse by {drop:.4f} "
                f"(max_metric_drop {rollout.max_metric_drop:g})",
            )
    minutes = elapsed_ms / MINUTE_MS
    if requests >= rollout.min_requests and minutes >= rollout.min_minutes:
        return Verdict("promote", _summary(found, requests, elapsed_ms))
    if minutes >= rollout.max_hours * 60:
        return Verdict(
            "rollback",
            f"only {requests} challenger requests in {rollout.max_hours:g} hours "
            f"(min_requests {rollout.min_requests}): not enough evidence to promote",
        )
    return Verdict("wait", f"{requests} of {rollout.min_requests} challenger requests, {minutes:.1f} minutes")


def _summary(found: dict[str, Any], requests: int, elapsed_ms: int) -> str:
    """The evidence of a passed canary in one line."""
    challenger = found.get("challenger", {})
    took = (
        f"{elapsed_ms / 1000:.0f} s"
        if elapsed_ms < 2 * MINUTE_MS
        else f"{elapsed_ms / MINUTE_MS:.1f} minutes"
    )
    parts = [f"{requests} challenger requests in {took}"]
    if challenger.get("error_rate") is not None:
        parts.append(f"error rate {challenger['error_rate']:.1%}")
    if challenger.get("p99_ms") is not None:
        parts.append(f"p99 {challenger['p99_ms']:.0f} ms")
    labelled = found.get("labelled")
    if labelled:
        parts.append(
            f"{labelled['metric']} {labelled['challenger']:.3f} vs champion {labelled['champion']:.3f} "
            "on labelled traffic"
        )
    return ", ".join(parts)


def _frames(
    tracker: Tracker, model: str, champion: int, challenger: int, *, since_ms: int, until_ms: int
) -> dict[str, Any]:
    from loopml.predictions import read_predictions

    return {
        role: read_predictions(
            tracker,
            model,
            version=version,
            start_ms=since_ms,
            end_ms=until_ms + 1,
            routes=routes,
        )
        for role, version, routes in (
            ("champion", champion, ("champion",)),
            ("challenger", challenger, ("challenger", "shadow")),
        )
    }


def _p99(frame: Any) -> float | None:
    if not len(frame) or "latency_ms" not in frame.columns:
        return None
    latency = frame["latency_ms"].to_numpy(dtype=np.float64, na_value=np.nan)
    return None if np.isnan(latency).all() else float(np.nanpercentile(latency, 99))


def _compare(tracker: Tracker, frames: dict[str, Any], metric: str | None) -> dict[str, Any] | None:
    """The metric of both versions on their labelled rows (a shadow's: the rows both predicted)."""
    from loopml.monitoring.performance import window_labels, window_performance

    champion, challenger = frames["champion"], frames["challenger"]
    if not len(champion) or not len(challenger):
        return None
    shadow = "route" in challenger.columns and set(challenger["route"]) == {"shadow"}
    if shadow:  # both answered the same requests: compare on exactly those
        shared = set(champion["prediction_id"]) & set(challenger["prediction_id"])
        champion = champion[champion["prediction_id"].isin(shared)]
        challenger = challenger[challenger["prediction_id"].isin(shared)]
    scores: dict[str, float] = {}
    rows: dict[str, int] = {}
    for role, frame in (("champion", champion), ("challenger", challenger)):
        labels = window_labels(tracker, frame)
        if not labels:
            return None
        realized = ((window_performance(frame, labels) or {}).get("realized") or {}).get("metrics") or {}
        name = metric or ("accuracy" if "accuracy" in realized else "rmse")
        if name not in realized:
            return None
        scores[role], rows[role] = float(realized[name]), len(labels)
    better = higher_is_better(name)
    drop = scores["champion"] - scores["challenger"] if better else scores["challenger"] - scores["champion"]
    return {"metric": name, **scores, "drop": drop, "labelled_rows": rows, "same_requests": shadow}
