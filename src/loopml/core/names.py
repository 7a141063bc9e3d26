"""Validation of user-given names and relative paths, so none can escape the folder or column it goes into."""

from __future__ import annotations

import posixpath
import re

from loopml.core.errors import InvalidInput, PathEscapes

MAX_KEY_LENGTH = 250
# Letters, digits and a few separators, as MLflow allows, so keys are safe in filters, URLs and file names.
_KEY = re.compile(r"^[A-Za-z0-9_\-. /:]+$")


def check_key(kind: str, key: object) -> str:
    """Return `key` if it is a valid param, metric or tag name; raise `InvalidInput` naming the problem."""
    if not isinstance(key, str):
        raise InvalidInput(f"{kind} name must be a string, got {type(key).__name__}: {key!r}")
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(f"{kind} name must have 1 to {MAX_KEY_LENGTH} characters, got {len(key)}")
    if not _KEY.match(key):
        raise InvalidInput(
            f"{kind} name {key!r} may only contain letters, digits, spaces and the characters _ - . / :"
        )
    if key != key.strip() or "//" in key or key.startswith("/") or ".." in key.split("/"):
        raise InvalidInput(f"{kind} name {key!r} has leading/trailing spaces or an empty or '..' path part")
    return key


def safe_relative_path(path: str) -> str:
    """Normalise a relative POSIX path inside some root; refuse absolute paths and any `..` that leaves it."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise PathEscapes(f"invalid relative path {path!r}")
    unix = path.replace("\\", "/")
    if unix.startswith("/") or re.match(r"^[A-Za-z]:", unix):
        raise PathEscapes(f"path {path!r} must be relative")
    normal = posixpath.normpath(unix)
    if normal in {".", ".."} or normal.startswith("../"):
        raise PathEscapes(f"path {path!r} leaves the folder it must stay in")
    return normal
