"""Request counts: how many requests each model version answered, per minute and HTTP status.

A failed request (a malformed body, a model that raised, a timeout) has no prediction to log, so the segments
alone cannot give an error rate. The server counts every request it routed to a version in memory
(`RequestCounts.add`, a dict update under a lock); the prediction log's writer thread adds the counts to
`request_counts` in one transaction about once a second and on flush. Minutes are UTC-aligned, so an hour or
a day window is an exact sum of them.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects import postgresql, sqlite

from loopml.predictions.segments import stores_of
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.lookups import model_id_of

if TYPE_CHECKING:
    from loopml.storage.stores import Stores
    from loopml.tracking.tracker import Tracker

MINUTE_MS = 60_000

_Key = tuple[str, int, int, int]  # model, version, minute start (epoch ms), HTTP status


class RequestCounts:
    """Request counts waiting to be written; safe to add to from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[_Key] = Counter()

    def add(self, model: str, version: int, time_ms: int, status: int) -> None:
        """Count one request to `model` version `version` that arrived at `time_ms` and got `status`."""
        key = (model, version, time_ms - time_ms % MINUTE_MS, status)
        with self._lock:
            self._counts[key] += 1

    def take(self) -> Counter[_Key]:
        """The counts so far, leaving none behind."""
        with self._lock:
            taken, self._counts = self._counts, Counter()
        return taken

    def give_back(self, counts: Counter[_Key]) -> None:
        """Return counts a failed write took, so the next write carries them."""
        with self._lock:
            self._counts.update(counts)


def write_request_counts(project: Tracker | Stores, counts: Counter[_Key]) -> None:
    """Add `counts` to the store in one transaction (two servers adding to the same minute both count)."""
    if not counts:
        return

    def change(conn: Connection) -> None:
        ids = {name: model_id_of(conn, name) for name in {key[0] for key in counts}}
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        for (model, version, minute, status), requests in counts.items():
            statement = insert(t.request_counts).values(
                model_id=ids[model], version=version, minute_time=minute, status=status, requests=requests
            )
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["model_id", "version", "minute_time", "status"],
                    set_={"requests": t.request_counts.c.requests + statement.excluded.requests},
                )
            )

    stores_of(project).db.transact(change)


def request_counts(
    project: Tracker | Stores, model: str, *, version: int, start_ms: int, end_ms: int
) -> dict[int, int]:
    """{HTTP status: requests} of `model` version `version` in minutes starting in [start_ms, end_ms)."""
    c = t.request_counts.c
    with stores_of(project).db.read() as conn:
        rows = conn.execute(
            select(c.status, func.sum(c.requests))
            .where(
                c.model_id == model_id_of(conn, model),
                c.version == version,
                c.minute_time >= start_ms,
                c.minute_time < end_ms,
            )
            .group_by(c.status)
        ).all()
    return {int(status): int(requests) for status, requests in rows}


def request_spans(project: Tracker | Stores, model: str) -> list[tuple[int, int, int]]:
    """(version, first minute, last minute) of the counted requests of each version of `model`."""
    c = t.request_counts.c
    with stores_of(project).db.read() as conn:
        rows = conn.execute(
            select(c.version, func.min(c.minute_time), func.max(c.minute_time))
            .where(c.model_id == model_id_of(conn, model))
            .group_by(c.version)
        ).all()
    return [(int(v), int(first), int(last)) for v, first, last in rows]


def request_summary(by_status: dict[int, int]) -> dict[str, float] | None:
    """Totals and error rates of a window's counts (None when no request was counted): `requests`,
    `failed` (any status >= 400) and `error_rate`, and the same for client (4xx) and server (5xx) errors."""
    total = sum(by_status.values())
    if total == 0:
        return None
    client = sum(n for status, n in by_status.items() if 400 <= status < 500)
    server = sum(n for status, n in by_status.items() if status >= 500)
    return {
        "requests": total,
        "failed": client + server,
        "client_errors": client,
        "server_errors": server,
        "error_rate": (client + server) / total,
        "client_error_rate": client / total,
        "server_error_rate": server / total,
    }
