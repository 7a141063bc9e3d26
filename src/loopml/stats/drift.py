"""Per-column and dataset drift of a current sample against a reference (raw rows or a stored profile).

Defaults (issue 7; all configurable per column through `drift_config.ColumnDriftConfig`):

    column       primary (both sides >= 1,000 values)   small samples (primary)   always beside it
    numeric      Wasserstein / reference std  >= 0.1    KS p-value, FDR < 0.05    PSI (warn 0.1, alert 0.25)
    categorical  Jensen-Shannon distance      >= 0.1    chi-square p, FDR < 0.05  PSI

A column is `drifted` when its primary method crosses its threshold. Test p-values are corrected across the
test-decided columns of one report (Benjamini-Hochberg) by `dataset_drift`, which also gives the share of
drifted columns, weighted by feature importance when given, and the verdict (share >= `drift_share`, 0.5).

Numeric PSI uses reference-fixed bins: the reference's `psi_bins`-quantiles (deciles by default) as edges,
ties merged, with open ends, bins right-closed: (-inf, e1], (e1, e2], ..., (ek, +inf). They depend on the
reference only, so a stored profile gives them. Categorical PSI has one bin per category; a category unseen
in the reference is its own bin against the smoothed reference share `epsilon`.

When the reference is a stored profile, both sides are DDSketch atoms (see `drift_samples`). The score is
then max(W_atoms, |mean_P - mean_Q|) / std_P: the mean difference is exact (the profile keeps exact moments)
and a lower bound of W1, so location shifts are never lost to bucketing; the result's `error` gives the
bound of `drift_tests.wasserstein_error` divided by std_P (0 for raw rows, where W is exact).

Edge cases:
- Zero reference variance (a constant c): W / std is undefined. The score becomes the share of current values
  different from c, which is the total variation distance between the two distributions (the reference is a
  point mass), scale-free and 0 only when nothing changed; same threshold, method "changed_share". Against a
  profile "equal to c" means "in c's sketch bucket" (within 1%).
- Empty current sample (0 rows), or a side with rows but no usable value (all null, or only +-inf): status
  "empty" or "all_null", `drifted` False, no score. It is a data-quality finding, not drift, and the column
  is left out of the dataset share.
- Infinities are counted (`current.pos_inf`, ...) and left out of every distance, like nulls.
- Empty bins: shares are floored at `epsilon` in PSI; Jensen-Shannon and the tests need no smoothing.
- Categories unseen in the reference: their own bins (JS and PSI), counted in `unseen`. When the reference
  profile kept only its top categories (`other` > 0), current values outside them are compared as one
  "other" bin with the reference's tail (they may or may not be new).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from loopml.core.errors import InvalidInput
from loopml.stats.drift_config import TEST_METHODS, ColumnDriftConfig
from loopml.stats.drift_samples import CategoricalSide, NumericSide
from loopml.stats.drift_tests import (
    adjust_pvalues,
    chi2_pvalue,
    jensen_shannon,
    ks_pvalue,
    psi,
    shares,
    wasserstein,
    wasserstein_error,
)

STATUSES = ("ok", "drifted", "empty", "all_null", "missing", "skipped")
HISTOGRAM_BINS = 24
HISTOGRAM_CATEGORIES = 12
OTHER = "(other)"


@dataclass(frozen=True)
class SideCounts:
    """Row counts of one side of a column: rows, nulls, infinities and the values compared."""

    rows: int
    nulls: int
    infinities: int
    values: int


@dataclass(frozen=True)
class Histogram:
    """Reference and current shares over the same bins, for plots (labels are bin names or edges)."""

    labels: tuple[str, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]
    edges: tuple[float, ...] = ()  # numeric: len(labels) + 1 edges; empty for categories


@dataclass(frozen=True)
class ColumnDrift:
    """The drift result of one column: the primary method's verdict and every other measure beside it."""

    column: str
    kind: str
    status: str  # one of STATUSES
    drifted: bool
    method: str | None = None
    score: float | None = None  # the primary measure; for tests the (adjusted) p-value
    threshold: float | None = None
    p_value: float | None = None  # a test's p-value before correction
    scores: Mapping[str, float] = field(default_factory=dict)  # every measure computed, by method
    psi_level: str | None = None  # "ok", "warn" or "alert"
    error: float | None = None  # bound of the sketch approximation of the numeric score (0: exact)
    unseen: int = 0  # current values in categories the reference never had
    reference: SideCounts | None = None
    current: SideCounts | None = None
    histogram: Histogram | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (non-finite floats become None)."""
        return {
            "column": self.column,
            "kind": self.kind,
            "status": self.status,
            "drifted": self.drifted,
            "method": self.method,
            "score": _json_float(self.score),
            "threshold": self.threshold,
            "p_value": _json_float(self.p_value),
            "scores": {k: _json_float(v) for k, v in self.scores.items()},
            "psi_level": self.psi_level,
            "error": _json_float(self.error),
            "unseen": self.unseen,
            "reference": None if self.reference is None else vars(self.reference).copy(),
            "current": None if self.current is None else vars(self.current).copy(),
            "histogram": None if self.histogram is None else _histogram_dict(self.histogram),
            "note": self.note,
        }


@dataclass(frozen=True)
class DatasetDrift:
    """Columns with corrected test p-values, the share of drifted columns and the verdict."""

    columns: tuple[ColumnDrift, ...]
    compared: int  # columns with a score (not empty, all-null, missing or skipped)
    drifted_count: int
    share: float | None
    weighted_share: float | None
    drift_share: float
    drifted: bool


def numeric_drift(
    column: str, reference: NumericSide, current: NumericSide, config: ColumnDriftConfig | None = None
) -> ColumnDrift:
    """Drift of one numeric column (p-values uncorrected; `dataset_drift` corrects them)."""
    config = config or ColumnDriftConfig()
    counts_p, counts_q = _numeric_counts(reference), _numeric_counts(current)
    base = ColumnDrift(column, "numeric", "ok", False, reference=counts_p, current=counts_q)
    missing = _no_values(base, reference.rows, reference.count, current.rows, current.count)
    if missing is not None:
        return missing
    method, threshold = config.resolve("numeric", reference.count, current.count)
    scores: dict[str, float] = {}
    note = ""
    raw_w = wasserstein(reference, current)
    if reference.std > 0:
        lower = abs(reference.mean - current.mean)  # exact, and W1 >= |mean difference|
        scores["wasserstein"] = max(raw_w, lower) / reference.std
        error = wasserstein_error(reference, current) / reference.std
    else:
        constant = float(reference.values[0])
        scores["changed_share"] = (current.count - current.mass_at(constant)) / current.count
        error = 0.0
        note = f"constant reference ({constant:.6g}): scored by the share of current values that differ"
        if method == "wasserstein":
            method = "changed_share"
    edges = _psi_edges(reference, config.psi_bins)
    expected = shares(np.diff(np.concatenate([[0.0], reference.count_le(edges), [reference.count]])))
    actual = shares(np.diff(np.concatenate([[0.0], current.count_le(edges), [current.count]])))
    scores["psi"] = psi(expected, actual, config.epsilon)
    p_value = None
    if method == "ks":
        scores["ks_statistic"], p_value = ks_pvalue(reference, current)
    score = p_value if method in TEST_METHODS else scores[method]
    return replace(
        base,
        method=method,
        score=score,
        threshold=threshold,
        p_value=p_value,
        scores=scores,
        psi_level=_psi_level(scores["psi"], config),
        error=error,
        drifted=_crosses(method, score, threshold),
        histogram=_numeric_histogram(reference, current),
        note=note,
    )


def categorical_drift(
    column: str, reference: CategoricalSide, current: CategoricalSide, config: ColumnDriftConfig | None = None
) -> ColumnDrift:
    """Drift of one categorical column (p-values uncorrected; `dataset_drift` corrects them)."""
    config = config or ColumnDriftConfig()
    counts_p = SideCounts(reference.rows, reference.nulls, 0, reference.count)
    counts_q = SideCounts(current.rows, current.nulls, 0, current.count)
    base = ColumnDrift(column, "categorical", "ok", False, reference=counts_p, current=counts_q)
    missing = _no_values(base, reference.rows, reference.count, current.rows, current.count)
    if missing is not None:
        return missing
    method, threshold = config.resolve("categorical", reference.count, current.count)
    labels, p_counts, q_counts, unseen = _align(reference, current)
    p, q = shares(p_counts), shares(q_counts)
    scores = {"jensen_shannon": jensen_shannon(p, q), "psi": psi(p, q, config.epsilon)}
    p_value = chi2_pvalue(p_counts, q_counts) if method == "chi2" else None
    score = p_value if method in TEST_METHODS else scores[method]
    return replace(
        base,
        method=method,
        score=score,
        threshold=threshold,
        p_value=p_value,
        scores=scores,
        psi_level=_psi_level(scores["psi"], config),
        error=0.0,
        unseen=unseen,
        drifted=_crosses(method, score, threshold),
        histogram=_categorical_histogram(labels, p, q),
    )


def not_compared(column: str, kind: str, status: str, note: str) -> ColumnDrift:
    """The result of a column that was not compared ("missing" or "skipped"), with the reason."""
    if status not in STATUSES:
        raise InvalidInput(f"unknown drift status {status!r}")
    return ColumnDrift(column, kind, status, False, note=note)


def dataset_drift(
    columns: Sequence[ColumnDrift],
    *,
    drift_share: float = 0.5,
    correction: str = "bh",
    feature_importance: Mapping[str, float] | None = None,
) -> DatasetDrift:
    """Correct the test p-values across columns, then the share of drifted columns and the verdict.

    Only compared columns count. The weighted share is sum(importance of drifted) / sum(importance) over the
    compared columns; a column missing from `feature_importance` weighs 0. None when nothing was compared.
    """
    tested = [i for i, c in enumerate(columns) if c.method in TEST_METHODS and c.p_value is not None]
    adjusted = adjust_pvalues([columns[i].p_value for i in tested], correction)  # type: ignore[misc]
    result = list(columns)
    for i, p_adj in zip(tested, adjusted, strict=True):
        c = result[i]
        assert c.method is not None  # a tested column was compared
        assert c.threshold is not None
        result[i] = replace(c, score=p_adj, drifted=_crosses(c.method, p_adj, c.threshold))
    result = [replace(c, status="drifted" if c.drifted else c.status) for c in result]
    compared = [c for c in result if c.status in ("ok", "drifted")]
    drifted = [c for c in compared if c.drifted]
    share = len(drifted) / len(compared) if compared else None
    weighted = None
    if feature_importance is not None:
        for name, weight in feature_importance.items():
            if not (isinstance(weight, int | float) and math.isfinite(weight) and weight >= 0):
                raise InvalidInput(
                    f"feature importance of {name!r} must be a non-negative number, got {weight!r}"
                )
        total = sum(float(feature_importance.get(c.column, 0.0)) for c in compared)
        if total > 0:
            weighted = sum(float(feature_importance.get(c.column, 0.0)) for c in drifted) / total
    decisive = weighted if weighted is not None else share
    return DatasetDrift(
        columns=tuple(result),
        compared=len(compared),
        drifted_count=len(drifted),
        share=share,
        weighted_share=weighted,
        drift_share=drift_share,
        drifted=decisive is not None and decisive >= drift_share,
    )


def _crosses(method: str, score: float | None, threshold: float) -> bool:
    if score is None or math.isnan(score):
        return False
    return score < threshold if method in TEST_METHODS else score >= threshold


def _no_values(base: ColumnDrift, rows_p: int, count_p: int, rows_q: int, count_q: int) -> ColumnDrift | None:
    if rows_q == 0:
        return replace(base, status="empty", note="the current sample has no rows")
    if rows_p == 0:
        return replace(base, status="empty", note="the reference has no rows")
    if count_q == 0:
        return replace(
            base, status="all_null", note="the current column holds no usable value (all null or infinite)"
        )
    if count_p == 0:
        return replace(
            base, status="all_null", note="the reference column holds no usable value (all null or infinite)"
        )
    return None


def _numeric_counts(side: NumericSide) -> SideCounts:
    return SideCounts(side.rows, side.nulls, side.pos_inf + side.neg_inf, side.count)


def _psi_edges(reference: NumericSide, bins: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    # Ties merge edges; an edge at the reference maximum leaves (max, +inf) empty in the reference, which
    # is what makes current values beyond the reference's range count (against the epsilon floor).
    return np.unique(reference.quantile(np.arange(1, bins, dtype=np.float64) / bins))


def _psi_level(value: float, config: ColumnDriftConfig) -> str:
    return "alert" if value >= config.psi_alert else "warn" if value >= config.psi_warn else "ok"


def _numeric_histogram(reference: NumericSide, current: NumericSide) -> Histogram:
    """Shares over equal-width bins spanning both sides' 0.5%-99.5% range, outer bins open."""
    levels = np.array([0.005, 0.995])
    low = float(min(reference.quantile(levels)[0], current.quantile(levels)[0]))
    high = float(max(reference.quantile(levels)[1], current.quantile(levels)[1]))
    if not high > low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    inner = edges[1:-1]

    def bins(side: NumericSide) -> tuple[float, ...]:
        counts = np.diff(np.concatenate([[0.0], side.count_le(inner), [side.count]]))
        return tuple(round(float(s), 6) for s in shares(counts))

    labels = tuple(f"{a:.4g}..{b:.4g}" for a, b in itertools.pairwise(edges))
    return Histogram(labels, bins(reference), bins(current), tuple(float(e) for e in edges))


