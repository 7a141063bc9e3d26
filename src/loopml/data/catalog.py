"""`DataCatalog`: add, look up, restore and compare dataset versions of one project's stores.

The version records come from a `VersionStore`: the project's database (`DatasetStore`) or a team server
(`loopml.data.remote_store`); either way the files are hashed, profiled and checked here, on the caller's side.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from loopml.core.errors import InvalidInput
from loopml.core.names import check_key
from loopml.core.settings import PROJECT_FILE, read_project_file
from loopml.data import files, tables
from loopml.data.diff import VersionDiff, diff_versions
from loopml.data.external import fingerprint_tree
from loopml.data.records import Added, Dataset, DatasetVersion, VersionRef
from loopml.data.statcache import StatCache, fingerprint
from loopml.data.store import DatasetStore
from loopml.data.validation import Expectations, Violation, check, report
from loopml.storage.blobs.store import BlobStore
from loopml.storage.blobs.tree import Tree, get_tree, put_tree
from loopml.storage.stores import Stores

MAX_MESSAGE = 10_000


class VersionStore(Protocol):
    """Where version records live: `DatasetStore` (the project's database) or a team server's."""

    def add_version(self, name: str, fields: dict[str, Any]) -> tuple[DatasetVersion, bool]: ...

    def get_version(self, ref: VersionRef) -> DatasetVersion: ...

    def versions(self, name: str) -> list[DatasetVersion]: ...

    def datasets(self) -> list[Dataset]: ...


class DataCatalog:
    """Dataset versions in a project's metadata database and blob store.

    `records` replaces the database for the version records (a team server's); `stores.blobs` must then be
    the blob store those records refer to.
    """

    def __init__(self, stores: Stores, records: VersionStore | None = None) -> None:
        self.stores = stores
        self.store: VersionStore = DatasetStore(stores.db) if records is None else records
        self.stat_cache = StatCache.in_home(stores.settings.home_dir)
        self._last_fingerprint: tuple[str, str] | None = None

    # -- adding ---------------------------------------------------------------------------------------

    def add(
        self,
        name: str,
        source: Any,
        *,
        message: str | None = None,
        git_commit: str | None = None,
        force: bool = False,
        no_copy: bool = False,
    ) -> Added:
        """A new version of `name` from a file, folder, glob pattern or DataFrame (identical content: none).

        A table that breaks the dataset's expectations (loopml.toml) is refused with a report naming each
        broken rule, or with `force` stored as a rejected version (never the newest for `NAME` or `@latest`).
        """
        check_key("dataset", name)
        if message is not None and (not isinstance(message, str) or len(message) > MAX_MESSAGE):
            raise InvalidInput(f"a version message must be a string of at most {MAX_MESSAGE} characters")
        rules = self.expectations(name)
        if no_copy:
            if not isinstance(source, str | os.PathLike):
                raise InvalidInput("--no-copy tracks files in place: give a path or URL, not a DataFrame")
            fields = self._tree_fields(fingerprint_tree(os.fspath(source)), os.fspath(source))
            fields["kind"] = "external"
        elif isinstance(source, str | os.PathLike):
            fields = self._fields_from_path(source, rules)
        else:
            fields = self._fields_from_frame(source, rules)
        violations: list[Violation] = fields.pop("violations", [])
        if violations and not force:
            raise InvalidInput(
                f"{name}: the table breaks {len(violations)} expectation(s) of loopml.toml and was not added "
                f"(--force stores it as rejected):\n{report(violations)}"
            )
        if violations:
            fields.update(
                status="rejected", validation_json=json.dumps([asdict(v) for v in violations], default=str)
            )
        fields.update(message=message, git_commit=git_commit)
        version, created = self.store.add_version(name, fields)
        if self._last_fingerprint is not None and version.status == "accepted":
            # The folder matches the version it just became: its first `status` needs no hashing at all.
            self.stat_cache.remember_folder(*self._last_fingerprint, version.digest)
        self._last_fingerprint = None
        return Added(version, created)

    def expectations(self, name: str) -> Expectations | None:
        """The `[datasets.NAME.expect]` rules of loopml.toml, if any."""
        project_file = self.stores.settings.project_dir / PROJECT_FILE
        if not project_file.is_file():
            return None
        section = read_project_file(project_file).get("datasets", {}).get(name, {}).get("expect")
        return None if section is None else Expectations.from_config(name, section)

    def _fields_from_path(self, source: str | os.PathLike[str], rules: Expectations | None) -> dict[str, Any]:
        kind, found = files.collect(source)
        tree = files.store_files(self.stores.blobs, found)
        by_name = {entry.path: entry.digest for entry in tree.entries}
        scanned = [(path, name, os.stat(path)) for path, name in found]
        self.stat_cache.remember_scanned((path, by_name[name], stat) for path, name, stat in scanned)
        self._last_fingerprint = (os.path.abspath(source), fingerprint(scanned))
        fields = self._tree_fields(tree, os.fspath(source))
        fields["kind"] = kind
        if kind == "file" and tables.is_table_file(Path(found[0][0])):
            fields.update(self._table_fields(Path(found[0][0]), rules), kind="table")
        elif rules is not None:
            raise InvalidInput(f"loopml.toml has expectations for {source!s}, but only tables can be checked")
        return fields

    def _fields_from_frame(self, frame: Any, rules: Expectations | None) -> dict[str, Any]:
        table = tables.from_frame(frame)
        with tempfile.TemporaryDirectory(prefix="loopml-table-") as folder:
            path = Path(folder) / "data.parquet"
            tables.write_parquet(table, path)
            tree = files.store_files(self.stores.blobs, [(str(path), "data.parquet")])
            fields = self._tree_fields(tree, "DataFrame")
            fields.update(self._table_fields(path, rules), kind="table")
        # Parquet bytes depend on the writer's version: a DataFrame is recognised by its values instead.
        fields["digest"] = tables.canonical_digest(table)
        return fields

    def _tree_fields(self, tree: Tree, source: str) -> dict[str, Any]:
        digest = put_tree(self.stores.blobs, tree)
        return {
            "digest": digest,
            "manifest_digest": digest,
            "source": source,
            "size": tree.size,
            "file_count": len(tree.entries),
        }

    def _table_fields(self, path: Path, rules: Expectations | None) -> dict[str, Any]:
        from loopml.data.profiling import profile_batches  # numpy and the stats only for tables

        summary = profile_batches(tables.batches(path))
        profile_digest = self.stores.blobs.put_bytes(json.dumps(summary.profile, sort_keys=True).encode())
        fields: dict[str, Any] = {
            "row_count": summary.rows,
            "schema_json": json.dumps(summary.schema),
            "profile_digest": profile_digest,
        }
        if rules is not None:
            logical = {column["name"]: column["logical"] for column in summary.schema}
            fields["violations"] = check(rules, tables.batches(path), logical)
            fields["validation_json"] = "[]"
        return fields

    # -- reading --------------------------------------------------------------------------------------

    def get(self, ref: str | VersionRef) -> DatasetVersion:
        """A version by reference: `NAME` (newest), `NAME@latest` or `NAME@v3`."""
        return self.store.get_version(ref if isinstance(ref, VersionRef) else VersionRef.parse(ref))

    def versions(self, name: str) -> list[DatasetVersion]:
        """Every version of a dataset, newest first."""
        return self.store.versions(check_key("dataset", name))

    def datasets(self) -> list[Dataset]:
        """Every dataset with its newest version."""
        return self.store.datasets()

    def tree(self, version: DatasetVersion) -> Tree:
        """The files of a version."""
        return get_tree(self.stores.blobs, version.manifest_digest)

    def profile(self, version: DatasetVersion) -> dict[str, Any] | None:
        """The stored profile of a tabular version (None for files and folders)."""
        if version.profile_digest is None:
            return None
        loaded: dict[str, Any] = json.loads(self.stores.blobs.get_bytes(version.profile_digest, verify=True))
        return loaded

    def restore(self, ref: str | VersionRef, destination: str | os.PathLike[str]) -> list[Path]:
        """Write a version's files under `destination` (verified); returns the paths written."""
        version = self.get(ref)
        if version.kind == "external":
            raise InvalidInput(
                f"{version.ref} was tracked in place (--no-copy): its data stays at {version.source}"
            )
        return files.restore(self.stores.blobs, self.tree(version), Path(destination))

    def diff(self, old_ref: str, new_ref: str) -> VersionDiff:
        """Files added, removed and changed; for tables also rows, schema and per-column statistics."""
        from loopml.data.profiling import summary_statistics

        old, new = self.get(old_ref), self.get(new_ref)
        return diff_versions(
            old,
            new,
            self.tree(old),
            self.tree(new),
            old_stats=summary_statistics(self.profile(old)),
            new_stats=summary_statistics(self.profile(new)),
        )

    def external_changes(self, version: DatasetVersion) -> VersionDiff:
        """What changed at the place an external (`--no-copy`) version points to since it was added."""
        if version.kind != "external" or version.source is None:
            raise InvalidInput(
                f"{version.ref} was copied into the store; compare a folder with `status` instead"
            )
        now = fingerprint_tree(version.source)
        return diff_versions(version, version, self.tree(version), now)


def table_file(blobs: BlobStore, version: DatasetVersion, cache: Path) -> Path:
    """A local copy of a tabular version's file (restored under `cache` once); needs only the blob store."""
    if version.kind != "table":
        raise InvalidInput(f"{version.ref} is a {version.kind}, not a table: use get() to restore its files")
    entry = get_tree(blobs, version.manifest_digest).entries[0]
    target = cache / version.digest / entry.path
    if not target.is_file():
        blobs.get_file(entry.digest, target, verify=True)
    return target
