"""Searching runs: filter language + order by + pagination, in one query for the page and four to load it."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select

from loopml.core.errors import InvalidInput
from loopml.storage.metadata import schema as t
from loopml.tracking.filter import compile_filter, order_by_clauses, parse_filter, parse_order_by
from loopml.tracking.records import Lifecycle, Run
from loopml.tracking.store import TrackingStore

MAX_RESULTS_LIMIT = 50_000
MAX_OFFSET = 2**53


@dataclass(frozen=True)
class RunPage:
    """One page of search results; pass `next_page_token` back to get the next page (None at the end)."""

    runs: list[Run]
    next_page_token: str | None


def search_runs(
    store: TrackingStore,
    experiment_ids: Sequence[str] | None = None,
    filter: str | None = None,
    *,
    order_by: Sequence[str] | str | None = None,
    max_results: int = 1000,
    page_token: str | None = None,
    include_deleted: bool = False,
) -> RunPage:
    """Runs matching `filter` (e.g. `metrics.auc > 0.9 and params.model = "rf"`), sorted by `order_by`."""
    if not isinstance(max_results, int) or not 0 < max_results <= MAX_RESULTS_LIMIT:
        raise InvalidInput(
            f"max_results must be an integer from 1 to {MAX_RESULTS_LIMIT}, got {max_results!r}"
        )
    offset = _decode_token(page_token)
    query = _matching(store, experiment_ids, filter, include_deleted)
    query = query.order_by(*order_by_clauses(parse_order_by(order_by))).offset(offset).limit(max_results + 1)
    with store.db.read() as conn:
        run_ids = list(conn.execute(query).scalars())
        more = len(run_ids) > max_results
        runs = store._load_runs(run_ids[:max_results], conn)
    return RunPage(runs, _encode_token(offset + max_results) if more else None)


def count_runs(
    store: TrackingStore,
    experiment_ids: Sequence[str] | None = None,
    filter: str | None = None,
    *,
    include_deleted: bool = False,
) -> int:
    """How many runs `search_runs` would find over all its pages."""
    found = _matching(store, experiment_ids, filter, include_deleted).subquery()
    with store.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(found)).scalar_one())


def _matching(
    store: TrackingStore,
    experiment_ids: Sequence[str] | str | None,
    filter: str | None,
    include_deleted: bool,
) -> Select[Any]:
    condition = compile_filter(parse_filter(filter))
    query = select(t.runs.c.run_id)
    if isinstance(experiment_ids, str):  # one experiment given bare, not as a list
        experiment_ids = [experiment_ids]
    if experiment_ids:
        ids = [store.get_experiment(e).experiment_id for e in experiment_ids]
        query = query.where(t.runs.c.experiment_id.in_(ids))
    if not include_deleted:
        query = query.where(t.runs.c.lifecycle == Lifecycle.ACTIVE.value)
    if condition is not None:
        query = query.where(condition)
    return query


def page_token(offset: int) -> str | None:
    """The token that starts a search at its `offset`-th run (None for the first)."""
    return _encode_token(offset) if offset else None


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError):
        raise InvalidInput(
            f"invalid page token {token!r}: pass the next_page_token of an earlier search"
        ) from None
    if not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise InvalidInput(f"invalid page token {token!r}: pass the next_page_token of an earlier search")
    return offset
