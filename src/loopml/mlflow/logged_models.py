"""MLflow 3's logged models: `mlflow.<flavor>.log_model` creates one (id `m-<32 hex>`), uploads its files, and
marks it READY; registering it makes a LoopML model version of those files (`registration`).

One transaction per change; files are recorded after their bytes are in the blob store, so a listed file
is always readable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Row, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from loopml.core.clock import now_ms
from loopml.core.errors import InvalidInput, NotFound
from loopml.core.ids import new_id
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.database import Database
from loopml.tracking.records import Artifact
from loopml.tracking.values import check_name, param_forms, tag_value

STATUSES = ("PENDING", "READY", "FAILED")
MAX_RESULTS = 1000


@dataclass(frozen=True)
class LoggedModel:
    """A model MLflow's client logged: its experiment, source run, status, tags, params and files."""

    model_id: str
    experiment_id: str
    name: str
    source_run_id: str | None
    status: str
    model_type: str | None
    created_time: int
    updated_time: int
    lifecycle: str = "active"
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


class LoggedModelStore:
    """Logged models and their files in the metadata database (the bytes live in the blob store)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._insert = sqlite.insert if db.is_sqlite else postgresql.insert

    def create(
        self,
        experiment_id: str,
        *,
        name: str | None = None,
        source_run_id: str | None = None,
        model_type: str | None = None,
        tags: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        model_id: str | None = None,
    ) -> LoggedModel:
        """A new logged model, PENDING until its files are uploaded (`model_id` keeps an imported one's id)."""
        model_id = model_id or f"m-{new_id()}"
        now = now_ms()
        if name is not None:
            check_name("logged model", name)
        tags, params = _checked("tag", tags), _checked("param", params)

        def change(conn: Connection) -> None:
            if not conn.execute(
                select(t.experiments.c.experiment_id).where(t.experiments.c.experiment_id == experiment_id)
            ).first():
                raise NotFound(f"no experiment with id {experiment_id!r}")
            if (
                source_run_id is not None
                and not conn.execute(select(t.runs.c.run_id).where(t.runs.c.run_id == source_run_id)).first()
            ):
                raise NotFound(f"no run with id {source_run_id!r}")
            conn.execute(
                t.logged_models.insert(),
                {
                    "model_id": model_id,
                    "experiment_id": experiment_id,
                    "name": name or model_id,
                    "source_run_id": source_run_id,
                    "status": "PENDING",
                    "model_type": model_type,
                    "created_time": now,
                    "updated_time": now,
                    "tags_json": json.dumps(dict(tags or {}), sort_keys=True),
                    "params_json": json.dumps(dict(params or {}), sort_keys=True),
                },
            )

        self.db.transact(change)
        return self.get(model_id)

    def get(self, model_id: str) -> LoggedModel:
        """The logged model; `NotFound` for an unknown id."""
        with self.db.read() as conn:
            row = conn.execute(select(t.logged_models).where(t.logged_models.c.model_id == model_id)).first()
        if row is None:
            raise NotFound(f"no logged model with id {model_id!r}")
        return _from_row(row)

    def search(
        self,
        experiment_ids: Sequence[str],
        *,
        source_run_id: str | None = None,
        max_results: int = 100,
        offset: int = 0,
    ) -> list[LoggedModel]:
        """Active logged models of these experiments, newest first."""
        if not 1 <= max_results <= MAX_RESULTS:
            raise InvalidInput(f"max_results: between 1 and {MAX_RESULTS}")
        query = select(t.logged_models).where(
            t.logged_models.c.experiment_id.in_(list(experiment_ids)), t.logged_models.c.lifecycle == "active"
        )
        if source_run_id is not None:
            query = query.where(t.logged_models.c.source_run_id == source_run_id)
        query = query.order_by(t.logged_models.c.created_time.desc(), t.logged_models.c.model_id)
        with self.db.read() as conn:
            rows = conn.execute(query.limit(max_results).offset(offset)).all()
        return [_from_row(r) for r in rows]

    def search_all(self, experiment_ids: Sequence[str]) -> list[LoggedModel]:
        """Every active logged model of these experiments, newest first (read page by page)."""
        found: list[LoggedModel] = []
        while True:
            page = self.search(experiment_ids, max_results=MAX_RESULTS, offset=len(found))
            found.extend(page)
            if len(page) < MAX_RESULTS:
                return found

    def set_status(self, model_id: str, status: str) -> LoggedModel:
        """Move the model to PENDING, READY or FAILED."""
        if status not in STATUSES:
            raise InvalidInput(f"status: one of {', '.join(STATUSES)}, got {status!r}")
        self._update(model_id, status=status)
        return self.get(model_id)

    def set_tags(self, model_id: str, tags: Mapping[str, str]) -> None:
        """Add or replace tags."""
        self._merge(model_id, "tags_json", _checked("tag", tags), ())

    def delete_tag(self, model_id: str, key: str) -> None:
        """Remove one tag; `NotFound` when the model has no such tag."""
        if key not in self.get(model_id).tags:
            raise NotFound(f"logged model {model_id!r} has no tag {key!r}")
        self._merge(model_id, "tags_json", {}, (key,))

    def log_params(self, model_id: str, params: Mapping[str, str]) -> None:
        """Add params (a logged model's params, as MLflow keeps them)."""
        self._merge(model_id, "params_json", _checked("param", params), ())

    def delete(self, model_id: str) -> None:
        """Soft delete: the model leaves searches; its files stay for the versions registered from it."""
        self._update(model_id, lifecycle="deleted")

    def add_files(self, model_id: str, files: Sequence[Artifact]) -> None:
        """Record uploaded files (their bytes already stored); a path uploaded again takes the new bytes."""
        now = now_ms()

        def change(conn: Connection) -> None:
            self._require(conn, model_id)
            for item in files:
                statement = self._insert(t.logged_model_files).values(
                    model_id=model_id, path=item.path, digest=item.digest, size=item.size, created_time=now
                )
                conn.execute(
                    statement.on_conflict_do_update(
                        index_elements=["model_id", "path"],
                        set_={"digest": item.digest, "size": item.size, "created_time": now},
                    )
                )

        self.db.transact(change)

    def files(self, model_id: str, prefix: str | None = None) -> list[Artifact]:
        """The model's files (under `prefix/` when given), by path."""
        query = select(
            t.logged_model_files.c.path, t.logged_model_files.c.digest, t.logged_model_files.c.size
        ).where(t.logged_model_files.c.model_id == model_id)
        if prefix:
            escaped = prefix.rstrip("/").replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(t.logged_model_files.c.path.like(f"{escaped}/%", escape="\\"))
        with self.db.read() as conn:
            rows = conn.execute(query.order_by(t.logged_model_files.c.path)).all()
        return [Artifact(r.path, r.digest, r.size) for r in rows]

    def count(self) -> int:
        """How many logged models the store holds (deleted ones too)."""
        with self.db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(t.logged_models)).scalar() or 0)

    def _update(self, model_id: str, **values: str) -> None:
        def change(conn: Connection) -> None:
            self._require(conn, model_id)
            conn.execute(
                update(t.logged_models)
                .where(t.logged_models.c.model_id == model_id)
                .values(**values, updated_time=now_ms())
            )

        self.db.transact(change)

    def _merge(self, model_id: str, column: str, added: dict[str, str], removed: Sequence[str]) -> None:
        def change(conn: Connection) -> None:
            row = self._require(conn, model_id)
            current = {**json.loads(getattr(row, column)), **added}
            for key in removed:
                current.pop(key, None)
            conn.execute(
                update(t.logged_models)
                .where(t.logged_models.c.model_id == model_id)
                .values({column: json.dumps(current, sort_keys=True), "updated_time": now_ms()})
            )

        self.db.transact(change)

    @staticmethod
    def _require(conn: Connection, model_id: str) -> Row[object]:
        row = conn.execute(select(t.logged_models).where(t.logged_models.c.model_id == model_id)).first()
        if row is None:
            raise NotFound(f"no logged model with id {model_id!r}")
        return row

    def forget(self, model_id: str) -> None:
        """Delete the model and its file records for good (an import that must redo it)."""
        self.db.transact(
            lambda conn: conn.execute(delete(t.logged_models).where(t.logged_models.c.model_id == model_id))
        )


def _checked(kind: str, values: Mapping[str, str] | None) -> dict[str, str]:
    """Keys and values within LoopML's limits for run tags (NUL bytes and oversized text refused)."""
    return {
        key: tag_value(key, value) if kind == "tag" else param_text(key, value)
        for key, value in (values or {}).items()
    }


def param_text(key: str, value: str) -> str:
    return param_forms(key, value)[0]


def _from_row(row: Row[object]) -> LoggedModel:
    data = row._mapping
    return LoggedModel(
        model_id=data["model_id"],
        experiment_id=data["experiment_id"],
        name=data["name"],
        source_run_id=data["source_run_id"],
        status=data["status"],
        model_type=data["model_type"],
        created_time=data["created_time"],
        updated_time=data["updated_time"],
        lifecycle=data["lifecycle"],
        tags=json.loads(data["tags_json"]),
        params=json.loads(data["params_json"]),
    )
