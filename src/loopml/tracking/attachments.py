"""What is attached to runs beside params and metrics: artifact records, dataset inputs, environments, diffs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from loopml.core.clock import now_ms
from loopml.core.errors import InvalidInput, NotFound
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.database import Database
from loopml.tracking.records import Artifact, RunInput
from loopml.tracking.rows import require_run
from loopml.tracking.values import check_input


class InputReader(NamedTuple):
    """A run that read a version of a dataset."""

    version: str
    run_id: str
    run_name: str
    start_time: int


class RunAttachments:
    """Artifact records (the bytes are in the blob store), inputs, and the captured code and environment."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._insert = sqlite.insert if db.is_sqlite else postgresql.insert

    def add_artifacts(self, run_id: str, artifacts: Sequence[Artifact]) -> None:
        """Record files logged to a run (their bytes are already in the blob store); a path is replaced."""
        if not artifacts:
            return

        def change(conn: Connection) -> None:
            require_run(conn, run_id)
            _refuse_file_folder_clash(conn, run_id, [a.path for a in artifacts])
            stmt = self._insert(t.artifacts).values(
                [
                    {
                        "run_id": run_id,
                        "path": a.path,
                        "digest": a.digest,
                        "size": a.size,
                        "created_time": now_ms(),
                    }
                    for a in artifacts
                ]
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["run_id", "path"],
                    set_={
                        "digest": stmt.excluded.digest,
                        "size": stmt.excluded.size,
                        "created_time": stmt.excluded.created_time,
                    },
                )
            )

        self.db.transact(change)

    def list_artifacts(self, run_id: str, prefix: str | None = None) -> list[Artifact]:
        """Files logged to a run, optionally only those under a folder."""
        query = select(t.artifacts.c.path, t.artifacts.c.digest, t.artifacts.c.size).where(
            t.artifacts.c.run_id == run_id
        )
        if prefix:
            query = query.where(
                or_(
                    t.artifacts.c.path == prefix,
                    t.artifacts.c.path.startswith(prefix.rstrip("/") + "/", autoescape=True),
                )
            )
        with self.db.read() as conn:
            require_run(conn, run_id)
            rows = conn.execute(query.order_by(t.artifacts.c.path)).all()
        return [Artifact(p, d, s) for p, d, s in rows]

    def add_inputs(self, run_id: str, inputs: Sequence[RunInput]) -> None:
        """Record dataset versions a run read."""
        if not inputs:
            return
        inputs = [check_input(i) for i in inputs]

        def change(conn: Connection) -> None:
            require_run(conn, run_id)
            stmt = self._insert(t.run_inputs).values(
                [
                    {
                        "run_id": run_id,
                        "dataset": i.dataset,
                        "version": i.version,
                        "digest": i.digest,
                        "context": i.context,
                    }
                    for i in inputs
                ]
            )
            conn.execute(stmt.on_conflict_do_nothing())

        self.db.transact(change)

    def list_inputs(self, run_id: str) -> list[RunInput]:
        """Dataset versions a run read."""
        c = t.run_inputs.c
        with self.db.read() as conn:
            rows = conn.execute(
                select(c.dataset, c.version, c.digest, c.context).where(c.run_id == run_id)
            ).all()
        return [RunInput(*row) for row in rows]

    def runs_with_input(self, dataset: str, version: str) -> list[str]:
        """Ids of the runs that recorded reading a dataset version, oldest first."""
        c = t.run_inputs.c
        with self.db.read() as conn:
            return list(
                conn.execute(
                    select(c.run_id)
                    .join(t.runs, t.runs.c.run_id == c.run_id)
                    .where(c.dataset == dataset, c.version == version)
                    .order_by(t.runs.c.start_time)
                ).scalars()
            )

    def input_readers(self, dataset: str, version: str | None = None) -> list[InputReader]:
        """The runs that recorded reading any version of a dataset (or only `version`), with each run's name,
        oldest first, in one query: what a dataset's overview shows per version."""
        c, r = t.run_inputs.c, t.runs.c
        query = (
            select(c.version, c.run_id, r.name, r.start_time)
            .join(t.runs, r.run_id == c.run_id)
            .where(c.dataset == dataset)
            .order_by(r.start_time, c.run_id)
        )
        if version is not None:
            query = query.where(c.version == version)
        with self.db.read() as conn:
            return [InputReader(*row) for row in conn.execute(query)]

    def get_environment(self, environment_hash: str) -> dict[str, Any]:
        """The Python version, platform and packages recorded under an environment hash."""
        with self.db.read() as conn:
            row = conn.execute(
                select(t.environments).where(t.environments.c.environment_hash == environment_hash)
            ).first()
        if row is None:
            raise NotFound(f"no environment {environment_hash}")
        return {
            "python_version": row.python_version,
            "platform": row.platform,
            "packages": json.loads(row.packages),
        }

    def get_diff(self, diff_hash: str) -> tuple[str, bool]:
        """The stored uncommitted diff (and whether it was truncated)."""
        with self.db.read() as conn:
            row = conn.execute(
                select(t.code_diffs.c.diff, t.code_diffs.c.truncated).where(
                    t.code_diffs.c.diff_hash == diff_hash
                )
            ).first()
        if row is None:
            raise NotFound(f"no stored diff {diff_hash}")
        return row.diff, bool(row.truncated)


def _refuse_file_folder_clash(conn: Connection, run_id: str, paths: Sequence[str]) -> None:
    """A path cannot be both a file and a folder of the same run (downloads could not hold both)."""
    new = set(paths)
    c = t.artifacts.c
    for path in paths:
        parents = ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
        inside = new.intersection(parents)
        if inside:
            raise InvalidInput(f"artifact {path!r} would sit inside {sorted(inside)[0]!r}, which is a file")
        clash = conn.execute(
            select(c.path)
            .where(c.run_id == run_id)
            .where(or_(c.path.in_(parents), c.path.startswith(path + "/", autoescape=True)))
            .limit(1)
        ).scalar()
        if clash is not None:
            raise InvalidInput(
                f"artifact {path!r} clashes with the logged artifact {clash!r} (file vs folder)"
            )
