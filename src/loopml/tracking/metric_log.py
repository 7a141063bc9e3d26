"""The append-only metric history: the hot path of tracking, written in large batches.

Each (run, key) pair is a series with a small integer id and its latest value (table `latest_metrics`);
points (table `metrics`) carry only the series id, so a batch of 100,000 points is one `executemany` of
4-number tuples. Series ids are cached per process; a cache entry for a run purged meanwhile is detected
by the foreign key and dropped.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, select, tuple_
from sqlalchemy.exc import IntegrityError

from loopml.core.errors import NotFound
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.database import Database
from loopml.tracking.records import Metric

# (run_id, key, value, step, timestamp): the buffered form of a metric point, cheap to build per call.
MetricPoint = tuple[str, str, float, int, int]


class MetricLog:
    """Writes and reads metric points of runs."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._series: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        marker = "?" if db.engine.dialect.paramstyle == "qmark" else "%s"
        self._insert_points = f"INSERT INTO metrics (series_id, value, step, timestamp) VALUES ({marker}, {marker}, {marker}, {marker})"
        # Plain SQL on the hot path: building the same statement with SQLAlchemy constructs costs more than
        # executing it. SQLite and PostgreSQL share this upsert syntax.
        self._upsert_latest = (
            "INSERT INTO latest_metrics (run_id, key, value, step, timestamp) "
            f"VALUES ({marker}, {marker}, {marker}, {marker}, {marker}) "
            "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value, step = excluded.step, "
            "timestamp = excluded.timestamp WHERE latest_metrics.step < excluded.step OR "
            "(latest_metrics.step = excluded.step AND latest_metrics.timestamp <= excluded.timestamp)"
        )

    def append(self, points: Sequence[MetricPoint], *, retry_forever: bool = False) -> None:
        """Append points in one transaction; points of runs that no longer exist are dropped."""
        if not points:
            return
        try:
            self.db.transact(lambda conn: self._write(conn, points), retry_forever=retry_forever)
        except IntegrityError:
            # A run was purged (or never existed): keep the points of the runs that do exist.
            self.forget()
            alive = self._existing_runs(p[0] for p in points)
            kept = [p for p in points if p[0] in alive]
            if kept:
                self.db.transact(lambda conn: self._write(conn, kept), retry_forever=retry_forever)
            missing = {p[0] for p in points} - alive
            if missing and not retry_forever:
                raise NotFound(f"no run with id {sorted(missing)[0]!r}") from None

    def history(self, run_id: str, key: str) -> list[Metric]:
        """Every point of one metric of one run, ordered by step, then time, then logging order."""
        m, s = t.metrics.c, t.latest_metrics.c
        with self.db.read() as conn:
            rows = conn.execute(
                select(m.value, m.step, m.timestamp)
                .join(t.latest_metrics, s.series_id == m.series_id)
                .where(s.run_id == run_id, s.key == key)
                .order_by(m.step, m.timestamp, m.point_id)
            ).all()
        return [Metric(key, math.nan if v is None else v, step, ts) for v, step, ts in rows]

    def forget(self) -> None:
        """Drop cached series ids (after a purge, and in a forked child)."""
        with self._lock:
            self._series = {}

    def _write(self, conn: Connection, points: Sequence[MetricPoint]) -> None:
        latest: dict[tuple[str, str], MetricPoint] = {}
        for point in points:
            current = latest.get((point[0], point[1]))
            if current is None or (point[3], point[4]) >= (current[3], current[4]):
                latest[(point[0], point[1])] = point
        self._advance_latest(conn, list(latest.values()))
        series = self._series_ids(conn, latest.keys())
        isnan = math.isnan
        rows = [(series[(r, k)], None if isnan(v) else v, s, ts) for r, k, v, s, ts in points]
        conn.exec_driver_sql(self._insert_points, rows)

    def _advance_latest(self, conn: Connection, latest: list[MetricPoint]) -> None:
        """Create missing series and move each series' latest value forward (never backward)."""
        isnan = math.isnan
        conn.exec_driver_sql(
            self._upsert_latest, [(r, k, None if isnan(v) else v, s, ts) for r, k, v, s, ts in latest]
        )

    def _series_ids(self, conn: Connection, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        with self._lock:
            known = self._series
            missing = [p for p in pairs if p not in known]
        if missing:
            c = t.latest_metrics.c
            found = conn.execute(
                select(c.run_id, c.key, c.series_id).where(tuple_(c.run_id, c.key).in_(missing))
            ).all()
            with self._lock:
                self._series = known = {**self._series, **{(r, k): sid for r, k, sid in found}}
        return known

    def _existing_runs(self, run_ids: Iterable[str]) -> set[str]:
        ids = list(set(run_ids))
        with self.db.read() as conn:
            return set(conn.execute(select(t.runs.c.run_id).where(t.runs.c.run_id.in_(ids))).scalars())
