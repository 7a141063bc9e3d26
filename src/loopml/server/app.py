"""The team server's ASGI app: every request authenticated (bearer token), every route checked for a role,
the Host header checked against the server's names, failed logins rate-limited per client address.

    app = create_server_app(tracker, hosts=("127.0.0.1", "localhost"))

Routes: `GET /api/v1/health` (no token), `GET /api/v1/whoami`, `GET /metrics` (reader); tracking
(`tracking_api`: experiments, runs, params, tags, metrics with idempotent batches, search), artifacts and blobs
(`artifacts_api`), the registry (`registry_api`: models, versions, aliases, promotion, audit, deployments).
Errors are JSON `{"error", "code"}` with the error's HTTP status; nothing a client sends becomes a file path.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from loopml.core.errors import InvalidInput, LoopMLError, Unauthenticated
from loopml.server.accounts import DEFAULT_WORKSPACE, AccountStore, Principal
from loopml.server.fields import who
from loopml.server.mlflow_api import is_mlflow_path
from loopml.server.ui.login import guard_ui, is_ui_path, login_routes
from loopml.server.ui.pages import Pages

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

FAILURES_PER_MINUTE = 10  # failed authentications per client address before 429
MAX_BODY_BYTES = 1_000_000  # a JSON request body
MAX_TRACKED_ADDRESSES = 10_000  # client addresses with recent failed logins kept in memory


@dataclass(frozen=True)
class ServerOptions:
    """`hosts`: names the server answers to (the Host header, DNS-rebinding defence); `anonymous_read`:
    requests without a token may read (off unless asked for)."""

    hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
    anonymous_read: bool = False
    max_upload_bytes: int = 2 * 2**30  # one artifact upload


class FailedLogins:
    """A sliding one-minute count of failed authentications per client address."""

    def __init__(self, limit: int = FAILURES_PER_MINUTE) -> None:
        self.limit = limit
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, client: str) -> bool:
        with self._lock:
            found = self._seen.get(client)
            return found is not None and len(self._fresh(found)) >= self.limit

    def add(self, client: str) -> None:
        with self._lock:
            if len(self._seen) >= MAX_TRACKED_ADDRESSES:  # forget addresses whose failures are all old
                self._seen = {c: d for c, d in self._seen.items() if self._fresh(d)}
            self._seen.setdefault(client, deque()).append(time.monotonic())

    @staticmethod
    def _fresh(found: deque[float]) -> deque[float]:
        while found and found[0] < time.monotonic() - 60:
            found.popleft()
        return found


def create_server_app(tracker: Tracker, *, options: ServerOptions | None = None) -> FastAPI:
    """The team server's app over `tracker`'s stores."""
    options = options or ServerOptions()
    accounts = AccountStore(tracker.stores.db)
    failures = FailedLogins()
    app = FastAPI(title="LoopML team server", version="1")

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        host = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]").lower()
        if host not in options.hosts:
            return error_response(
                400, "bad_host", f"this server answers to {', '.join(options.hosts)}, not {host!r}"
            )
        path = request.url.path
        request.state.workspace = path.split("/", 3)[2] if path.startswith("/w/") else DEFAULT_WORKSPACE
        if path in ("/api/v1/health", "/"):  # "/" only redirects a browser to the UI
            return await call_next(request)
        if is_ui_path(path):  # pages take a session cookie; the API below takes bearer tokens only
            return await guard_ui(request, call_next, accounts, failures)
        refuse = _mlflow_refusal if is_mlflow_path(path) else error_response
        client = request.client.host if request.client else "?"
        if failures.blocked(client):
            return refuse(429, "too_many_attempts", "too many failed authentications; wait a minute")
        token = bearer_or_basic(request.headers.get("authorization", ""))
        try:
            if token is None and options.anonymous_read and request.method in ("GET", "HEAD"):
                request.state.principal = _anonymous()
            else:
                request.state.principal = accounts.authenticate(token)
        except Unauthenticated as error:
            failures.add(client)
            return refuse(401, error.code, error.message, {"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=302)

    login_routes(app, Pages(tracker, hosts=options.hosts, login=True), accounts, failures)
    _serve_api(app, tracker, options)
    from loopml.server.workspaces import WorkspaceApps

    # Other workspaces live under /w/NAME/ with their own stores; clients point LOOPML_TRACKING_URI there.
    app.mount("/w/{workspace}", WorkspaceApps(tracker.settings, options))
    return app


def workspace_api(tracker: Tracker, options: ServerOptions) -> FastAPI:
    """The API over one workspace's stores, without the authentication layer (the server's app in front of it
    authenticates every request and says which workspace it addressed)."""
    app = FastAPI(title="LoopML team server workspace", version="1", openapi_url=None)
    _serve_api(app, tracker, options)
    return app


def bearer_or_basic(header: str) -> str | None:
    """The token of an Authorization header: `Bearer <token>`, or Basic auth whose password is the token
    (MLflow's client sends `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD` that way; the user name
    is not needed, the token names its user)."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        import base64
        import binascii

        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def _mlflow_refusal(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    from loopml.server.mlflow_api.wire import code_for_status, error_body

    return error_body(status, code_for_status(status), message, headers)


def _mount_ui(app: FastAPI, tracker: Tracker, options: ServerOptions) -> None:
    from loopml.server.ui.app import ui_app

    app.mount("/ui", ui_app(tracker, hosts=options.hosts))


def _serve_api(app: FastAPI, tracker: Tracker, options: ServerOptions) -> None:
    @app.exception_handler(LoopMLError)
    async def loopml_error(_: Request, error: LoopMLError) -> JSONResponse:
        return error_response(error.http_status, error.code, error.message)

    @app.exception_handler(DataError)
    async def unstorable(_: Request, error: DataError) -> JSONResponse:
        # A value the database refuses (a NUL byte on PostgreSQL, a number out of a column's range): the
        # client's input, and its transaction rolled back whole.
        reason = str(error.orig).splitlines()[0] if error.orig is not None else "a value out of range"
        return error_response(400, "invalid_input", f"a value the database cannot store: {reason}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        # No route matched, or a method it does not take: the same JSON shape as every other error.
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return error_response(error.status_code, code, str(error.detail), dict(error.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(_: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own checks of path and query parameters: the same JSON shape as every other error.
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in error.errors()]
        return error_response(400, "invalid_input", "; ".join(problems) or "invalid request")

    _routes(app, tracker)
    from loopml.server.tracking_api import tracking_routes

    tracking_routes(app, tracker, _json_body)
    from loopml.server.artifacts_api import artifact_routes

    artifact_routes(app, tracker, _json_body, max_upload_bytes=options.max_upload_bytes)
    from loopml.server.datasets_api import dataset_routes

    dataset_routes(app, tracker, _json_body)
    from loopml.server.registry_api import registry_routes

    registry_routes(app, tracker, _json_body)
    from loopml.server.loop_api import loop_routes

    loop_routes(app, tracker, _json_body)
    from loopml.server.pipelines_api import pipeline_routes

    pipeline_routes(app, tracker, _json_body)
    from loopml.server.direct_api import direct_routes

    direct_routes(app, tracker, _json_body, max_upload_bytes=options.max_upload_bytes)
    _declare_json_bodies(app)
    from loopml.server.mlflow_api import PREFIXES, mlflow_app

    compatible = mlflow_app(tracker, options)  # MLflow's client talks to /api/2.0 and /api/3.0
    for prefix in PREFIXES:
        app.mount(prefix, compatible)
    _mount_ui(app, tracker, options)


def _routes(app: FastAPI, tracker: Tracker) -> None:

    @app.get("/api/v1/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/v1/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        who: Principal = request.state.principal
        roles = [{"workspace": w, "model": m, "role": r} for (w, m), r in sorted(who.roles.items(), key=str)]
        return {"name": who.name, "kind": who.kind, "roles": roles}

    @app.get("/metrics")
    async def metrics(request: Request) -> Any:
        who(request).require("read")
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _declare_json_bodies(app: FastAPI) -> None:
    """Say in `/openapi.json` that every write takes a JSON object: the routes read and check their bodies
    field by field themselves (one error shape for every bad field), so FastAPI cannot see the body."""
    from fastapi.routing import APIRoute

    def body(kind: str, schema: dict[str, str]) -> dict[str, Any]:
        return {"requestBody": {"required": True, "content": {kind: {"schema": schema}}}}

    json_object = body("application/json", {"type": "object"})
    raw_bytes = body("application/octet-stream", {"type": "string", "format": "binary"})
    for route in app.routes:
        if isinstance(route, APIRoute) and (route.methods or set()) & {"POST", "PUT", "PATCH"}:
            declared = raw_bytes if route.path == "/api/v1/blobs/{digest}" else json_object
            route.openapi_extra = {**declared, **(route.openapi_extra or {})}


async def _json_body(request: Request, *, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    import json

    from loopml.serving.limits import PayloadTooLarge

    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:  # refused before a byte is read
        raise PayloadTooLarge(f"the request body is over {limit} bytes")
    raw = bytearray()
    async for chunk in request.stream():  # a body without a length is read only up to the limit
        raw += chunk
        if len(raw) > limit:
            raise PayloadTooLarge(f"the request body is over {limit} bytes")
    try:
        body = json.loads(bytes(raw) or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting beyond Python's stack
        raise InvalidInput("the request body is not JSON (or nests too deeply)") from None
    if not isinstance(body, dict):
        raise InvalidInput("the request body is a JSON object")
    return body


def _anonymous() -> Principal:
    from loopml.server.accounts import DEFAULT_WORKSPACE

    return Principal("", "anonymous", "person", "", {(DEFAULT_WORKSPACE, None): "reader"})


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status, headers=headers)


def hosts_of(values: Iterable[str]) -> tuple[str, ...]:
    """Host names as the server compares them (lower case, without brackets)."""
    return tuple(v.strip().strip("[]").lower() for v in values if v.strip())
