"""MLflow's tracking endpoints (`/api/2.0/mlflow/experiments/...`, `runs/...`, `metrics/...`) over LoopML's
tracking store: what MLflow's client logs is an ordinary LoopML experiment, run, param, tag and metric.

Ids are LoopML's (32 hex characters, as MLflow's run ids); MLflow's default experiment "0" is LoopML's
"Default". Metric writes are idempotent: a request's points carry an id derived from their content, so a
retried `log-batch` or `log-metric` (MLflow's client retries both) is recognised and not written twice.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from loopml.core.errors import NotFound
from loopml.mlflow import tracking as extra
from loopml.mlflow.experiment_search import search_experiments
from loopml.server.fields import who
from loopml.server.mlflow_api.wire import (
    MlflowError,
    double,
    fields,
    integer,
    key_values,
    next_token,
    one_page,
    page_token,
    pairs,
    string,
    strings,
)
from loopml.tracking.records import Experiment, GitInfo, Lifecycle, Metric, Run, RunStatus

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

DEFAULT_EXPERIMENT = "Default"
MAX_RUNS = 50_000  # search_runs max_results, as MLflow's server allows
MAX_BATCH_METRICS, MAX_BATCH_PARAMS, MAX_BATCH_TAGS = 1000, 100, 100
_STATUSES = {"RUNNING": RunStatus.RUNNING, "SCHEDULED": RunStatus.RUNNING, "FINISHED": RunStatus.FINISHED,
             "FAILED": RunStatus.FAILED, "KILLED": RunStatus.KILLED}  # fmt: skip
_VIEW_TYPES = ("ACTIVE_ONLY", "DELETED_ONLY", "ALL")


def experiment_id_of(tracker: Tracker, given: str) -> str:
    """LoopML's id for an experiment id MLflow's client sent ("0" is the default experiment)."""
    if given == "0":
        return tracker.store.get_or_create_experiment(DEFAULT_EXPERIMENT).experiment_id
    experiment = tracker.store.get_experiment(given)
    if experiment.experiment_id != given:  # found by name: MLflow's ids are ids only
        raise NotFound(f"No Experiment with id={given} exists")
    return given


def experiment_json(experiment: Experiment, tags: dict[str, str]) -> dict[str, Any]:
    """An experiment as MLflow's `Experiment` message."""
    return {
        "experiment_id": experiment.experiment_id,
        "name": experiment.name,
        "artifact_location": f"mlflow-artifacts:/{experiment.experiment_id}",
        "lifecycle_stage": experiment.lifecycle.value,
        "creation_time": experiment.created_time,
        "last_update_time": experiment.created_time,
        "tags": pairs(tags),
    }


def run_json(run: Run, latest: list[Metric]) -> dict[str, Any]:
    """A run as MLflow's `Run` message (the tags MLflow's server adds included)."""
    from loopml.server.mlflow_api.wire import dumps_double

    tags = {"mlflow.runName": run.name, **run.tags}
    if run.parent_run_id:
        tags.setdefault("mlflow.parentRunId", run.parent_run_id)
    info: dict[str, Any] = {
        "run_id": run.run_id,
        "run_uuid": run.run_id,
        "run_name": run.name,
        "experiment_id": run.experiment_id,
        "user_id": run.tags.get("mlflow.user") or run.user or "",
        "status": run.status.value,
        "start_time": run.start_time,
        "artifact_uri": f"mlflow-artifacts:/{run.experiment_id}/{run.run_id}/artifacts",
        "lifecycle_stage": run.lifecycle.value,
    }
    if run.end_time is not None:
        info["end_time"] = run.end_time
    metrics = [
        {"key": m.key, "value": dumps_double(m.value), "timestamp": m.timestamp, "step": m.step}
        for m in latest
    ]
    return {
        "info": info,
        "data": {"metrics": metrics, "params": pairs(run.params), "tags": pairs(tags)},
        "inputs": {},
        "outputs": {},
    }


def tracking_routes(app: FastAPI, tracker: Tracker) -> None:
    """Add MLflow's experiment, run and metric endpoints to `app` (mounted at `/api/2.0`)."""
    _experiment_routes(app, tracker)
    _experiment_search_route(app, tracker)
    _run_routes(app, tracker)
    _logging_routes(app, tracker)
    _input_output_routes(app, tracker)
    _reading_routes(app, tracker)


