"""LoopML: the ML lifecycle in one package, from a notebook to a monitored, self-retraining service.

Object model (tracking, the foundation every later part records into; pipelines record into it too):

    Experiment ── Run ── params (immutable), tags, metrics (append-only history), artifacts (blobs), inputs
                   │         (dataset versions), git commit + uncommitted diff, Python environment
                   └── child runs

    import loopml
    with loopml.start_run(experiment="fraud") as run:
        loopml.log_params({"model": {"kind": "rf", "depth": 8}})
        loopml.log_metric("auc", 0.93, step=3)
    loopml.Client().search_runs(filter="metrics.auc > 0.9")

    @loopml.step                       # a cached, retried step: outputs are versioned artifacts
    def clean(frame): ...
    @loopml.pipeline                   # a run with one child run per step; re-runs are served from the cache
    def train(data: loopml.DatasetRef = "transactions@latest"): return fit(clean(load(data)))
"""

# The names below are imported on first use, so `import loopml` (and every CLI command) starts fast:
# a command that only reads a pointer file never pays for SQLAlchemy, pandas or scikit-learn.

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from loopml._version import __version__

if TYPE_CHECKING:
    from loopml import datasets, models
    from loopml.core.errors import (
        Conflict,
        InvalidFilter,
        InvalidInput,
        LoopMLError,
        NotFound,
        ParamConflict,
        StoreError,
    )
    from loopml.core.settings import Settings, load_settings
    from loopml.pipelines.inputs import DatasetRef
    from loopml.pipelines.pipeline import PipelineResult, pipeline
    from loopml.pipelines.runner import PipelineFailed
    from loopml.pipelines.step import step
    from loopml.pipelines.sweep import sweep
    from loopml.tracking.active_run import ActiveRun
    from loopml.tracking.autolog import autolog
    from loopml.tracking.client import Client
    from loopml.tracking.fluent import (
        active_run,
        end_run,
        flush,
        log_artifact,
        log_artifacts,
        log_config,
        log_metric,
        log_metrics,
        log_param,
        log_params,
        set_tag,
        set_tags,
        start_run,
    )
    from loopml.tracking.records import Artifact, Experiment, Metric, Run, RunInput, RunStatus
    from loopml.tracking.search import RunPage
    from loopml.tracking.tracker import Tracker, configure

_EXPORTS: dict[str, str] = {
    "Conflict": "loopml.core.errors",
    "InvalidFilter": "loopml.core.errors",
    "InvalidInput": "loopml.core.errors",
    "LoopMLError": "loopml.core.errors",
    "NotFound": "loopml.core.errors",
    "ParamConflict": "loopml.core.errors",
    "StoreError": "loopml.core.errors",
    "Settings": "loopml.core.settings",
    "load_settings": "loopml.core.settings",
    "DatasetRef": "loopml.pipelines.inputs",
    "PipelineResult": "loopml.pipelines.pipeline",
    "pipeline": "loopml.pipelines.pipeline",
    "PipelineFailed": "loopml.pipelines.runner",
    "step": "loopml.pipelines.step",
    "sweep": "loopml.pipelines.sweep",
    "ActiveRun": "loopml.tracking.active_run",
    "autolog": "loopml.tracking.autolog",
    "Client": "loopml.tracking.client",
    "active_run": "loopml.tracking.fluent",
    "end_run": "loopml.tracking.fluent",
    "flush": "loopml.tracking.fluent",
    "log_artifact": "loopml.tracking.fluent",
    "log_artifacts": "loopml.tracking.fluent",
    "log_config": "loopml.tracking.fluent",
    "log_metric": "loopml.tracking.fluent",
    "log_metrics": "loopml.tracking.fluent",
    "log_param": "loopml.tracking.fluent",
    "log_params": "loopml.tracking.fluent",
    "set_tag": "loopml.tracking.fluent",
    "set_tags": "loopml.tracking.fluent",
    "start_run": "loopml.tracking.fluent",
    "Artifact": "loopml.tracking.records",
    "Experiment": "loopml.tracking.records",
    "Metric": "loopml.tracking.records",
    "Run": "loopml.tracking.records",
    "RunInput": "loopml.tracking.records",
    "RunStatus": "loopml.tracking.records",
    "RunPage": "loopml.tracking.search",
    "Tracker": "loopml.tracking.tracker",
    "configure": "loopml.tracking.tracker",
}
_SUBMODULES = frozenset({"datasets", "models", "monitoring"})

__all__ = [
    "ActiveRun",
    "Artifact",
    "Client",
    "Conflict",
    "DatasetRef",
    "Experiment",
    "InvalidFilter",
    "InvalidInput",
    "LoopMLError",
    "Metric",
    "NotFound",
    "ParamConflict",
    "PipelineFailed",
    "PipelineResult",
    "Run",
    "RunInput",
    "RunPage",
    "RunStatus",
    "Settings",
    "StoreError",
    "Tracker",
    "__version__",
    "active_run",
    "autolog",
    "configure",
    "datasets",
    "end_run",
    "flush",
    "load_settings",
    "log_artifact",
    "log_artifacts",
    "log_config",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "models",
    "monitoring",
    "pipeline",
    "set_tag",
    "set_tags",
    "start_run",
    "step",
    "sweep",
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"loopml.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'loopml' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
