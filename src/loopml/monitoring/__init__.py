"""Monitoring: drift, data quality and performance of models in production (runtime layer).

```
drift_report(reference, current) -> DriftReport     drift.py       standalone drift of a table vs a reference
DriftReport.to_html(path)                           drift_html.py  self-contained HTML (table + inline SVG)
DriftConfig / ColumnDriftConfig                     loopml.stats.drift_config: methods and thresholds
run(tracker, model, granularity=)                   runner.py      the due windows of a served model's log:
                                                                   profile, quality, drift, performance, KPIs
check(tracker, "fraud@champion", frame_or_path)     checking.py      a batch against a version's reference
```
Windows (windows.py) are UTC-aligned hours, and days merged from their hours (days.py); their records live
in `monitor_windows` (store.py). Settings per model come from `loopml.toml` (config.py). The math (distances,
tests, false-discovery-rate correction, performance estimation) lives in `loopml.stats`; this package reads
tables, profiles and the prediction log.
"""

from typing import Any

from loopml.monitoring.drift import DriftReport, drift_report
from loopml.stats.drift import ColumnDrift
from loopml.stats.drift_config import ColumnDriftConfig, DriftConfig

# The model-bound functions read the prediction log (pyarrow): imported on first use, so the standalone
# drift_report needs nothing more than numpy.
_LAZY = {"run": "loopml.monitoring.runner", "check": "loopml.monitoring.checking"}

__all__ = ["ColumnDrift", "ColumnDriftConfig", "DriftConfig", "DriftReport", "check", "drift_report", "run"]


def __getattr__(name: str) -> Any:
    import importlib

    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'loopml.monitoring' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
