"""A monitored window as flat named metrics, the vocabulary alert rules are written in.

```
rows                                       predictions in the window
drift.share, drift.drifted_count           dataset drift: share and count of drifted columns
drift.<column>                             the column's primary distance (Wasserstein/sigma, Jensen-Shannon, PSI)
drift.<column>.p_value                     instead, when the primary method is a test (small samples)
drift.<column>.drifted                     1 when the column drifted by its primary method, else 0
quality.<column>.null_share                share of null values
quality.<column>.out_of_range_share        share of numbers outside the range training saw
quality.<column>.unseen_share              share of categories training never saw
quality.missing_columns                    how many signature columns the log lacks
latency.p50 | latency.p95 | latency.p99    serving latency in ms
requests                                   requests the server answered (failed ones too)
errors.rate                                share of requests that failed (HTTP 4xx or 5xx)
errors.client_rate | errors.server_rate    share that failed on bad input (4xx) / in the server (5xx)
performance.<metric>                       realized on the labels that have arrived (accuracy, f1, mae, ...)
estimated.<metric>                         estimated from probabilities before labels (CBPE)
kpi.<name>                                 a business KPI of the window
```
A value the window does not hold (no reference so no drift, no labels yet, a KPI that raised, a null or
non-finite number) is absent from the result, never 0: a rule on an absent metric neither passes nor fires.
When a column is literally named `share` or `drifted_count`, the dataset-level value keeps the name.

Why a test's p-value gets its own name: below `small_sample` rows the drift report decides a column by a test,
and its primary score is then a p-value, where small means drift. Under one name, a rule `drift.amount >= 0.1`
would fire on a quiet hour that did not drift and stay silent on one that did; `drift.<column>.drifted` is the
method-independent verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from loopml.core.errors import InvalidInput
from loopml.monitoring.store import WindowRecord
from loopml.stats.drift_config import TEST_METHODS

KINDS = ("rows", "requests", "errors", "drift", "quality", "latency", "performance", "estimated", "kpi")
QUALITY_FINDINGS = ("null_share", "out_of_range_share", "unseen_share")
LATENCY_PERCENTILES = ("p50", "p95", "p99")
ERROR_RATES = {"rate": "error_rate", "client_rate": "client_error_rate", "server_rate": "server_error_rate"}


def window_metrics(record: WindowRecord) -> dict[str, float]:
    """The named metrics of one window (see the module docstring); missing values are left out."""
    found: dict[str, float] = {}
    _put(found, "rows", record.rows)
    _put_drift(found, record.drift or {})
    _put_quality(found, record.quality or {})
    performance = record.performance or {}
    for side, prefix in (("realized", "performance"), ("estimated", "estimated")):
        for name, value in _metrics_of(performance.get(side)).items():
            _put(found, f"{prefix}.{name}", value)
    for name, value in _kpis_of(record).items():
        _put(found, f"kpi.{name}", value)
    return found


def _put_drift(found: dict[str, float], drift: Mapping[str, Any]) -> None:
    # Dataset-level values first: `_put` keeps the first value of a name (see the module docstring).
    _put(found, "drift.share", drift.get("share"))
    _put(found, "drift.drifted_count", drift.get("drifted_count"))
    for name, result in (drift.get("columns") or {}).items():
        if not isinstance(result, Mapping) or result.get("status") not in (None, "ok", "drifted"):
            continue  # missing, empty, all-null or skipped columns were not compared: nothing measured
        test = result.get("method") in TEST_METHODS
        _put(found, f"drift.{name}.p_value" if test else f"drift.{name}", result.get("score"))
        if isinstance(result.get("drifted"), bool):
            _put(found, f"drift.{name}.drifted", int(result["drifted"]))


def _put_quality(found: dict[str, float], quality: Mapping[str, Any]) -> None:
    for name, result in (quality.get("columns") or {}).items():
        if isinstance(result, Mapping):
            for finding in QUALITY_FINDINGS:
                _put(found, f"quality.{name}.{finding}", result.get(finding))
    missing = quality.get("missing_columns")
    if isinstance(missing, list):
        _put(found, "quality.missing_columns", len(missing))
    latency = quality.get("latency_ms")
    if isinstance(latency, Mapping):
        for percentile in LATENCY_PERCENTILES:
            _put(found, f"latency.{percentile}", latency.get(percentile))
    requests = quality.get("requests")
    if isinstance(requests, Mapping):
        _put(found, "requests", requests.get("requests"))
        for name, key in ERROR_RATES.items():
            _put(found, f"errors.{name}", requests.get(key))


def check_metric_name(metric: Any, where: str) -> str:
    """`metric` if it names a metric `window_metrics` can produce, else `InvalidInput` saying `where`."""
    if not isinstance(metric, str) or not metric:
        raise InvalidInput(f"{where}: metric must be a non-empty string, got {metric!r}")
    kind, _, rest = metric.partition(".")
    if kind not in KINDS:
        raise InvalidInput(
            f"{where}: metric {metric!r} has an unknown kind {kind!r}; it starts with one of {', '.join(KINDS)}"
        )
    problem = None
    if kind in ("rows", "requests") and rest:
        problem = f"{kind!r} takes no suffix"
    elif kind == "errors" and rest not in ERROR_RATES:
        problem = f"errors is one of {', '.join('errors.' + r for r in ERROR_RATES)}"
    elif kind == "latency" and rest not in LATENCY_PERCENTILES:
        problem = f"latency is one of {', '.join('latency.' + p for p in LATENCY_PERCENTILES)}"
    elif kind == "quality" and rest != "missing_columns":
        column, _, finding = rest.rpartition(".")
        if not column or finding not in QUALITY_FINDINGS:
            problem = (
                "quality is 'quality.missing_columns' or 'quality.<column>.<finding>' with finding one of "
                + ", ".join(QUALITY_FINDINGS)
            )
    elif kind not in ("rows", "requests") and not rest:
        problem = f"{kind} needs a name after the dot, e.g. {kind}.<name>"
    if problem:
        raise InvalidInput(f"{where}: metric {metric!r}: {problem}")
    return metric


def _metrics_of(side: Any) -> Mapping[str, Any]:
    """The metric values of a realized or estimated performance (`{"metrics": {...}}`, or flat)."""
    if not isinstance(side, Mapping):
        return {}
    metrics = side.get("metrics", side)
    return metrics if isinstance(metrics, Mapping) else {}


def _kpis_of(record: WindowRecord) -> Mapping[str, Any]:
    """KPI values: the `kpis` of the window's performance (computed with it, again when labels arrive);
    a KPI whose function failed is in `kpi_errors` instead, so it is simply absent here."""
    kpis = (record.performance or {}).get("kpis")
    if not isinstance(kpis, Mapping):
        return {}
    return {str(name): value for name, value in kpis.items()}


def _put(found: dict[str, float], name: str, value: Any) -> None:
    # bool is an int to Python but no metric is a truth value; None/NaN mean "not measured".
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    number = float(value)
    if math.isfinite(number):
        found.setdefault(name, number)
