"""Tracking over HTTP: experiments, runs, params, tags and metrics, as thin routes over `loopml.Client`.

```
GET  /api/v1/experiments                       reader   active experiments
POST /api/v1/experiments  {name, description}  editor
GET  /api/v1/experiments/{id or name}          reader
POST /api/v1/runs  {experiment, name?, parent_run_id?, tags?}   editor; the run records who started it
GET  /api/v1/runs/{run_id}                     reader   params, tags, latest metrics
POST /api/v1/runs/{run_id}/log  {batch_id, params?, tags?, metrics?: [{key, value, step, timestamp}]}
                                               editor   params/tags are idempotent by nature; the metric
                                                        points of one batch_id are written once, however
                                                        often a client retries it
POST /api/v1/runs/{run_id}/end  {status}       editor   FINISHED | FAILED | KILLED
DELETE /api/v1/runs/{run_id}                   editor   soft delete (restorable until gc)
GET  /api/v1/runs/{run_id}/metrics/{key}       reader   every point, by step
POST /api/v1/runs/search  {experiment_ids?, filter?, order_by?, max_results?, page_token?}   reader
```
Every body is size-limited JSON checked field by field; a bad field is a 400 naming it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from loopml.core.clock import now_ms
from loopml.core.errors import Conflict, InvalidInput
from loopml.core.plain import to_plain as plain
from loopml.server.fields import text as _text
from loopml.server.fields import who
from loopml.storage.metadata import schema as t
from loopml.tracking.records import RunStatus

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

MAX_POINTS = 100_000  # metric points in one request
LOG_BODY_BYTES = 32 * 2**20  # a metric batch (the client sends at most 20,000 points, ~2 MB, per request)


def tracking_routes(app: FastAPI, tracker: Tracker, read_body: Any) -> None:
    """Add the tracking routes to `app`; `read_body(request)` returns the size-checked JSON object."""
    from loopml.tracking.client import Client

    client = Client(tracker)
    _experiment_routes(app, client, read_body)
    _run_routes(app, tracker, client, read_body)
    _run_upkeep_routes(app, tracker, client, read_body)
    _search_route(app, client, read_body)
    _input_routes(app, tracker, read_body)


def _experiment_routes(app: FastAPI, client: Any, read_body: Any) -> None:
    @app.get("/api/v1/experiments")
    async def list_experiments(request: Request) -> Any:
        who(request).require("read")
        return {"experiments": plain(await run_in_threadpool(client.list_experiments))}

    @app.post("/api/v1/experiments")
    async def create_experiment(request: Request) -> Any:
        who(request).require("write")
        body = await read_body(request)
        name = _text(body, "name")
        description = _text(body, "description", required=False)
        return plain(await run_in_threadpool(client.create_experiment, name, description))

    @app.get("/api/v1/experiments/{experiment}")
    async def get_experiment(experiment: str, request: Request) -> Any:
        who(request).require("read")
        return plain(await run_in_threadpool(client.get_experiment, experiment))


def _run_routes(app: FastAPI, tracker: Tracker, client: Any, read_body: Any) -> None:
    @app.post("/api/v1/runs")
    async def create_run(request: Request) -> Any:
        caller = who(request)
        caller.require("write")
        body = await read_body(request)
        experiment = _text(body, "experiment")
        name = _text(body, "name", required=False)
        parent = _text(body, "parent_run_id", required=False)
        tags = _strings(body, "tags")
        note = _text(body, "note", required=False)
        entry_point = _text(body, "entry_point", required=False)
        git = _git(body.get("git"))
        git_diff = _diff(body.get("git_diff"), git)
        environment = _environment(body.get("environment"))

        def start() -> Any:
            found = tracker.store.experiment_for_run(experiment)  # by id, else by name (created if missing)
            return tracker.store.create_run(
                found.experiment_id,
                name=name,
                parent_run_id=parent,
                tags=tags,
                note=note,
                user=caller.name,
                entry_point=entry_point,
                git=git,
                git_diff=git_diff,
                environment=environment,
            )

        return plain(await run_in_threadpool(start))

    @app.get("/api/v1/runs/{run_id}")
    async def get_run(run_id: str, request: Request) -> Any:
        who(request).require("read")
        return plain(await run_in_threadpool(client.get_run, run_id))

    @app.post("/api/v1/runs/{run_id}/log")
    async def log(run_id: str, request: Request) -> Any:
        who(request).require("write")
        body = await read_body(request, limit=LOG_BODY_BYTES)
        batch_id = _text(body, "batch_id")
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise InvalidInput("params: an object of name: value")
        tags = _strings(body, "tags")
        points = _points(body.get("metrics") or [])
        return await run_in_threadpool(
            lambda: write_log(tracker, run_id, batch_id=batch_id, params=params, tags=tags, points=points)
        )

    @app.post("/api/v1/runs/{run_id}/end")
    async def end_run(run_id: str, request: Request) -> Any:
        who(request).require("write")
        body = await read_body(request)
        status = _text(body, "status")
        error = _text(body, "error", required=False)
        ended = [s.value for s in RunStatus if s is not RunStatus.RUNNING]
        if status not in ended:  # ending a run does not reopen it
            raise InvalidInput(f"status: one of {', '.join(ended)}, got {status!r}")
        final = RunStatus(status)
        await run_in_threadpool(lambda: tracker.store.set_status(run_id, final, error=error))
        return {"run_id": run_id, "status": status}

    @app.delete("/api/v1/runs/{run_id}")
    async def delete_run(run_id: str, request: Request) -> Any:
        who(request).require("write")
        await run_in_threadpool(client.delete_run, run_id)
        return {"run_id": run_id, "deleted": True}

    @app.get("/api/v1/runs/{run_id}/metrics/{key:path}")  # metric names may hold "/" (loss/train)
    async def metric_history(run_id: str, key: str, request: Request) -> Any:
        who(request).require("read")
        return {"metrics": plain(await run_in_threadpool(client.get_metric_history, run_id, key))}


def _run_upkeep_routes(app: FastAPI, tracker: Tracker, client: Any, read_body: Any) -> None:
    """Restore, notes, tag removal, captured environments and diffs, and the server's garbage collection."""

    @app.post("/api/v1/runs/restore")
    async def restore_runs(request: Request) -> Any:
        who(request).require("write")
        ids = (await read_body(request)).get("run_ids")
        if (
            not isinstance(ids, list)
            or not ids
            or not all(isinstance(i, str) for i in ids)
            or len(ids) > 10_000
        ):
            raise InvalidInput("run_ids: a list of 1 to 10,000 run ids")
        from loopml.tracking.records import Lifecycle

        await run_in_threadpool(tracker.store.set_lifecycle, ids, Lifecycle.ACTIVE)
        return {"run_ids": ids, "deleted": False}

    @app.put("/api/v1/runs/{run_id}/note")
    async def set_note(run_id: str, request: Request) -> Any:
        who(request).require("write")
        note = (await read_body(request)).get("note")
        if not isinstance(note, str):
            raise InvalidInput("note: a string")
        await run_in_threadpool(tracker.store.set_note, run_id, note)
        return {"run_id": run_id, "note": note}

    @app.delete("/api/v1/runs/{run_id}/tags/{key}")
    async def delete_tag(run_id: str, key: str, request: Request) -> Any:
        who(request).require("write")
        await run_in_threadpool(tracker.store.delete_tag, run_id, key)
        return {"run_id": run_id, "deleted": key}

    @app.get("/api/v1/runs-with-input")
    async def runs_with_input(request: Request, dataset: str, version: str) -> Any:
        who(request).require("read")
        found = await run_in_threadpool(tracker.store.attachments.runs_with_input, dataset, version)
        return {"run_ids": found}

    @app.get("/api/v1/environments/{environment_hash}")
    async def environment(environment_hash: str, request: Request) -> Any:
        who(request).require("read")
        return await run_in_threadpool(tracker.store.attachments.get_environment, environment_hash)

    @app.get("/api/v1/diffs/{diff_hash}")
    async def diff(diff_hash: str, request: Request) -> Any:
        who(request).require("read")
        text, truncated = await run_in_threadpool(tracker.store.attachments.get_diff, diff_hash)
        return {"diff": text, "truncated": truncated}

    @app.post("/api/v1/gc")
    async def gc(request: Request) -> Any:
        who(request).require("admin")  # it deletes what other people soft-deleted, for good
        body = await read_body(request)
        dry_run = body.get("dry_run", True)
        grace = body.get("blob_grace_s", 3600.0)
        older = body.get("older_than_ms", 0)
        if not isinstance(dry_run, bool):
            raise InvalidInput("dry_run: true or false")
        if isinstance(grace, bool) or not isinstance(grace, int | float) or grace < 0:
            raise InvalidInput("blob_grace_s: a number of seconds >= 0")
        if isinstance(older, bool) or not isinstance(older, int) or not 0 <= older < 2**63:
            raise InvalidInput("older_than_ms: an age in milliseconds >= 0")
        report = await run_in_threadpool(
            lambda: client.gc(older_than_ms=older, blob_grace_s=float(grace), dry_run=dry_run)
        )
        return plain(report)


