"""Mapping rows of the metadata tables to record types, and the existence check every write starts with."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, select

from loopml.core.errors import NotFound
from loopml.storage.metadata import schema as t
from loopml.tracking.records import Experiment, GitInfo, Lifecycle, Run, RunStatus


def require_run(conn: Connection, run_id: str) -> None:
    """Raise `NotFound` unless the run exists (inside the caller's transaction)."""
    if conn.execute(select(t.runs.c.run_id).where(t.runs.c.run_id == run_id)).first() is None:
        raise NotFound(f"no run with id {run_id!r}")


def experiment_from_row(row: Row[Any]) -> Experiment:
    """An experiment record from an `experiments` row."""
    return Experiment(
        row.experiment_id, row.name, Lifecycle(row.lifecycle), row.created_time, row.description
    )


def run_from_row(
    row: Row[Any], params: dict[str, str], tags: dict[str, str], metrics: dict[str, float]
) -> Run:
    """A run record from a `runs` row and its loaded params, tags and latest metrics."""
    return Run(
        run_id=row.run_id,
        experiment_id=row.experiment_id,
        name=row.name,
        status=RunStatus(row.status),
        start_time=row.start_time,
        end_time=row.end_time,
        lifecycle=Lifecycle(row.lifecycle),
        parent_run_id=row.parent_run_id,
        note=row.note,
        error=row.error,
        user=row.user_name,
        entry_point=row.entry_point,
        git=GitInfo(row.git_commit, row.git_branch, row.git_dirty, row.diff_hash),
        environment_hash=row.environment_hash,
        params=params,
        tags=tags,
        metrics=metrics,
    )