def _one_experiment(tracker: Tracker, experiment_id: str) -> dict[str, Any]:
    experiment = tracker.store.get_experiment(experiment_id)
    tags = extra.experiment_tags(tracker.stores.db, [experiment_id]).get(experiment_id, {})
    return {"experiment": experiment_json(experiment, tags)}


def _experiment_routes(app: FastAPI, tracker: Tracker) -> None:
    db = tracker.stores.db

    @app.get("/mlflow/experiments/get-by-name")
    async def get_by_name(request: Request) -> Any:
        who(request).require("read")
        name = string(await fields(request), "experiment_name")

        def find() -> Any:
            found = tracker.store.find_experiment(name)
            if found is None:
                raise MlflowError(
                    f"Could not find experiment with name {name}", "RESOURCE_DOES_NOT_EXIST", 404
                )
            return _one_experiment(tracker, found.experiment_id)

        return await run_in_threadpool(find)

    @app.post("/mlflow/experiments/create")
    async def create(request: Request) -> Any:
        who(request).require("write")
        body = await fields(request)
        name, tags = string(body, "name"), key_values(body, "tags")

        def make() -> Any:
            if tracker.store.find_experiment(name) is not None:
                raise MlflowError(f"Experiment(name={name}) already exists.", "RESOURCE_ALREADY_EXISTS")
            experiment = tracker.store.create_experiment(name)
            extra.set_experiment_tags(db, experiment.experiment_id, tags)
            return {"experiment_id": experiment.experiment_id}

        return await run_in_threadpool(make)

    @app.get("/mlflow/experiments/get")
    async def get(request: Request) -> Any:
        who(request).require("read")
        given = string(await fields(request), "experiment_id")
        return await run_in_threadpool(lambda: _one_experiment(tracker, experiment_id_of(tracker, given)))

    @app.post("/mlflow/experiments/delete")
    async def delete(request: Request) -> Any:
        who(request).require("write")
        given = string(await fields(request), "experiment_id")
        await run_in_threadpool(
            lambda: extra.set_experiment_lifecycle(db, experiment_id_of(tracker, given), Lifecycle.DELETED)
        )
        return {}

    @app.post("/mlflow/experiments/restore")
    async def restore(request: Request) -> Any:
        who(request).require("write")
        given = string(await fields(request), "experiment_id")
        await run_in_threadpool(
            lambda: extra.set_experiment_lifecycle(db, experiment_id_of(tracker, given), Lifecycle.ACTIVE)
        )
        return {}

    @app.post("/mlflow/experiments/update")
    async def rename(request: Request) -> Any:
        who(request).require("write")
        body = await fields(request)
        given, name = string(body, "experiment_id"), string(body, "new_name")
        await run_in_threadpool(lambda: extra.rename_experiment(db, experiment_id_of(tracker, given), name))
        return {}

    @app.post("/mlflow/experiments/set-experiment-tag")
    async def set_tag(request: Request) -> Any:
        who(request).require("write")
        body = await fields(request)
        given, key = string(body, "experiment_id"), string(body, "key")
        value = string(body, "value", required=False, default="")
        await run_in_threadpool(
            lambda: extra.set_experiment_tags(db, experiment_id_of(tracker, given), {key: value})
        )
        return {}

    @app.post("/mlflow/experiments/delete-experiment-tag")
    async def delete_tag(request: Request) -> Any:
        who(request).require("write")
        body = await fields(request)
        given, key = string(body, "experiment_id"), string(body, "key")
        await run_in_threadpool(
            lambda: extra.delete_experiment_tag(db, experiment_id_of(tracker, given), key)
        )
        return {}


def _experiment_search_route(app: FastAPI, tracker: Tracker) -> None:
    db = tracker.stores.db

    @app.api_route("/mlflow/experiments/search", methods=["GET", "POST"])
    async def search(request: Request) -> Any:
        who(request).require("read")
        body = await fields(request)
        max_results = integer(body, "max_results", default=1000)
        if not 1 <= max_results <= MAX_RUNS:
            raise MlflowError(f"Invalid value {max_results} for parameter 'max_results': 1 to {MAX_RUNS}.")
        offset = page_token(body)
        view = body.get("view_type") or "ACTIVE_ONLY"
        if isinstance(view, int) and not isinstance(view, bool):  # the enum's number
            view = _VIEW_TYPES[view - 1] if 1 <= view <= len(_VIEW_TYPES) else "?"
        if view not in _VIEW_TYPES:
            raise MlflowError(f"Invalid value {view!r:.40} for parameter 'view_type'.")
        found = await run_in_threadpool(
            lambda: search_experiments(
                db,
                filter=string(body, "filter", required=False),
                order_by=strings(body, "order_by"),
                view_type=view,
            )
        )
        return one_page(found, offset, max_results, "experiments", lambda item: experiment_json(*item))


