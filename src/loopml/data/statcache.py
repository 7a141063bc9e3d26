"""A per-machine cache of file hashes keyed by (path, inode, size, mtime): unchanged files are never re-hashed.

It is local state (inodes mean nothing on another machine), so it lives in a small SQLite file in the store
folder, not in the shared metadata database. A stale entry can only cost a re-hash: an entry is used only
when inode, size and modification time (in nanoseconds) all still match.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stat_cache (
    path TEXT PRIMARY KEY, inode INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    digest TEXT NOT NULL
)
"""


class StatCache:
    """Remembered digests of local files."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._known: dict[str, tuple[int, int, int, str]] | None = None

    def _load(self) -> dict[str, tuple[int, int, int, str]]:
        if self._known is None:
            self._known = {}
            if self.path.is_file():
                with _connect(self.path) as conn:
                    for path, inode, size, mtime, digest in conn.execute("SELECT * FROM stat_cache"):
                        self._known[path] = (inode, size, mtime, digest)
        return self._known

    def lookup(self, file: Path, stat: os.stat_result | None = None) -> str | None:
        """The cached digest of `file` if it has not changed since it was hashed, else None."""
        stat = stat or file.stat()
        hit = self._load().get(str(file.resolve()))
        if hit is None or hit[:3] != (stat.st_ino, stat.st_size, stat.st_mtime_ns):
            return None
        return hit[3]

    def remember(self, entries: Iterable[tuple[Path, str]]) -> None:
        """Record the digests of files just hashed (their current stat is taken now)."""
        rows = []
        for file, digest in entries:
            stat = file.stat()
            rows.append((str(file.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, digest))
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _connect(self.path) as conn:
            conn.executemany("INSERT OR REPLACE INTO stat_cache VALUES (?, ?, ?, ?, ?)", rows)
        known = self._load()
        for path, inode, size, mtime, digest in rows:
            known[path] = (inode, size, mtime, digest)


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection in one transaction (committed at the end), always closed."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        with conn:
            conn.execute(_SCHEMA)
            yield conn
    finally:
        conn.close()
