"""Monitoring: drift, data quality and performance of models in production (runtime layer).

```
drift_report(reference, current) -> DriftReport     drift.py       standalone drift of a table vs a reference
DriftReport.to_html(path)                           drift_html.py  self-contained HTML (table + inline SVG)
DriftConfig / ColumnDriftConfig                     loopml.stats.drift_config: methods and thresholds
```
The math (distances, tests, false-discovery-rate correction) lives in `loopml.stats.drift`; this package
reads tables and profiles, and builds the model-bound monitoring (windows of the prediction log) on it.
"""

from loopml.monitoring.drift import DriftReport, drift_report
from loopml.stats.drift import ColumnDrift
from loopml.stats.drift_config import ColumnDriftConfig, DriftConfig

__all__ = ["ColumnDrift", "ColumnDriftConfig", "DriftConfig", "DriftReport", "drift_report"]
