"""Pipeline runs and step calls in the metadata database (tables `pipeline_runs`, `pipeline_steps`).

A step call that finishes is written in one transaction: its child run's end, its params, its output and
log artifacts and its step row. So a killed pipeline leaves each step either fully recorded or not at all,
and `resume` re-runs exactly the ones that are not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, Row, bindparam, select, update

from loopml.core.clock import now_ms
from loopml.core.errors import NotFound
from loopml.pipelines.records import CacheState, OutputRef, PipelineRunRecord, StepRecord, StepStatus
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.database import Database
from loopml.tracking.records import RunStatus
from loopml.tracking.values import param_forms

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

# Built once: these run for every step call, and a statement built per call costs more than its query.
_END_RUN = (
    update(t.runs)
    .where(t.runs.c.run_id == bindparam("b_run_id"))
    .values(status=bindparam("status"), end_time=bindparam("end_time"), error=bindparam("error"))
)
_CACHED = (
    select(t.pipeline_steps)
    .where(
        t.pipeline_steps.c.cache_key == bindparam("b_key"),
        t.pipeline_steps.c.status.in_([StepStatus.FINISHED.value, StepStatus.CACHED.value]),
        t.pipeline_steps.c.run_id.is_not(None),
    )
    .order_by(t.pipeline_steps.c.started_time.desc())
    .limit(5)
)


def pipeline_store(tracker: Tracker) -> PipelineStore:
    """The pipeline records of `tracker`'s project: its database, or the team server it talks to."""
    if tracker.remote:
        from loopml.pipelines.remote_store import RemotePipelineStore

        return cast("PipelineStore", RemotePipelineStore(tracker.store.http))  # type: ignore[attr-defined]
    return PipelineStore(tracker.stores.db)


