"""The automation policy of a model: `[models.NAME.automation]` in `loopml.toml`, checked whole at load time.

[models.fraud.automation]
pipeline = "loopml.demo.fraud_pipeline:train_fraud"   # module:function or path/file.py:function
params = { n_estimators = 100 }                       # the pipeline's params (besides the data)
data = "transactions"            # a dataset: each run trains on its latest version, passed as param `data`
# data = { dataset = "transactions", path = "incoming/*.parquet" }  # files versioned each tick when they change
data_param = "data"              # the pipeline param that takes the dataset version (default "data")
retries = 1                      # a failed training is retried this many times,
retry_delay_minutes = 10         # this long after the failure

[models.fraud.automation.triggers]
schedule = "0 2 * * *"           # cron, in `timezone` (default UTC)
timezone = "Europe/Berlin"
new_data = true                  # a new version of the dataset
drift = true                     # a monitoring alert on a drift.* metric of the model
alerts = ["auc-floor"]           # alerts of these monitoring rules
performance_below = { roc_auc = 0.8 }   # realized performance of the latest window with labels
estimated_below = { roc_auc = 0.8 }     # estimated (CBPE) performance of the latest window
# `loopml agent trigger MODEL` (manual) always works

[models.fraud.automation.guards]
min_new_rows = 1000              # rows the data gained since the last retrain
max_retrains_per_day = 3         # over the last 24 hours
quiet_hours = 6                  # after a promotion, automatic triggers wait this long

[models.fraud.automation.rollout]
strategy = "canary"              # direct | shadow | canary
share = 0.2                      # canary: share of requests answered by the challenger; shadow: mirrored
min_requests = 200               # challenger requests before it can be promoted
min_minutes = 10                 # and this long at least
max_hours = 24                   # not enough traffic by then: rolled back
max_error_rate = 0.05            # limits a server enforces on the challenger (it cuts the share to 0)
max_p99_ms = 250
max_metric_drop = 0.02           # labelled canary traffic: challenger vs champion on the same window
metric = "accuracy"              # the metric compared on labelled traffic (default accuracy or rmse)

[models.fraud.automation.notify]
channels = ["team"]              # monitoring channels ([monitoring.channels.NAME]) told of every outcome

The promotion gates are the registry's own, `[models.NAME.gates.champion]`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopml.automation.schedule import Schedule
from loopml.core.errors import InvalidInput, LoopMLError
from loopml.core.settings import PROJECT_FILE, read_project_file
from loopml.registry.config import gate_policy
from loopml.registry.gates import KNOWN_METRICS

STRATEGIES = ("direct", "shadow", "canary")
TRIGGERS = ("schedule", "new_data", "drift", "alert", "performance", "estimated", "manual")


@dataclass(frozen=True)
class Triggers:
    """What starts a retrain (manual requests always do)."""

    schedule: Schedule | None = None
    new_data: bool = False
    drift: bool = False
    alerts: tuple[str, ...] = ()
    performance_below: Mapping[str, float] = field(default_factory=dict)
    estimated_below: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Guards:
    """What holds an automatic trigger back."""

    min_new_rows: int = 0
    max_retrains_per_day: int = 3
    quiet_hours: float = 0.0


@dataclass(frozen=True)
class Rollout:
    """How a challenger that passed the gates reaches production."""

    strategy: str = "direct"
    share: float = 0.1
    min_requests: int = 100
    min_minutes: float = 0.0
    max_hours: float = 24.0
    max_error_rate: float | None = None
    max_p99_ms: float | None = None
    max_metric_drop: float | None = None
    metric: str | None = None

    def limits(self) -> dict[str, float]:
        """The deployment limits a server enforces on the challenger."""
        found = {"max_error_rate": self.max_error_rate, "max_p99_ms": self.max_p99_ms}
        limits = {key: float(value) for key, value in found.items() if value is not None}
        if limits:
            limits["min_requests"] = float(min(self.min_requests, 50))
        return limits


@dataclass(frozen=True)
class Policy:
    """The automation of one model (see the module docstring)."""

    model: str
    pipeline: str
    params: Mapping[str, Any] = field(default_factory=dict)
    data: str | None = None
    data_path: str | None = None  # files (relative to the project) added as a new version of `data` on change
    data_param: str = "data"
    retries: int = 0
    retry_delay_minutes: float = 10.0
    triggers: Triggers = field(default_factory=Triggers)
    guards: Guards = field(default_factory=Guards)
    rollout: Rollout = field(default_factory=Rollout)
    channels: tuple[str, ...] = ()


def policies(project_dir: Path) -> dict[str, Policy]:
    """Every model's policy in the project's `loopml.toml` (models without one are left out)."""
    path = project_dir / PROJECT_FILE
    models = (read_project_file(path) if path.is_file() else {}).get("models", {})
    if not isinstance(models, Mapping):
        raise InvalidInput(f"{PROJECT_FILE} [models] must be a table")
    found = {}
    for name, table in models.items():
        if isinstance(table, Mapping) and "automation" in table:
            found[str(name)] = parse_policy(project_dir, str(name), table["automation"])
    return found


def policy_of(project_dir: Path, model: str) -> Policy:
    """The policy of `model`; `InvalidInput` when it has none."""
    found = policies(project_dir)
    if model not in found:
        known = ", ".join(sorted(found)) or "(none)"
        raise InvalidInput(
            f"{PROJECT_FILE} has no [models.{model}.automation]; models with a policy: {known}"
        )
    return found[model]


def parse_policy(project_dir: Path, model: str, table: Any) -> Policy:
    """`table` checked whole: an unknown pipeline, a bad cron, a gate on a metric no evaluation produces
    is refused now, naming its key, not at 2 a.m. when the loop first needs it."""
    where = f"[models.{model}.automation]"
    table = _table(table, where)
    _known(
        table,
        where,
        {"pipeline", "params", "data", "data_param", "retries", "retry_delay_minutes"}
        | {"triggers", "guards", "rollout", "notify"},
    )
    pipeline = table.get("pipeline")
    if not isinstance(pipeline, str) or ":" not in pipeline:
        raise InvalidInput(
            f"{where} pipeline: name the training pipeline as module:function, got {pipeline!r}"
        )
    params = _table(table.get("params", {}), f"{where} params")
    data: Any = table.get("data")
    data_path: Any = None
    if isinstance(data, Mapping):
        _known(data, f"{where} data", {"dataset", "path"})
        data, data_path = data.get("dataset"), data.get("path")
        if not isinstance(data_path, str) or not data_path.strip() or Path(data_path).is_absolute():
            raise InvalidInput(f'{where} data.path: files relative to the project, e.g. "incoming/*.csv"')
        if ".." in Path(data_path).parts:
            raise InvalidInput(f"{where} data.path: must stay inside the project, got {data_path!r}")
    if data is not None and not (isinstance(data, str) and data.strip()):
        raise InvalidInput(
            f"{where} data: the name of a dataset, or {{ dataset = NAME, path = GLOB }}, got {data!r}"
        )
    data_param = table.get("data_param", "data")
    _check_pipeline(project_dir, pipeline, {**params, **({data_param: None} if data else {})}, where)
    policy = Policy(
        model=model,
        pipeline=pipeline,
        params=dict(params),
        data=data,
        data_path=data_path,
        data_param=str(data_param),
        retries=_int(table, "retries", 0, where, low=0, high=10),
        retry_delay_minutes=_number(table, "retry_delay_minutes", 10.0, where),
        triggers=_triggers(table.get("triggers", {}), f"{where[:-1]}.triggers]"),
        guards=_guards(table.get("guards", {}), f"{where[:-1]}.guards]"),
        rollout=_rollout(table.get("rollout", {}), f"{where[:-1]}.rollout]"),
        channels=_channels(table.get("notify", {}), f"{where[:-1]}.notify]"),
    )
    _check_gates(project_dir, model)
    return policy


def _check_pipeline(project_dir: Path, target: str, params: Mapping[str, Any], where: str) -> None:
    from loopml.pipelines.pipeline import load_pipeline

    module, _, function = target.rpartition(":")
    if module.endswith(".py") and not Path(module).is_absolute():
        target = f"{project_dir / module}:{function}"
    try:
        pipeline = load_pipeline(target)
    except LoopMLError as error:
        raise InvalidInput(f"{where} pipeline: {error.message}") from None
    import inspect

    known = set(inspect.signature(pipeline.fn).parameters)
    unknown = sorted(set(params) - known)
    if unknown:
        raise InvalidInput(
            f"{where} params: pipeline {target} has no param {', '.join(unknown)}; "
            f"its params are {', '.join(sorted(known)) or '(none)'}"
        )


def _check_gates(project_dir: Path, model: str) -> None:
    where = f"[models.{model}.gates.champion]"
    policy = gate_policy(project_dir, model, "champion")
    if policy is None:
        return
    named = ([policy.metric] if policy.metric else []) + list(policy.thresholds)
    unknown = sorted(set(named) - KNOWN_METRICS)
    if unknown:
        raise InvalidInput(
            f"{where}: the evaluation produces no metric {', '.join(unknown)}; "
            f"it produces {', '.join(sorted(KNOWN_METRICS))}"
        )


def _triggers(value: Any, where: str) -> Triggers:
    table = _table(value, where)
    _known(
        table,
        where,
        {"schedule", "timezone", "new_data", "drift", "alerts", "performance_below", "estimated_below"},
    )
    schedule = None
    if "schedule" in table:
        schedule = Schedule.parse(table["schedule"], table.get("timezone", "UTC"), where=f"{where} schedule")
    alerts = table.get("alerts", [])
    if not isinstance(alerts, list) or not all(isinstance(a, str) and a for a in alerts):
        raise InvalidInput(f"{where} alerts: a list of alert rule names, got {alerts!r}")
    return Triggers(
        schedule=schedule,
        new_data=_bool(table, "new_data", where),
        drift=_bool(table, "drift", where),
        alerts=tuple(alerts),
        performance_below=_floors(table, "performance_below", where),
        estimated_below=_floors(table, "estimated_below", where),
    )


def _guards(value: Any, where: str) -> Guards:
    table = _table(value, where)
    _known(table, where, {"min_new_rows", "max_retrains_per_day", "quiet_hours"})
    return Guards(
        min_new_rows=_int(table, "min_new_rows", 0, where, low=0, high=10**12),
        max_retrains_per_day=_int(table, "max_retrains_per_day", 3, where, low=1, high=1440),
        quiet_hours=_number(table, "quiet_hours", 0.0, where),
    )


def _rollout(value: Any, where: str) -> Rollout:
    table = _table(value, where)
    _known(
        table,
        where,
        {"strategy", "share", "min_requests", "min_minutes", "max_hours", "max_error_rate", "max_p99_ms"}
        | {"max_metric_drop", "metric"},
    )
    strategy = table.get("strategy", "direct")
    if strategy not in STRATEGIES:
        raise InvalidInput(f"{where} strategy: one of {', '.join(STRATEGIES)}, got {strategy!r}")
    share = _number(table, "share", 1.0 if strategy == "shadow" else 0.1, where)
    if not 0 < share <= 1:
        raise InvalidInput(f"{where} share: a number above 0 and at most 1 (0.2 is 20%), got {share}")
    metric = table.get("metric")
    if metric is not None and metric not in KNOWN_METRICS:
        raise InvalidInput(f"{where} metric: one of {', '.join(sorted(KNOWN_METRICS))}, got {metric!r}")
    optional = {
        key: _number(table, key, 0.0, where) if key in table else None
        for key in ("max_error_rate", "max_p99_ms", "max_metric_drop")
    }
    if "max_hours" in table and not _number(table, "max_hours", 24.0, where) > 0:
        raise InvalidInput(f"{where} max_hours: above 0 (the longest a rollout may wait for evidence)")
    return Rollout(
        strategy=strategy,
        share=share,
        min_requests=_int(table, "min_requests", 100, where, low=1, high=10**9),
        min_minutes=_number(table, "min_minutes", 0.0, where),
        max_hours=_number(table, "max_hours", 24.0, where),
        metric=metric,
        **optional,
    )


def _channels(table: Any, where: str) -> tuple[str, ...]:
    table = _table(table, where)
    _known(table, where, {"channels"})
    channels = table.get("channels", [])
    if not isinstance(channels, list) or not all(isinstance(c, str) and c for c in channels):
        raise InvalidInput(f"{where} channels: a list of channel names, got {channels!r}")
    return tuple(channels)


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{where} must be a table")
    return dict(value)


def _known(table: Mapping[str, Any], where: str, known: set[str]) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise InvalidInput(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def _bool(table: Mapping[str, Any], key: str, where: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"{where} {key}: true or false, got {value!r}")
    return value


def _int(table: Mapping[str, Any], key: str, default: int, where: str, *, low: int, high: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{where} {key}: a whole number from {low} to {high}, got {value!r}")
    return value


def _number(table: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InvalidInput(f"{where} {key}: a non-negative number, got {value!r}")
    return float(value)


def _floors(table: Mapping[str, Any], key: str, where: str) -> dict[str, float]:
    floors = _table(table.get(key, {}), f"{where} {key}")
    unknown = sorted(set(floors) - KNOWN_METRICS)
    if unknown:
        raise InvalidInput(
            f"{where} {key}: no metric {', '.join(unknown)}; metrics are {', '.join(sorted(KNOWN_METRICS))}"
        )
    return {name: _number(floors, name, 0.0, f"{where} {key}") for name in floors}
