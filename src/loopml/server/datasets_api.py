"""Datasets over HTTP: versions a client hashed, profiled and uploaded, recorded by the server.

```
GET  /api/v1/datasets                          reader   every dataset with its newest version number
GET  /api/v1/datasets/{name}/versions          reader   every version, newest first
POST /api/v1/datasets/{name}/versions  {...}   editor   a new version (the existing one for known content)
GET  /api/v1/datasets/{ref}                    reader   one version (NAME, NAME@latest, NAME@v3) with its tree
                                                        (path, size, digest of each file) and its profile
GET  /api/v1/dataset-diff?old=REF&new=REF      reader   files added, removed, changed; rows, schema, statistics
```
A version is added in two steps, as git pushes objects before a ref: the client PUTs every blob to
`/api/v1/blobs/{digest}` (the files; for tables also the profile), then POSTs the record

    {"kind": "file" | "folder" | "table",
     "tree": [{"path", "size", "digest"}, ...]   (or "manifest_digest": an uploaded tree, for large folders),
     "digest"?, "source"?, "message"?, "git_commit"?, "status"?: "accepted" | "rejected", "validation"?: [...],
     tables only: "row_count", "schema": [{"name", "type", ...}], "profile_digest"}

Every field is checked; every tree entry must be a plain relative name as the tree module writes them (no `..`,
`.` or empty parts, no leading `/`, no backslash); every blob the record names must be stored with the size
the tree says, else a 400 names the first missing digest and nothing is recorded. Size and file count come
from the tree, the user from the token. The same content again (same digest) gives the existing version with
`"created": false`, as a local add does.

Dataset names may contain `/`, so `{name}` and `{ref}` take the rest of the path; a name ending in
`/versions` is reached as `NAME@latest`.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from loopml.core.errors import InvalidInput, PathEscapes
from loopml.core.hashing import hash_bytes, is_digest
from loopml.core.names import check_key, safe_relative_path
from loopml.core.plain import to_plain
from loopml.data.catalog import MAX_MESSAGE, DataCatalog
from loopml.data.records import VersionRef
from loopml.data.store import DatasetStore
from loopml.server.fields import who
from loopml.storage.blobs.tree import TREE_FORMAT, Tree, TreeEntry, put_tree

if TYPE_CHECKING:
    from loopml.storage.blobs.store import BlobStore
    from loopml.tracking.tracker import Tracker

FIELDS = frozenset(
    {
        "kind",
        "tree",
        "manifest_digest",
        "digest",
        "source",
        "message",
        "git_commit",
        "status",
        "validation",
        "row_count",
        "schema",
        "profile_digest",
    }
)
KINDS = ("file", "folder", "table")
TABLE_FIELDS = ("row_count", "schema", "profile_digest")
MAX_PATH = 1024  # characters of one file name in a tree
MAX_SOURCE = 10_000
MAX_TREE_BYTES = 64 * 2**20  # an uploaded tree: some 600,000 files
MAX_PROFILE_BYTES = 16 * 2**20
MAX_ROWS = 2**63 - 1  # the database column is a signed 64-bit integer
_COMMIT = re.compile(r"[0-9a-f]{4,64}")


def dataset_routes(app: FastAPI, tracker: Tracker, read_body: Any) -> None:
    """Add the dataset routes to `app`; `read_body(request)` returns the size-checked JSON object."""
    records = DatasetStore(tracker.stores.db)
    catalog = DataCatalog(tracker.stores)

    @app.get("/api/v1/datasets")
    async def list_datasets(request: Request) -> Any:
        who(request).require("read")
        return {"datasets": to_plain(await run_in_threadpool(records.datasets))}

    @app.get("/api/v1/dataset-diff")
    async def diff(request: Request, old: str | None = None, new: str | None = None) -> Any:
        who(request).require("read")
        if not old or not new:
            raise InvalidInput("give both versions: ?old=NAME@v1&new=NAME@v2")
        return to_plain(await run_in_threadpool(catalog.diff, old, new))

    # Before `/datasets/{ref}`: that route would otherwise take `NAME/versions` for a dataset name.
    @app.get("/api/v1/datasets/{name:path}/versions")
    async def list_versions(name: str, request: Request) -> Any:
        who(request).require("read")
        found = await run_in_threadpool(records.versions, check_key("dataset", name))
        return {"versions": to_plain(found)}

    @app.post("/api/v1/datasets/{name:path}/versions")
    async def add_version(name: str, request: Request) -> Any:
        caller = who(request)
        caller.require("write")
        check_key("dataset", name)
        body = await read_body(request)

        def add() -> Any:
            fields, tree = checked_fields(tracker.blobs, body)
            put_tree(tracker.blobs, tree)  # only now that every check passed (a no-op for an uploaded tree)
            return records.add_version(name, {**fields, "user_name": caller.name})

        version, created = await run_in_threadpool(add)
        return {"version": to_plain(version), "created": created}

    @app.get("/api/v1/datasets/{ref:path}")
    async def get_version(ref: str, request: Request) -> Any:
        who(request).require("read")

        def show() -> dict[str, Any]:
            version = catalog.get(VersionRef.parse(ref))
            tree = catalog.tree(version)
            return {
                "version": to_plain(version),
                "tree": [{"path": e.path, "size": e.size, "digest": e.digest} for e in tree.entries],
                "profile": to_plain(catalog.profile(version)),  # NaN and infinities as strings, as JSON needs
            }

        return await run_in_threadpool(show)


def checked_fields(blobs: BlobStore, body: dict[str, Any]) -> tuple[dict[str, Any], Tree]:
    """The database fields of a version a client sent, and its tree; `InvalidInput` names the first bad field."""
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise InvalidInput(
            f"unknown field(s) {', '.join(unknown)}; a version has {', '.join(sorted(FIELDS))}"
        )
    kind = body.get("kind")
    if kind == "external":
        raise InvalidInput(
            "kind: a version tracked in place (--no-copy) names files on one machine; "
            "add a copy of the data to share it through a server"
        )
    if kind not in KINDS:
        raise InvalidInput(f"kind: one of {', '.join(KINDS)}, got {_shown(kind)}")
    tree = _tree(blobs, body)
    manifest = hash_bytes(tree.to_bytes())
    if kind in ("file", "table") and len(tree.entries) != 1:
        raise InvalidInput(f"tree: a {kind} version holds exactly one file, got {len(tree.entries)}")
    digest = _digest(body, "digest", required=False) or manifest
    if kind != "table" and digest != manifest:  # a table from a DataFrame is named by its values instead
        raise InvalidInput(f"digest: a {kind} version's digest is its tree's ({manifest}), got {digest}")
    fields: dict[str, Any] = {
        "kind": kind,
        "digest": digest,
        "manifest_digest": manifest,
        "size": tree.size,
        "file_count": len(tree.entries),
        "source": _text(body, "source", MAX_SOURCE),
        "message": _text(body, "message", MAX_MESSAGE),
        "git_commit": _commit(body.get("git_commit")),
        "status": _status(body.get("status", "accepted")),
        "validation_json": _records(body, "validation"),
    }
    if kind == "table":
        fields.update(_table_fields(blobs, body))
    else:
        present = [key for key in TABLE_FIELDS if body.get(key) is not None]
        if present:
            raise InvalidInput(f"{present[0]}: only a table version has one (this is a {kind})")
    return fields, tree


def _tree(blobs: BlobStore, body: dict[str, Any]) -> Tree:
    """The tree sent inline, else the uploaded tree `manifest_digest` names; the same checks either way."""
    inline, uploaded = body.get("tree"), body.get("manifest_digest")
    if inline is None and uploaded is None:
        raise InvalidInput(
            'tree: a list of {"path", "size", "digest"} (or manifest_digest: an uploaded tree)'
        )
    if inline is not None:
        if not isinstance(inline, list) or not inline:
            raise InvalidInput('tree: a non-empty list of {"path", "size", "digest"}')
        for index, item in enumerate(inline):
            if not isinstance(item, dict) or set(item) != {"path", "size", "digest"}:
                raise InvalidInput(f"tree[{index}]: an object with exactly path, size, digest")
        tree = _checked_tree("tree", [(i["path"], i["size"], i["digest"]) for i in inline])
        if uploaded is not None and uploaded != hash_bytes(tree.to_bytes()):
            raise InvalidInput(f"manifest_digest: {_shown(uploaded)} is not the digest of the tree sent")
        _check_blobs(blobs, "tree", tree)
        return tree
    manifest = _digest(body, "manifest_digest")
    size = blobs.size(manifest) if blobs.exists(manifest) else None
    if size is None:
        raise InvalidInput(
            f"manifest_digest: no uploaded tree {manifest} (PUT it to /api/v1/blobs/{manifest} first); "
            "nothing was recorded"
        )
    if size > MAX_TREE_BYTES:
        raise InvalidInput(f"manifest_digest: the tree is {size} bytes; at most {MAX_TREE_BYTES}")
    tree = _checked_tree("manifest_digest", _stored_entries(blobs.get_bytes(manifest, verify=True)))
    if hash_bytes(tree.to_bytes()) != manifest:
        raise InvalidInput(
            "manifest_digest: the uploaded tree is not in canonical form (sorted, compact JSON)"
        )
    _check_blobs(blobs, "manifest_digest", tree)
    return tree


def _stored_entries(data: bytes) -> list[Any]:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        document = None
    if not isinstance(document, dict) or document.get("format") != TREE_FORMAT:
        document = {}
    entries = document.get("entries")
    if not isinstance(entries, list) or not entries:
        raise InvalidInput(
            f"manifest_digest: not a LoopML tree (JSON with format {TREE_FORMAT!r} and entries)"
        )
    for index, item in enumerate(entries):
        if not isinstance(item, list) or len(item) != 3:
            raise InvalidInput(f"manifest_digest: entry {index} is not [path, size, digest]")
    return entries


def _checked_tree(where: str, items: list[Any]) -> Tree:
    entries = [_entry(f"{where}[{index}]", *item) for index, item in enumerate(items)]
    names: set[str] = set()
    for entry in entries:
        if entry.path in names:
            raise InvalidInput(f"{where}: {entry.path!r} is listed twice")
        names.add(entry.path)
    # `a` and `a/b` cannot both be restored: one name would have to be a file and a folder at once.
    folders = {path.rsplit("/", depth)[0] for path in names for depth in range(1, path.count("/") + 1)}
    clash = sorted(names & folders)
    if clash:
        raise InvalidInput(f"{where}: {clash[0]!r} is both a file and a folder")
    return Tree.of(entries)


def _entry(label: str, path: Any, size: Any, digest: Any) -> TreeEntry:
    if not isinstance(path, str) or not 1 <= len(path) <= MAX_PATH or not _encodable(path):
        raise InvalidInput(f"{label}.path: a relative file name of 1 to {MAX_PATH} characters")
    try:
        normal = safe_relative_path(path)
    except PathEscapes as error:
        raise PathEscapes(f"{label}.path: {error.message}") from None
    if normal != path:
        raise PathEscapes(
            f"{label}.path: {path!r} is not a plain relative name (no '.', '..' or empty parts, no backslash)"
        )
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidInput(f"{label}.size: a whole number of bytes")
    if not _is_digest(digest):
        raise InvalidInput(f"{label}.digest: a BLAKE3 digest (64 lowercase hex characters)")
    return TreeEntry(path, size, digest)


def _check_blobs(blobs: BlobStore, where: str, tree: Tree) -> None:
    sizes: dict[str, int | None] = {}
    for entry in tree.entries:
        if entry.digest not in sizes:
            sizes[entry.digest] = blobs.size(entry.digest) if blobs.exists(entry.digest) else None
        if sizes[entry.digest] != entry.size:
            raise InvalidInput(
                f"{where}: {entry.path!r} names no uploaded blob {entry.digest} of {entry.size} bytes "
                f"(PUT it to /api/v1/blobs/{entry.digest} first); nothing was recorded"
            )


def _table_fields(blobs: BlobStore, body: dict[str, Any]) -> dict[str, Any]:
    rows = body.get("row_count")
    if isinstance(rows, bool) or not isinstance(rows, int) or not 0 <= rows <= MAX_ROWS:
        raise InvalidInput("row_count: the table's number of rows (a whole number)")
    schema = body.get("schema")
    if not isinstance(schema, list) or not all(
        isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("type"), str)
        for c in schema
    ):
        raise InvalidInput('schema: a list of {"name", "type", ...}, one per column')
    profile = _digest(body, "profile_digest")
    size = blobs.size(profile) if blobs.exists(profile) else None
    if size is None:
        raise InvalidInput(
            f"profile_digest: no uploaded profile {profile} (PUT it to /api/v1/blobs/{profile} first); "
            "nothing was recorded"
        )
    if size > MAX_PROFILE_BYTES:
        raise InvalidInput(f"profile_digest: the profile is {size} bytes; at most {MAX_PROFILE_BYTES}")
    try:  # read back by every client that shows or compares the version: it must be a JSON object
        loaded = json.loads(blobs.get_bytes(profile, verify=True))
    except (ValueError, UnicodeDecodeError):
        loaded = None
    if not isinstance(loaded, dict):
        raise InvalidInput(f"profile_digest: blob {profile} is not a JSON object (a table profile)")
    return {"row_count": rows, "schema_json": json.dumps(schema), "profile_digest": profile}


def _digest(body: dict[str, Any], key: str, *, required: bool = True) -> Any:
    value = body.get(key)
    if value is None and not required:
        return None
    if not _is_digest(value):
        raise InvalidInput(f"{key}: a BLAKE3 digest (64 lowercase hex characters)")
    return value


def _is_digest(value: Any) -> bool:
    # `is_digest` alone lets a trailing newline through (`$`); the length check closes that.
    return isinstance(value, str) and len(value) == 64 and is_digest(value)


def _text(body: dict[str, Any], key: str, limit: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit or "\x00" in value or not _encodable(value):
        raise InvalidInput(f"{key}: text of at most {limit} characters (or leave it out)")
    return value


def _encodable(text: str) -> bool:
    """No lone surrogates (JSON can carry them; the database and file names cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _commit(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _COMMIT.fullmatch(value):
        raise InvalidInput("git_commit: a commit id (4 to 64 lowercase hex characters)")
    return value


def _status(value: Any) -> str:
    if value not in ("accepted", "rejected"):
        raise InvalidInput(f"status: accepted or rejected, got {_shown(value)}")
    return str(value)


def _records(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InvalidInput(f"{key}: a list of objects (the expectation report)")
    return json.dumps(value)


def _shown(value: Any) -> str:
    return f"{value!r:.60}"
