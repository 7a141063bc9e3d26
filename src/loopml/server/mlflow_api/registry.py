"""MLflow's model-registry endpoints (`/api/2.0/mlflow/registered-models/...`, `model-versions/...`) over
LoopML's registry: a version registered through MLflow's client is an ordinary LoopML version (flavor `mlflow`
for a model MLflow logged), and LoopML's versions are visible to MLflow's client.

Aliases keep LoopML's rules: moving a protected alias (`champion`, or any alias the project's `loopml.toml`
gives gates) runs the promotion gates and is audited like any promotion; a refusal comes back as an MLflow
`INVALID_STATE` error carrying the gates' verdicts. The gates score on the held-out dataset the run names
(tags `loopml.eval.dataset` = `NAME@vN` and `loopml.eval.target`, settable with `mlflow.set_tag`). A model
LoopML will not load (a pickle nobody trusted) cannot take a protected alias. Other aliases move at once,
audited too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from loopml.core.errors import InvalidInput, NotFound
from loopml.mlflow.experiment_search import compare_text, parse
from loopml.mlflow.logged_models import LoggedModelStore
from loopml.mlflow.registration import register_mlflow_files
from loopml.registry.records import ModelVersion, RegisteredModel
from loopml.registry.store import RegistryStore
from loopml.server.fields import who
from loopml.server.mlflow_api.artifacts import files_of, parse_location
from loopml.server.mlflow_api.wire import (
    MlflowError,
    fields,
    integer,
    key_values,
    one_page,
    page_token,
    pairs,
    string,
)
from loopml.tracking.records import Artifact

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

PROTECTED_ALIAS = "champion"  # LoopML's promotion alias: always behind the gates


def version_json(version: ModelVersion) -> dict[str, Any]:
    """A version as MLflow's `ModelVersion` message (version numbers are strings on MLflow's wire)."""
    found: dict[str, Any] = {
        "name": version.name,
        "version": str(version.version),
        "creation_timestamp": version.created_time,
        "last_updated_timestamp": version.trusted_time or version.created_time,
        "user_id": version.created_by or "",
        "current_stage": "None",
        "description": version.description or "",
        "source": version.source_uri or f"mlflow-artifacts:/loopml-models/{version.version_id}/model",
        "run_id": version.run_id or "",
        "status": "READY",
        "tags": pairs(version.tags),
        "aliases": list(version.aliases),
    }
    if version.logged_model_id:
        found["model_id"] = version.logged_model_id
    return found


def model_json(model: RegisteredModel, latest: ModelVersion | None) -> dict[str, Any]:
    """A registered model as MLflow's `RegisteredModel` message."""
    return {
        "name": model.name,
        "creation_timestamp": model.created_time,
        "last_updated_timestamp": model.updated_time,
        "description": model.description or "",
        "latest_versions": [version_json(latest)] if latest is not None else [],
        "tags": pairs(model.tags),
        "aliases": [{"alias": a, "version": str(v)} for a, v in sorted(model.aliases.items())],
    }


def registry_routes(app: FastAPI, tracker: Tracker) -> None:
    """Add MLflow's registry endpoints to `app` (mounted at `/api/2.0`)."""
    store = RegistryStore(tracker.stores.db)
    _model_routes(app, store)
    _model_search_routes(app, store)
    _version_routes(app, tracker, store)
    _alias_routes(app, tracker, store)


def _model(store: RegistryStore, name: str) -> RegisteredModel:
    try:
        return store.get_model(name)
    except NotFound:
        raise MlflowError(
            f"Registered Model with name={name} not found", "RESOURCE_DOES_NOT_EXIST", 404
        ) from None


def _one_model(store: RegistryStore, name: str) -> dict[str, Any]:
    model = _model(store, name)
    latest = store.get_version(f"{name}@v{model.latest_version}") if model.latest_version else None
    return {"registered_model": model_json(model, latest)}


def _version(store: RegistryStore, body: dict[str, Any]) -> ModelVersion:
    name, number = string(body, "name"), integer(body, "version", required=True)
    _model(store, name)
    try:
        return store.get_version(f"{name}@v{number}")
    except NotFound:
        raise MlflowError(
            f"Model Version (name={name}, version={number}) not found", "RESOURCE_DOES_NOT_EXIST", 404
        ) from None