class PipelineStore:
    """Reads and writes the pipeline tables; one transaction per logical change."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create_run(
        self,
        run_id: str,
        *,
        pipeline: str,
        params: Mapping[str, Any],
        executor: str,
        mode: str = "run",
        source_run_id: str | None = None,
    ) -> None:
        """Add the pipeline row of tracking run `run_id`."""
        row = {
            "run_id": run_id,
            "pipeline": pipeline,
            "params_json": json.dumps(params, sort_keys=True, default=str),
            "executor": executor,
            "mode": mode,
            "source_run_id": source_run_id,
            "created_time": now_ms(),
        }
        self.db.transact(lambda conn: conn.execute(t.pipeline_runs.insert(), row))

    def record_step(
        self,
        pipeline_run_id: str,
        record: StepRecord,
        *,
        params: Mapping[str, Any] | None = None,
        artifacts: Sequence[tuple[str, str, int]] = (),
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Write a step call that ended: its row, and (when it has a run) the run's end, params, artifacts."""
        row = {
            "pipeline_run_id": pipeline_run_id,
            "node": record.node,
            "run_id": record.run_id,
            "step": record.step,
            "status": record.status.value,
            "cache": record.cache.value,
            "cache_note": record.cache_note,
            "cache_key": record.cache_key,
            "key_json": json.dumps(record.key, sort_keys=True) if record.key is not None else None,
            "cached_from": record.cached_from,
            "upstream_json": json.dumps(list(record.upstream)),
            "outputs_json": json.dumps([o.to_dict() for o in record.outputs]),
            "attempts": record.attempts,
            "started_time": record.started_time,
            "duration_ms": record.duration_ms,
            "error": record.error,
        }
        param_rows = []
        for key, value in (params or {}).items():
            text, as_json = param_forms(key, value)
            param_rows.append({"run_id": record.run_id, "key": key, "value": text, "value_json": as_json})
        now = now_ms()

        def change(conn: Connection) -> None:
            if record.run_id is not None:
                status = RunStatus.FAILED if record.status is StepStatus.FAILED else RunStatus.FINISHED
                conn.execute(
                    _END_RUN,
                    {
                        "b_run_id": record.run_id,
                        "status": status.value,
                        "end_time": now,
                        "error": record.error,
                    },
                )
                if param_rows:
                    conn.execute(t.params.insert(), param_rows)
                if tags:
                    conn.execute(
                        t.tags.insert(),
                        [{"run_id": record.run_id, "key": k, "value": v} for k, v in tags.items()],
                    )
                if artifacts:
                    conn.execute(
                        t.artifacts.insert(),
                        [
                            {"run_id": record.run_id, "path": p, "digest": d, "size": s, "created_time": now}
                            for p, d, s in artifacts
                        ],
                    )
            conn.execute(t.pipeline_steps.insert(), row)

        self.db.transact(change)

    def carried_tags(self, run_id: str) -> dict[str, str]:
        """Tags a step run set about its outputs (`loopml.eval.*`, `loopml.split.*`): a call served from the
        cache carries them over, so e.g. the held-out dataset a split step registered stays findable."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(t.tags.c.key, t.tags.c.value).where(
                    t.tags.c.run_id == run_id,
                    t.tags.c.key.like("loopml.eval.%") | t.tags.c.key.like("loopml.split.%"),
                )
            ).all()
        return {row.key: row.value for row in rows}

    def set_result(self, run_id: str, result: Any) -> None:
        """Store the pipeline's return value (outputs as references)."""
        text = json.dumps(result, sort_keys=True)
        self.db.transact(
            lambda conn: conn.execute(
                update(t.pipeline_runs).where(t.pipeline_runs.c.run_id == run_id).values(result_json=text)
            )
        )

    def cached(self, cache_key: str) -> list[StepRecord]:
        """Step calls that ended well with `cache_key`, newest first (the caller checks their outputs)."""
        with self.db.read() as conn:
            return [_step_from_row(r) for r in conn.execute(_CACHED, {"b_key": cache_key})]

    def previous_call(
        self, step: str, node: str, before: int, *, pipeline: str | None = None
    ) -> StepRecord | None:
        """The latest earlier call of `step` at `node` that ended well and has a cache key (for `explain`):
        from a run of `pipeline` when there is one, else from any pipeline."""
        query = (
            select(t.pipeline_steps)
            .join(t.pipeline_runs, t.pipeline_runs.c.run_id == t.pipeline_steps.c.pipeline_run_id)
            .where(
                t.pipeline_steps.c.step == step,
                t.pipeline_steps.c.node == node,
                t.pipeline_steps.c.key_json.is_not(None),
                t.pipeline_steps.c.status.in_([StepStatus.FINISHED.value, StepStatus.CACHED.value]),
                t.pipeline_steps.c.started_time < before,
            )
            .order_by(t.pipeline_steps.c.started_time.desc())
            .limit(1)
        )
        with self.db.read() as conn:
            row = None
            if pipeline is not None:
                row = conn.execute(query.where(t.pipeline_runs.c.pipeline == pipeline)).first()
            if row is None:
                row = conn.execute(query).first()
        return _step_from_row(row) if row is not None else None

    def get_run(self, run_id: str) -> PipelineRunRecord:
        """A pipeline run with its step calls; `NotFound` when `run_id` is not a pipeline run."""
        with self.db.read() as conn:
            head = conn.execute(
                select(t.pipeline_runs, t.runs.c.status, t.runs.c.end_time)
                .join(t.runs, t.runs.c.run_id == t.pipeline_runs.c.run_id)
                .where(t.pipeline_runs.c.run_id == run_id)
            ).first()
            if head is None:
                raise NotFound(f"no pipeline run with id {run_id!r} (list them with `loopml pipeline list`)")
            steps = conn.execute(
                select(t.pipeline_steps)
                .where(t.pipeline_steps.c.pipeline_run_id == run_id)
                .order_by(t.pipeline_steps.c.started_time, t.pipeline_steps.c.node)
            ).all()
        return _run_from_row(head, [_step_from_row(r) for r in steps])

    def list_runs(self, *, pipeline: str | None = None, limit: int = 50) -> list[PipelineRunRecord]:
        """Pipeline runs, newest first, without their steps."""
        query = (
            select(t.pipeline_runs, t.runs.c.status, t.runs.c.end_time)
            .join(t.runs, t.runs.c.run_id == t.pipeline_runs.c.run_id)
            .order_by(t.pipeline_runs.c.created_time.desc())
            .limit(limit)
        )
        if pipeline is not None:
            query = query.where(t.pipeline_runs.c.pipeline == pipeline)
        with self.db.read() as conn:
            return [_run_from_row(r, []) for r in conn.execute(query)]


def _run_from_row(row: Row[Any], steps: list[StepRecord]) -> PipelineRunRecord:
    return PipelineRunRecord(
        run_id=row.run_id,
        pipeline=row.pipeline,
        params=json.loads(row.params_json),
        executor=row.executor,
        mode=row.mode,
        status=row.status,
        created_time=row.created_time,
        end_time=row.end_time,
        source_run_id=row.source_run_id,
        result=json.loads(row.result_json) if row.result_json is not None else None,
        steps=tuple(steps),
    )


def _step_from_row(row: Row[Any]) -> StepRecord:
    return StepRecord(
        node=row.node,
        step=row.step,
        status=StepStatus(row.status),
        cache=CacheState(row.cache),
        run_id=row.run_id,
        cache_note=row.cache_note,
        cache_key=row.cache_key,
        key=json.loads(row.key_json) if row.key_json is not None else None,
        cached_from=row.cached_from,
        upstream=tuple(json.loads(row.upstream_json)),
        outputs=tuple(OutputRef.from_dict(o) for o in json.loads(row.outputs_json or "[]")),
        attempts=row.attempts,
        started_time=row.started_time,
        duration_ms=row.duration_ms,
        error=row.error,
    )
