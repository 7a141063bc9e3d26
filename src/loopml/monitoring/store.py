"""Monitored windows in the metadata store: one row per (model, version, granularity, window start).

A window's profile, quality and drift are written once, in one transaction; its performance is rewritten as
late labels arrive. Two runners racing on the same window cannot both write it: the unique key refuses the
second insert, which then reads the first one's row.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError

from loopml.core.clock import now_ms
from loopml.core.errors import NotFound
from loopml.core.ids import new_id
from loopml.stats import TableProfile
from loopml.storage.blobs.store import BlobStore
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.database import Database
from loopml.storage.metadata.lookups import model_id_of


@dataclass(frozen=True)
class WindowRecord:
    """What was computed for one window of one model version."""

    window_id: str
    model: str
    version: int
    granularity: str
    start_ms: int
    end_ms: int
    rows: int
    profile_digest: str | None
    quality: dict[str, Any]
    drift: dict[str, Any] | None
    performance: dict[str, Any] | None
    labelled_rows: int
    computed_time: int
    performance_time: int | None = None  # when late labels last changed its performance

    @property
    def changed_time(self) -> int:
        """When anything of the window was last written (computed, or its performance refreshed)."""
        return max(self.computed_time, self.performance_time or 0)


def load_profile(blobs: BlobStore, digest: str) -> TableProfile:
    """A window's stored profile."""
    return TableProfile.from_dict(json.loads(blobs.get_bytes(digest)))