def _search_route(app: FastAPI, client: Any, read_body: Any) -> None:
    @app.post("/api/v1/runs/search")
    async def search(request: Request) -> Any:
        who(request).require("read")
        body = await read_body(request)
        ids = body.get("experiment_ids")
        if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
            raise InvalidInput("experiment_ids: a list of experiment ids")
        order = body.get("order_by")
        if order is not None and not (
            isinstance(order, str) or (isinstance(order, list) and all(isinstance(o, str) for o in order))
        ):
            raise InvalidInput("order_by: a string or a list of strings")
        limit = body.get("max_results", 1000)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 50_000:
            raise InvalidInput("max_results: a whole number from 1 to 50000")

        def run() -> Any:
            return client.search_runs(
                ids,
                _text(body, "filter", required=False),
                order_by=order,
                max_results=limit,
                page_token=_text(body, "page_token", required=False),
            )

        return plain(await run_in_threadpool(run))


def _input_routes(app: FastAPI, tracker: Tracker, read_body: Any) -> None:
    """`GET|POST /api/v1/runs/{run_id}/inputs`: the dataset versions a run read (lineage)."""

    @app.get("/api/v1/runs/{run_id}/inputs")
    async def list_inputs(run_id: str, request: Request) -> Any:
        who(request).require("read")
        await run_in_threadpool(tracker.store.run_exists, run_id)
        return {"inputs": plain(await run_in_threadpool(tracker.store.attachments.list_inputs, run_id))}

    @app.post("/api/v1/runs/{run_id}/inputs")
    async def add_inputs(run_id: str, request: Request) -> Any:
        who(request).require("write")
        from loopml.tracking.records import RunInput
        from loopml.tracking.values import check_input

        items = (await read_body(request)).get("inputs")
        if not isinstance(items, list) or not items:
            raise InvalidInput("inputs: a non-empty list of {dataset, version, digest?, context?}")
        found = []
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not {"dataset", "version"} <= set(item) <= {
                "dataset",
                "version",
                "digest",
                "context",
            }:
                raise InvalidInput(
                    f"inputs[{index}]: an object with dataset, version (digest, context optional)"
                )
            dataset, version = item["dataset"], item["version"]
            digest, context = item.get("digest"), item.get("context")
            if not (isinstance(dataset, str) and isinstance(version, str)) or not all(
                v is None or isinstance(v, str) for v in (digest, context)
            ):
                raise InvalidInput(f"inputs[{index}]: every field is a string")
            found.append(check_input(RunInput(dataset, version, digest, context)))
        await run_in_threadpool(tracker.store.attachments.add_inputs, run_id, found)
        return {"run_id": run_id, "inputs": len(found)}


