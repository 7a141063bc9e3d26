"""MLflow's REST API on the team server, so MLflow's own client works against LoopML unchanged:
`MLFLOW_TRACKING_URI=http://loopml-server:5000` plus `MLFLOW_TRACKING_TOKEN=<a LoopML token>` (or
`MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`, the password being the token).

One ASGI app, mounted at `/api/2.0` and `/api/3.0` (MLflow's client uses both prefixes):

```
mlflow/experiments/...        tracking.py       experiments, tags, search
mlflow/runs/..., metrics/...  tracking.py       runs, params, tags, metrics (idempotent), search
mlflow-artifacts/artifacts/.. artifacts.py      upload, list, download (runs, logged models, versions)
mlflow/logged-models/...      logged_models.py  MLflow 3's logged models
mlflow/registered-models/..., model-versions/...   registry.py   the registry, aliases through the gates
```
The team server's middleware has authenticated the request and set its workspace; each route checks the
caller's role as LoopML's own routes do. Errors are MLflow's `{"error_code", "message"}` (`wire.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from loopml.core.errors import LoopMLError
from loopml.server.mlflow_api.wire import code_for_status, error_body, error_from

if TYPE_CHECKING:
    from loopml.server.app import ServerOptions
    from loopml.tracking.tracker import Tracker

PREFIXES = ("/api/2.0", "/api/3.0")


def mlflow_app(tracker: Tracker, options: ServerOptions) -> FastAPI:
    """MLflow's REST API over `tracker`'s stores (mount it at each of `PREFIXES`)."""
    from loopml.server.mlflow_api.artifacts import artifact_routes
    from loopml.server.mlflow_api.logged_models import logged_model_routes
    from loopml.server.mlflow_api.registry import registry_routes
    from loopml.server.mlflow_api.tracking import tracking_routes

    app = FastAPI(title="LoopML: MLflow REST API", openapi_url=None, docs_url=None, redoc_url=None)

    @app.exception_handler(LoopMLError)
    async def loopml_error(_: Request, error: LoopMLError) -> JSONResponse:
        return error_from(error)

    @app.exception_handler(DataError)
    async def unstorable(_: Request, error: DataError) -> JSONResponse:
        reason = str(error.orig).splitlines()[0] if error.orig is not None else "a value out of range"
        return error_body(400, "INVALID_PARAMETER_VALUE", f"a value the database cannot store: {reason}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404:
            message = f"No API endpoint {request.method} {request.url.path} on this server (LoopML)"
            return error_body(404, "ENDPOINT_NOT_FOUND", message)
        return error_body(error.status_code, code_for_status(error.status_code), str(error.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in error.errors()]
        return error_body(400, "INVALID_PARAMETER_VALUE", "; ".join(problems) or "invalid request")

    tracking_routes(app, tracker)
    artifact_routes(app, tracker, max_upload_bytes=options.max_upload_bytes)
    logged_model_routes(app, tracker)
    registry_routes(app, tracker)
    return app


def is_mlflow_path(path: str) -> bool:
    """Whether a request path is MLflow's API (its errors then take MLflow's shape)."""
    if path.startswith("/w/"):
        path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else path
    return path.startswith(tuple(f"{p}/" for p in PREFIXES))
