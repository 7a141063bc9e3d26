"""Working copies: does a local file or folder still match its version (`status`), and restoring it (`checkout`).

Both compare file digests, taken from the stat cache when a file's inode, size and mtime are unchanged, so a
clean folder of 20,000 files is checked without reading any of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loopml.core.hashing import hash_file
from loopml.data.catalog import DataCatalog
from loopml.data.files import collect
from loopml.data.pointers import Pointer
from loopml.data.records import DatasetVersion
from loopml.data.statcache import StatCache
from loopml.storage.blobs.tree import get_tree


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


def status(catalog: DataCatalog, path: Path, version: DatasetVersion, cache: StatCache) -> WorkStatus:
    """Compare the file or folder at `path` with `version`, hashing only files whose stat changed."""
    expected = {e.path: e.digest for e in catalog.tree(version).entries}
    actual = _digests(path, cache) if path.exists() else {}
    return WorkStatus(
        path=str(path),
        ref=version.ref,
        added=sorted(set(actual) - set(expected)),
        removed=sorted(set(expected) - set(actual)),
        modified=sorted(p for p in set(actual) & set(expected) if actual[p] != expected[p]),
    )


def checkout(catalog: DataCatalog, pointer: Pointer, folder: Path, cache: StatCache) -> tuple[int, int]:
    """Restore the data a pointer names under `folder`; returns (files written, files already right)."""
    target = folder / pointer.path
    # The pointer names the tree itself, so a fresh clone needs only the blobs, not the metadata rows.
    tree = get_tree(catalog.stores.blobs, pointer.manifest)
    base = target.parent if pointer.kind in ("file", "table") else target
    current = _digests(target, cache) if target.exists() else {}
    written, kept = 0, 0
    restored = []
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


def _digests(path: Path, cache: StatCache) -> dict[str, str]:
    _, found = collect(path)
    digests: dict[str, str] = {}
    fresh: list[tuple[Path, str]] = []
    for file, name in found:
        digest = cache.lookup(file)
        if digest is None:
            digest = hash_file(file)
            fresh.append((file, digest))
        digests[name] = digest
    cache.remember(fresh)
    return digests
