"""What changed between two versions: files, and for tables rows, schema and per-column statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loopml.data.records import DatasetVersion
from loopml.storage.blobs.tree import Tree


@dataclass(frozen=True)
class VersionDiff:
    """Differences from `old` to `new`."""

    old: str
    new: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    rows: tuple[int | None, int | None] = (None, None)
    columns_added: list[str] = field(default_factory=list)
    columns_removed: list[str] = field(default_factory=list)
    type_changes: dict[str, tuple[str, str]] = field(default_factory=dict)
    statistics: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        """True when no file differs."""
        return not (self.added or self.removed or self.changed)


def diff_versions(
    old: DatasetVersion,
    new: DatasetVersion,
    old_tree: Tree,
    new_tree: Tree,
    *,
    old_stats: dict[str, dict[str, Any]] | None = None,
    new_stats: dict[str, dict[str, Any]] | None = None,
) -> VersionDiff:
    """Compare two versions by their trees, schemas and (for tables) per-column summary statistics."""
    before = {e.path: e.digest for e in old_tree.entries}
    after = {e.path: e.digest for e in new_tree.entries}
    old_columns = {c["name"]: c["type"] for c in old.schema or []}
    new_columns = {c["name"]: c["type"] for c in new.schema or []}
    shifts: dict[str, dict[str, tuple[Any, Any]]] = {}
    for column in sorted(set(old_stats or {}) & set(new_stats or {})):
        a, b = (old_stats or {})[column], (new_stats or {})[column]
        changed = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
        if changed:
            shifts[column] = changed
    return VersionDiff(
        old=old.ref,
        new=new.ref,
        added=sorted(set(after) - set(before)),
        removed=sorted(set(before) - set(after)),
        changed=sorted(p for p in set(before) & set(after) if before[p] != after[p]),
        rows=(old.row_count, new.row_count),
        columns_added=[c for c in new_columns if c not in old_columns],
        columns_removed=[c for c in old_columns if c not in new_columns],
        type_changes={
            c: (old_columns[c], new_columns[c])
            for c in old_columns
            if c in new_columns and old_columns[c] != new_columns[c]
        },
        statistics=shifts,
    )
