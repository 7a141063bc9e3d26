"""The append-only metric history: the hot path of tracking, written in large batches.

Each (run, key) pair is a series with a small integer id and its latest value (table `latest_metrics`);
points (table `metrics`) carry only the series id. A batch arrives grouped by series, so writing 100,000
points of one series is one `executemany` of the (value, step, timestamp) tuples exactly as they were
buffered, with no per-point Python work. Series ids are cached per process; a cache entry for a run purged
meanwhile is detected by the foreign key and dropped.
"""

from __future__ import annotations

import math
import operator
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, tuple_
from sqlalchemy.exc import IntegrityError

from loopml.core.errors import NotFound
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.database import Database
from loopml.tracking.records import Metric

# (value, step, timestamp): one buffered point; a batch maps each (run_id, key) series to its points in order.
MetricPoint = tuple[float, int, int]
SeriesBatch = dict[tuple[str, str], list[MetricPoint]]
_STEP_AND_TIME = operator.itemgetter(1, 2)


@dataclass(frozen=True)
class SeriesOverview:
    """A metric series as a chart draws it: `steps` and `values` (None where the value is NaN); when the
    series had more than the points asked for, each point is a bucket's mean and `low`/`high` its range."""

    key: str
    points: int  # points in the whole series
    steps: list[int]
    values: list[float | None]
    low: list[float | None] | None
    high: list[float | None] | None

    @property
    def downsampled(self) -> bool:
        return self.low is not None


def _columns(rows: Sequence[Any], width: int) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


class MetricLog:
    """Writes and reads metric points of runs."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._series: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        marker = "?" if db.engine.dialect.paramstyle == "qmark" else "%s"
        # The series id is an integer from the database, formatted in; the point values are bound.
        self._insert_points = f"INSERT INTO metrics (series_id, value, step, timestamp) VALUES ({{series}}, {marker}, {marker}, {marker})"
        # Plain SQL on the hot path: building the same statement with SQLAlchemy constructs costs more than
        # executing it. SQLite and PostgreSQL share this upsert syntax.
        self._upsert_latest = (
            "INSERT INTO latest_metrics (run_id, key, value, step, timestamp) "
            f"VALUES ({marker}, {marker}, {marker}, {marker}, {marker}) "
            "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value, step = excluded.step, "
            "timestamp = excluded.timestamp WHERE latest_metrics.step < excluded.step OR "
            "(latest_metrics.step = excluded.step AND latest_metrics.timestamp <= excluded.timestamp)"
        )

    def append(self, batch: SeriesBatch, *, retry_forever: bool = False) -> None:
        """Append a batch in one transaction; points of runs that no longer exist are dropped."""
        if not batch:
            return
        try:
            self.db.transact(lambda conn: self._write(conn, batch), retry_forever=retry_forever)
        except IntegrityError:
            # A run was purged (or never existed): keep the points of the runs that do exist.
            self.forget()
            alive = self._existing_runs(run_id for run_id, _ in batch)
            kept = {pair: points for pair, points in batch.items() if pair[0] in alive}
            if kept:
                self.db.transact(lambda conn: self._write(conn, kept), retry_forever=retry_forever)
            missing = {run_id for run_id, _ in batch} - alive
            if missing and not retry_forever:
                raise NotFound(f"no run with id {sorted(missing)[0]!r}") from None

    def write(self, conn: Connection, batch: SeriesBatch) -> None:
        """Append a batch inside the caller's transaction (the team server records the batch's id with it)."""
        self._write(conn, batch)

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

    def overview(self, run_id: str, key: str, max_points: int) -> SeriesOverview:
        """One metric of one run in at most `max_points` points, for charts: every point when it has no more,
        else equal-count buckets in step order, each its first step, mean, minimum and maximum (so a spike
        survives as the bucket's band). Bucketed by the database, so a long series never crosses the wire."""
        m, s = t.metrics.c, t.latest_metrics.c
        order = (m.step, m.timestamp, m.point_id)
        with self.db.read() as conn:
            series_id, count = conn.execute(
                select(
                    s.series_id, select(func.count()).where(m.series_id == s.series_id).scalar_subquery()
                ).where(s.run_id == run_id, s.key == key)
            ).one_or_none() or (None, 0)
            if series_id is None or count <= max_points:
                rows = conn.execute(select(m.step, m.value).where(m.series_id == series_id).order_by(*order))
                steps, values = _columns(rows.all(), 2)
                return SeriesOverview(key, count, steps, values, None, None)
            tiles = (
                select(m.step, m.value, func.ntile(max_points).over(order_by=order).label("tile"))
                .where(m.series_id == series_id)
                .subquery()
            )
            buckets = conn.execute(
                select(
                    func.min(tiles.c.step),
                    func.avg(tiles.c.value),
                    func.min(tiles.c.value),
                    func.max(tiles.c.value),
                )
                .group_by(tiles.c.tile)
                .order_by(tiles.c.tile)
            ).all()
        steps, means, lows, highs = _columns(buckets, 4)
        return SeriesOverview(key, count, steps, means, lows, highs)

    def forget(self) -> None:
        """Drop cached series ids (after a purge, and in a forked child)."""
        with self._lock:
            self._series = {}

    def _write(self, conn: Connection, batch: SeriesBatch) -> None:
        isnan = math.isnan
        # The latest point of a series: highest (step, timestamp), the last logged among equals.
        latest = []
        for (run_id, key), points in batch.items():
            value, step, timestamp = max(reversed(points), key=_STEP_AND_TIME)
            latest.append((run_id, key, None if isnan(value) else value, step, timestamp))
        latest.sort(
            key=operator.itemgetter(0, 1)
        )  # one lock order for all writers: no deadlocks on PostgreSQL
        conn.exec_driver_sql(self._upsert_latest, latest)
        series = self._series_ids(conn, batch.keys())
        if conn.dialect.driver == "psycopg":  # COPY: a third less server and database time than INSERTs
            self._copy(conn, batch, series)
            return
        for pair, points in batch.items():
            # SQLite stores a bound NaN as NULL by itself; PostgreSQL would keep NaN, which compares greater
            # than every number, so it gets an explicit NULL.
            rows = points if self.db.is_sqlite else [(None if isnan(v) else v, s, t) for v, s, t in points]
            conn.exec_driver_sql(self._insert_points.format(series=int(series[pair])), rows)

    @staticmethod
    def _copy(conn: Connection, batch: SeriesBatch, series: dict[tuple[str, str], int]) -> None:
        """The points with PostgreSQL's COPY, on the transaction's own connection (NaN as NULL, as above)."""
        isnan = math.isnan
        raw: Any = conn.connection.driver_connection
        with (
            raw.cursor() as cursor,
            cursor.copy("COPY metrics (series_id, value, step, timestamp) FROM STDIN") as copy,
        ):
            for pair, points in batch.items():
                series_id = int(series[pair])
                for value, step, timestamp in points:
                    copy.write_row((series_id, None if isnan(value) else value, step, timestamp))

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
