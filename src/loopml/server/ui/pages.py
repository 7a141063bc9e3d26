"""What every page shares: the templates, the caller, the page's links, and HTML error pages.

Pages are server-rendered (Jinja2, autoescaped) from the same Python API the CLI uses; the only script is
`static/loopml.js`, which draws the charts whose data a page embeds as JSON (`<script type="application/json">`,
never executed), so the pages run under a Content-Security-Policy that allows scripts from the server only.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import math
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from loopml.core.errors import Forbidden, InvalidInput
from loopml.server.fields import Caller, who

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

CSRF_COOKIE = "loopml_csrf"
SECURITY_HEADERS = {
    # Scripts and styles from the server only; chart data is JSON in non-executed script tags.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Pages:
    """Renders templates for one project (one workspace) with the request's caller and links."""

    def __init__(self, tracker: Tracker, *, hosts: tuple[str, ...], login: bool) -> None:
        self.tracker = tracker
        self.hosts = hosts
        self.login = login  # False for `loopml ui`: one local user, no sign-in
        self.env = Environment(
            loader=PackageLoader("loopml.server.ui", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            when=when,
            duration=duration,
            num=num,
            short=short,
            tojson=chart_json,
            q=path_part,
            qpath=path_parts,
        )

    def render(
        self, request: Request, template: str, *, status: int = 200, section: str = "", **context: Any
    ) -> HTMLResponse:
        caller = who(request)
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        page = self.env.get_template(template).render(
            request=request,
            base=ui_root(request),
            url=lambda path, **query: link(request, path, **query),
            user=caller.name,
            workspace=caller.workspace,
            login=self.login,
            csrf=csrf,
            section=section,
            **context,
        )
        response = HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)
        if request.cookies.get(CSRF_COOKIE) != csrf:
            response.set_cookie(
                CSRF_COOKIE, csrf, httponly=True, samesite="strict", path="/", secure=_https(request)
            )
        return response

    def error(self, request: Request, status: int, message: str) -> HTMLResponse:
        section = ui_path_section(request)
        return self.render(
            request, "error.html", status=status, section=section, message=message, code=status
        )

    def check_form(self, request: Request, form: dict[str, Any]) -> None:
        """A state-changing form must come from this server's own page: the double-submitted CSRF token
        matches its cookie, and the browser's Origin (or Referer) names one of the server's hosts."""
        cookie = request.cookies.get(CSRF_COOKIE, "")
        sent = str(form.get("csrf", ""))
        if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
            raise Forbidden("the form's security token is missing or stale; reload the page and try again")
        origin = request.headers.get("origin") or request.headers.get("referer") or ""
        host = origin.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]").lower()
        if host not in self.hosts:
            raise Forbidden("the form was not sent from this server's own pages")


MAX_FORM_BYTES = 16 * 1024


async def read_form(request: Request) -> dict[str, str]:
    """A small URL-encoded form (the UI's forms are a few short fields; anything else is refused)."""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise InvalidInput("a form is sent as application/x-www-form-urlencoded")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FORM_BYTES:
            raise InvalidInput(f"the form is over {MAX_FORM_BYTES} bytes")
    try:
        fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise InvalidInput("the form is not UTF-8") from None
    return {key: values[-1] for key, values in fields.items()}


def ui_path_section(request: Request) -> str:
    """The nav section a UI path belongs to (`/ui/models/fraud` → "models"), for error pages."""
    rest = request.url.path[len(ui_root(request)) :].strip("/")
    first = rest.split("/", 1)[0]
    return {"runs": "experiments", "compare": "experiments"}.get(first, first)


def caller(request: Request, action: str = "read", model: str | None = None) -> Caller:
    found = who(request)
    found.require(action, model)
    return found


def ui_root(request: Request) -> str:
    """The UI's own path prefix (`/ui`, or `/w/NAME/ui` in another workspace); the sign-in page is served by
    the server's root app, outside the UI's mount."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return root if root.endswith("/ui") else root + "/ui"


def link(request: Request, path: str, **query: Any) -> str:
    pairs = [(k, v) for k, values in query.items() for v in _many(values) if v is not None and v != ""]
    return ui_root(request) + path + (f"?{urlencode(pairs)}" if pairs else "")


def _many(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _https(request: Request) -> bool:
    return request.url.scheme == "https"


def bounded(value: str | None, name: str, default: int, low: int, high: int) -> int:
    """A whole-number query parameter within [low, high]; `InvalidInput` naming it otherwise."""
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit() and len(value) <= 18) or not low <= int(value) <= high:
        raise InvalidInput(f"{name} must be a whole number from {low} to {high}, got {value[:40]!r}")
    return int(value)


# -- template filters ---------------------------------------------------------------------------------


def path_part(value: Any) -> str:
    """One URL path segment (a model or dataset name): `/`, `?`, `#` and `%` quoted."""
    return quote(str(value), safe="")


def path_parts(value: Any) -> str:
    """A relative path in a URL (an artifact's): each segment quoted, slashes kept."""
    return quote(str(value), safe="/")


def when(ms: int | None) -> str:
    if ms is None:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(ms: int | None) -> str:
    if ms is None:
        return ""
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    return f"{value:.{digits}g}"


def short(value: Any, width: int = 12) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def chart_json(value: Any) -> Markup:
    """JSON for a `<script type="application/json">` block: NaN and infinities become null, and `<`, `>`, `&`
    are escaped so no value can close the tag."""
    text = json.dumps(_finite(value), separators=(",", ":"))
    escaped = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(escaped)  # noqa: S704  # escaped JSON data, never markup


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


Route = Callable[..., Any]
