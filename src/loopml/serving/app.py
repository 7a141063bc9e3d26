"""`create_app(["fraud@champion"])`: the FastAPI app `loopml serve` runs, usable from Python as well.

Routes (every prediction answer names its version in `X-Model-Version` and its id in `X-Request-Id`):

    GET  /v2/health/live, /v2/health/ready, /v2                    Open Inference Protocol V2: health, server
    GET  /v2/models/{m}[/versions/{v}][/ready]                     model metadata (from the signature), ready
    POST /v2/models/{m}[/versions/{v}]/infer                       inference on tensors
    GET  /ping, /health, /version;  POST /invocations              MLflow's scoring server, for its clients
    POST /predict/{m}                                              plain JSON records -> predictions + ids
    POST /feedback                                                 true labels for earlier prediction ids
    GET  /deployments/{m}                                          routing now, requests per version
    GET  /metrics                                                  Prometheus

With API keys configured, every route but the health ones needs `Authorization: Bearer KEY` (or `X-API-Key`).
Errors are JSON `{"error", "code", "problems"?}` with a 4xx status (MLflow's routes add its `error_code` and
`message` keys), never a traceback.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from loopml._version import __version__
from loopml.core.errors import InvalidInput, LoopMLError, NotFound
from loopml.predictions import record_feedback
from loopml.serving import formats
from loopml.serving.codecs import parse_json, require_json
from loopml.serving.limits import BodyLimit, Overloaded
from loopml.serving.pool import ModelPool
from loopml.serving.server import Answer, Codec, ServeOptions, Server, dumps, error_document
from loopml.tracking.tracker import Tracker

log = logging.getLogger(__name__)
JSON = "application/json"
HEALTH_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/ping", "/health"})
_MLFLOW_CODES = {400: "BAD_REQUEST", 404: "RESOURCE_DOES_NOT_EXIST", 413: "BAD_REQUEST", 415: "BAD_REQUEST"}


def create_app(
    refs: Iterable[str], *, tracker: Tracker | None = None, options: ServeOptions | None = None
) -> Any:
    """An ASGI app serving `refs` (NAME, NAME@ALIAS or NAME@vN); every model is loaded before it returns."""
    from loopml.tracking.tracker import default_tracker

    options = options or ServeOptions()
    pool = ModelPool(tracker or default_tracker(), refs, poll_s=options.poll_s, policy=options.policy)
    pool.start()
    _check_log_policy(pool, options)
    server = Server(pool, options)
    _observe_versions(server)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        server.close()

    app = FastAPI(title="LoopML model server", version=__version__, lifespan=lifespan)
    app.state.server = server
    _errors(app)
    # Routes are matched in order: the prediction routes first, as they take nearly all the traffic.
    _mlflow_routes(app, server)
    _predict_routes(app, server)
    _oip_routes(app, server)
    _health_routes(app, server)
    if options.api_keys:
        app.add_middleware(ApiKeyGuard, keys=options.api_keys)
    app.add_middleware(BodyLimit, max_body_bytes=options.max_body_bytes)  # added last: runs first
    return app


def _check_log_policy(pool: ModelPool, options: ServeOptions) -> None:
    """A redacted or hashed column must exist: a misspelt one would log the data it was meant to hide."""
    known: set[str] = set()
    for name in pool.names:
        signature = pool.get(name).predictor.signature
        known |= set(signature.column_names) if signature is not None else set()
    unknown = sorted((set(options.redact) | set(options.hash_columns)) - known)
    if unknown:
        raise InvalidInput(
            f"--redact/--hash name columns no served model takes: {', '.join(unknown)} "
            f"(columns: {', '.join(sorted(known)) or 'none'})"
        )


def _health_routes(app: FastAPI, server: Server) -> None:
    pool = server.pool

    @app.get("/v2/health/live")
    async def live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return _json({"ready": pool.ready()}, 200 if pool.ready() else 503)

    @app.get("/ping")
    @app.get("/health")
    async def ping() -> Response:
        return Response("\n", 200 if pool.ready() else 503, media_type="text/plain")

    @app.get("/version")
    async def version() -> Response:
        return Response(__version__, media_type="text/plain")

    @app.get("/v2")
    async def server_metadata() -> Response:
        return _json({"name": "loopml", "version": __version__, "extensions": []})

    @app.get("/deployments/{model}")
    async def deployment(model: str) -> Response:
        route = pool.route(model)
        roles = route.roles
        counts = server.watch.counts(model)
        versions = {
            str(v): {"role": roles.get(v, "pinned"), **counts.get(v, {"requests": 0, "failures": 0})}
            for v in sorted({*roles, *counts})
        }
        return _json({"deployment": route.deployment.to_dict(), "versions": versions})

    @app.get("/metrics")
    async def metrics() -> Response:
        _observe_versions(server)
        return Response(server.metrics.exposition(), media_type="text/plain; version=0.0.4")


def _oip_routes(app: FastAPI, server: Server) -> None:
    pool = server.pool
    infer_body = {"requestBody": {"required": True, "content": {JSON: {"schema": _OIP_REQUEST}}}}

    @app.get("/v2/models/{model}")
    async def model_metadata(model: str) -> Response:
        served = pool.get(model)
        return _json(formats.oip_metadata(served, [served.number]))

    @app.get("/v2/models/{model}/versions/{version}")
    async def version_metadata(model: str, version: str) -> Response:
        served = pool.get(model, _version(version))
        return _json(formats.oip_metadata(served, [served.number]))

    @app.get("/v2/models/{model}/ready")
    async def model_ready(model: str) -> Response:
        pool.get(model)
        return _json({"name": model, "ready": True})

    @app.get("/v2/models/{model}/versions/{version}/ready")
    async def version_ready(model: str, version: str) -> Response:
        pool.get(model, _version(version))
        return _json({"name": model, "ready": True})

    @app.post("/v2/models/{model}/infer", openapi_extra=infer_body)
    async def infer(model: str, request: Request) -> Response:
        return await _predict(
            server, request, endpoint="/v2/models/{m}/infer", name=model, version=None, codec=formats.OIP
        )

    @app.post("/v2/models/{model}/versions/{version}/infer", openapi_extra=infer_body)
    async def infer_version(model: str, version: str, request: Request) -> Response:
        number = _version(version)
        endpoint = "/v2/models/{m}/versions/{v}/infer"
        return await _predict(
            server, request, endpoint=endpoint, name=model, version=number, codec=formats.OIP
        )


def _mlflow_routes(app: FastAPI, server: Server) -> None:
    body = {
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": _MLFLOW_REQUEST}, "text/csv": {"schema": {"type": "string"}}},
        }
    }

    @app.post("/invocations", openapi_extra=body)
    async def invocations(request: Request) -> Response:
        name = request.query_params.get("model") or server.pool.names[0]
        codec = formats.mlflow_codec(request.headers.get("content-type"))
        return await _predict(server, request, endpoint="/invocations", name=name, version=None, codec=codec)


def _predict_routes(app: FastAPI, server: Server) -> None:
    body = {"requestBody": {"required": True, "content": {JSON: {"schema": _RECORDS_REQUEST}}}}

    @app.post("/predict/{model}", openapi_extra=body)
    async def predict(model: str, request: Request) -> Response:
        return await _predict(
            server, request, endpoint="/predict/{m}", name=model, version=None, codec=formats.RECORDS
        )

    feedback_body = {"requestBody": {"required": True, "content": {JSON: {"schema": _FEEDBACK_REQUEST}}}}

    @app.post("/feedback", openapi_extra=feedback_body)
    async def feedback(request: Request) -> Response:
        _require_json(request)
        model, items = formats.feedback_items(parse_json(await request.body()), server.pool.names)
        recorded = await anyio.to_thread.run_sync(lambda: record_feedback(server.pool.tracker, items, model))
        return _json({"recorded": recorded})


async def _predict(
    server: Server, request: Request, *, endpoint: str, name: str, version: int | None, codec: Codec
) -> Response:
    start = time.perf_counter()
    label, number = (name, "") if name in server.pool.names else ("", "")
    try:
        if endpoint != "/invocations":
            _require_json(request)
        body = await request.body()
        answer: Answer = await server.predict(name, version, body, codec, request.headers)
    except LoopMLError as error:
        server.metrics.observe(label, number, endpoint, error.http_status, time.perf_counter() - start)
        raise
    number = str(answer.served.number)
    server.metrics.observe(label, number, endpoint, 200, time.perf_counter() - start)
    headers = {
        "x-request-id": answer.request_id,
        "x-model-version": number,
        "x-model-name": answer.served.name,
        "x-model-role": answer.role,
    }
    return Response(dumps(answer.document), media_type=JSON, headers=headers)


def _require_json(request: Request) -> None:
    require_json(request.headers.get("content-type"))


def _version(text: str) -> int:
    digits = text.removeprefix("v")
    if not digits.isdigit() or int(digits) < 1:
        raise InvalidInput(f"a model version is a positive integer, got {text!r}")
    return int(digits)


def _observe_versions(server: Server) -> None:
    server.metrics.served.clear()
    for name in server.pool.names:
        with contextlib.suppress(NotFound):
            served = server.pool.get(name)
            server.metrics.served.labels(name, str(served.number), served.predictor.runtime).set(1)


def _json(document: Any, status: int = 200) -> Response:
    return Response(dumps(document), status, media_type=JSON)


def _errors(app: FastAPI) -> None:
    @app.exception_handler(LoopMLError)
    async def loopml_error(request: Request, error: LoopMLError) -> Response:
        document = error_document(error)
        if request.url.path == "/invocations":
            document |= {
                "error_code": _MLFLOW_CODES.get(error.http_status, "INTERNAL_ERROR"),
                "message": error.message,
            }
        headers = {"retry-after": str(error.retry_after_s)} if isinstance(error, Overloaded) else None
        if error.http_status >= 500 and not isinstance(error, Overloaded):
            log.warning("%s %s: %s", request.method, request.url.path, error.message)
        return Response(dumps(document), error.http_status, media_type=JSON, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        message = error.detail if isinstance(error.detail, str) else "request refused"
        if error.status_code == 404:
            message = f"no route {request.method} {request.url.path}; see /docs for the routes"
        return Response(dumps({"error": message, "code": "http_error"}), error.status_code, media_type=JSON)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return Response(dumps({"error": problems, "code": "invalid_input"}), 400, media_type=JSON)


class ApiKeyGuard:
    """ASGI middleware asking for one of `keys` on every route but health."""

    def __init__(self, app: Any, keys: tuple[str, ...]) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in HEALTH_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        given = (
            headers.get(b"x-api-key") or headers.get(b"authorization", b"").removeprefix(b"Bearer ").strip()
        )
        # Compare with every key, always: the time taken must not tell which one nearly matched.
        if any([hmac.compare_digest(given, key) for key in self.keys]):  # noqa: C419 - no short cut
            await self.app(scope, receive, send)
            return
        body = dumps({"error": "send a valid API key: Authorization: Bearer KEY", "code": "unauthorized"})
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


_SCALAR: dict[str, Any] = {"type": ["string", "number", "integer", "boolean", "null"]}
_OIP_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "inputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "shape", "datatype", "data"],
                "properties": {
                    "name": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer"}},
                    "datatype": {"type": "string"},
                    "data": {"type": "array"},
                },
            },
        },
        "outputs": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
    },
}
_MLFLOW_REQUEST: dict[str, Any] = {
    "type": "object",
    "properties": {
        "dataframe_split": {"type": "object"},
        "dataframe_records": {"type": "array", "items": {"type": "object", "additionalProperties": _SCALAR}},
        "instances": {"type": "array"},
        "inputs": {},
    },
}
_FEEDBACK_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["labels"],
    "properties": {
        "model": {"type": "string"},
        "labels": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["prediction_id", "label"],
                "properties": {"prediction_id": {"type": "string"}, "label": _SCALAR},
            },
        },
    },
}
_RECORDS_REQUEST: dict[str, Any] = {
    "oneOf": [
        {"type": "array", "items": {"type": "object", "additionalProperties": _SCALAR}},
        {"type": "object", "additionalProperties": _SCALAR},
    ]
}
