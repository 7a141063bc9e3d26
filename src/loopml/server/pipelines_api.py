"""Pipeline runs and step calls over HTTP, so `@loopml.pipeline` runs against a team server.

```
POST /api/v1/pipeline-runs  {run_id, pipeline, params, executor, mode?, source_run_id?}   editor
POST /api/v1/pipeline-runs/{run_id}/steps  {record, params?, artifacts?, tags?}           editor   one step call
                                                        that ended: its row, and its run's end, params, output
                                                        and log artifacts (uploaded blobs) in one transaction
PUT  /api/v1/pipeline-runs/{run_id}/result  {result}                                      editor
GET  /api/v1/pipeline-runs?pipeline=&limit=   GET /api/v1/pipeline-runs/{run_id}          reader
GET  /api/v1/pipeline-steps/cached/{cache_key}                                            reader   cache hits
GET  /api/v1/pipeline-steps/previous?step=&node=&before=&pipeline=                        reader   for `explain`
GET  /api/v1/runs/{run_id}/carried-tags                                                   reader
```
A step record is checked field by field (types, enum values, output digests that exist with their sizes)
before anything is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Query, Request
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from loopml.core.errors import Conflict, InvalidInput
from loopml.core.hashing import is_digest
from loopml.core.plain import to_plain as plain
from loopml.server.fields import BIGGEST, string_map, text, who

if TYPE_CHECKING:
    from loopml.pipelines.records import StepRecord
    from loopml.tracking.tracker import Tracker

MAX_STEP_FIELD = 10_000  # characters of a step's error or note kept


def pipeline_routes(app: FastAPI, tracker: Tracker, read_body: Any) -> None:
    """Add the pipeline routes to `app`."""
    from loopml.pipelines.store import PipelineStore

    store = PipelineStore(tracker.stores.db)

    @app.post("/api/v1/pipeline-runs")
    async def create_run(request: Request) -> Any:
        who(request).require("write")
        body = await read_body(request)
        run_id, pipeline, executor = text(body, "run_id"), text(body, "pipeline"), text(body, "executor")
        mode, source = (
            text(body, "mode", required=False) or "run",
            text(body, "source_run_id", required=False),
        )
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise InvalidInput("params: an object")

        def create() -> None:
            tracker.store.run_exists(run_id)
            store.create_run(
                run_id, pipeline=pipeline, params=params, executor=executor, mode=mode, source_run_id=source
            )

        await run_in_threadpool(create)
        return {"run_id": run_id}

    @app.post("/api/v1/pipeline-runs/{run_id}/steps")
    async def record_step(run_id: str, request: Request) -> Any:
        who(request).require("write")
        body = await read_body(request)
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise InvalidInput("params: an object")
        tags = string_map(body, "tags")

        def record() -> None:
            from loopml.tracking.values import tag_value

            store.get_run(run_id)  # NotFound for an unknown pipeline run
            step = _step(tracker, body.get("record"))
            if step.run_id is not None:
                tracker.store.run_exists(step.run_id)
            artifacts = _artifacts(tracker, body.get("artifacts") or [])
            checked = {k: tag_value(k, v) for k, v in tags.items()}
            try:
                store.record_step(run_id, step, params=params, artifacts=artifacts, tags=checked or None)
            except IntegrityError:  # the step's run already has these params or artifacts: recorded before
                raise Conflict(f"step {step.node!r} of pipeline run {run_id} is recorded already") from None

        await run_in_threadpool(record)
        return {"run_id": run_id}

    @app.put("/api/v1/pipeline-runs/{run_id}/result")
    async def set_result(run_id: str, request: Request) -> Any:
        who(request).require("write")
        result = (await read_body(request)).get("result")

        def save() -> None:
            store.get_run(run_id)
            store.set_result(run_id, result)

        await run_in_threadpool(save)
        return {"run_id": run_id}

    _read_routes(app, store)


def _read_routes(app: FastAPI, store: Any) -> None:
    from loopml.pipelines.remote_store import run_to_dict, step_to_dict

    @app.get("/api/v1/pipeline-runs")
    async def list_runs(
        request: Request, pipeline: str | None = None, limit: Annotated[int, Query(ge=1, le=10_000)] = 50
    ) -> Any:
        who(request).require("read")
        found = await run_in_threadpool(lambda: store.list_runs(pipeline=pipeline, limit=limit))
        return {"runs": [run_to_dict(r) for r in found]}

    @app.get("/api/v1/pipeline-runs/{run_id}")
    async def get_run(run_id: str, request: Request) -> Any:
        who(request).require("read")
        return run_to_dict(await run_in_threadpool(store.get_run, run_id))

    @app.get("/api/v1/pipeline-steps/cached/{cache_key}")
    async def cached(cache_key: str, request: Request) -> Any:
        who(request).require("read")
        return {"steps": [step_to_dict(s) for s in await run_in_threadpool(store.cached, cache_key)]}

    @app.get("/api/v1/pipeline-steps/previous")
    async def previous(
        request: Request,
        step: str,
        node: str,
        before: Annotated[int, Query(ge=0, le=BIGGEST)],
        pipeline: str | None = None,
    ) -> Any:
        who(request).require("read")
        found = await run_in_threadpool(lambda: store.previous_call(step, node, before, pipeline=pipeline))
        return {"step": None if found is None else step_to_dict(found)}

    @app.get("/api/v1/runs/{run_id}/carried-tags")
    async def carried_tags(run_id: str, request: Request) -> Any:
        who(request).require("read")
        return {"tags": plain(await run_in_threadpool(store.carried_tags, run_id))}


def _step(tracker: Tracker, data: Any) -> StepRecord:
    """A step record from a client, every field checked (an output must name an uploaded blob of its size)."""
    from loopml.pipelines.records import CacheState, StepStatus
    from loopml.pipelines.remote_store import step_from_dict

    if not isinstance(data, dict):
        raise InvalidInput("record: a step record object")
    _check_scalars(data)
    if data["status"] not in {s.value for s in StepStatus} or data["cache"] not in {
        c.value for c in CacheState
    }:
        raise InvalidInput("record.status / record.cache: one of the step states LoopML records")
    if data.get("key") is not None and not isinstance(data["key"], dict):
        raise InvalidInput("record.key: an object, or null")
    upstream = data.get("upstream") or []
    if not isinstance(upstream, list) or not all(isinstance(u, str) for u in upstream):
        raise InvalidInput("record.upstream: a list of step names")
    _check_outputs(tracker, data.get("outputs") or [])
    return step_from_dict(data)


def _check_scalars(data: dict[str, Any]) -> None:
    for key in ("node", "step", "status", "cache"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise InvalidInput(f"record.{key}: a non-empty string")
    for key in ("run_id", "cache_note", "cache_key", "cached_from", "error"):
        value = data.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_STEP_FIELD):
            raise InvalidInput(f"record.{key}: a string of at most {MAX_STEP_FIELD} characters, or null")
    for key in ("started_time", "duration_ms", "attempts"):
        value = data.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= BIGGEST
        ):
            raise InvalidInput(f"record.{key}: a whole number >= 0, or null")


def _check_outputs(tracker: Tracker, outputs: Any) -> None:
    if not isinstance(outputs, list):
        raise InvalidInput("record.outputs: a list of outputs")
    fields = {"name", "digest", "content_hash", "serializer", "type", "size"}
    for index, output in enumerate(outputs):
        if not isinstance(output, dict) or set(output) != fields:
            raise InvalidInput(f"record.outputs[{index}]: an object with {', '.join(sorted(fields))}")
        if not all(isinstance(output[k], str) for k in fields - {"size"}) or not is_digest(output["digest"]):
            raise InvalidInput(f"record.outputs[{index}]: strings, and a digest of 64 hex characters")
        size = output["size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidInput(f"record.outputs[{index}].size: a whole number of bytes")
        if not tracker.blobs.exists(output["digest"]) or tracker.blobs.size(output["digest"]) != size:
            raise InvalidInput(
                f"record.outputs[{index}]: no uploaded blob {output['digest']} of {size} bytes"
            )


def _artifacts(tracker: Tracker, items: Any) -> list[tuple[str, str, int]]:
    from loopml.server.artifacts_api import artifact_records

    return [(a.path, a.digest, a.size) for a in artifact_records(tracker, items)] if items else []
