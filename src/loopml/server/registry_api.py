"""The model registry over HTTP: models, versions, aliases, promotion through the gates, audit, deployments.

```
GET    /api/v1/models                                  reader    the models the caller may read
GET    /api/v1/models/{name}                           reader
PATCH  /api/v1/models/{name}  {description?, owner?, tags?}          editor of the model
GET    /api/v1/models/{name}/versions                  reader    newest first
POST   /api/v1/models/{name}/versions  {content_hash, package_digest, run_id?, description?, tags?}
                                                       editor    the package's blobs are uploaded first
                                                                 (PUT /api/v1/blobs/...); flavor, signature and
                                                                 metrics are read from its manifest here
GET    /api/v1/models/{name}/versions/by-content/{hash}          reader    404 when no version has it
GET    /api/v1/model-versions/{ref}                    reader    fraud@v3, fraud@champion, fraud
PUT    /api/v1/model-versions/{ref}/tags  {tags}       editor
POST   /api/v1/model-versions/{ref}/trust          admin     mark a version whose loading runs code trusted
PUT    /api/v1/models/{name}/aliases/{alias}  {version, reason?}  editor    a forced move (no gates), audited
DELETE /api/v1/models/{name}/aliases/{alias}?reason=   editor
POST   /api/v1/models/{name}/promote  {version, alias?, policy?, dataset?, target?, force?, reason?}
                                                       editor    the gates run here, on the server's data,
                                                                 under the server's policy for the alias if
                                                                 its loopml.toml sets one (else `policy`);
                                                                 a refusal is a 409 with the gates' verdicts
POST   /api/v1/models/{name}/compare  {refs, dataset?, target?, slice_by?}   reader
GET    /api/v1/models/{name}/history?alias=            reader    the audit trail of alias moves
GET    /api/v1/models/{name}/deployment                reader    null when none
PUT    /api/v1/models/{name}/deployment  {champion?, challenger?, mode?, share?, sticky_key?, limits?, reason?}
GET    /api/v1/models/{name}/deployment/events         reader
```
Every write records the caller's name (the version's `created_by`, the alias event's and deployment's user).
The server never loads a model a client sent unless a gate scores it, and then only through the safe
formats (skops, ONNX): python-flavor models are refused there as everywhere without `trusted`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from loopml.core.errors import InvalidInput
from loopml.core.plain import to_plain as plain
from loopml.registry.records import ModelRef
from loopml.server.fields import INT_MAX, flag, number, number_map, string_map, text, who, whole

if TYPE_CHECKING:
    from loopml.registry.store import RegistryStore
    from loopml.tracking.tracker import Tracker

_HEX = frozenset("0123456789abcdef")


def registry_routes(app: FastAPI, tracker: Tracker, read_body: Any) -> None:
    """Add the registry routes to `app`; `read_body(request)` returns the size-checked JSON object."""
    from loopml.registry.store import RegistryStore

    store = RegistryStore(tracker.stores.db)
    _model_routes(app, store, read_body)
    _version_routes(app, tracker, store, read_body)
    _alias_routes(app, tracker, store, read_body)
    _deployment_routes(app, tracker, store, read_body)


def _model_routes(app: FastAPI, store: RegistryStore, read_body: Any) -> None:
    @app.get("/api/v1/models")
    async def list_models(request: Request) -> Any:
        caller = who(request)
        found = await run_in_threadpool(store.list_models)
        visible = [m for m in found if caller.can("read", model=m.name)]
        if not visible and not caller.can("read"):
            caller.require("read")  # a caller with no role anywhere hears so, not an empty list
        return {"models": plain(visible)}

    @app.get("/api/v1/models/{name}")
    async def get_model(name: str, request: Request) -> Any:
        who(request).require("read", model=name)
        return plain(await run_in_threadpool(store.get_model, name))

    @app.patch("/api/v1/models/{name}")
    async def update_model(name: str, request: Request) -> Any:
        who(request).require("write", model=name)
        body = await read_body(request)
        description = text(body, "description", required=False)
        owner = text(body, "owner", required=False)
        tags = string_map(body, "tags")

        def change() -> Any:
            store.get_model(name)  # NotFound before any write
            store.update_model(name, description=description, owner=owner)
            store.set_model_tags(name, tags)
            return store.get_model(name)

        return plain(await run_in_threadpool(change))


def _version_routes(app: FastAPI, tracker: Tracker, store: RegistryStore, read_body: Any) -> None:
    @app.get("/api/v1/models/{name}/versions")
    async def list_versions(name: str, request: Request) -> Any:
        who(request).require("read", model=name)
        return {"versions": plain(await run_in_threadpool(store.list_versions, name))}

    @app.get("/api/v1/models/{name}/versions/by-content/{content_hash}")
    async def find_version(name: str, content_hash: str, request: Request) -> Any:
        who(request).require("read", model=name)
        from loopml.core.errors import NotFound

        found = await run_in_threadpool(store.find_version, name, content_hash)
        if found is None:
            raise NotFound(f"{name} has no version with content {content_hash[:12]}")
        return plain(found)

    @app.post("/api/v1/models/{name}/versions")
    async def add_version(name: str, request: Request) -> Any:
        caller = who(request)
        caller.require("write", model=name)
        ModelRef.parse(name)
        body = await read_body(request)
        content_hash, digest = _digest(body, "content_hash"), _digest(body, "package_digest")
        run_id = text(body, "run_id", required=False)
        if run_id is not None:
            caller.require("read")  # runs belong to the workspace, not to one model
        description = text(body, "description", required=False)
        tags = string_map(body, "tags")

        def add() -> Any:
            manifest = _manifest(tracker, name, digest)
            from loopml.registry.package import Identity

            claimed = Identity(
                str(manifest["flavor"]), str(manifest.get("model_hash")), manifest.get("signature")
            )
            if claimed.content_hash != content_hash:
                raise InvalidInput("content_hash: not the content hash of that package's manifest")
            if run_id is not None:
                tracker.store.run_exists(run_id)
            registered = store.add_version(
                name,
                flavor=str(manifest["flavor"]),
                content_hash=content_hash,
                package_digest=digest,
                run_id=run_id,
                signature=manifest.get("signature"),
                metrics=manifest.get("metrics"),
                description=description,
                created_by=caller.name,
                tags=tags,
            )
            if registered.created:
                from loopml.registry.webhooks import announce

                payload = {"model": name, "version": registered.version.version, "run_id": run_id}
                announce(tracker.settings.project_dir, "version_registered", payload)
            return registered

        return plain(await run_in_threadpool(add))

    @app.get("/api/v1/model-versions/{ref}")
    async def get_version(ref: str, request: Request) -> Any:
        who(request).require("read", model=ModelRef.parse(ref).name)
        return plain(await run_in_threadpool(store.get_version, ref))

    @app.put("/api/v1/model-versions/{ref}/tags")
    async def set_version_tags(ref: str, request: Request) -> Any:
        who(request).require("write", model=ModelRef.parse(ref).name)
        tags = string_map(await read_body(request), "tags")
        await run_in_threadpool(store.set_version_tags, ref, tags)
        return plain(await run_in_threadpool(store.get_version, ref))

    @app.post("/api/v1/model-versions/{ref}/trust")
    async def trust_version(ref: str, request: Request) -> Any:
        caller = who(request)
        caller.require("admin", model=ModelRef.parse(ref).name)  # loading it will run its code on servers
        return plain(await run_in_threadpool(store.mark_trusted, ref, caller.name))


def _alias_routes(app: FastAPI, tracker: Tracker, store: RegistryStore, read_body: Any) -> None:
    from loopml.registry.webhooks import alias_payload, announce

    @app.put("/api/v1/models/{name}/aliases/{alias}")
    async def set_alias(name: str, alias: str, request: Request) -> Any:
        caller = who(request)
        caller.require("write", model=name)
        body = await read_body(request)
        version, reason = whole(body, "version", maximum=INT_MAX), text(body, "reason", required=False)

        def move() -> Any:
            event = store.move_alias(name, alias, version, forced=True, reason=reason, user=caller.name)
            announce(tracker.settings.project_dir, "alias_moved", alias_payload(event))
            return event

        return plain(await run_in_threadpool(move))

    @app.delete("/api/v1/models/{name}/aliases/{alias}")
    async def delete_alias(name: str, alias: str, request: Request, reason: str | None = None) -> Any:
        caller = who(request)
        caller.require("write", model=name)

        def remove() -> Any:
            store.get_version(f"{name}@{alias}")  # NotFound when the alias is not set
            event = store.move_alias(name, alias, None, reason=reason, user=caller.name)
            announce(tracker.settings.project_dir, "alias_moved", alias_payload(event))
            return event

        return plain(await run_in_threadpool(remove))

    @app.post("/api/v1/models/{name}/promote")
    async def promote(name: str, request: Request) -> Any:
        caller = who(request)
        caller.require("write", model=name)
        body = await read_body(request)
        if body.get("dataset") is not None:
            caller.require("read")  # datasets belong to the workspace, not to one model
        from loopml.registry import promoter
        from loopml.registry.promotion import PromotionRefused

        def run() -> Any:
            alias = text(body, "alias", required=False) or "champion"
            return promoter.promote(
                tracker,
                name,
                whole(body, "version", maximum=INT_MAX),
                alias=alias,
                policy=_policy(tracker, name, alias, body.get("policy")),
                **_evaluation_rows(body),
                dataset=text(body, "dataset", required=False),
                target=text(body, "target", required=False),
                force=flag(body, "force"),
                reason=text(body, "reason", required=False),
                user=caller.name,
            )

        try:
            return plain(await run_in_threadpool(run))
        except PromotionRefused as refused:
            document = {"error": refused.message, "code": refused.code, "gates": plain(refused.gates)}
            return JSONResponse(document, status_code=refused.http_status)

    @app.post("/api/v1/models/{name}/compare")
    async def compare(name: str, request: Request) -> Any:
        caller = who(request)
        caller.require("read", model=name)
        body = await read_body(request)
        if body.get("dataset") is not None:
            caller.require("read")  # datasets belong to the workspace, not to one model
        refs = body.get("refs")
        if not isinstance(refs, list) or not refs or not all(isinstance(r, str) and r for r in refs):
            raise InvalidInput('refs: a list of versions or aliases, e.g. ["champion", "v3"]')
        from loopml.registry import promoter

        def run() -> Any:
            return promoter.compare(
                tracker,
                name,
                *refs,
                **_evaluation_rows(body),
                dataset=text(body, "dataset", required=False),
                target=text(body, "target", required=False),
                slice_by=text(body, "slice_by", required=False),
            )

        return {"scores": plain(await run_in_threadpool(run))}

    @app.get("/api/v1/models/{name}/history")
    async def history(name: str, request: Request, alias: str | None = None) -> Any:
        who(request).require("read", model=name)
        return {"events": plain(await run_in_threadpool(store.history, name, alias))}


def _deployment_routes(app: FastAPI, tracker: Tracker, store: RegistryStore, read_body: Any) -> None:
    from loopml.registry.deployments import Deployment, DeploymentStore

    deployments = DeploymentStore(tracker.stores.db)

    @app.get("/api/v1/models/{name}/deployment")
    async def get_deployment(name: str, request: Request) -> Any:
        who(request).require("read", model=name)
        return {"deployment": plain(await run_in_threadpool(deployments.get, name))}

    @app.put("/api/v1/models/{name}/deployment")
    async def set_deployment(name: str, request: Request) -> Any:
        caller = who(request)
        caller.require("write", model=name)
        body = await read_body(request)
        share = number(body.get("share", 0.0), "share")
        wanted = Deployment(
            model=name,
            champion=text(body, "champion", required=False) or "champion",
            challenger=text(body, "challenger", required=False),
            mode=text(body, "mode", required=False) or "single",
            share=share,
            sticky_key=text(body, "sticky_key", required=False),
            limits=number_map(body, "limits"),
        )
        reason = text(body, "reason", required=False)

        def change() -> Any:
            for ref in (wanted.champion, wanted.challenger):
                if ref is not None:
                    store.get_version(f"{name}@{ref}")  # NotFound now, not in a server later
            detail = {"reason": reason} if reason else None
            return deployments.set(wanted, user=caller.name, detail=detail)

        return plain(await run_in_threadpool(change))

    @app.get("/api/v1/models/{name}/deployment/events")
    async def deployment_events(name: str, request: Request) -> Any:
        who(request).require("read", model=name)
        return {"events": plain(await run_in_threadpool(deployments.events, name))}


def _policy(tracker: Tracker, name: str, alias: str, asked: Any) -> Any:
    """The server's own policy for the alias when its loopml.toml sets one (a client cannot relax it), else
    the caller's, else the default."""
    from loopml.registry.config import gate_policy, policy_from

    configured = gate_policy(tracker.settings.project_dir, name, alias)
    if configured is not None or asked is None:
        return configured
    return policy_from(asked, "policy")


