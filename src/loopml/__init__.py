"""LoopML: the ML lifecycle in one package, from a notebook to a monitored, self-retraining service.

Object model (tracking, the foundation every later part records into):

    Experiment ── Run ── params (immutable), tags, metrics (append-only history), artifacts (blobs), inputs
                   │         (dataset versions), git commit + uncommitted diff, Python environment
                   └── child runs

    import loopml
    with loopml.start_run(experiment="fraud") as run:
        loopml.log_params({"model": {"kind": "rf", "depth": 8}})
        loopml.log_metric("auc", 0.93, step=3)
    loopml.Client().search_runs(filter="metrics.auc > 0.9")
"""

from loopml._version import __version__
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

__all__ = [
    "ActiveRun",
    "Artifact",
    "Client",
    "Conflict",
    "Experiment",
    "InvalidFilter",
    "InvalidInput",
    "LoopMLError",
    "Metric",
    "NotFound",
    "ParamConflict",
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
    "set_tag",
    "set_tags",
    "start_run",
]
