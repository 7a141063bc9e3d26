"""Checked fields of request bodies: each bad field is a 400 naming it, never a 500 further down."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from loopml.core.errors import InvalidInput
from loopml.server.accounts import DEFAULT_WORKSPACE, Principal

BIGGEST = 2**63 - 1  # what a database BIGINT column holds
INT_MAX = 2**31 - 1  # INTEGER columns: version numbers, event ids


@dataclass(frozen=True)
class Caller:
    """The authenticated principal, acting in the workspace the request addressed (`/w/NAME/...`)."""

    principal: Principal
    workspace: str

    @property
    def name(self) -> str:
        """The user's name (recorded with every write)."""
        return self.principal.name

    def can(self, action: str, model: str | None = None) -> bool:
        """Whether the caller may `action` (read | write | admin) in this workspace, or on `model` there."""
        return self.principal.can(action, self.workspace, model)

    def require(self, action: str, model: str | None = None) -> None:
        """`Forbidden`, naming the role needed, unless `can(action, model)`."""
        self.principal.require(action, self.workspace, model)

    def require_somewhere(self, action: str) -> None:
        """`Forbidden` unless the caller may `action` in this workspace or on some model of it (uploading
        content-addressed blobs, which a model's editor needs to register a version of it)."""
        models = [m for (w, m) in self.principal.roles if w == self.workspace and m is not None]
        if not any(self.can(action, model) for model in [None, *models]):
            self.principal.require(action, self.workspace)


def who(request: Request) -> Caller:
    """The authenticated caller in the request's workspace (both set by the server's middleware)."""
    return Caller(request.state.principal, getattr(request.state, "workspace", DEFAULT_WORKSPACE))


def text(body: dict[str, Any], key: str, *, required: bool = True) -> Any:
    """A non-empty string field (None when absent and not `required`)."""
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{key}: a non-empty string" + ("" if required else " (or leave it out)"))
    return value


def whole(
    body: dict[str, Any], key: str, *, required: bool = True, minimum: int = 1, maximum: int = BIGGEST
) -> Any:
    """An integer field from `minimum` to `maximum` (booleans are not integers here)."""
    value = body.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InvalidInput(f"{key}: an integer from {minimum} to {maximum}")
    return value


def flag(body: dict[str, Any], key: str) -> bool:
    """A true/false field, false when absent."""
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"{key}: true or false")
    return value


def string_map(body: dict[str, Any], key: str) -> dict[str, str]:
    """An object of string values (empty when absent)."""
    value = body.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidInput(f"{key}: an object of string values")
    return value


def number(value: Any, key: str) -> float:
    """A finite number (an integer too large for a float is refused, not a crash)."""
    import math

    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{key}: a number, got {value!r:.40}")
    try:
        found = float(value)
    except OverflowError:
        raise InvalidInput(f"{key}: too large for a 64-bit float") from None
    if not math.isfinite(found):
        raise InvalidInput(f"{key}: a finite number")
    return found


def number_map(body: dict[str, Any], key: str) -> dict[str, float]:
    """An object of finite numbers (empty when absent)."""
    value = body.get(key) or {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{key}: an object of numbers")
    return {k: number(v, f"{key}.{k}") for k, v in value.items()}
