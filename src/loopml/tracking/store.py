"""Tracking records in the metadata database: experiments, runs, params, tags, metrics, artifacts, inputs.

One method is one logical change and one transaction. The team server (a later issue) serves this same
interface over HTTP, so callers depend on the method names and record types here, not on SQL.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from loopml.core.clock import now_ms
from loopml.core.errors import InvalidInput, NotFound, ParamConflict
from loopml.core.ids import is_id, new_id
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.database import Database
from loopml.tracking.attachments import RunAttachments
from loopml.tracking.metric_log import MetricLog
from loopml.tracking.records import (
    Experiment,
    GitInfo,
    Lifecycle,
    Run,
    RunStatus,
)
from loopml.tracking.rows import experiment_from_row, require_run, run_from_row
from loopml.tracking.values import check_name


class TrackingStore:
    """Experiment-tracking records in one metadata database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.metrics = MetricLog(db)
        self.attachments = RunAttachments(db)
        self._known_environments: set[str] = set()  # stored already: skip re-sending the package list
        self._insert = sqlite.insert if db.is_sqlite else postgresql.insert

    # -- experiments ------------------------------------------------------------------------------------

    def create_experiment(self, name: str, description: str | None = None) -> Experiment:
        """A new experiment; the name must be unused."""
        check_name("experiment", name)
        experiment = Experiment(new_id(), name, Lifecycle.ACTIVE, now_ms(), description)

        def change(conn: Connection) -> None:
            if conn.execute(
                select(t.experiments.c.experiment_id).where(t.experiments.c.name == name)
            ).first():
                raise InvalidInput(f"an experiment named {name!r} already exists")
            conn.execute(
                t.experiments.insert().values(
                    experiment_id=experiment.experiment_id,
                    name=name,
                    description=description,
                    created_time=experiment.created_time,
                )
            )

        self.db.transact(change)
        return experiment

    def get_or_create_experiment(self, name: str) -> Experiment:
        """The experiment with this name, created if missing (safe when processes race to create it)."""
        found = self.find_experiment(name)
        if found is not None:
            return found
        try:
            return self.create_experiment(name)
        except (InvalidInput, IntegrityError):
            found = self.find_experiment(name)
            if found is None:
                raise
            return found

    def experiment_for_run(self, id_or_name: str) -> Experiment:
        """The experiment a new run goes to: by id if one has it, else by name (created if missing)."""
        if is_id(id_or_name):
            with self.db.read() as conn:
                row = conn.execute(
                    select(t.experiments).where(t.experiments.c.experiment_id == id_or_name)
                ).first()
            if row is not None:
                return experiment_from_row(row)
        return self.get_or_create_experiment(id_or_name)

    def run_exists(self, run_id: str) -> None:
        """Raise `NotFound` unless the run exists (one indexed lookup)."""
        with self.db.read() as conn:
            require_run(conn, run_id)

    def find_experiment(self, name: str) -> Experiment | None:
        """The experiment with this name, or None."""
        with self.db.read() as conn:
            row = conn.execute(select(t.experiments).where(t.experiments.c.name == name)).first()
        return experiment_from_row(row) if row else None

    def get_experiment(self, experiment_id: str) -> Experiment:
        """The experiment with this id or name; `NotFound` otherwise."""
        with self.db.read() as conn:
            row = conn.execute(
                select(t.experiments).where(
                    or_(t.experiments.c.experiment_id == experiment_id, t.experiments.c.name == experiment_id)
                )
            ).first()
        if row is None:
            raise NotFound(f"no experiment with id or name {experiment_id!r}")
        return experiment_from_row(row)

    def list_experiments(self) -> list[Experiment]:
        """Active experiments, oldest first."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(t.experiments)
                .where(t.experiments.c.lifecycle == Lifecycle.ACTIVE.value)
                .order_by(t.experiments.c.created_time)
            ).all()
        return [experiment_from_row(r) for r in rows]

    # -- runs -------------------------------------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str,
        *,
        name: str | None = None,
        parent_run_id: str | None = None,
        tags: dict[str, str] | None = None,
        note: str | None = None,
        user: str | None = None,
        entry_point: str | None = None,
        git: GitInfo | None = None,
        git_diff: tuple[str, bool] | None = None,
        environment: tuple[str, str, str, dict[str, str]] | None = None,
    ) -> Run:
        """Start a run: one transaction records it with its code and environment capture."""
        run_id = new_id()
        name = check_name("run", name) if name is not None else f"run-{run_id[:8]}"
        git = git or GitInfo()
        start = now_ms()

        def change(conn: Connection) -> None:
            if (
                conn.execute(
                    select(t.experiments.c.experiment_id).where(
                        t.experiments.c.experiment_id == experiment_id
                    )
                ).first()
                is None
            ):
                raise NotFound(f"no experiment with id {experiment_id!r}")
            if parent_run_id is not None:
                require_run(conn, parent_run_id)
            if git_diff is not None and git.diff_hash is not None:
                conn.execute(
                    self._insert(t.code_diffs)
                    .values(diff_hash=git.diff_hash, diff=git_diff[0], truncated=git_diff[1])
                    .on_conflict_do_nothing()
                )
            if environment is not None and environment[0] not in self._known_environments:
                env_hash, python, platform, packages = environment
                conn.execute(
                    self._insert(t.environments)
                    .values(
                        environment_hash=env_hash,
                        python_version=python,
                        platform=platform,
                        packages=json.dumps(packages, sort_keys=True),
                    )
                    .on_conflict_do_nothing()
                )
            conn.execute(  # parameters, not .values(): the compiled statement is then reused (hot path)
                t.runs.insert(),
                {
                    "run_id": run_id,
                    "experiment_id": experiment_id,
                    "parent_run_id": parent_run_id,
                    "name": name,
                    "status": RunStatus.RUNNING.value,
                    "start_time": start,
                    "note": note,
                    "user_name": user,
                    "entry_point": entry_point,
                    "git_commit": git.commit,
                    "git_branch": git.branch,
                    "git_dirty": git.dirty,
                    "diff_hash": git.diff_hash if git_diff is not None else None,
                    "environment_hash": environment[0] if environment else None,
                },
            )
            if tags:
                conn.execute(
                    t.tags.insert(), [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()]
                )

        self.db.transact(change)
        if environment is not None:
            self._known_environments.add(environment[0])
        # Built from what was just inserted: re-reading it would cost four queries per run start.
        return Run(
            run_id=run_id,
            experiment_id=experiment_id,
            name=name,
            status=RunStatus.RUNNING,
            start_time=start,
            end_time=None,
            lifecycle=Lifecycle.ACTIVE,
            parent_run_id=parent_run_id,
            note=note,
            user=user,
            entry_point=entry_point,
            git=GitInfo(git.commit, git.branch, git.dirty, git.diff_hash if git_diff is not None else None),
            environment_hash=environment[0] if environment else None,
            tags=dict(tags or {}),
        )

    def get_run(self, run_id: str) -> Run:
        """A run with its params, tags and latest metrics; `NotFound` for an unknown id."""
        runs = self._load_runs([run_id])
        if not runs:
            raise NotFound(f"no run with id {run_id!r}")
        return runs[0]

    def set_status(self, run_id: str, status: RunStatus, *, error: str | None = None) -> None:
        """Change a run's status; a final status also sets the end time."""
        final = status is not RunStatus.RUNNING
        values: dict[str, Any] = {"status": status.value, "end_time": now_ms() if final else None}
        if error is not None:
            values["error"] = error[:MAX_ERROR]

        def change(conn: Connection) -> None:
            require_run(conn, run_id)
            conn.execute(update(t.runs).where(t.runs.c.run_id == run_id).values(**values))

        self.db.transact(change)

    def set_note(self, run_id: str, note: str) -> None:
        """Replace a run's free-text note."""

        def change(conn: Connection) -> None:
            require_run(conn, run_id)
            conn.execute(update(t.runs).where(t.runs.c.run_id == run_id).values(note=note))

        self.db.transact(change)

    def set_lifecycle(self, run_ids: Sequence[str], lifecycle: Lifecycle) -> None:
        """Soft-delete or restore runs (all or none: an unknown id changes nothing)."""

        def change(conn: Connection) -> None:
            for run_id in run_ids:
                require_run(conn, run_id)
            conn.execute(
                update(t.runs)
                .where(t.runs.c.run_id.in_(run_ids))
                .values(
                    lifecycle=lifecycle.value,
                    deleted_time=now_ms() if lifecycle is Lifecycle.DELETED else None,
                )
            )

        self.db.transact(change)

    def purge_deleted(self, older_than_ms: int | None = None, *, dry_run: bool = False) -> list[str]:
        """Remove soft-deleted runs for good (with their params, metrics, artifact records); returns their ids."""
        cutoff = now_ms() - (older_than_ms or 0)

        def change(conn: Connection) -> list[str]:
            ids = list(
                conn.execute(
                    select(t.runs.c.run_id).where(
                        t.runs.c.lifecycle == Lifecycle.DELETED.value, t.runs.c.deleted_time <= cutoff
                    )
                ).scalars()
            )
            if ids and not dry_run:
                conn.execute(update(t.runs).where(t.runs.c.parent_run_id.in_(ids)).values(parent_run_id=None))
                series = select(t.latest_metrics.c.series_id).where(t.latest_metrics.c.run_id.in_(ids))
                conn.execute(delete(t.metrics).where(t.metrics.c.series_id.in_(series)))
                for table in (t.latest_metrics, t.params, t.tags, t.artifacts, t.run_inputs):
                    conn.execute(delete(table).where(table.c.run_id.in_(ids)))
                conn.execute(delete(t.runs).where(t.runs.c.run_id.in_(ids)))
            return ids

        purged = self.db.transact(change)
        self.metrics.forget()
        return purged

    # -- params and tags --------------------------------------------------------------------------------

    def log_params(self, run_id: str, params: dict[str, tuple[str, str]]) -> None:
        """Record params {key: (text, json)}; re-logging the same value is a no-op, another value a conflict."""
        if not params:
            return

        def change(conn: Connection) -> None:
            require_run(conn, run_id)
            existing = dict(
                conn.execute(
                    select(t.params.c.key, t.params.c.value_json).where(
                        t.params.c.run_id == run_id, t.params.c.key.in_(list(params))
                    )
                ).all()
            )
            for key, old in existing.items():
                if old != params[key][1]:
                    raise ParamConflict(
                        f"param {key!r} of run {run_id} is already {old}; cannot change it to {params[key][1]} "
                        "(params are immutable within a run: start a new run or log a metric instead)"
                    )
            new = [
                {"run_id": run_id, "key": k, "value": text, "value_json": js}
                for k, (text, js) in params.items()
                if k not in existing
            ]
            if new:
                conn.execute(t.params.insert(), new)

        self.db.transact(change)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """Set (or overwrite) tags of a run."""
        if not tags:
            return

        def change(conn: Connection) -> None:
            require_run(conn, run_id)
            stmt = self._insert(t.tags).values(
                [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()]
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["run_id", "key"], set_={"value": stmt.excluded.value}
                )
            )

        self.db.transact(change)

    def delete_tag(self, run_id: str, key: str) -> None:
        """Remove a tag; `NotFound` if the run has no such tag."""

        def change(conn: Connection) -> None:
            result = conn.execute(delete(t.tags).where(t.tags.c.run_id == run_id, t.tags.c.key == key))
            if result.rowcount == 0:
                raise NotFound(f"run {run_id} has no tag {key!r}")

        self.db.transact(change)

    # -- metrics ----------------------------------------------------------------------------------------

    def metric_keys(self, run_id: str) -> list[str]:
        """Names of the metrics a run has logged."""
        with self.db.read() as conn:
            return sorted(
                conn.execute(
                    select(t.latest_metrics.c.key).where(t.latest_metrics.c.run_id == run_id)
                ).scalars()
            )

    # -- loading ----------------------------------------------------------------------------------------

    def _load_runs(self, run_ids: Sequence[str], conn: Connection | None = None) -> list[Run]:
        """Runs by id, in the given order, with params, tags and latest metrics (four queries in all)."""
        if not run_ids:
            return []
        if conn is None:
            with self.db.read() as own:
                return self._load_runs(run_ids, own)
        ids = list(run_ids)
        rows = {r.run_id: r for r in conn.execute(select(t.runs).where(t.runs.c.run_id.in_(ids)))}
        params: dict[str, dict[str, str]] = {}
        for run_id, key, value in conn.execute(
            select(t.params.c.run_id, t.params.c.key, t.params.c.value).where(t.params.c.run_id.in_(ids))
        ):
            params.setdefault(run_id, {})[key] = value
        tags: dict[str, dict[str, str]] = {}
        for run_id, key, value in conn.execute(
            select(t.tags.c.run_id, t.tags.c.key, t.tags.c.value).where(t.tags.c.run_id.in_(ids))
        ):
            tags.setdefault(run_id, {})[key] = value
        metrics: dict[str, dict[str, float]] = {}
        lm = t.latest_metrics.c
        for run_id, key, value in conn.execute(select(lm.run_id, lm.key, lm.value).where(lm.run_id.in_(ids))):
            metrics.setdefault(run_id, {})[key] = math.nan if value is None else value
        return [
            run_from_row(rows[i], params.get(i, {}), tags.get(i, {}), metrics.get(i, {}))
            for i in ids
            if i in rows
        ]

    def experiment_activity(self) -> dict[str, tuple[int, int | None]]:
        """Per experiment id: its active runs and the start time of the newest (one query, for overviews)."""
        r = t.runs.c
        query = (
            select(r.experiment_id, func.count(), func.max(r.start_time))
            .where(r.lifecycle == Lifecycle.ACTIVE.value)
            .group_by(r.experiment_id)
        )
        with self.db.read() as conn:
            return {e: (int(n), last) for e, n, last in conn.execute(query)}

    def count_runs(self) -> int:
        """Number of runs in the store (all experiments, deleted included)."""
        with self.db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(t.runs)).scalar_one())


MAX_ERROR = 10_000