def _model_routes(app: FastAPI, store: RegistryStore) -> None:
    @app.post("/mlflow/registered-models/create")
    async def create(request: Request) -> Any:
        body = await fields(request)
        name = string(body, "name")
        who(request).require("write", model=name)

        def make() -> Any:
            # A taken name is a `Conflict`: MLflow's RESOURCE_ALREADY_EXISTS (wire.py).
            store.create_model(name, description=_description(body), tags=_tags(body))
            return _one_model(store, name)

        return await run_in_threadpool(make)

    @app.get("/mlflow/registered-models/get")
    async def get(request: Request) -> Any:
        name = string(await fields(request), "name")
        who(request).require("read", model=name)
        return await run_in_threadpool(_one_model, store, name)

    @app.patch("/mlflow/registered-models/update")
    async def update(request: Request) -> Any:
        body = await fields(request)
        name = string(body, "name")
        who(request).require("write", model=name)
        description = _description(body) or ""

        def change() -> Any:
            _model(store, name)
            store.update_model(name, description=description)
            return _one_model(store, name)

        return await run_in_threadpool(change)

    @app.post("/mlflow/registered-models/set-tag")
    async def set_tag(request: Request) -> Any:
        body = await fields(request)
        name = string(body, "name")
        who(request).require("write", model=name)
        tags = _tags(
            {
                "tags": [
                    {"key": string(body, "key"), "value": string(body, "value", required=False, default="")}
                ]
            }
        )

        def change() -> None:
            _model(store, name)
            store.set_model_tags(name, tags)

        await run_in_threadpool(change)
        return {}

    for path, method in (("delete", "DELETE"), ("rename", "POST"), ("delete-tag", "DELETE")):
        app.add_api_route(f"/mlflow/registered-models/{path}", _kept, methods=[method])


def _model_search_routes(app: FastAPI, store: RegistryStore) -> None:
    @app.api_route("/mlflow/registered-models/search", methods=["GET", "POST"])
    async def search(request: Request) -> Any:
        caller = who(request)
        body = await fields(request)
        max_results = integer(body, "max_results", default=100)
        if not 1 <= max_results <= 1000:
            raise MlflowError(f"Invalid value {max_results} for parameter 'max_results': 1 to 1000.")
        offset = page_token(body)
        clauses = parse(string(body, "filter", required=False) or "", numbers=())

        def find() -> Any:
            models = sorted(store.list_models(), key=lambda m: m.name)
            models = [
                m
                for m in models
                if caller.can("read", m.name)
                and all(
                    compare_text(c.op, m.tags.get(c.key) if c.tag else m.name, str(c.value)) for c in clauses
                )
            ]
            return one_page(
                models,
                offset,
                max_results,
                "registered_models",
                lambda m: _one_model(store, m.name)["registered_model"],
            )

        return await run_in_threadpool(find)

    @app.api_route("/mlflow/registered-models/get-latest-versions", methods=["GET", "POST"])
    async def latest(request: Request) -> Any:
        name = string(await fields(request), "name")
        who(request).require("read", model=name)

        def find() -> Any:
            model = _model(store, name)
            if not model.latest_version:
                return {}
            return {"model_versions": [version_json(store.get_version(f"{name}@v{model.latest_version}"))]}

        return await run_in_threadpool(find)


async def _kept(request: Request) -> Any:
    raise MlflowError(
        "LoopML keeps registered models and versions under their names (lineage, predictions and the audit trail "
        "refer to them): deleting and renaming are not available",
        "INVALID_STATE",
    )


