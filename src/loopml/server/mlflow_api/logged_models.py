"""MLflow 3's logged-model endpoints (`/api/2.0/mlflow/logged-models/...`): what `log_model` creates, uploads
to and marks READY before anything is registered."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from loopml.mlflow.experiment_search import compare_text, parse
from loopml.mlflow.logged_models import LoggedModel, LoggedModelStore
from loopml.server.fields import who
from loopml.server.mlflow_api.tracking import experiment_id_of
from loopml.server.mlflow_api.wire import (
    MlflowError,
    fields,
    integer,
    key_values,
    one_page,
    page_token,
    pairs,
    string,
    strings,
)

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

# LoopML's status -> MLflow's enum name and number (clients send either).
STATUS_NAMES = {
    "PENDING": "LOGGED_MODEL_PENDING",
    "READY": "LOGGED_MODEL_READY",
    "FAILED": "LOGGED_MODEL_UPLOAD_FAILED",
}
_FROM_WIRE = {name: status for status, name in STATUS_NAMES.items()} | {1: "PENDING", 2: "READY", 3: "FAILED"}


def logged_model_json(model: LoggedModel) -> dict[str, Any]:
    """A logged model as MLflow's `LoggedModel` message."""
    info = {
        "model_id": model.model_id,
        "experiment_id": model.experiment_id,
        "name": model.name,
        "artifact_uri": f"mlflow-artifacts:/{model.experiment_id}/models/{model.model_id}/artifacts",
        "creation_timestamp_ms": model.created_time,
        "last_updated_timestamp_ms": model.updated_time,
        "status": STATUS_NAMES[model.status],
        "tags": pairs(model.tags),
    }
    if model.model_type:
        info["model_type"] = model.model_type
    if model.source_run_id:
        info["source_run_id"] = model.source_run_id
    return {"info": info, "data": {"params": pairs(model.params), "metrics": []}}


def logged_model_routes(app: FastAPI, tracker: Tracker) -> None:
    """Add the logged-model endpoints to `app` (mounted at `/api/2.0`)."""
    store = LoggedModelStore(tracker.stores.db)

    @app.post("/mlflow/logged-models")
    async def create(request: Request) -> Any:
        who(request).require("write")
        body = await fields(request)

        def make() -> Any:
            model = store.create(
                experiment_id_of(tracker, string(body, "experiment_id")),
                name=string(body, "name", required=False),
                source_run_id=string(body, "source_run_id", required=False),
                model_type=string(body, "model_type", required=False),
                tags=key_values(body, "tags"),
                params=key_values(body, "params"),
            )
            return {"model": logged_model_json(model)}

        return await run_in_threadpool(make)

    @app.post("/mlflow/logged-models/search")
    async def search(request: Request) -> Any:
        who(request).require("read")
        body = await fields(request)
        max_results = integer(body, "max_results", default=100)
        if not 1 <= max_results <= 1000:
            raise MlflowError(f"Invalid value {max_results} for parameter 'max_results': 1 to 1000.")
        offset = page_token(body)
        clauses = parse(
            string(body, "filter", required=False) or "",
            strings=("name", "model_id", "source_run_id", "model_type", "status"),
            numbers=(),
        )

        def find() -> Any:
            ids = [experiment_id_of(tracker, e) for e in strings(body, "experiment_ids")]
            models = [
                m
                for m in store.search_all(ids)
                if all(compare_text(c.op, _field(m, c.key, c.tag), str(c.value)) for c in clauses)
            ]
            return one_page(models, offset, max_results, "models", logged_model_json)

        return await run_in_threadpool(find)

    @app.get("/mlflow/logged-models/{model_id}")
    async def get(model_id: str, request: Request) -> Any:
        who(request).require("read")
        return {"model": logged_model_json(await run_in_threadpool(store.get, model_id))}

    @app.patch("/mlflow/logged-models/{model_id}")
    async def finalize(model_id: str, request: Request) -> Any:
        who(request).require("write")
        status = (await fields(request)).get("status")
        if not isinstance(status, str | int) or isinstance(status, bool) or status not in _FROM_WIRE:
            raise MlflowError(f"Invalid value {status!r} for parameter 'status'.")
        return {
            "model": logged_model_json(
                await run_in_threadpool(store.set_status, model_id, _FROM_WIRE[status])
            )
        }

    @app.delete("/mlflow/logged-models/{model_id}")
    async def delete(model_id: str, request: Request) -> Any:
        who(request).require("write")
        await run_in_threadpool(store.delete, model_id)
        return {}

    @app.patch("/mlflow/logged-models/{model_id}/tags")
    async def set_tags(model_id: str, request: Request) -> Any:
        who(request).require("write")
        tags = key_values(await fields(request), "tags")
        await run_in_threadpool(store.set_tags, model_id, tags)
        return {}

    @app.delete("/mlflow/logged-models/{model_id}/tags/{key:path}")
    async def delete_tag(model_id: str, key: str, request: Request) -> Any:
        who(request).require("write")
        await run_in_threadpool(store.delete_tag, model_id, key)
        return {}

    @app.post("/mlflow/logged-models/{model_id}/params")
    async def log_params(model_id: str, request: Request) -> Any:
        who(request).require("write")
        params = key_values(await fields(request), "params")
        await run_in_threadpool(store.log_params, model_id, params)
        return {}


def _field(model: LoggedModel, key: str, tag: bool) -> str | None:
    if tag:
        return model.tags.get(key)
    if key == "status":
        return STATUS_NAMES[model.status]
    value = getattr(model, key)
    return None if value is None else str(value)
