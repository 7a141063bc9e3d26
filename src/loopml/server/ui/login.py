"""Signing in to the team server's UI: a person pastes their token once and gets a session cookie.

A session is a token of its own (`ui-session`, expiring after `SESSION_HOURS`), issued at sign-in and revoked
at sign-out, so it is listed, expired and revoked like any other token and the pasted token never sits in a
cookie. The cookie is HttpOnly and SameSite=Strict, and it is only read under the UI's paths: the API keeps
taking bearer tokens only, so no API route can be driven by a forged cross-site request. UI forms carry a
double-submitted CSRF token and must come from one of the server's own hosts (`Pages.check_form`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse

from loopml.core.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from loopml.server.accounts import AccountStore, Principal
from loopml.server.ui.pages import read_form

if TYPE_CHECKING:
    from loopml.server.app import FailedLogins
    from loopml.server.ui.pages import Pages

SESSION_COOKIE = "loopml_session"
SESSION_HOURS = 12
NOBODY = Principal("", "", "person", "", {})


def is_ui_path(path: str) -> bool:
    """`/ui/...` or `/w/NAME/ui/...`."""
    parts = path.split("/")
    return (len(parts) > 1 and parts[1] == "ui") or (len(parts) > 3 and parts[1] == "w" and parts[3] == "ui")


async def guard_ui(
    request: Request,
    call_next: Callable[[Request], Awaitable[Response]],
    accounts: AccountStore,
    failures: FailedLogins,
) -> Response:
    """Authenticate a UI request from its session cookie (or a bearer token); send a browser without a valid
    session to the sign-in page. Bad tokens and cookies count toward the address's failed-login limit."""
    path = request.url.path
    if path in ("/ui/login", "/ui/logout") or path.startswith("/ui/static/"):
        request.state.principal = NOBODY
        return await call_next(request)
    client = request.client.host if request.client else "?"
    if failures.blocked(client):
        return Response("too many failed authentications; wait a minute", status_code=429)
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else request.cookies.get(SESSION_COOKIE)
    try:
        request.state.principal = accounts.authenticate(token, session=True)
    except Unauthenticated:
        if token:
            failures.add(client)
        if request.method in ("GET", "HEAD"):
            target = path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/ui/login?{_query(next=target)}", status_code=302)
        return Response("sign in first", status_code=401)
    return await call_next(request)


def login_routes(app: FastAPI, pages: Pages, accounts: AccountStore, failures: FailedLogins) -> None:
    """`GET|POST /ui/login` and `POST /ui/logout` on the server's root app (one sign-in for every workspace)."""

    @app.get("/ui/login", include_in_schema=False)
    def login_page(request: Request, next: str = "/ui/") -> Response:
        return pages.render(request, "login.html", next=_local(next), problem="")

    @app.post("/ui/login", include_in_schema=False)
    async def sign_in(request: Request) -> Response:
        try:
            form = await read_form(request)
            target = _local(form.get("next", "/ui/"))
            pages.check_form(request, form)
        except (Forbidden, InvalidInput) as error:
            return pages.error(request, error.http_status, error.message)
        client = request.client.host if request.client else "?"
        if failures.blocked(client):
            return pages.render(
                request,
                "login.html",
                status=429,
                next=target,
                problem="Too many failed attempts; wait a minute.",
            )
        try:
            principal = accounts.authenticate(form.get("token", "").strip())
        except Unauthenticated:
            failures.add(client)
            return pages.render(
                request, "login.html", status=401, next=target, problem="That token is not valid."
            )
        session = accounts.start_session(principal, SESSION_HOURS)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            session,
            max_age=SESSION_HOURS * 3600,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @app.post("/ui/logout", include_in_schema=False)
    async def sign_out(request: Request) -> Response:
        try:
            pages.check_form(request, await read_form(request))
        except (Forbidden, InvalidInput) as error:
            return pages.error(request, error.http_status, error.message)
        try:
            session = accounts.authenticate(request.cookies.get(SESSION_COOKIE), session=True)
            accounts.revoke(session.token_id)
        except (Unauthenticated, NotFound):
            pass  # already expired or revoked: signing out again is harmless
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response


def _local(target: str) -> str:
    """A path on this server only (no open redirect to `//elsewhere` or `https://...`)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target or not is_ui_path(target):
        return "/ui/"
    return target


def _query(**pairs: Any) -> str:
    from urllib.parse import urlencode

    return urlencode(pairs)
