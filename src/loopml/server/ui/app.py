"""The web UI's ASGI apps: the pages of one workspace (`ui_app`, mounted at `/ui` by the team server and at
`/w/NAME/ui` for each other workspace) and the single-user app of `loopml ui` (`local_ui_app`).

Each page module (`experiments`, `runs`, `datasets`, `models`, `deployments`, `monitoring`, `automation`)
adds its routes with `routes(app, pages)`; a page reads through the same Python API as the CLI, checks the
caller's role, and renders one template. Errors become HTML pages with the error's status (400 for a bad
filter, 403, 404), never a traceback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from loopml.core.errors import LoopMLError, NotFound
from loopml.server.accounts import EVERY_WORKSPACE, Principal
from loopml.server.fields import who
from loopml.server.ui.pages import Pages

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

PAGE_MODULES = ("experiments", "runs", "datasets", "models", "deployments", "monitoring", "automation")
LOCAL_USER = Principal("", "local", "person", "", {(EVERY_WORKSPACE, None): "admin"})


def ui_app(tracker: Tracker, *, hosts: tuple[str, ...], login: bool = True) -> FastAPI:
    """The pages over `tracker`'s stores; the caller (`request.state.principal`) is set by the app in front."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    # Heatmaps and long tables compress 5-10x; level 5 costs half of the default 9 for a body 1-2% larger.
    app.add_middleware(GZipMiddleware, minimum_size=2048, compresslevel=5)
    pages = Pages(tracker, hosts=hosts, login=login)

    @app.exception_handler(LoopMLError)
    async def loopml_error(request: Request, error: LoopMLError) -> Response:
        if isinstance(error, NotFound) and not who(request).can("read"):
            # Not-found messages list what does exist; a reader of one model only must not learn the rest.
            return pages.error(request, 404, "no such page, or not one you may read")
        return pages.error(request, error.http_status, error.message)

    @app.exception_handler(DataError)
    async def unstorable(request: Request, _: DataError) -> Response:
        return pages.error(request, 400, "a value the database cannot hold (out of range, or a NUL byte)")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        message = "no such page" if error.status_code == 404 else str(error.detail)
        return pages.error(request, error.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, error: RequestValidationError) -> Response:
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in error.errors()]
        return pages.error(request, 400, "; ".join(problems) or "invalid request")

    app.mount("/static", StaticFiles(directory=str(resources.files("loopml.server.ui") / "static")), "static")

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> RedirectResponse:
        return RedirectResponse(str(request.scope.get("root_path", "")) + "/experiments", status_code=302)

    from importlib import import_module

    for name in PAGE_MODULES:
        import_module(f"loopml.server.ui.{name}").routes(app, pages)
    return app


def local_ui_app(tracker: Tracker, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> FastAPI:
    """`loopml ui`: the pages of a local project for one person on this machine, without sign-in. The Host
    header is still checked (a web page elsewhere cannot reach the UI through DNS rebinding) and forms still
    carry CSRF tokens (a web page elsewhere cannot post to 127.0.0.1)."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.middleware("http")
    async def local_user(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        host = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]").lower()
        if host not in hosts:
            return Response(f"this UI answers to {', '.join(hosts)} only", status_code=400)
        request.state.principal = LOCAL_USER
        request.state.workspace = "default"
        return await call_next(request)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/experiments", status_code=302)

    app.mount("/ui", ui_app(tracker, hosts=hosts, login=False))
    return app