def _version_routes(app: FastAPI, tracker: Tracker, store: RegistryStore) -> None:
    @app.post("/mlflow/model-versions/create")
    async def create(request: Request) -> Any:
        caller = who(request)
        body = await fields(request)
        name = string(body, "name")
        caller.require("write", model=name)
        source = string(body, "source")
        run_id = string(body, "run_id", required=False)
        model_id = string(body, "model_id", required=False)
        caller.require("read")  # the source is a run's or a logged model's files, which the workspace holds
        description, tags = _description(body), _tags(body)

        def register() -> Any:
            _model(store, name)
            files, logged, run = _source_files(tracker, source, model_id)
            registered = register_mlflow_files(
                tracker,
                name,
                files,
                run_id=run_id or run,
                source_uri=source,
                logged_model_id=logged,
                user=caller.name,
                description=description,
                tags=tags,
            )
            return {"model_version": version_json(registered.version)}

        return await run_in_threadpool(register)

    @app.get("/mlflow/model-versions/get")
    async def get(request: Request) -> Any:
        body = await fields(request)
        who(request).require("read", model=string(body, "name"))
        return {"model_version": version_json(await run_in_threadpool(_version, store, body))}

    @app.get("/mlflow/model-versions/get-download-uri")
    async def download_uri(request: Request) -> Any:
        body = await fields(request)
        who(request).require("read", model=string(body, "name"))
        version = await run_in_threadpool(_version, store, body)
        return {"artifact_uri": f"mlflow-artifacts:/loopml-models/{version.version_id}/model"}

    @app.get("/mlflow/model-versions/search")
    async def search(request: Request) -> Any:
        caller = who(request)
        body = await fields(request)
        max_results = integer(body, "max_results", default=10_000)
        offset = page_token(body)
        clauses = parse(
            string(body, "filter", required=False) or "", strings=("name", "run_id", "source"), numbers=()
        )

        if not 1 <= max_results <= 200_000:
            raise MlflowError(f"Invalid value {max_results} for parameter 'max_results': 1 to 200000.")

        def find() -> Any:
            known = {m.name for m in store.list_models()}
            names = [str(c.value) for c in clauses if c.key == "name" and c.op == "=" and not c.tag]
            models = [n for n in names if n in known] if names else sorted(known)
            versions = [v for name in models if caller.can("read", name) for v in store.list_versions(name)]
            versions = [
                v
                for v in versions
                if all(
                    compare_text(c.op, v.tags.get(c.key) if c.tag else _attribute(v, c.key), str(c.value))
                    for c in clauses
                )
            ]
            return one_page(versions, offset, max_results, "model_versions", version_json)

        return await run_in_threadpool(find)

    @app.post("/mlflow/model-versions/set-tag")
    async def set_tag(request: Request) -> Any:
        body = await fields(request)
        who(request).require("write", model=string(body, "name"))
        tags = _tags(
            {
                "tags": [
                    {"key": string(body, "key"), "value": string(body, "value", required=False, default="")}
                ]
            }
        )
        await run_in_threadpool(lambda: store.set_version_tags(_version(store, body).ref, tags))
        return {}

    for path, method in (("delete", "DELETE"), ("update", "PATCH"), ("delete-tag", "DELETE")):
        app.add_api_route(f"/mlflow/model-versions/{path}", _kept, methods=[method])

    @app.post("/mlflow/model-versions/transition-stage")
    async def transition(request: Request) -> Any:
        raise MlflowError(
            "model stages are deprecated in MLflow and not kept by LoopML: use aliases "
            "(set_registered_model_alias), which LoopML audits and gates",
            "INVALID_STATE",
        )


MAX_DESCRIPTION = 100_000


def _description(body: dict[str, Any]) -> str | None:
    text = string(body, "description", required=False)
    if text is not None and (len(text) > MAX_DESCRIPTION or "\x00" in text):
        raise MlflowError(f"a description holds at most {MAX_DESCRIPTION} characters and no NUL byte")
    return text


def _tags(body: dict[str, Any]) -> dict[str, str]:
    from loopml.tracking.values import tag_value

    return {key: tag_value(key, value) for key, value in key_values(body, "tags").items()}


def _attribute(version: ModelVersion, key: str) -> str | None:
    return {"name": version.name, "run_id": version.run_id, "source": version.source_uri}.get(key)