class MonitorStore:
    """Reads and writes `monitor_windows`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def done(self, model: str, granularity: str) -> set[tuple[int, int]]:
        """(version, start) of the windows of `model` already computed at `granularity`."""
        w = t.monitor_windows.c
        with self.db.read() as conn:
            query = select(w.version, w.start_time).where(
                w.model_id == model_id_of(conn, model), w.granularity == granularity
            )
            return {(int(v), int(s)) for v, s in conn.execute(query)}

    def save(
        self,
        model: str,
        *,
        version: int,
        granularity: str,
        start_ms: int,
        end_ms: int,
        rows: int,
        profile_digest: str | None,
        quality: dict[str, Any],
        drift: dict[str, Any] | None,
        performance: dict[str, Any] | None = None,
        labelled_rows: int = 0,
    ) -> WindowRecord:
        """Write a computed window (one transaction); if another runner wrote it first, return theirs."""
        now = now_ms()

        def insert(conn: Connection) -> str:
            window_id = new_id()
            conn.execute(
                t.monitor_windows.insert(),
                {
                    "window_id": window_id,
                    "model_id": model_id_of(conn, model),
                    "version": version,
                    "granularity": granularity,
                    "start_time": start_ms,
                    "end_time": end_ms,
                    "rows": rows,
                    "profile_digest": profile_digest,
                    "quality_json": json.dumps(quality, sort_keys=True),
                    "drift_json": json.dumps(drift, sort_keys=True) if drift is not None else None,
                    "performance_json": json.dumps(performance, sort_keys=True)
                    if performance is not None
                    else None,
                    "labelled_rows": labelled_rows,
                    "computed_time": now,
                    "performance_time": now if performance is not None else None,
                },
            )
            return window_id

        with contextlib.suppress(IntegrityError):  # computed meanwhile by another runner: theirs stands
            self.db.transact(insert)
        return next(
            r for r in self.windows(model, version=version, granularity=granularity) if r.start_ms == start_ms
        )

    def set_performance(self, window_id: str, performance: dict[str, Any], labelled_rows: int) -> None:
        """Rewrite a window's realized performance (late labels arrived)."""
        w = t.monitor_windows.c

        def update(conn: Connection) -> None:
            conn.execute(
                t.monitor_windows.update()
                .where(w.window_id == window_id)
                .values(
                    performance_json=json.dumps(performance, sort_keys=True),
                    labelled_rows=labelled_rows,
                    performance_time=now_ms(),
                )
            )

        self.db.transact(update)

    def windows(
        self, model: str, *, version: int | None = None, granularity: str | None = None
    ) -> list[WindowRecord]:
        """The computed windows of `model`, oldest first."""
        w = t.monitor_windows.c
        with self.db.read() as conn:
            query = select(t.monitor_windows).where(w.model_id == model_id_of(conn, model))
            if version is not None:
                query = query.where(w.version == version)
            if granularity is not None:
                query = query.where(w.granularity == granularity)
            rows = conn.execute(query.order_by(w.start_time, w.version)).all()
        return [_record(model, row) for row in rows]

    def recent(
        self, model: str, *, granularity: str, last: int, version: int | None = None
    ) -> list[WindowRecord]:
        """The newest `last` windows of `model` at `granularity` (of one `version`, or all), oldest first; reads
        only those rows, so a model with years of windows is as quick to look at as a new one."""
        w = t.monitor_windows.c
        with self.db.read() as conn:
            query = select(t.monitor_windows).where(
                w.model_id == model_id_of(conn, model), w.granularity == granularity
            )
            if version is not None:
                query = query.where(w.version == version)
            rows = conn.execute(query.order_by(w.start_time.desc(), w.version.desc()).limit(last)).all()
        return [_record(model, row) for row in reversed(rows)]

    def window(self, model: str, window_id: str) -> WindowRecord:
        """One window of `model` by id; `NotFound` when `model` has no such window."""
        w = t.monitor_windows.c
        with self.db.read() as conn:
            row = conn.execute(
                select(t.monitor_windows).where(
                    w.model_id == model_id_of(conn, model), w.window_id == window_id
                )
            ).first()
        if row is None:
            raise NotFound(f"{model} has no monitoring window {window_id!r}")
        return _record(model, row)

    def adjacent(self, record: WindowRecord) -> tuple[str | None, str | None]:
        """Ids of the windows just before and just after `record` (same model, version and granularity)."""
        w = t.monitor_windows.c
        with self.db.read() as conn:
            same = select(w.window_id).where(
                w.model_id == model_id_of(conn, record.model),
                w.version == record.version,
                w.granularity == record.granularity,
            )
            before = conn.execute(
                same.where(w.start_time < record.start_ms).order_by(w.start_time.desc()).limit(1)
            ).scalar()
            after = conn.execute(
                same.where(w.start_time > record.start_ms).order_by(w.start_time).limit(1)
            ).scalar()
        return before, after

    def newest(self, model: str) -> list[WindowRecord]:
        """The newest window of each (version, granularity) of `model`, oldest first."""
        w = t.monitor_windows.c
        with self.db.read() as conn:
            model_id = model_id_of(conn, model)
            last = (
                select(w.version, w.granularity, func.max(w.start_time).label("start"))
                .where(w.model_id == model_id)
                .group_by(w.version, w.granularity)
                .subquery()
            )
            query = (
                select(t.monitor_windows)
                .join(
                    last,
                    (w.version == last.c.version)
                    & (w.granularity == last.c.granularity)
                    & (w.start_time == last.c.start),
                )
                .where(w.model_id == model_id)
                .order_by(w.start_time, w.version)
            )
            rows = conn.execute(query).all()
        return [_record(model, row) for row in rows]

    def monitored(self) -> dict[str, list[str]]:
        """The models that have computed windows, by name: {model: the granularities computed}."""
        w, m = t.monitor_windows.c, t.registered_models.c
        with self.db.read() as conn:
            rows = conn.execute(
                select(m.name, w.granularity)
                .select_from(t.monitor_windows.join(t.registered_models, w.model_id == m.model_id))
                .distinct()
                .order_by(m.name, w.granularity)
            ).all()
        found: dict[str, list[str]] = {}
        for name, granularity in rows:
            found.setdefault(str(name), []).append(str(granularity))
        return found


def _record(model: str, row: Any) -> WindowRecord:
    return WindowRecord(
        window_id=row.window_id,
        model=model,
        version=row.version,
        granularity=row.granularity,
        start_ms=row.start_time,
        end_ms=row.end_time,
        rows=row.rows,
        profile_digest=row.profile_digest,
        quality=json.loads(row.quality_json or "{}"),
        drift=json.loads(row.drift_json) if row.drift_json else None,
        performance=json.loads(row.performance_json) if row.performance_json else None,
        labelled_rows=row.labelled_rows,
        computed_time=row.computed_time,
        performance_time=row.performance_time,
    )
