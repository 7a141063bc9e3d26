"""The metadata tables (SQLAlchemy Core). Alembic migrations in `migrations/` create and change them.

Every table carries `workspace_id` so a team server can host several workspaces in one database.
Times are integer milliseconds since the epoch. NaN metric values are stored as NULL (SQLite cannot store NaN).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# Bump together with a new migration; `tests/storage/test_database.py` checks it equals Alembic's head.
SCHEMA_HEAD = "0012"
APPLICATION_ID = "loopml"
DEFAULT_WORKSPACE = "default"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _workspace() -> Column[str]:
    return Column("workspace_id", String(64), nullable=False, server_default=DEFAULT_WORKSPACE)


loopml_meta = Table(
    "loopml_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

experiments = Table(
    "experiments",
    metadata,
    Column("experiment_id", String(32), primary_key=True),
    _workspace(),
    Column("name", String(250), nullable=False),
    Column("description", Text, nullable=True),
    Column("lifecycle", String(16), nullable=False, server_default="active"),
    Column("created_time", BigInteger, nullable=False),
    Column("deleted_time", BigInteger, nullable=True),
    UniqueConstraint("workspace_id", "name"),
)

environments = Table(
    "environments",
    metadata,
    Column("environment_hash", String(64), primary_key=True),
    _workspace(),
    Column("python_version", String(64), nullable=False),
    Column("platform", String(250), nullable=False),
    Column("packages", Text, nullable=False),  # JSON object {name: version}, sorted
)

code_diffs = Table(
    "code_diffs",
    metadata,
    Column("diff_hash", String(64), primary_key=True),
    _workspace(),
    Column("diff", Text, nullable=False),
    Column("truncated", Boolean, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(32), primary_key=True),
    _workspace(),
    Column("experiment_id", String(32), ForeignKey("experiments.experiment_id"), nullable=False),
    Column("parent_run_id", String(32), ForeignKey("runs.run_id"), nullable=True),
    Column("name", String(250), nullable=False),
    Column("status", String(16), nullable=False),
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger, nullable=True),
    Column("lifecycle", String(16), nullable=False, server_default="active"),
    Column("deleted_time", BigInteger, nullable=True),
    Column("note", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("user_name", String(250), nullable=True),
    Column("entry_point", Text, nullable=True),
    Column("git_commit", String(64), nullable=True),
    Column("git_branch", String(250), nullable=True),
    Column("git_dirty", Boolean, nullable=True),
    Column("diff_hash", String(64), ForeignKey("code_diffs.diff_hash"), nullable=True),
    Column("environment_hash", String(64), ForeignKey("environments.environment_hash"), nullable=True),
    Index(None, "experiment_id", "start_time"),
    Index(None, "parent_run_id"),
)

params = Table(
    "params",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(250), primary_key=True),
    _workspace(),
    Column("value", Text, nullable=False),  # the string form used by filters
    Column("value_json", Text, nullable=False),  # the logged value, as JSON
)

tags = Table(
    "tags",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(250), primary_key=True),
    _workspace(),
    Column("value", Text, nullable=False),
)

# One row per (run, metric key): its integer id keeps the point rows small, and it holds the latest value,
# which is what filters and run listings read.
latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("series_id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("key", String(250), nullable=False),
    _workspace(),
    Column("value", Float, nullable=True),  # NULL means NaN
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    UniqueConstraint("run_id", "key"),
    Index(None, "key", "value"),
)

# The append-only history of every metric point.
metrics = Table(
    "metrics",
    metadata,
    # 64-bit on PostgreSQL; SQLite keeps INTEGER, its (64-bit) rowid, which autoincrement needs.
    Column("point_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("series_id", Integer, ForeignKey("latest_metrics.series_id", ondelete="CASCADE"), nullable=False),
    Column("value", Float, nullable=True),  # NULL means NaN
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Index(None, "series_id", "step"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("path", String(1024), primary_key=True),
    _workspace(),
    Column("digest", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_time", BigInteger, nullable=False),
)

run_inputs = Table(
    "run_inputs",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("dataset", String(250), primary_key=True),
    Column("version", String(64), primary_key=True),
    _workspace(),
    Column("digest", String(64), nullable=True),
    Column("context", String(64), nullable=True),  # e.g. "training", "validation"
)

# -- data versioning (migration 0002) ---------------------------------------------------------------------

datasets = Table(
    "datasets",
    metadata,
    Column("dataset_id", String(32), primary_key=True),
    _workspace(),
    Column("name", String(250), nullable=False),
    Column("description", Text, nullable=True),
    Column("created_time", BigInteger, nullable=False),
    UniqueConstraint("workspace_id", "name"),
)

# An immutable version: its content is the manifest (a JSON blob listing every file's path, size and digest);
# `digest` is the hash of that canonical manifest, so identical content is recognised by one lookup.
dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("version_id", String(32), primary_key=True),
    _workspace(),
    Column("dataset_id", String(32), ForeignKey("datasets.dataset_id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # file | folder | table
    Column("manifest_digest", String(64), nullable=False),
    Column("source", Text, nullable=True),
    Column("message", Text, nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("file_count", Integer, nullable=False),
    Column("row_count", BigInteger, nullable=True),
    Column("schema_json", Text, nullable=True),
    Column("profile_digest", String(64), nullable=True),
    Column("created_time", BigInteger, nullable=False),
    Column("git_commit", String(64), nullable=True),
    Column("status", String(16), nullable=False, server_default="accepted"),  # accepted | rejected
    Column("validation_json", Text, nullable=True),  # the expectation report, when expectations ran
    Column("user_name", String(250), nullable=True),  # who added it through a team server (migration 0010)
    UniqueConstraint("dataset_id", "version"),
    UniqueConstraint("dataset_id", "digest"),
)

# -- pipelines (migration 0003) ---------------------------------------------------------------------------

# A pipeline run is a tracking run (params, inputs, tags live there); this row adds what only pipelines have.
pipeline_runs = Table(
    "pipeline_runs",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    _workspace(),
    Column("pipeline", String(500), nullable=False),  # "module:qualname" of the pipeline function
    Column("params_json", Text, nullable=False),  # the bound params, as the function received them
    Column("executor", String(64), nullable=False),
    Column("source_run_id", String(32), nullable=True),  # the run this one resumes or re-runs
    Column("mode", String(16), nullable=False),  # run | resume | rerun
    Column("result_json", Text, nullable=True),  # the return value, outputs as references
    Column("created_time", BigInteger, nullable=False),
    Index(None, "pipeline", "created_time"),
)

# One row per step call of a pipeline run. A step that ran or was served from the cache has its own child
# run (`run_id`: outputs are its artifacts); a step skipped because an upstream step failed has none.
pipeline_steps = Table(
    "pipeline_steps",
    metadata,
    Column(
        "pipeline_run_id",
        String(32),
        ForeignKey("pipeline_runs.run_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("node", String(250), primary_key=True),  # "train", or "train#2" for a second call
    _workspace(),
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=True),
    Column("step", String(500), nullable=False),  # "module:qualname" of the step function
    Column("status", String(16), nullable=False),  # finished | cached | failed | skipped
    Column("cache", String(16), nullable=False),  # hit | miss | off (cache=False) | unavailable
    Column("cache_note", Text, nullable=True),  # why caching was off or unavailable
    Column("cache_key", String(64), nullable=True),
    Column("key_json", Text, nullable=True),  # the structured key, so `explain` can say what changed
    Column("cached_from", String(32), nullable=True),  # the step run whose outputs were reused
    Column("upstream_json", Text, nullable=False),
    Column("outputs_json", Text, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("started_time", BigInteger, nullable=True),
    Column("duration_ms", BigInteger, nullable=True),
    Column("error", Text, nullable=True),
    Index(None, "cache_key", "status"),
    Index(None, "step"),
)

# -- model registry (migration 0004) ------------------------------------------------------------------------

registered_models = Table(
    "registered_models",
    metadata,
    Column("model_id", String(32), primary_key=True),
    _workspace(),
    Column("name", String(250), nullable=False),
    Column("description", Text, nullable=True),
    Column("owner", String(250), nullable=True),
    Column("created_time", BigInteger, nullable=False),
    Column("updated_time", BigInteger, nullable=False),
    UniqueConstraint("workspace_id", "name"),
)

model_tags = Table(
    "model_tags",
    metadata,
    Column(
        "model_id", String(32), ForeignKey("registered_models.model_id", ondelete="CASCADE"), primary_key=True
    ),
    Column("key", String(250), primary_key=True),
    _workspace(),
    Column("value", Text, nullable=False),
)

# An immutable version: its package is a tree in the blob store (`package_digest`); `content_hash` is the
# canonical hash of manifest + model, so registering the same model twice finds the existing version.
model_versions = Table(
    "model_versions",
    metadata,
    Column("version_id", String(32), primary_key=True),
    _workspace(),
    Column("model_id", String(32), ForeignKey("registered_models.model_id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("flavor", String(64), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("package_digest", String(64), nullable=False),
    Column("run_id", String(32), nullable=True),  # no foreign key: lineage outlives a purged run
    Column("signature_json", Text, nullable=True),
    Column("metrics_json", Text, nullable=True),
    Column("description", Text, nullable=True),
    Column("created_by", String(250), nullable=True),
    Column("created_time", BigInteger, nullable=False),
    # Who marked a version whose loading runs code (pickle, a Python class) as safe to load, and when (0012).
    Column("trusted_by", String(250), nullable=True),
    Column("trusted_time", BigInteger, nullable=True),
    # Registered through MLflow's API: the source URI it gave and the logged model it came from (0012).
    Column("source_uri", Text, nullable=True),
    Column("logged_model_id", String(64), nullable=True),
    UniqueConstraint("model_id", "version"),
    UniqueConstraint("model_id", "content_hash"),
)

model_version_tags = Table(
    "model_version_tags",
    metadata,
    Column(
        "version_id",
        String(32),
        ForeignKey("model_versions.version_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("key", String(250), primary_key=True),
    _workspace(),
    Column("value", Text, nullable=False),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column(
        "model_id", String(32), ForeignKey("registered_models.model_id", ondelete="CASCADE"), primary_key=True
    ),
    Column("alias", String(250), primary_key=True),
    _workspace(),
    Column("version_id", String(32), ForeignKey("model_versions.version_id"), nullable=False),
    Column("updated_time", BigInteger, nullable=False),
)

# Append-only: every alias move (and every refused promotion) with who, when, from, to, why and the gates.
alias_events = Table(
    "alias_events",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    _workspace(),
    Column("model_id", String(32), ForeignKey("registered_models.model_id"), nullable=False),
    Column("alias", String(250), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("outcome", String(16), nullable=False),  # moved | removed | refused
    Column("forced", Boolean, nullable=False),
    Column("reason", Text, nullable=True),
    Column("gates_json", Text, nullable=True),
    Column("user_name", String(250), nullable=True),
    Column("time", BigInteger, nullable=False),
    Index(None, "model_id", "alias", "time"),
)

# One row per closed Parquet segment of the prediction log (serving and batch scoring write the same segments).
prediction_segments = Table(
    "prediction_segments",
    metadata,
    Column("segment_id", String(32), primary_key=True),
    _workspace(),
    Column("model_id", String(32), ForeignKey("registered_models.model_id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("route", String(32), nullable=False),  # champion | challenger | shadow | batch
    Column("source", String(16), nullable=False),  # serve | batch
    Column("blob_digest", String(64), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("start_time", BigInteger, nullable=False),  # first and last prediction in the segment
    Column("end_time", BigInteger, nullable=False),
    Column("created_time", BigInteger, nullable=False),
    Index(None, "model_id", "version", "start_time"),
    Index(None, "model_id", "end_time"),
)

# Append-only true labels sent after the fact; the latest row per prediction id wins when joined.
feedback = Table(
    "feedback",
    metadata,
    Column("feedback_id", Integer, primary_key=True, autoincrement=True),
    _workspace(),
    Column("prediction_id", String(128), nullable=False),
    Column("model_id", String(32), ForeignKey("registered_models.model_id"), nullable=True),
    Column("label_json", Text, nullable=False),
    Column("received_time", BigInteger, nullable=False),
    Index(None, "prediction_id"),
    Index(None, "model_id", "received_time"),
)

# The desired serving state of a model; `revision` grows with every change so servers poll one integer.
deployments = Table(
    "deployments",
    metadata,
    Column(
        "model_id", String(32), ForeignKey("registered_models.model_id", ondelete="CASCADE"), primary_key=True
    ),
    _workspace(),
    Column("champion", String(250), nullable=False),  # alias (or vN) answering requests
    Column("challenger", String(250), nullable=True),
    Column("mode", String(16), nullable=False),  # single | canary | shadow
    Column("share", Float, nullable=False),  # canary: share of requests to the challenger
    Column("sticky_key", String(250), nullable=True),
    Column("limits_json", Text, nullable=True),
    Column("revision", Integer, nullable=False),
    Column("updated_by", String(250), nullable=True),
    Column("updated_time", BigInteger, nullable=False),
)

# Append-only: every change of a deployment, by a user, the controller or a server that hit a limit.
deployment_events = Table(
    "deployment_events",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    _workspace(),
    Column("model_id", String(32), ForeignKey("registered_models.model_id"), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("kind", String(32), nullable=False),  # set | limit_breached | removed
    Column("detail_json", Text, nullable=True),
    Column("user_name", String(250), nullable=True),
    Column("time", BigInteger, nullable=False),
    Index(None, "model_id", "time"),
)

# Requests a server answered per model version, minute and HTTP status: the error rate of a window. Failed
# requests have no predictions to log, so the prediction log cannot count them itself.
request_counts = Table(
    "request_counts",
    metadata,
    Column("model_id", String(32), ForeignKey("registered_models.model_id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("minute_time", BigInteger, primary_key=True),  # epoch ms of the minute's start (UTC)
    Column("status", Integer, primary_key=True),
    _workspace(),
    Column("requests", Integer, nullable=False),
)

# One row per monitored window of a model version: what was computed once (profile, quality, drift) and
# what is recomputed when late labels arrive (performance).
monitor_windows = Table(
    "monitor_windows",
    metadata,
    Column("window_id", String(32), primary_key=True),
    _workspace(),
    Column("model_id", String(32), ForeignKey("registered_models.model_id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("granularity", String(16), nullable=False),  # hour | day | file
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("profile_digest", String(64), nullable=True),  # the window's TableProfile (JSON) in the blob store
    Column("quality_json", Text, nullable=True),
    Column("drift_json", Text, nullable=True),
    Column("performance_json", Text, nullable=True),
    Column("labelled_rows", Integer, nullable=False, server_default="0"),
    Column("computed_time", BigInteger, nullable=False),
    Column("performance_time", BigInteger, nullable=True),
    UniqueConstraint("model_id", "version", "granularity", "start_time"),
)

# Append-only: every alert a rule raised, and where it was delivered.
monitor_alerts = Table(
    "monitor_alerts",
    metadata,
    Column("alert_id", Integer, primary_key=True, autoincrement=True),
    _workspace(),
    Column("model_id", String(32), ForeignKey("registered_models.model_id"), nullable=False),
    Column("version", Integer, nullable=True),
    Column("rule", String(250), nullable=False),
    Column("metric", String(250), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("window_id", String(32), nullable=True),
    Column("value", Float, nullable=True),
    Column("threshold", Float, nullable=True),
    Column("message", Text, nullable=False),
    Column("delivered_json", Text, nullable=True),
    Column("time", BigInteger, nullable=False),
    Index(None, "model_id", "time"),
)

# The automation controller's lease per model: who may act on it until when. `token` grows by one with every
# new holder (a fencing token): a write carrying an older token is refused.
automation_leases = Table(
    "automation_leases",
    metadata,
    Column("model_id", String(32), ForeignKey("registered_models.model_id"), primary_key=True),
    _workspace(),
    Column("holder", String(128), nullable=False),
    Column("token", Integer, nullable=False),
    Column("expires_time", BigInteger, nullable=False),
)

# Where each model's loop stands (one row per model), so a controller that starts after another died
# continues from the last acknowledged step.
automation_loops = Table(
    "automation_loops",
    metadata,
    Column("model_id", String(32), ForeignKey("registered_models.model_id"), primary_key=True),
    _workspace(),
    Column("state_json", Text, nullable=False),
    Column("token", Integer, nullable=False),  # the lease token that wrote it
    Column("updated_time", BigInteger, nullable=False),
)

# Append-only: every decision of the loop with its evidence, what `loopml timeline` tells.
automation_events = Table(
    "automation_events",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    _workspace(),
    Column("model_id", String(32), ForeignKey("registered_models.model_id"), nullable=False),
    Column("loop_id", String(32), nullable=True),
    Column("kind", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Column("detail_json", Text, nullable=True),
    Column("run_id", String(32), nullable=True),
    Column("version", Integer, nullable=True),
    Column("actor", String(250), nullable=True),
    Column("token", Integer, nullable=True),
    Column("time", BigInteger, nullable=False),
    Index(None, "model_id", "event_id"),
)

# Team server accounts: people and services. There is no default account: the first admin is created from the
# server's own shell (`loopml server create-admin`).
users = Table(
    "users",
    metadata,
    Column("user_id", String(32), primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # person | service
    Column("created_time", BigInteger, nullable=False),
    Column("created_by", String(128), nullable=True),
    Column("disabled_time", BigInteger, nullable=True),
)

# Bearer tokens: only a SHA-256 of the secret part is kept (tokens are 256 random bits, so a fast hash is
# enough; a leaked table does not give working tokens).
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.user_id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_time", BigInteger, nullable=False),
    Column("expires_time", BigInteger, nullable=True),
    Column("revoked_time", BigInteger, nullable=True),
    Column("last_used_time", BigInteger, nullable=True),
)

# Metric batches a remote client sent, by the id it gave them: a retried batch is recognised, not written twice.
applied_batches = Table(
    "applied_batches",
    metadata,
    Column("batch_id", String(64), primary_key=True),
    Column("run_id", String(32), nullable=False),
    Column("points", Integer, nullable=False),
    Column("time", BigInteger, nullable=False),
)

# Who may do what: a role (reader | editor | admin) in a workspace, or on one model of it.
role_bindings = Table(
    "role_bindings",
    metadata,
    Column("binding_id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", String(32), ForeignKey("users.user_id"), nullable=False),
    _workspace(),
    Column("model", String(250), nullable=True),  # None: the whole workspace
    Column("role", String(16), nullable=False),
    Column("created_time", BigInteger, nullable=False),
    UniqueConstraint("user_id", "workspace_id", "model"),
)


# -- MLflow compatibility (migration 0012) ------------------------------------------------------------------

experiment_tags = Table(
    "experiment_tags",
    metadata,
    Column(
        "experiment_id",
        String(32),
        ForeignKey("experiments.experiment_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("key", String(250), primary_key=True),
    _workspace(),
    Column("value", Text, nullable=False),
)

# MLflow 3's logged models: a model saved by `mlflow.<flavor>.log_model`, with its own id (`m-...`) and files,
# before (and apart from) any registration. Registering one makes a LoopML model version of its files.
logged_models = Table(
    "logged_models",
    metadata,
    Column("model_id", String(64), primary_key=True),
    _workspace(),
    Column("experiment_id", String(32), ForeignKey("experiments.experiment_id"), nullable=False),
    Column("name", String(250), nullable=False),
    Column("source_run_id", String(32), nullable=True),
    Column("status", String(32), nullable=False),
    Column("model_type", String(250), nullable=True),
    Column("created_time", BigInteger, nullable=False),
    Column("updated_time", BigInteger, nullable=False),
    Column("lifecycle", String(16), nullable=False, server_default="active"),
    Column("tags_json", Text, nullable=False, server_default="{}"),
    Column("params_json", Text, nullable=False, server_default="{}"),
    Index(None, "experiment_id", "created_time"),
    Index(None, "source_run_id"),
)

logged_model_files = Table(
    "logged_model_files",
    metadata,
    Column(
        "model_id", String(64), ForeignKey("logged_models.model_id", ondelete="CASCADE"), primary_key=True
    ),
    Column("path", String(1024), primary_key=True),
    _workspace(),
    Column("digest", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_time", BigInteger, nullable=False),
)

# What `loopml import mlflow` copied already, per source: a re-run skips it (the import is resumable).
mlflow_imports = Table(
    "mlflow_imports",
    metadata,
    Column("source", String(64), primary_key=True),  # hash of the source's URI
    Column("kind", String(32), primary_key=True),  # experiment | run | logged_model | model_version
    Column("source_id", String(250), primary_key=True),
    _workspace(),
    Column("target_id", String(250), nullable=False),
    Column("time", BigInteger, nullable=False),
)
