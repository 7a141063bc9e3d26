"""The rows `loopml import mlflow` writes, with MLflow's own ids and times (the stores' methods make new ones).

Every method runs inside the caller's transaction, and the importer writes an entity together with its
`mlflow_imports` row: after a crash an entity is either wholly there and recorded, or absent, so a re-run
resumes where the last one stopped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from sqlalchemy import Connection, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite

from loopml.core.clock import now_ms
from loopml.core.hashing import hash_text
from loopml.core.ids import new_id
from loopml.mlflow.source import SourceExperiment, SourceLoggedModel, SourceRun
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.database import Database
from loopml.tracking.metric_log import MetricLog, SeriesBatch
from loopml.tracking.records import Artifact, RunStatus
from loopml.tracking.values import MAX_NAME


class ImportWriter:
    """Writes imported entities and the record of each, for one source."""

    def __init__(self, db: Database, source_uri: str) -> None:
        self.db = db
        self.source = hash_text(source_uri)
        self._insert = sqlite.insert if db.is_sqlite else postgresql.insert

    # -- the import record -------------------------------------------------------------------------------

    def imported(self, kind: str) -> dict[str, str]:
        """{source id: LoopML id} of what this source gave already, of one kind."""
        c = t.mlflow_imports.c
        with self.db.read() as conn:
            rows = conn.execute(
                select(c.source_id, c.target_id).where(c.source == self.source, c.kind == kind)
            ).all()
        return {str(source_id): str(target_id) for source_id, target_id in rows}

    def record(self, conn: Connection, kind: str, source_id: str, target_id: str) -> None:
        """Note that `source_id` of `kind` is imported as `target_id`."""
        conn.execute(
            t.mlflow_imports.insert(),
            {
                "source": self.source,
                "kind": kind,
                "source_id": source_id,
                "target_id": target_id,
                "time": now_ms(),
            },
        )

    @staticmethod
    def run_exists(conn: Connection, run_id: str) -> bool:
        """Whether LoopML holds a run with this id."""
        return conn.execute(select(t.runs.c.run_id).where(t.runs.c.run_id == run_id)).first() is not None

    @staticmethod
    def logged_model_exists(conn: Connection, model_id: str) -> bool:
        """Whether LoopML holds a logged model with this id."""
        query = select(t.logged_models.c.model_id).where(t.logged_models.c.model_id == model_id)
        return conn.execute(query).first() is not None

    # -- entities ----------------------------------------------------------------------------------------

    def experiment(self, conn: Connection, experiment: SourceExperiment) -> tuple[str, bool]:
        """The LoopML experiment of this name (created, with MLflow's time, description and lifecycle, when
        missing), its tags added where it has none of that key; (id, created)."""
        found = conn.execute(
            select(t.experiments.c.experiment_id).where(t.experiments.c.name == experiment.name)
        ).scalar()
        created = found is None
        experiment_id = found or new_id()
        if created:
            deleted = experiment.lifecycle == "deleted"
            conn.execute(
                t.experiments.insert(),
                {
                    "experiment_id": experiment_id,
                    "name": experiment.name,
                    "description": experiment.tags.get("mlflow.note.content"),
                    "lifecycle": "deleted" if deleted else "active",
                    "created_time": experiment.created_time or now_ms(),
                    "deleted_time": now_ms() if deleted else None,
                },
            )
        if experiment.tags:
            rows = [
                {"experiment_id": experiment_id, "key": k, "value": v} for k, v in experiment.tags.items()
            ]
            conn.execute(self._insert(t.experiment_tags).values(rows).on_conflict_do_nothing())
        self.record(conn, "experiment", experiment.experiment_id, experiment_id)
        return experiment_id, created

    def run(
        self,
        conn: Connection,
        run: SourceRun,
        *,
        experiment_id: str,
        metrics: SeriesBatch,
        artifacts: Sequence[Artifact],
        metric_log: MetricLog,
    ) -> None:
        """The run with MLflow's id, times, status and lifecycle, its params, tags, metric history and
        artifact records (the bytes are stored already), and its import record."""
        tags = run.tags
        parent = run.parent_run_id
        status = run.status if run.status in RunStatus.__members__ else RunStatus.FINISHED.value
        deleted = run.lifecycle == "deleted"
        start = run.start_time or run.end_time or 0
        conn.execute(
            t.runs.insert(),
            {
                "run_id": run.run_id,
                "experiment_id": experiment_id,
                "parent_run_id": parent if parent and self.run_exists(conn, parent) else None,
                "name": (run.run_name or tags.get("mlflow.runName") or f"run-{run.run_id[:8]}")[:MAX_NAME],
                "status": status,
                "start_time": start,
                "end_time": None if status == RunStatus.RUNNING.value else (run.end_time or start),
                "lifecycle": "deleted" if deleted else "active",
                "deleted_time": (run.deleted_time or run.end_time or now_ms()) if deleted else None,
                "note": tags.get("mlflow.note.content"),
                "user_name": (tags.get("mlflow.user") or run.user or None),
                "entry_point": tags.get("mlflow.source.name") or None,
                "git_commit": (tags.get("mlflow.source.git.commit") or "")[:64] or None,
                "git_branch": (tags.get("mlflow.source.git.branch") or "")[:250] or None,
            },
        )
        if run.params:
            conn.execute(
                t.params.insert(),
                [
                    {"run_id": run.run_id, "key": k, "value": v, "value_json": json.dumps(v)}
                    for k, v in run.params.items()
                ],
            )
        if tags:
            conn.execute(
                t.tags.insert(), [{"run_id": run.run_id, "key": k, "value": v} for k, v in tags.items()]
            )
        if metrics:
            metric_log.write(conn, metrics)
        self._files(conn, t.artifacts, "run_id", run.run_id, artifacts)
        self.record(conn, "run", run.run_id, run.run_id)

    def logged_model(
        self,
        conn: Connection,
        model: SourceLoggedModel,
        *,
        experiment_id: str,
        files: Sequence[Artifact],
    ) -> None:
        """The logged model with MLflow's id, times and status, its file records, and its import record (its
        source run is kept when LoopML holds that run)."""
        created = model.created_time or now_ms()
        source_run_id = model.source_run_id
        if source_run_id is not None and not self.run_exists(conn, source_run_id):
            source_run_id = None
        conn.execute(
            t.logged_models.insert(),
            {
                "model_id": model.model_id,
                "experiment_id": experiment_id,
                "name": model.name[:250],
                "source_run_id": source_run_id,
                "status": model.status,
                "model_type": model.model_type,
                "created_time": created,
                "updated_time": model.updated_time or created,
                "lifecycle": "deleted" if model.lifecycle == "deleted" else "active",
                "tags_json": json.dumps(model.tags, sort_keys=True),
                "params_json": json.dumps(model.params, sort_keys=True),
            },
        )
        self._files(conn, t.logged_model_files, "model_id", model.model_id, files)
        self.record(conn, "logged_model", model.model_id, model.model_id)

    def version_imported(
        self, conn: Connection, source_id: str, version_id: str, ref: str, created_time: int | None
    ) -> None:
        """Record a registered version; a version this import created takes MLflow's creation time."""
        if created_time is not None:
            conn.execute(
                update(t.model_versions)
                .where(t.model_versions.c.version_id == version_id)
                .values(created_time=created_time)
            )
        self.record(conn, "model_version", source_id, ref)

    def model_imported(
        self,
        conn: Connection,
        name: str,
        *,
        description: str | None,
        tags: Mapping[str, str],
        created_time: int | None,
    ) -> None:
        """A registered model's description (where LoopML has none), tags (MLflow's win) and creation time
        (MLflow's, when earlier); and its import record."""
        model_id = conn.execute(
            select(t.registered_models.c.model_id).where(t.registered_models.c.name == name)
        ).scalar_one()
        m = t.registered_models.c
        if description:
            conn.execute(
                update(t.registered_models)
                .where(m.model_id == model_id, m.description.is_(None))
                .values(description=description)
            )
        if created_time is not None:  # the earlier of the two: the model existed since then
            conn.execute(
                update(t.registered_models)
                .where(m.model_id == model_id, m.created_time > created_time)
                .values(created_time=created_time)
            )
        if tags:
            statement = self._insert(t.model_tags).values(
                [{"model_id": model_id, "key": k, "value": v} for k, v in tags.items()]
            )
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["model_id", "key"], set_={"value": statement.excluded.value}
                )
            )
        self.record(conn, "registered_model", name, name)

    @staticmethod
    def _files(conn: Connection, table: Table, column: str, owner: str, files: Sequence[Artifact]) -> None:
        if files:
            now = now_ms()
            conn.execute(
                table.insert(),
                [
                    {column: owner, "path": f.path, "digest": f.digest, "size": f.size, "created_time": now}
                    for f in files
                ],
            )
