"""MLflow's wire rules: request fields (query string for GET, JSON body otherwise), snake_case JSON answers,
`{}` for empty successes, and errors as `{"error_code", "message"}` with MLflow's codes.

MLflow's client turns an error body into an `MlflowException` carrying `error_code`; it retries 429 and 5xx,
so a refusal the client should show at once (a failed promotion gate, an untrusted model) is a 4xx here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse

from loopml.core.errors import Conflict, InvalidInput, LoopMLError, ParamConflict

T = TypeVar("T")

MAX_BODY_BYTES = 32 * 2**20  # a log-batch holds at most 1,000 metrics, 100 params and 100 tags

# LoopML's error codes -> (HTTP status, MLflow error code). Unlisted: by HTTP status (`_BY_STATUS`).
_CODES = {
    "param_conflict": (400, "INVALID_PARAMETER_VALUE"),
    "conflict": (400, "RESOURCE_ALREADY_EXISTS"),
    "promotion_refused": (400, "INVALID_STATE"),
    "scoring_failed": (400, "INVALID_STATE"),
    "payload_too_large": (413, "INVALID_PARAMETER_VALUE"),
}
_BY_STATUS = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    405: "ENDPOINT_NOT_FOUND",
    413: "INVALID_PARAMETER_VALUE",
    429: "REQUEST_LIMIT_EXCEEDED",
    503: "TEMPORARILY_UNAVAILABLE",
}


class MlflowError(InvalidInput):
    """An error in MLflow's own terms (a code MLflow's client knows, e.g. RESOURCE_ALREADY_EXISTS)."""

    def __init__(self, message: str, error_code: str = "INVALID_PARAMETER_VALUE", status: int = 400) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.status = status


def error_body(
    status: int, error_code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error as MLflow's server sends it."""
    return JSONResponse({"error_code": error_code, "message": message}, status_code=status, headers=headers)


def error_from(error: LoopMLError) -> JSONResponse:
    """A LoopML error in MLflow's terms."""
    if isinstance(error, MlflowError):
        return error_body(error.status, error.error_code, error.message)
    if isinstance(error, ParamConflict | Conflict) and error.code in _CODES:
        status, code = _CODES[error.code]
        return error_body(status, code, error.message)
    status, code = _CODES.get(error.code, (error.http_status, ""))
    if not code:
        code = _BY_STATUS.get(status, "INTERNAL_ERROR")
    return error_body(status, code, error.message)


def code_for_status(status: int) -> str:
    """MLflow's error code for an HTTP status (for errors raised before a route runs)."""
    return _BY_STATUS.get(status, "INTERNAL_ERROR")


async def fields(request: Request) -> dict[str, Any]:
    """The request's fields: the query string for GET and DELETE without a body, else the JSON body
    (MLflow's client sends GET fields as query parameters, repeating a key for a list)."""
    from loopml.server.app import _json_body

    if request.method in ("GET", "HEAD") or (
        request.method == "DELETE" and request.headers.get("content-length") in (None, "0")
    ):
        found: dict[str, Any] = {}
        for key, value in request.query_params.multi_items():
            found.setdefault(key, []).append(value)
        return {k: v[0] if len(v) == 1 else v for k, v in found.items()}
    body = await _json_body(request, limit=MAX_BODY_BYTES)
    return {**dict(request.query_params), **body}


def string(body: dict[str, Any], key: str, *, required: bool = True, default: str | None = None) -> Any:
    """A string field (an empty string counts as absent when not `required`)."""
    value = body.get(key)
    if value is None or (value == "" and not required):
        if required:
            raise MlflowError(f"Missing value for required parameter '{key}'.")
        return default
    if not isinstance(value, str):
        raise MlflowError(
            f"Invalid value {value!r:.60} for parameter '{key}' supplied: a string is expected."
        )
    return value


def strings(body: dict[str, Any], key: str) -> list[str]:
    """A repeated string field (one value from a query string is a list of one)."""
    value = body.get(key)
    if value is None:
        return []
    value = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) for v in value):
        raise MlflowError(f"Invalid value for parameter '{key}': a list of strings is expected.")
    return value


def integer(body: dict[str, Any], key: str, *, required: bool = False, default: int | None = None) -> Any:
    """An int64 field, as a JSON number or a decimal string (proto3 JSON allows both)."""
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise MlflowError(f"Missing value for required parameter '{key}'.")
        return default
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,19}", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        raise MlflowError(
            f"Invalid value {value!r:.60} for parameter '{key}' supplied: an int64 is expected."
        )
    return value


def double(value: Any, key: str) -> float:
    """A double: a JSON number, or "NaN" / "Infinity" / "-Infinity" as proto3 JSON writes them."""
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        return float(value.replace("Infinity", "inf"))
    if isinstance(value, str):
        try:
            return float(value) if value.strip() and value.isascii() else _bad_double(value, key)
        except ValueError:
            return _bad_double(value, key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _bad_double(value, key)
    try:
        return float(value)
    except OverflowError:
        return _bad_double(value, key)


def _bad_double(value: Any, key: str) -> float:
    raise MlflowError(f"Invalid value {value!r:.60} for parameter '{key}' supplied: a double is expected.")


def dumps_double(value: float) -> float | str:
    """A double as proto3 JSON writes it (non-finite values as strings: JSON has no NaN)."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def key_values(body: dict[str, Any], key: str) -> dict[str, str]:
    """A list of `{key, value}` objects (tags, params) as a dict; a missing value is an empty string."""
    items = body.get(key) or []
    if not isinstance(items, list):
        raise MlflowError(
            f"Invalid value for parameter '{key}': a list of {{key, value}} objects is expected."
        )
    found: dict[str, str] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"]:
            raise MlflowError(
                f"Invalid value for parameter '{key}': each item needs a non-empty string 'key'."
            )
        value = item.get("value", "")
        if not isinstance(value, str):
            raise MlflowError(f"Invalid value for '{key}' {item['key']!r}: the value must be a string.")
        found[item["key"]] = value
    return found


def pairs(values: dict[str, str]) -> list[dict[str, str]]:
    """A dict as MLflow's list of `{key, value}` objects."""
    return [{"key": k, "value": v} for k, v in values.items()]


def page_token(body: dict[str, Any]) -> int:
    """The offset a `page_token` from this server encodes (0 for the first page)."""
    token = body.get("page_token")
    if not token:
        return 0
    try:
        offset = json.loads(bytes.fromhex(token).decode())["offset"] if isinstance(token, str) else None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        offset = None
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise MlflowError(
            f"Invalid page token {str(token)[:40]!r}: pass the next_page_token of a previous page."
        )
    return offset


def one_page(
    items: Sequence[T], offset: int, max_results: int, key: str, render: Callable[[T], Any]
) -> dict[str, Any]:
    """`{key: [render(item), ...]}` for the page of `items` at `offset`, with MLflow's `next_page_token` when
    more items follow."""
    page = items[offset : offset + max_results]
    found: dict[str, Any] = {key: [render(item) for item in page]}
    if offset + len(page) < len(items):
        found |= next_token(offset, len(page), max_results)
    return found


def next_token(offset: int, returned: int, asked: int) -> dict[str, str]:
    """`{"next_page_token": ...}` when the page was full (there may be more), else nothing."""
    if returned < asked:
        return {}
    return {"next_page_token": json.dumps({"offset": offset + returned}).encode().hex()}
