"""Business KPIs per window: user functions named in `loopml.toml`, run on a window's logged predictions.

A KPI function takes the window as a DataFrame (`prediction_id`, `time_ms`, `latency_ms`, `route`, the inputs
as `in.<column>`, the outputs as `out.<name>`, and `label`: the latest feedback, None where none came yet)
and returns a number, e.g. the money saved by the frauds a model blocked. It is computed when the window is
and again when late labels arrive. A function that raises or returns something else than a finite number is
recorded as that window's error for that KPI; the other metrics of the window are still computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

KpiFunction = Callable[[Any], Any]


def window_kpis(
    functions: Mapping[str, KpiFunction], frame: pd.DataFrame, labels: Mapping[str, Any]
) -> dict[str, Any]:
    """`{"kpis": {name: value}, "kpi_errors": {name: message}}` (only the keys that have entries)."""
    if not functions:
        return {}
    window = frame.copy()
    window["label"] = [labels.get(str(i)) for i in frame["prediction_id"]]
    values: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name, function in functions.items():
        try:
            value = function(window.copy())
        except Exception as error:  # user code: anything it raises is that KPI's finding, not the run's
            errors[name] = (
                f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".rstrip(": ")
            )
            continue
        number = _number(value)
        if number is None:
            errors[name] = f"returned {type(value).__name__} {value!r:.60}, not a finite number"
        else:
            values[name] = number
    result: dict[str, Any] = {}
    if values:
        result["kpis"] = values
    if errors:
        result["kpi_errors"] = errors
    return result


def _number(value: Any) -> float | None:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