def _align(
    reference: CategoricalSide, current: CategoricalSide
) -> tuple[list[str], np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.float64]], int]:
    """(labels, reference counts, current counts, current values in unseen categories) over shared bins."""
    labels = list(reference.counts)
    p_counts = [float(c) for c in reference.counts.values()]
    q_counts = [float(current.counts.get(name, 0)) for name in labels]
    outside = {name: c for name, c in current.counts.items() if name not in reference.counts}
    unseen = 0
    if reference.other > 0:  # the reference's tail is unknown by name: compare tail with tail
        labels.append(OTHER)
        p_counts.append(float(reference.other))
        q_counts.append(float(sum(outside.values())))
    else:
        unseen = sum(outside.values())
        for name, c in outside.items():
            labels.append(name)
            p_counts.append(0.0)
            q_counts.append(float(c))
    return labels, np.asarray(p_counts), np.asarray(q_counts), unseen


def _categorical_histogram(
    labels: list[str], p: np.ndarray[Any, np.dtype[np.float64]], q: np.ndarray[Any, np.dtype[np.float64]]
) -> Histogram:
    order = np.argsort(-(p + q), kind="stable")
    top, rest = order[:HISTOGRAM_CATEGORIES], order[HISTOGRAM_CATEGORIES:]
    names = [labels[i] for i in top]
    ref = [float(p[i]) for i in top]
    cur = [float(q[i]) for i in top]
    if rest.size:
        names.append(OTHER if OTHER not in names else f"{OTHER} +")
        ref.append(float(p[rest].sum()))
        cur.append(float(q[rest].sum()))
    return Histogram(tuple(names), tuple(round(v, 6) for v in ref), tuple(round(v, 6) for v in cur))


def _histogram_dict(h: Histogram) -> dict[str, Any]:
    return {
        "labels": list(h.labels),
        "reference": list(h.reference),
        "current": list(h.current),
        "edges": list(h.edges),
    }


def _json_float(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value
