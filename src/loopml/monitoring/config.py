"""The monitoring part of `loopml.toml`, per model: drift methods and thresholds, business KPIs.

[models.fraud.monitoring]
granularity = "hour"                     # windows the automation controller computes: minute | hour | day
grace_seconds = 180                      # a window is computed this long after it closed (log segments land)
reference = "transactions@v3"            # optional: a dataset version's profile instead of the training sample's,
# reference = "2026-11-01/2026-11-08"    # or the merge of the model's own windows in a UTC date range

[models.fraud.monitoring.drift]          # loopml.stats.drift_config.DriftConfig, every key optional
drift_share = 0.3
numeric = { threshold = 0.15 }
columns = { amount = { method = "psi", threshold = 0.2 } }

[models.fraud.monitoring.kpis]           # name = "module:function", computed per window
money_saved = "fraud_kpis:money_saved"   # function(window: DataFrame) -> float; trusted project code

Alert rules (`[[models.NAME.monitoring.alerts]]`) and channels (`[monitoring.channels.NAME]`) are read by
`monitoring.alerts` and `monitoring.channels`.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopml.core.errors import InvalidInput
from loopml.core.settings import PROJECT_FILE, read_project_file
from loopml.monitoring.windows import GRANULARITY_MS
from loopml.stats.drift_config import DriftConfig

_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class MonitorConfig:
    """How one model is monitored."""

    drift: DriftConfig = field(default_factory=DriftConfig)
    kpis: Mapping[str, str] = field(default_factory=dict)  # name -> "module:function"
    reference: str | None = None  # "dataset@vN", or "YYYY-MM-DD/YYYY-MM-DD" (a window range)
    granularity: str = "hour"
    grace_ms: int = 180_000


def monitor_config(project_dir: Path, model: str) -> MonitorConfig:
    """The `[models.MODEL.monitoring]` settings of the project (defaults when there are none)."""
    path = project_dir / PROJECT_FILE
    table = (
        (read_project_file(path) if path.is_file() else {})
        .get("models", {})
        .get(model, {})
        .get("monitoring", {})
    )
    where = f"{PROJECT_FILE} [models.{model}.monitoring]"
    if not isinstance(table, dict):
        raise InvalidInput(f"{where} must be a table")
    drift = _drift(table.get("drift", {}), f"{where[:-1]}.drift]")
    kpis = table.get("kpis", {})
    if not isinstance(kpis, dict) or not all(isinstance(v, str) and _TARGET.match(v) for v in kpis.values()):
        raise InvalidInput(
            f"{where[:-1]}.kpis] maps a KPI name to 'module:function', e.g. money = \"kpis:money\""
        )
    reference = table.get("reference")
    if reference is not None and not (isinstance(reference, str) and reference.strip()):
        raise InvalidInput(f"{where}: reference is a dataset version (NAME@vN) or a date range (FROM/TO)")
    unknown = sorted(set(table) - {"drift", "kpis", "reference", "alerts", "granularity", "grace_seconds"})
    if unknown:
        raise InvalidInput(
            f"{where}: unknown key(s) {', '.join(unknown)}; "
            "known: alerts, drift, grace_seconds, granularity, kpis, reference"
        )
    granularity = table.get("granularity", "hour")
    if granularity not in GRANULARITY_MS:
        raise InvalidInput(f"{where}: granularity is one of {', '.join(GRANULARITY_MS)}, got {granularity!r}")
    grace = table.get("grace_seconds", 180)
    if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 <= grace <= 86_400:
        raise InvalidInput(f"{where}: grace_seconds is a number of seconds from 0 to 86400, got {grace!r}")
    return MonitorConfig(
        drift=drift,
        kpis=dict(kpis),
        reference=reference,
        granularity=granularity,
        grace_ms=int(grace * 1000),
    )


def _drift(table: Any, where: str) -> DriftConfig:
    try:
        return DriftConfig.from_dict(table)
    except (InvalidInput, TypeError, AttributeError) as error:  # a value of the wrong shape in the TOML
        message = error.message if isinstance(error, InvalidInput) else str(error)
        raise InvalidInput(f"{where}: {message}") from None


def load_kpi(project_dir: Path, target: str) -> Callable[[Any], Any]:
    """The KPI function `module:function`, imported with the project folder first on the path (the
    project's own code is trusted, as a pipeline's steps are)."""
    module_name, _, function = target.partition(":")
    root = str(project_dir)
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise InvalidInput(f"cannot import the KPI module {module_name!r}: {error}") from None
    found = getattr(module, function, None)
    if not callable(found):
        raise InvalidInput(f"{target} is not a function in {module_name}")
    return found  # type: ignore[no-any-return]
