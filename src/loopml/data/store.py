"""Dataset records in the metadata database: one transaction per new version, numbered without gaps."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, Row, func, select
from sqlalchemy.exc import IntegrityError

from loopml.core.clock import now_ms
from loopml.core.errors import NotFound
from loopml.core.ids import new_id
from loopml.data.records import Dataset, DatasetVersion, VersionRef
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.database import Database


class DatasetStore:
    """Datasets and versions of one metadata database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add_version(self, name: str, fields: dict[str, Any]) -> tuple[DatasetVersion, bool]:
        """Record a version with these fields unless one with the same digest exists; returns (version, new)."""
        for _ in range(5):  # two writers racing for the same number: the loser takes the next one
            try:
                return self.db.transact(lambda conn: self._add(conn, name, fields))
            except IntegrityError:
                continue
        return self.db.transact(lambda conn: self._add(conn, name, fields))

    def _add(self, conn: Connection, name: str, fields: dict[str, Any]) -> tuple[DatasetVersion, bool]:
        d, v = t.datasets.c, t.dataset_versions.c
        dataset_id = conn.execute(select(d.dataset_id).where(d.name == name)).scalar()
        if dataset_id is None:
            dataset_id = new_id()
            conn.execute(t.datasets.insert().values(dataset_id=dataset_id, name=name, created_time=now_ms()))
        same = conn.execute(
            select(t.dataset_versions).where(v.dataset_id == dataset_id, v.digest == fields["digest"])
        ).first()
        if same is not None:
            return _version(name, same), False
        number = (
            conn.execute(select(func.max(v.version)).where(v.dataset_id == dataset_id)).scalar() or 0
        ) + 1
        row = {
            **fields,
            "version_id": new_id(),
            "dataset_id": dataset_id,
            "version": number,
            "created_time": now_ms(),
        }
        conn.execute(t.dataset_versions.insert().values(**row))
        return _version(
            name, conn.execute(select(t.dataset_versions).where(v.version_id == row["version_id"])).one()
        ), True

    def get_version(self, ref: VersionRef) -> DatasetVersion:
        """A version by reference (`NAME` = the newest); `NotFound` says which versions exist."""
        d, v = t.datasets.c, t.dataset_versions.c
        with self.db.read() as conn:
            dataset_id = conn.execute(select(d.dataset_id).where(d.name == ref.name)).scalar()
            if dataset_id is None:
                raise NotFound(f"no dataset named {ref.name!r}: `loopml data list` shows the datasets")
            query = select(t.dataset_versions).where(v.dataset_id == dataset_id)
            if ref.version is None:  # the newest accepted version: a rejected one is never "the latest"
                accepted = query.where(v.status == "accepted")
                row = conn.execute(accepted.order_by(v.version.desc()).limit(1)).first()
            else:
                row = conn.execute(query.where(v.version == ref.version)).first()
            if row is None and ref.version is None:
                raise NotFound(f"dataset {ref.name!r} has no accepted version (only rejected ones)")
            if row is None:
                newest = conn.execute(select(func.max(v.version)).where(v.dataset_id == dataset_id)).scalar()
                raise NotFound(f"dataset {ref.name!r} has no version v{ref.version} (newest: v{newest})")
        return _version(ref.name, row)

    def versions(self, name: str) -> list[DatasetVersion]:
        """Every version of a dataset, newest first."""
        d, v = t.datasets.c, t.dataset_versions.c
        with self.db.read() as conn:
            dataset_id = conn.execute(select(d.dataset_id).where(d.name == name)).scalar()
            if dataset_id is None:
                raise NotFound(f"no dataset named {name!r}: `loopml data list` shows the datasets")
            rows = conn.execute(
                select(t.dataset_versions).where(v.dataset_id == dataset_id).order_by(v.version.desc())
            ).all()
        return [_version(name, r) for r in rows]

    def datasets(self) -> list[Dataset]:
        """Every dataset with its newest version number, by name."""
        d, v = t.datasets.c, t.dataset_versions.c
        latest = select(v.dataset_id, func.max(v.version).label("latest")).group_by(v.dataset_id).subquery()
        with self.db.read() as conn:
            rows = conn.execute(
                select(d.dataset_id, d.name, d.created_time, d.description, latest.c.latest)
                .join(latest, latest.c.dataset_id == d.dataset_id, isouter=True)
                .order_by(d.name)
            ).all()
        return [Dataset(r.dataset_id, r.name, r.created_time, r.latest, r.description) for r in rows]

    def newest_versions(self) -> dict[str, DatasetVersion]:
        """The newest version (accepted or rejected) of every dataset, by dataset name, in one query: what an
        overview of all datasets shows without reading each dataset's versions."""
        d, v = t.datasets.c, t.dataset_versions.c
        latest = select(v.dataset_id, func.max(v.version).label("latest")).group_by(v.dataset_id).subquery()
        with self.db.read() as conn:
            rows = conn.execute(
                select(t.dataset_versions, d.name.label("dataset_name"))
                .join(t.datasets, d.dataset_id == v.dataset_id)
                .join(latest, (latest.c.dataset_id == v.dataset_id) & (latest.c.latest == v.version))
            ).all()
        return {r.dataset_name: _version(r.dataset_name, r) for r in rows}


def _version(name: str, row: Row[Any]) -> DatasetVersion:
    return DatasetVersion(
        name=name,
        version=row.version,
        digest=row.digest,
        kind=row.kind,
        manifest_digest=row.manifest_digest,
        size=row.size,
        file_count=row.file_count,
        created_time=row.created_time,
        source=row.source,
        message=row.message,
        row_count=row.row_count,
        schema=json.loads(row.schema_json) if row.schema_json else None,
        profile_digest=row.profile_digest,
        git_commit=row.git_commit,
        status=row.status,
        validation=json.loads(row.validation_json) if row.validation_json else None,
        user=row.user_name,
    )
