"""The parts of MLflow's tracking model LoopML's tracking store does not expose: experiment tags, renaming and
soft-deleting experiments, renaming runs, ending a run at the time the client gives, and the step and time of
each run's latest metric values (MLflow's `Run.data.metrics` carries them). One transaction per change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from loopml.core.clock import now_ms
from loopml.core.errors import Conflict, NotFound
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.database import Database
from loopml.tracking.records import Lifecycle, Metric, RunStatus
from loopml.tracking.rows import require_run
from loopml.tracking.values import check_name, tag_value


def experiment_tags(db: Database, experiment_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """Tags per experiment (experiments without tags are left out)."""
    found: dict[str, dict[str, str]] = {}
    if not experiment_ids:
        return found
    c = t.experiment_tags.c
    with db.read() as conn:
        rows = conn.execute(
            select(c.experiment_id, c.key, c.value).where(c.experiment_id.in_(experiment_ids))
        )
        for experiment_id, key, value in rows:
            found.setdefault(experiment_id, {})[key] = value
    return found


def set_experiment_tags(db: Database, experiment_id: str, tags: Mapping[str, str]) -> None:
    """Add or replace tags of an experiment."""
    if not tags:
        return
    tags = {key: tag_value(key, value) for key, value in tags.items()}
    insert = sqlite.insert if db.is_sqlite else postgresql.insert

    def change(conn: Connection) -> None:
        _require_experiment(conn, experiment_id)
        statement = insert(t.experiment_tags).values(
            [{"experiment_id": experiment_id, "key": k, "value": v} for k, v in tags.items()]
        )
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=["experiment_id", "key"], set_={"value": statement.excluded.value}
            )
        )

    db.transact(change)


def delete_experiment_tag(db: Database, experiment_id: str, key: str) -> None:
    """Remove a tag; `NotFound` when the experiment has no such tag."""

    def change(conn: Connection) -> None:
        _require_experiment(conn, experiment_id)
        c = t.experiment_tags.c
        if not conn.execute(
            delete(t.experiment_tags).where(c.experiment_id == experiment_id, c.key == key)
        ).rowcount:
            raise NotFound(f"experiment {experiment_id} has no tag {key!r}")

    db.transact(change)


def rename_experiment(db: Database, experiment_id: str, name: str) -> None:
    """Give an experiment a new, unused name."""
    check_name("experiment", name)

    def change(conn: Connection) -> None:
        _require_experiment(conn, experiment_id)
        c = t.experiments.c
        if conn.execute(
            select(c.experiment_id).where(c.name == name, c.experiment_id != experiment_id)
        ).first():
            raise Conflict(f"an experiment named {name!r} already exists")
        conn.execute(update(t.experiments).where(c.experiment_id == experiment_id).values(name=name))

    db.transact(change)


def set_experiment_lifecycle(db: Database, experiment_id: str, lifecycle: Lifecycle) -> None:
    """Soft-delete an experiment with its runs, or restore it with them (as MLflow does)."""
    deleted = lifecycle is Lifecycle.DELETED
    now = now_ms() if deleted else None

    def change(conn: Connection) -> None:
        _require_experiment(conn, experiment_id)
        conn.execute(
            update(t.experiments)
            .where(t.experiments.c.experiment_id == experiment_id)
            .values(lifecycle=lifecycle.value, deleted_time=now)
        )
        conn.execute(
            update(t.runs)
            .where(t.runs.c.experiment_id == experiment_id)
            .values(lifecycle=lifecycle.value, deleted_time=now)
        )

    db.transact(change)


def update_run(
    db: Database,
    run_id: str,
    *,
    status: RunStatus | None = None,
    end_time: int | None = None,
    name: str | None = None,
    start_time: int | None = None,
) -> None:
    """Change a run's status (a final one keeps the client's end time, else now), times or name."""
    values: dict[str, object] = {} if start_time is None else {"start_time": start_time}
    if status is not None:
        values["status"] = status.value
        if status is RunStatus.RUNNING:
            values["end_time"] = None
        else:
            values["end_time"] = end_time if end_time is not None else now_ms()
    elif end_time is not None:
        values["end_time"] = end_time
    if name is not None:
        values["name"] = check_name("run", name)
    if not values:
        return

    def change(conn: Connection) -> None:
        require_run(conn, run_id)
        conn.execute(update(t.runs).where(t.runs.c.run_id == run_id).values(**values))

    db.transact(change)


def latest_points(db: Database, run_ids: Sequence[str]) -> dict[str, list[Metric]]:
    """Each run's latest value of every metric, with its step and time (NaN for a NULL value)."""
    found: dict[str, list[Metric]] = {run_id: [] for run_id in run_ids}
    if not run_ids:
        return found
    c = t.latest_metrics.c
    with db.read() as conn:
        rows = conn.execute(
            select(c.run_id, c.key, c.value, c.step, c.timestamp)
            .where(c.run_id.in_(list(run_ids)))
            .order_by(c.key)
        )
        for run_id, key, value, step, timestamp in rows:
            found[run_id].append(Metric(key, float("nan") if value is None else value, step, timestamp))
    return found


def _require_experiment(conn: Connection, experiment_id: str) -> None:
    if not conn.execute(
        select(t.experiments.c.experiment_id).where(t.experiments.c.experiment_id == experiment_id)
    ).first():
        raise NotFound(f"no experiment with id {experiment_id!r}")
