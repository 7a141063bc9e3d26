"""Retention of the prediction log: drop segments whose newest prediction is older than the cut-off, and the
request counts of minutes before it.

Pruning deletes the index rows only, in one transaction. The Parquet files become unreferenced and `loopml gc`
removes them after its grace period: gc counts `prediction_segments.blob_digest` as a reference, so a file is
removed only once no segment (of any model) names it, and never while a writer is between storing a file and
indexing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, delete, func, select

from loopml.core.clock import now_ms as wall_clock_ms
from loopml.core.errors import InvalidInput
from loopml.predictions.segments import stores_of
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.lookups import model_id_of

if TYPE_CHECKING:
    from loopml.storage.stores import Stores
    from loopml.tracking.tracker import Tracker

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Pruned:
    """What `prune` removed (or, with `dry_run`, would remove): segments, their rows, and the cut-off."""

    segments: int
    rows: int
    bytes: int
    cutoff_ms: int
    dry_run: bool = False


def prune(
    project: Tracker | Stores,
    model: str | None = None,
    *,
    older_than_days: float = 30,
    now_ms: int | None = None,
    dry_run: bool = False,
) -> Pruned:
    """Remove the segments (of `model`, or of every model) whose last prediction is older than
    `older_than_days` before `now_ms` (default: now)."""
    if not older_than_days >= 0:
        raise InvalidInput(f"older_than_days must be 0 or more, got {older_than_days}")
    cutoff = (wall_clock_ms() if now_ms is None else now_ms) - int(older_than_days * DAY_MS)
    s = t.prediction_segments.c

    def change(conn: Connection) -> Pruned:
        condition = s.end_time < cutoff
        counted = t.request_counts.c.minute_time < cutoff
        if model is not None:
            model_id = model_id_of(conn, model)
            condition = condition & (s.model_id == model_id)
            counted = counted & (t.request_counts.c.model_id == model_id)
        count, rows, size = conn.execute(
            select(func.count(), func.coalesce(func.sum(s.rows), 0), func.coalesce(func.sum(s.bytes), 0))
            .select_from(t.prediction_segments)
            .where(condition)
        ).one()
        if not dry_run:
            conn.execute(delete(t.prediction_segments).where(condition))
            conn.execute(delete(t.request_counts).where(counted))  # the minutes' counts go with them
        return Pruned(int(count), int(rows), int(size), cutoff, dry_run)

    return stores_of(project).db.transact(change)


def forget(project: Tracker | Stores, segment_ids: Sequence[str]) -> int:
    """Remove the segments with these ids in one transaction (a failed batch job undoing what it logged);
    returns how many there were. Their files are left to `loopml gc`, as with `prune`."""
    ids = list(segment_ids)
    if not ids:
        return 0

    def change(conn: Connection) -> int:
        table = t.prediction_segments
        removed = conn.execute(delete(table).where(table.c.segment_id.in_(ids)))
        return int(removed.rowcount)

    return stores_of(project).db.transact(change)