def _source_files(
    tracker: Tracker, source: str, model_id: str | None
) -> tuple[list[Artifact], str | None, str | None]:
    """The files of an MLflow model source on this server, the logged model it is and its run."""
    logged = model_id or (source[len("models:/") :] if source.startswith("models:/m-") else None)
    if logged:
        model = LoggedModelStore(tracker.stores.db).get(logged)
        return LoggedModelStore(tracker.stores.db).files(logged), logged, model.source_run_id
    if source.startswith("runs:/"):
        run_id, _, folder = source[len("runs:/") :].partition("/")
        experiment_id = tracker.store.get_run(run_id).experiment_id
        source = f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts/{folder}"
    if not source.startswith("mlflow-artifacts:/"):
        raise MlflowError(
            f"source {source[:200]!r}: LoopML registers models stored on this server (models:/<model_id>, "
            "runs:/<run_id>/<path> or mlflow-artifacts:/...)"
        )
    where = parse_location(source[len("mlflow-artifacts:") :])
    prefix = f"{where.inner}/" if where.inner else ""
    files = [
        Artifact(f.path[len(prefix) :], f.digest, f.size)
        for f in files_of(tracker, where)
        if f.path.startswith(prefix)
    ]
    run = where.owner if where.kind == "run" else None
    return files, where.owner if where.kind == "logged_model" else None, run


def _alias_routes(app: FastAPI, tracker: Tracker, store: RegistryStore) -> None:
    @app.post("/mlflow/registered-models/alias")
    async def set_alias(request: Request) -> Any:
        caller = who(request)
        body = await fields(request)
        name, alias = string(body, "name"), string(body, "alias")
        caller.require("write", model=name)
        number = _version(store, body).version
        await run_in_threadpool(lambda: _move(tracker, store, name, alias, version=number, user=caller.name))
        return {}

    @app.delete("/mlflow/registered-models/alias")
    async def delete_alias(request: Request) -> Any:
        caller = who(request)
        body = await fields(request)
        name, alias = string(body, "name"), string(body, "alias")
        caller.require("write", model=name)

        def remove() -> None:
            if alias in _model(store, name).aliases:
                store.move_alias(name, alias, None, reason="removed through MLflow's API", user=caller.name)

        await run_in_threadpool(remove)
        return {}

    @app.get("/mlflow/registered-models/alias")
    async def get_alias(request: Request) -> Any:
        body = await fields(request)
        name, alias = string(body, "name"), string(body, "alias")
        who(request).require("read", model=name)

        def find() -> Any:
            if alias not in _model(store, name).aliases:
                raise MlflowError(f"Registered model alias {alias} not found.")  # 400, as MLflow answers
            return {"model_version": version_json(store.get_version(f"{name}@{alias}"))}

        return await run_in_threadpool(find)


def _move(tracker: Tracker, store: RegistryStore, name: str, alias: str, *, version: int, user: str) -> None:
    from loopml.registry.config import gate_policy
    from loopml.registry.promoter import promote
    from loopml.registry.promotion import PromotionRefused

    if _model(store, name).aliases.get(alias) == version:
        return  # already there: MLflow answers a repeated set with success
    policy = gate_policy(tracker.settings.project_dir, name, alias)
    if alias != PROTECTED_ALIAS and policy is None:
        store.move_alias(name, alias, version, reason="set through MLflow's API", user=user)
        return
    from loopml.registry.loading import load_version
    from loopml.registry.skops_io import UntrustedArtifact

    try:  # what a protected alias names gets served: a model LoopML will not load cannot hold it
        load_version(tracker, store.get_version(f"{name}@v{version}"), serving=True)
    except UntrustedArtifact as error:
        message = f"LoopML refused to move {name}@{alias} to version {version}: {error.message}"
        raise MlflowError(message, "INVALID_STATE") from None
    try:
        promote(
            tracker, name, version, alias=alias, policy=policy, reason="set through MLflow's API", user=user
        )
    except InvalidInput as error:  # e.g. no held-out rows to score on: the move is refused, not malformed
        message = f"LoopML refused to move {name}@{alias} to version {version}: {error.message}"
        raise MlflowError(message, "INVALID_STATE") from None
    except PromotionRefused as refused:
        verdicts = "; ".join(f"{g.gate}: {g.detail}" for g in refused.gates if not g.passed)
        raise MlflowError(
            f"LoopML refused to move {name}@{alias} to version {version}: {refused.message}"
            + (f" (gates: {verdicts})" if verdicts else ""),
            "INVALID_STATE",
        ) from None