def _run_id(body: dict[str, Any]) -> str:
    """`run_id`, or the older `run_uuid` MLflow's client also sends."""
    found = string(body, "run_id", required=False) or string(body, "run_uuid", required=False)
    if not found:
        raise MlflowError("Missing value for required parameter 'run_id'.")
    return str(found)


def _one_run(tracker: Tracker, run_id: str) -> dict[str, Any]:
    run = tracker.store.get_run(run_id)
    return {"run": run_json(run, extra.latest_points(tracker.stores.db, [run_id])[run_id])}


def _run_routes(app: FastAPI, tracker: Tracker) -> None:
    db = tracker.stores.db

    @app.post("/mlflow/runs/create")
    async def create(request: Request) -> Any:
        caller = who(request)
        caller.require("write")
        body = await fields(request)
        given = string(body, "experiment_id", required=False) or "0"
        tags = key_values(body, "tags")
        name = string(body, "run_name", required=False) or tags.get("mlflow.runName")
        start_time = integer(body, "start_time")

        def start() -> Any:
            experiment_id = experiment_id_of(tracker, given)
            git = GitInfo(
                commit=tags.get("mlflow.source.git.commit") or None,
                branch=tags.get("mlflow.source.git.branch") or None,
            )
            run = tracker.store.create_run(
                experiment_id,
                name=name,
                parent_run_id=tags.get("mlflow.parentRunId") or None,
                tags={k: v for k, v in tags.items() if k != "mlflow.runName"},
                user=caller.name,
                entry_point=tags.get("mlflow.source.name") or None,
                git=git,
            )
            if start_time is not None:
                extra.update_run(db, run.run_id, start_time=start_time)
            return _one_run(tracker, run.run_id)

        return await run_in_threadpool(start)

    @app.post("/mlflow/runs/update")
    async def update(request: Request) -> Any:
        who(request).require("write")
        body = await fields(request)
        run_id = _run_id(body)
        status = string(body, "status", required=False)
        if status is not None and status not in _STATUSES:
            raise MlflowError(
                f"Invalid value {status!r} for parameter 'status': one of {', '.join(_STATUSES)}."
            )
        end_time, name = integer(body, "end_time"), string(body, "run_name", required=False)

        def change() -> Any:
            extra.update_run(
                db, run_id, status=_STATUSES[status] if status else None, end_time=end_time, name=name
            )
            if name:
                tracker.store.set_tags(run_id, {"mlflow.runName": name})
            return {"run_info": _one_run(tracker, run_id)["run"]["info"]}

        return await run_in_threadpool(change)

    @app.post("/mlflow/runs/delete")
    async def delete(request: Request) -> Any:
        who(request).require("write")
        run_id = _run_id(await fields(request))
        await run_in_threadpool(tracker.store.set_lifecycle, [run_id], Lifecycle.DELETED)
        return {}

    @app.post("/mlflow/runs/restore")
    async def restore(request: Request) -> Any:
        who(request).require("write")
        run_id = _run_id(await fields(request))
        await run_in_threadpool(tracker.store.set_lifecycle, [run_id], Lifecycle.ACTIVE)
        return {}

    @app.get("/mlflow/runs/get")
    async def get(request: Request) -> Any:
        who(request).require("read")
        run_id = _run_id(await fields(request))
        return await run_in_threadpool(_one_run, tracker, run_id)

    @app.post("/mlflow/runs/search")
    async def search(request: Request) -> Any:
        who(request).require("read")
        body = await fields(request)
        return await run_in_threadpool(_search_runs, tracker, body)


