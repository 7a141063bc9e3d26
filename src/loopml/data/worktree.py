"""Working copies: does a local file or folder still match its version (`status`), and restoring it (`checkout`).

Both compare file digests, taken from the stat cache when a file's inode, size and mtime are unchanged, so a
clean folder of 20,000 files is checked without reading any of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from loopml.core.hashing import hash_file
from loopml.data.files import collect
from loopml.data.pointers import Pointer
from loopml.data.records import DatasetVersion
from loopml.data.statcache import Scanned, StatCache, fingerprint

if TYPE_CHECKING:
    from loopml.data.catalog import DataCatalog


@dataclass(frozen=True)
class WorkStatus:
    """How a working copy differs from a version."""

    path: str
    ref: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when the working copy holds exactly the version's files."""
        return not (self.added or self.removed or self.modified)


def quick_status(path: Path, ref: str, version_digest: str, cache: StatCache) -> WorkStatus | None:
    """A clean status from one walk and one stat per file when nothing changed since the folder last
    matched this version; None when the full comparison is needed."""
    scanned = _scan(path) if path.exists() else []
    if cache.folder_matches(os.path.abspath(path), fingerprint(scanned), version_digest):
        return WorkStatus(path=str(path), ref=ref)
    return None


def status(catalog: DataCatalog, path: Path, version: DatasetVersion, cache: StatCache) -> WorkStatus:
    """Compare the file or folder at `path` with `version`, hashing only files whose stat changed.

    When every file's (name, inode, size, mtime) is as it was the last time this folder matched this
    version, the answer is known from one walk and one stat per file, without loading the version's tree.
    """
    scanned = _scan(path) if path.exists() else []
    key = os.path.abspath(path)
    if cache.folder_matches(key, fingerprint(scanned), version.digest):
        return WorkStatus(path=str(path), ref=version.ref)
    expected = {e.path: e.digest for e in catalog.tree(version).entries}
    actual = _digests(scanned, cache)
    result = WorkStatus(
        path=str(path),
        ref=version.ref,
        added=sorted(set(actual) - set(expected)),
        removed=sorted(set(expected) - set(actual)),
        modified=sorted(p for p in set(actual) & set(expected) if actual[p] != expected[p]),
    )
    if result.clean:
        cache.remember_folder(key, fingerprint(_scan(path)), version.digest)
    return result


def checkout(catalog: DataCatalog, pointer: Pointer, folder: Path, cache: StatCache) -> tuple[int, int]:
    """Restore the data a pointer names under `folder`; returns (files written, files already right)."""
    target = folder / pointer.path
    from loopml.storage.blobs.tree import get_tree

    # The pointer names the tree itself, so a fresh clone needs only the blobs, not the metadata rows.
    tree = get_tree(catalog.stores.blobs, pointer.manifest)
    base = target.parent if pointer.kind in ("file", "table") else target
    current = _digests(_scan(target), cache) if target.exists() else {}
    written, kept = 0, 0
    restored: list[tuple[str | Path, str]] = []
    for entry in tree.entries:
        if current.get(entry.path) == entry.digest:
            kept += 1
            continue
        restored.append(
            (catalog.stores.blobs.get_file(entry.digest, base / entry.path, verify=True), entry.digest)
        )
        written += 1
    cache.remember(restored)
    return written, kept


def _scan(path: Path) -> Scanned:
    """(path, name, stat) of every file of a file or folder: one walk and one stat per file."""
    _, found = collect(path)
    return [(file, name, os.stat(file)) for file, name in found]


def _digests(scanned: Scanned, cache: StatCache) -> dict[str, str]:
    digests: dict[str, str] = {}
    fresh: list[tuple[str, str]] = []
    cached = cache.lookup_many([(file, stat) for file, _, stat in scanned])
    for (file, name, _), known in zip(scanned, cached, strict=True):
        digest = known if known is not None else hash_file(Path(file))
        if known is None:
            fresh.append((file, digest))
        digests[name] = digest
    cache.remember(fresh)
    return digests
