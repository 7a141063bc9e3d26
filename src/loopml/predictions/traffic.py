"""Live traffic of a model's versions, as the deployments pages show it: how many requests each version
answered and how many failed (`request_counts`, summed in the database), and how long they took (the
prediction log's `latency_ms`, read alone from the segments of a bounded window). Nothing here writes.

    totals = request_totals(tracker, start_ms=now - HOUR_MS, end_ms=now)          # every model, one query
    minutes = request_minutes(tracker, "fraud", start_ms=now - 3 * HOUR_MS, end_ms=now)
    sample = latency_sample(tracker, "fraud", start_ms=now - HOUR_MS, end_ms=now, max_rows=200_000)

Request counts are per UTC minute, so a window is the minutes starting in it: the page's "last 5 minutes"
is the current minute and the four before it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import func, select

from loopml.predictions.records import LATENCY_MS, TIME_MS
from loopml.predictions.segments import segments, stores_of
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.lookups import model_id_of

if TYPE_CHECKING:
    from loopml.storage.stores import Stores
    from loopml.tracking.tracker import Tracker

logger = logging.getLogger("loopml.predictions")


def request_totals(
    project: Tracker | Stores,
    *,
    start_ms: int,
    end_ms: int,
    models: Collection[str] | None = None,
) -> dict[tuple[str, int], dict[int, int]]:
    """{(model, version): {HTTP status: requests}} in the minutes starting in [start_ms, end_ms), of every
    model (or of `models`), summed by the database in one query."""
    c = t.request_counts.c
    m = t.registered_models.c
    query = (
        select(m.name, c.version, c.status, func.sum(c.requests))
        .join(t.registered_models, m.model_id == c.model_id)
        .where(c.minute_time >= start_ms, c.minute_time < end_ms)
        .group_by(m.name, c.version, c.status)
    )
    if models is not None:
        query = query.where(m.name.in_(list(models)))
    with stores_of(project).db.read() as conn:
        rows = conn.execute(query).all()
    found: dict[tuple[str, int], dict[int, int]] = {}
    for name, version, status, requests in rows:
        found.setdefault((str(name), int(version)), {})[int(status)] = int(requests)
    return found


def request_minutes(
    project: Tracker | Stores, model: str, *, start_ms: int, end_ms: int
) -> list[tuple[int, int, int, int]]:
    """(version, minute start, HTTP status, requests) of `model` in the minutes starting in [start_ms,
    end_ms), oldest minute first: at most one row per version, minute and status, so a day of a model's
    traffic is a few thousand rows."""
    c = t.request_counts.c
    with stores_of(project).db.read() as conn:
        rows = conn.execute(
            select(c.version, c.minute_time, c.status, c.requests)
            .where(
                c.model_id == model_id_of(conn, model),
                c.minute_time >= start_ms,
                c.minute_time < end_ms,
            )
            .order_by(c.minute_time, c.version, c.status)
        ).all()
    return [(int(v), int(minute), int(status), int(n)) for v, minute, status, n in rows]


@dataclass(frozen=True)
class LatencySample:
    """Serving latencies of the logged predictions of a window: `time_ms`, `latency_ms` (NaN where a server
    logged none) and `version`, one entry per prediction.

    The newest segments are read first, until `max_rows`: `complete` is False when older predictions were
    left out, and then the sample holds every prediction from `since_ms` on (and none before), so numbers
    over [since_ms, end) are exact. `unreadable` counts segments whose file could not be read.
    """

    time_ms: np.ndarray
    latency_ms: np.ndarray
    version: np.ndarray
    since_ms: int
    complete: bool
    unreadable: int = 0

    @property
    def rows(self) -> int:
        """Predictions in the sample."""
        return len(self.time_ms)


def latency_sample(
    project: Tracker | Stores,
    model: str,
    *,
    start_ms: int,
    end_ms: int,
    max_rows: int,
    versions: Collection[int] | None = None,
) -> LatencySample:
    """The latencies of the predictions `model` served (not batch-scored) in [start_ms, end_ms), newest
    segments first, at most about `max_rows` of them (see `LatencySample`). Only the time and latency
    columns of each segment file are read, not the inputs and outputs."""
    stores = stores_of(project)
    found = segments(stores, model, start_ms=start_ms, end_ms=end_ms, source="serve")
    if versions is not None:
        wanted = set(versions)
        found = [s for s in found if s.version in wanted]
    # Newest last prediction first: every segment not read then ends before the ones read, so the sample is
    # complete from just after the newest unread segment's last prediction.
    found.sort(key=lambda s: (s.end_time, s.start_time), reverse=True)
    tables: list[pa.Table] = []
    rows = unreadable = 0
    since_ms, complete = start_ms, True
    for segment in found:
        if rows >= max_rows:
            since_ms, complete = max(start_ms, segment.end_time + 1), False
            break
        try:
            with stores.blobs.open(segment.digest) as stream:
                table = pq.read_table(stream, columns=[TIME_MS, LATENCY_MS])
        except Exception as error:  # a missing or damaged file must not take the page down
            unreadable += 1
            logger.warning("prediction log segment %s unreadable: %s", segment.segment_id, error)
            continue
        table = table.append_column(
            "version", pa.array(np.full(table.num_rows, segment.version, dtype=np.int64))
        )
        tables.append(table.select([TIME_MS, LATENCY_MS, "version"]))
        rows += table.num_rows
    if not tables:
        empty = np.array([], dtype=np.int64)
        return LatencySample(empty, np.array([], dtype=np.float64), empty, since_ms, complete, unreadable)
    joined = pa.concat_tables(tables, promote_options="permissive")
    times = joined.column(TIME_MS)
    keep = pc.and_(pc.greater_equal(times, since_ms), pc.less(times, end_ms))
    joined = joined.filter(keep)
    return LatencySample(
        time_ms=joined.column(TIME_MS).to_numpy().astype(np.int64, copy=False),
        latency_ms=np.asarray(
            joined.column(LATENCY_MS).cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
        ),
        version=joined.column("version").to_numpy().astype(np.int64, copy=False),
        since_ms=since_ms,
        complete=complete,
        unreadable=unreadable,
    )