def _search_runs(tracker: Tracker, body: dict[str, Any]) -> dict[str, Any]:
    from loopml.tracking.search import search_runs

    experiment_ids = [experiment_id_of(tracker, e) for e in strings(body, "experiment_ids")]
    max_results = integer(body, "max_results", default=1000)
    if not 1 <= max_results <= MAX_RUNS:
        raise MlflowError(
            f"Invalid value {max_results} for parameter 'max_results' supplied: 1 to {MAX_RUNS}."
        )
    view = body.get("run_view_type") or "ACTIVE_ONLY"
    if isinstance(view, int) and not isinstance(view, bool):
        view = _VIEW_TYPES[view - 1] if 1 <= view <= len(_VIEW_TYPES) else view
    if view not in _VIEW_TYPES:
        raise MlflowError(f"Invalid value {view!r} for parameter 'run_view_type'.")
    text = string(body, "filter", required=False) or ""
    if view == "DELETED_ONLY":
        text = "lifecycle_stage = 'deleted'" + (f" and ({text})" if text.strip() else "")
    offset = page_token(body)
    from loopml.tracking.search import _encode_token

    page = search_runs(
        tracker.store,
        experiment_ids,
        text or None,
        order_by=strings(body, "order_by") or None,
        max_results=max_results,
        page_token=_encode_token(offset) if offset else None,
        include_deleted=view != "ACTIVE_ONLY",
    )
    latest = extra.latest_points(tracker.stores.db, [r.run_id for r in page.runs])
    found: dict[str, Any] = {"runs": [run_json(r, latest[r.run_id]) for r in page.runs]}
    if page.next_page_token is not None:
        found |= next_token(offset, len(page.runs), max_results)
    return found


def _logging_routes(app: FastAPI, tracker: Tracker) -> None:
    @app.post("/mlflow/runs/log-metric")
    async def log_metric(request: Request) -> Any:
        who(request).require("write")
        body = await fields(request)
        point = (
            string(body, "key"),
            double(body.get("value"), "value"),
            integer(body, "step", default=0),
            integer(body, "timestamp", required=True),
        )
        await run_in_threadpool(_write, tracker, _run_id(body), {}, {}, [point])
        return {}

    @app.post("/mlflow/runs/log-parameter")
    async def log_param(request: Request) -> Any:
        who(request).require("write")
        body = await fields(request)
        params = {string(body, "key"): string(body, "value", required=False, default="")}
        await run_in_threadpool(_write, tracker, _run_id(body), params, {}, [])
        return {}

    @app.post("/mlflow/runs/set-tag")
    async def set_tag(request: Request) -> Any:
        who(request).require("write")
        body = await fields(request)
        tags = {string(body, "key"): string(body, "value", required=False, default="")}
        await run_in_threadpool(_write, tracker, _run_id(body), {}, tags, [])
        return {}

    @app.post("/mlflow/runs/delete-tag")
    async def delete_tag(request: Request) -> Any:
        who(request).require("write")
        body = await fields(request)
        await run_in_threadpool(tracker.store.delete_tag, _run_id(body), string(body, "key"))
        return {}

    @app.post("/mlflow/runs/log-batch")
    async def log_batch(request: Request) -> Any:
        who(request).require("write")
        body = await fields(request)
        metrics = body.get("metrics") or []
        if not isinstance(metrics, list) or not all(isinstance(m, dict) for m in metrics):
            raise MlflowError("Invalid value for parameter 'metrics': a list of metric objects is expected.")
        params, tags = key_values(body, "params"), key_values(body, "tags")
        for what, items, limit in (("metrics", metrics, MAX_BATCH_METRICS), ("params", params, MAX_BATCH_PARAMS),
                                   ("tags", tags, MAX_BATCH_TAGS)):  # fmt: skip
            if len(items) > limit:
                raise MlflowError(
                    f"A batch logging request can contain at most {limit} {what}. Got {len(items)}."
                )
        points = [
            (
                string(m, "key"),
                double(m.get("value"), f"metrics[{i}].value"),
                integer(m, "step", default=0),
                integer(m, "timestamp", required=True),
            )
            for i, m in enumerate(metrics)
        ]
        linked = {i for i, m in enumerate(metrics) if m.get("model_id")}
        run_id = _run_id(body)

        def write() -> None:
            # `log_model` links the run's metrics to the new model by logging them again with its id: a point
            # the run already has is that link, not a new point (MLflow keeps it once too).
            kept = points
            if linked:
                known = _known_points(tracker, run_id, {points[i][0] for i in linked})
                kept = [p for i, p in enumerate(points) if i not in linked or _same(p) not in known]
            _write(tracker, run_id, params, tags, kept)

        await run_in_threadpool(write)
        return {}