def _evaluation_rows(body: dict[str, Any]) -> dict[str, Any]:
    """`X` and `y` from rows sent with the request (pandas' split form and a list of labels), if any."""
    rows, labels = body.get("rows"), body.get("labels")
    if rows is None and labels is None:
        return {}
    if not isinstance(rows, dict) or set(rows) != {"columns", "data"} or not isinstance(labels, list):
        raise InvalidInput('rows: {"columns": [...], "data": [[...], ...]} with labels: [...] (one per row)')
    columns, data = rows["columns"], rows["data"]
    if (
        not isinstance(columns, list)
        or not all(isinstance(c, str) for c in columns)
        or len(set(columns)) != len(columns)
    ):
        raise InvalidInput("rows.columns: a list of distinct column names")
    if not isinstance(data, list) or not all(isinstance(r, list) and len(r) == len(columns) for r in data):
        raise InvalidInput(f"rows.data: a list of rows of {len(columns)} values each")
    if len(labels) != len(data) or not data:
        raise InvalidInput(f"labels: one per row ({len(data)} rows, {len(labels)} labels), at least one")
    if not all(v is None or isinstance(v, str | int | float) for r in data for v in r) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in labels
    ):
        raise InvalidInput("rows and labels hold numbers, strings or null")
    import pandas as pd

    return {"X": pd.DataFrame(data, columns=columns).infer_objects(), "y": pd.Series(labels)}


def _digest(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or len(value) != 64 or not set(value) <= _HEX:
        raise InvalidInput(f"{key}: a content hash (64 lower-case hex digits)")
    return value


def _manifest(tracker: Tracker, name: str, digest: str) -> dict[str, Any]:
    """The manifest of an uploaded package, restored and verified (every file present with its hash)."""
    from loopml.core.errors import LoopMLError
    from loopml.registry.package import open_package, read_manifest

    try:
        folder = open_package(tracker.blobs, digest, tracker.settings.home_dir / "cache" / "models")
        manifest = read_manifest(folder)
    except (LoopMLError, ValueError, OSError) as error:
        message = getattr(error, "message", None) or str(error)
        raise InvalidInput(f"package_digest: not a complete, readable model package: {message}") from None
    if manifest.get("name") != name or not isinstance(manifest.get("flavor"), str):
        raise InvalidInput(f"package_digest: that package is not a package of {name!r}")
    return manifest
