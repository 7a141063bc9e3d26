"""Trees: Merkle manifests of folders (relative path, size, digest per file), stored as blobs themselves.

A tree's canonical form is sorted, compact JSON, so the same files always give the same tree digest: that
digest names a folder's whole content, as git's tree objects do. Garbage collection expands trees to keep the
files they list.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loopml.core.errors import StoreCorrupt
from loopml.core.hashing import is_digest
from loopml.core.names import safe_relative_path

if TYPE_CHECKING:
    from loopml.storage.blobs.store import BlobStore

TREE_FORMAT = "loopml-tree/1"


@dataclass(frozen=True, order=True)
class TreeEntry:
    """One file of a tree."""

    path: str
    size: int
    digest: str


@dataclass(frozen=True)
class Tree:
    """The files of a folder (or a single file), sorted by path."""

    entries: tuple[TreeEntry, ...]

    @classmethod
    def of(cls, entries: Iterable[TreeEntry]) -> Tree:
        """A tree of these entries, sorted, with every path checked to stay inside the tree."""
        checked = [
            e if _plain(e.path) else TreeEntry(safe_relative_path(e.path), e.size, e.digest) for e in entries
        ]
        if any(a.path > b.path for a, b in itertools.pairwise(checked)):  # stored trees are sorted already
            checked.sort()
        for before, after in itertools.pairwise(checked):
            if before.path == after.path:
                raise StoreCorrupt(f"tree lists {before.path!r} twice")
        return cls(tuple(checked))

    @property
    def size(self) -> int:
        """Total bytes of all files."""
        return sum(e.size for e in self.entries)

    def to_bytes(self) -> bytes:
        """The canonical form: compact JSON with sorted entries."""
        body = {"format": TREE_FORMAT, "entries": [[e.path, e.size, e.digest] for e in self.entries]}
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Tree:
        """Parse a stored tree; anything malformed is `StoreCorrupt`."""
        try:
            body = json.loads(data)
            if body.get("format") != TREE_FORMAT:
                raise ValueError(f"unknown tree format {body.get('format')!r}")
            entries = [TreeEntry(str(p), int(s), str(d)) for p, s, d in body["entries"]]
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise StoreCorrupt(f"a stored tree is malformed: {error}") from None
        if not all(is_digest(e.digest) for e in entries):
            raise StoreCorrupt("a stored tree names an object that is not a digest")
        return cls.of(entries)


def _plain(path: str) -> bool:
    """A path that is certainly relative, normalised and inside the tree (the common case, checked fast)."""
    return (
        bool(path)
        and "\\" not in path
        and "//" not in path
        and "\x00" not in path
        and not path.startswith("/")
        and "/." not in f"/{path}"
        and not path.endswith("/")
    )


def put_tree(blobs: BlobStore, tree: Tree) -> str:
    """Store a tree; returns its digest (the content hash of the whole folder)."""
    return blobs.put_bytes(tree.to_bytes())


def get_tree(blobs: BlobStore, digest: str) -> Tree:
    """Read and verify a stored tree."""
    return Tree.from_bytes(blobs.get_bytes(digest, verify=True))