def _input_output_routes(app: FastAPI, tracker: Tracker) -> None:
    @app.post("/mlflow/runs/log-inputs")
    async def log_inputs(request: Request) -> Any:
        who(request).require("write")
        body = await fields(request)
        run_id = _run_id(body)
        datasets = body.get("datasets") or []
        if not isinstance(datasets, list):
            raise MlflowError("Invalid value for parameter 'datasets': a list is expected.")
        tags = {}
        for item in datasets:  # kept as run tags: MLflow's dataset records are not LoopML dataset versions
            dataset = item.get("dataset") if isinstance(item, dict) else None
            if not isinstance(dataset, dict) or not isinstance(dataset.get("name"), str):
                raise MlflowError("Invalid value for parameter 'datasets': each needs a dataset with a name.")
            tags[f"mlflow.input.dataset.{dataset['name']}"] = str(dataset.get("digest") or "")
        await run_in_threadpool(_write, tracker, run_id, {}, tags, [])
        return {}

    @app.post("/mlflow/runs/outputs")
    async def log_outputs(request: Request) -> Any:
        who(request).require("write")
        body = await fields(request)
        await run_in_threadpool(tracker.store.run_exists, _run_id(body))
        return {}  # a logged model records its source run itself


def _same(point: tuple[str, float, int, int]) -> tuple[str, str, int, int]:
    key, value, step, timestamp = point
    return key, repr(value), step, timestamp


def _known_points(tracker: Tracker, run_id: str, keys: set[str]) -> set[tuple[str, str, int, int]]:
    return {
        (key, repr(p.value), p.step, p.timestamp)
        for key in keys
        for p in tracker.store.metrics.history(run_id, key)
    }


def _write(
    tracker: Tracker,
    run_id: str,
    params: dict[str, str],
    tags: dict[str, str],
    points: list[tuple[str, float, int, int]],
) -> None:
    from loopml.core.names import check_key
    from loopml.server.tracking_api import write_log

    for key, *_ in points:
        check_key("metric", key)
    points = list(
        {_same(p): p for p in points}.values()
    )  # one batch's identical points are one, as in MLflow
    # The same points for the same run are the same write: a retried request is recognised by this id.
    content = json.dumps([run_id, [[k, repr(v), s, t] for k, v, s, t in points]])
    batch_id = "mlflow-" + hashlib.blake2b(content.encode(), digest_size=28).hexdigest()
    write_log(tracker, run_id, batch_id=batch_id, params=params, tags=tags, points=points)
    if "mlflow.runName" in tags:  # MLflow renames the run when this tag is set
        extra.update_run(tracker.stores.db, run_id, name=tags["mlflow.runName"])
    if "mlflow.note.content" in tags:
        tracker.store.set_note(run_id, tags["mlflow.note.content"])


def _reading_routes(app: FastAPI, tracker: Tracker) -> None:
    from loopml.server.mlflow_api.wire import dumps_double

    @app.get("/mlflow/metrics/get-history")
    async def history(request: Request) -> Any:
        who(request).require("read")
        body = await fields(request)
        run_id, key = _run_id(body), string(body, "metric_key")
        max_results = integer(body, "max_results", default=None)
        if max_results is not None and not 1 <= max_results <= MAX_RUNS * 100:
            raise MlflowError(
                f"Invalid value {max_results} for parameter 'max_results': 1 to {MAX_RUNS * 100}."
            )
        offset = page_token(body)

        def read() -> Any:
            tracker.store.run_exists(run_id)
            points = tracker.store.metrics.history(run_id, key)
            page = points[offset : offset + max_results] if max_results else points[offset:]
            found: dict[str, Any] = {
                "metrics": [
                    {"key": key, "value": dumps_double(p.value), "timestamp": p.timestamp, "step": p.step}
                    for p in page
                ]
            }
            if max_results and offset + len(page) < len(points):
                found |= next_token(offset, len(page), max_results)
            return found

        return await run_in_threadpool(read)

    @app.get("/mlflow/metrics/get-history-bulk-interval")
    async def bulk(request: Request) -> Any:
        who(request).require("read")
        body = await fields(request)
        run_ids, key = strings(body, "run_ids"), string(body, "metric_key")
        if not run_ids or len(run_ids) > 100:
            raise MlflowError("Invalid value for parameter 'run_ids': 1 to 100 run ids.")
        start, end = integer(body, "start_step"), integer(body, "end_step")
        max_results = integer(body, "max_results", default=2500)

        def read() -> Any:
            found = []
            for run_id in run_ids:
                points = [
                    p
                    for p in tracker.store.metrics.history(run_id, key)
                    if (start is None or p.step >= start) and (end is None or p.step <= end)
                ]
                every = max(1, -(-len(points) // max(1, max_results)))
                for p in points[::every]:
                    found.append(
                        {
                            "key": key,
                            "value": dumps_double(p.value),
                            "timestamp": p.timestamp,
                            "step": p.step,
                            "run_id": run_id,
                        }
                    )
            return {"metrics": found}

        return await run_in_threadpool(read)
