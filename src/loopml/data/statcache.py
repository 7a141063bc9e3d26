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

from loopml.core.hashing import hash_text

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stat_cache (
    path TEXT PRIMARY KEY, inode INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    digest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS folder_cache (path TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, digest TEXT NOT NULL)
"""


class StatCache:
    """Remembered digests of local files."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._known: dict[str, tuple[int, int, int, str]] | None = None

    @classmethod
    def in_home(cls, home: Path) -> StatCache:
        """The stat cache of the store folder `home`."""
        return cls(home / "state" / "statcache.sqlite")

    def _load(self) -> dict[str, tuple[int, int, int, str]]:
        if self._known is None:
            self._known = {}
            if self.path.is_file():
                with _connect(self.path) as conn:
                    for path, inode, size, mtime, digest in conn.execute("SELECT * FROM stat_cache"):
                        self._known[path] = (inode, size, mtime, digest)
        return self._known

    def lookup(self, file: str | os.PathLike[str], stat: os.stat_result | None = None) -> str | None:
        """The cached digest of `file` if it has not changed since it was hashed, else None."""
        path = os.fspath(file)
        return self.lookup_many([(path, stat or os.stat(path))])[0]

    def lookup_many(self, files: list[tuple[str, os.stat_result]]) -> list[str | None]:
        """`lookup` for many (file, its stat) pairs at once."""
        known = self._load()
        found: list[str | None] = []
        for file, stat in files:
            hit = known.get(file if file.startswith("/") else os.path.abspath(file))
            matches = hit is not None and hit[:3] == (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            found.append(hit[3] if matches and hit is not None else None)
        return found

    def folder_matches(self, folder: str, fingerprint: str, version_digest: str) -> bool:
        """True when `folder` had exactly this stat fingerprint the last time it matched that version."""
        if not self.path.is_file():
            return False
        with _connect(self.path) as conn:
            row = conn.execute(
                "SELECT fingerprint, digest FROM folder_cache WHERE path = ?", (folder,)
            ).fetchone()
        return bool(row == (fingerprint, version_digest))

    def remember_folder(self, folder: str, fingerprint: str, version_digest: str) -> None:
        """Record that `folder`, with this stat fingerprint, matches a version."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _connect(self.path) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO folder_cache VALUES (?, ?, ?)", (folder, fingerprint, version_digest)
            )

    def remember(self, entries: Iterable[tuple[str | os.PathLike[str], str]]) -> None:
        """Record the digests of files just hashed (their current stat is taken now)."""
        scanned = []
        for file, digest in entries:
            path = os.fspath(file)
            scanned.append((path, digest, os.stat(path)))
        self.remember_scanned(scanned)

    def remember_scanned(self, entries: Iterable[tuple[str, str, os.stat_result]]) -> None:
        """Record (file, digest, the stat it had when it was hashed) triples."""
        rows = [
            (
                path if path.startswith("/") else os.path.abspath(path),
                s.st_ino,
                s.st_size,
                s.st_mtime_ns,
                digest,
            )
            for path, digest, s in entries
        ]
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _connect(self.path) as conn:
            conn.executemany("INSERT OR REPLACE INTO stat_cache VALUES (?, ?, ?, ?, ?)", rows)
        if self._known is not None:  # keep a loaded copy current; never load it just to update it
            for path, inode, size, mtime, digest in rows:
                self._known[path] = (inode, size, mtime, digest)


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection in one transaction (committed at the end), always closed."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        conn.executescript(_SCHEMA)  # idempotent, and safe when two processes create the file at once
        with conn:
            yield conn
    finally:
        conn.close()


Scanned = list[tuple[str, str, os.stat_result]]


def fingerprint(scanned: Scanned) -> str:
    """A digest of every file's name, inode, size and modification time (not of their content)."""
    return hash_text("\n".join(f"{n}\0{s.st_ino}\0{s.st_size}\0{s.st_mtime_ns}" for _, n, s in scanned))