def write_log(
    tracker: Tracker,
    run_id: str,
    *,
    batch_id: str,
    params: dict[str, Any],
    tags: dict[str, str] | None,
    points: list[tuple[str, float, int, int]],
) -> dict[str, Any]:
    from loopml.tracking.values import flatten_params, metric_step, metric_value, param_forms, tag_value

    store = tracker.store
    store.run_exists(run_id)
    # Everything is checked before anything is written: a refused request leaves the run as it was.
    forms = {k: param_forms(k, v) for k, v in flatten_params(params).items()} if params else {}
    tag_values = {k: tag_value(k, v) for k, v in (tags or {}).items()}
    batch: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
    for key, value, step, timestamp in points:
        point = (metric_value(key, value), metric_step(key, step), metric_step(key, timestamp, "timestamp"))
        batch.setdefault((run_id, key), []).append(point)
    if forms:  # nested objects become dotted names, as `run.log_params` makes them
        store.log_params(run_id, forms)
    if tag_values:
        store.set_tags(run_id, tag_values)
    if not points:
        return {"run_id": run_id, "points": 0, "duplicate": False}

    def change(conn: Any) -> None:
        conn.execute(
            t.applied_batches.insert(),
            {"batch_id": batch_id, "run_id": run_id, "points": len(points), "time": now_ms()},
        )
        store.metrics.write(conn, batch)

    try:
        tracker.stores.db.transact(change)
    except IntegrityError:
        with tracker.stores.db.read() as conn:
            owner = conn.execute(
                select(t.applied_batches.c.run_id).where(t.applied_batches.c.batch_id == batch_id)
            ).scalar()
        if owner is None:
            raise
        if owner != run_id:
            raise Conflict(
                f"batch_id {batch_id!r} was used for another run: use a fresh id per batch"
            ) from None
        return {"run_id": run_id, "points": 0, "duplicate": True}  # a retry of a batch that was written
    return {"run_id": run_id, "points": len(points), "duplicate": False}


