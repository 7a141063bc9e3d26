"""What is installed in this interpreter, as a cache key, and a small JSON cache keyed by it.

Reading every installed distribution's metadata costs 30-120 ms; its result changes only when something is
installed or removed. Listing the site-packages folders is cheap (dist-info folder names carry versions), so
that listing (plus the interpreter and any lock files) keys a JSON file that a cold process reads instead.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loopml.core.hashing import hash_file, hash_text


def installed_key(lock_files: Sequence[Path] = (), *, schema: str = "") -> str:
    """A hash that changes when the interpreter, an installed distribution or a lock file changes."""
    listings = []
    for folder in sys.path:
        if os.path.basename(os.path.normpath(folder)) in {"site-packages", "dist-packages"}:
            try:
                listings.append([folder, sorted(os.listdir(folder))])
            except OSError:
                listings.append([folder, []])
    locks = [hash_file(path) for path in lock_files if path.is_file()]
    return hash_text(json.dumps([schema, sys.version, sys.prefix, listings, locks]))


def cached_json(path: Path | None, compute: Callable[[], Any], *, valid: Callable[[Any], bool]) -> Any:
    """The JSON value stored at `path` if it is there and `valid`, else `compute()` (then stored atomically).

    The file only saves time: an unreadable or unwritable cache folder falls back to computing.
    """
    if path is not None:
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            value = None
        if value is not None and valid(value):
            return value
    value = compute()
    if path is not None:
        _write_atomically(path, json.dumps(value, sort_keys=True))
    return value


def _write_atomically(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(text)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError:
        pass