def _points(items: Any) -> list[tuple[str, float, int, int]]:
    if not isinstance(items, list):
        raise InvalidInput("metrics: a list of {key, value, step, timestamp}")
    if len(items) > MAX_POINTS:
        raise InvalidInput(f"metrics: at most {MAX_POINTS} points a request, got {len(items)}")
    from loopml.core.names import check_key

    found = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not {"key", "value"} <= set(item):
            raise InvalidInput(f"metrics[{index}]: an object with key, value (step, timestamp optional)")
        value = item["value"]
        if isinstance(value, str) and value in ("nan", "inf", "-inf"):  # JSON has no NaN or infinities
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(f"metrics[{index}].value: a number, got {value!r:.40}")
        try:
            value = float(value)
        except OverflowError:
            raise InvalidInput(f"metrics[{index}].value: too large for a 64-bit float") from None
        step, timestamp = item.get("step", 0), item.get("timestamp", now_ms())
        for name, number in (("step", step), ("timestamp", timestamp)):
            if isinstance(number, bool) or not isinstance(number, int):
                raise InvalidInput(f"metrics[{index}].{name}: a whole number, got {number!r:.40}")
        found.append((check_key("metric", item["key"]), value, step, timestamp))
    return found


def _git(value: Any) -> Any:
    from loopml.tracking.records import GitInfo

    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"commit", "branch", "dirty", "diff_hash"}:
        raise InvalidInput("git: an object with commit, branch, dirty, diff_hash")
    commit, branch, dirty = value.get("commit"), value.get("branch"), value.get("dirty")
    diff_hash = value.get("diff_hash")
    if not all(v is None or isinstance(v, str) for v in (commit, branch, diff_hash)) or not (
        dirty is None or isinstance(dirty, bool)
    ):
        raise InvalidInput("git: commit, branch and diff_hash are strings, dirty true or false")
    return GitInfo(commit, branch, dirty, diff_hash)


def _diff(value: Any, git: Any) -> tuple[str, bool] | None:
    """The uncommitted diff of a run's code; a complete one must hash to the `diff_hash` it is filed under."""
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("diff"), str):
        raise InvalidInput("git_diff: an object with diff (text) and truncated (true or false)")
    truncated = value.get("truncated", False)
    if not isinstance(truncated, bool):
        raise InvalidInput("git_diff.truncated: true or false")
    from loopml.core.hashing import hash_text

    if git is None or git.diff_hash is None:
        raise InvalidInput("git_diff needs git.diff_hash, the hash of the whole diff")
    if not truncated and hash_text(value["diff"]) != git.diff_hash:
        raise InvalidInput("git_diff: the diff does not hash to git.diff_hash")
    return value["diff"], truncated


def _environment(value: Any) -> tuple[str, str, str, dict[str, str]] | None:
    """A run's Python environment, named by the hash computed here (a client cannot file it under another)."""
    if value is None:
        return None
    from loopml.tracking.environment import environment_hash

    if not isinstance(value, dict) or set(value) != {"python_version", "platform", "packages"}:
        raise InvalidInput("environment: an object with python_version, platform, packages")
    python, plat, packages = value["python_version"], value["platform"], value["packages"]
    if not (
        isinstance(python, str)
        and isinstance(plat, str)
        and isinstance(packages, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in packages.items())
    ):
        raise InvalidInput(
            "environment: python_version and platform are strings, packages an object of versions"
        )
    return environment_hash(python, plat, packages), python, plat, packages


def _strings(body: dict[str, Any], key: str) -> dict[str, str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidInput(f"{key}: an object of string: string")
    from loopml.tracking.values import tag_value

    return {k: tag_value(k, v) for k, v in value.items()}  # the same name and size checks as `set_tag`
