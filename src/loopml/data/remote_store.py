"""Dataset version records kept by a LoopML team server: the `VersionStore` a `DataCatalog` uses when
`LOOPML_TRACKING_URI` points at a server (not to be confused with `loopml.data.remote`, which pushes and
pulls blobs to S3-like remotes).

The catalog still hashes, profiles and checks the files on the client and uploads the blobs (files, the tree,
the profile) by digest first; this store then sends the version record, naming the tree by its digest, and the
server checks that every blob it lists arrived before recording anything. Adding is idempotent on the server
(the same content gives the existing version), so a record whose answer was lost is simply sent again.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Protocol
from urllib.parse import quote

from loopml.data.records import Dataset, DatasetVersion, VersionRef

# The fields of a version the client computes; the server derives size and file count from the tree itself.
_SENT = (
    "kind",
    "digest",
    "manifest_digest",
    "source",
    "message",
    "git_commit",
    "row_count",
    "profile_digest",
)
_VERSION_FIELDS = frozenset(f.name for f in dataclasses.fields(DatasetVersion))
_DATASET_FIELDS = frozenset(f.name for f in dataclasses.fields(Dataset))


class Caller(Protocol):
    """JSON requests to the server's `/api/v1` (`loopml.tracking.remote.Http`)."""

    def call(self, method: str, path: str, body: Any = None, *, repeatable: bool) -> Any: ...


class RemoteDatasetStore:
    """Datasets and versions of a team server, with the methods of `DatasetStore` the catalog uses."""

    def __init__(self, http: Caller) -> None:
        self.http = http

    def add_version(self, name: str, fields: dict[str, Any]) -> tuple[DatasetVersion, bool]:
        """Record a version whose blobs are uploaded; the existing one when the server has this digest."""
        body: dict[str, Any] = {key: fields[key] for key in _SENT if fields.get(key) is not None}
        body["status"] = fields.get("status") or "accepted"
        for key in ("schema", "validation"):  # JSON in the database, JSON values on the wire
            text = fields.get(f"{key}_json")
            if text is not None:
                body[key] = json.loads(text)
        answer = self.http.call("POST", f"/datasets/{_path(name)}/versions", body, repeatable=True)
        return version_of(answer["version"]), bool(answer["created"])

    def get_version(self, ref: VersionRef) -> DatasetVersion:
        """A version by reference (`NAME` = the newest accepted one)."""
        # Always with a version part: `NAME@latest` cannot be mistaken for another route's path.
        wanted = "latest" if ref.version is None else f"v{ref.version}"
        answer = self.http.call("GET", f"/datasets/{_path(ref.name)}@{wanted}", repeatable=True)
        return version_of(answer["version"])

    def versions(self, name: str) -> list[DatasetVersion]:
        """Every version of a dataset, newest first."""
        found = self.http.call("GET", f"/datasets/{_path(name)}/versions", repeatable=True)["versions"]
        return [version_of(v) for v in found]

    def datasets(self) -> list[Dataset]:
        """Every dataset with its newest version number, by name."""
        found = self.http.call("GET", "/datasets", repeatable=True)["datasets"]
        return [Dataset(**{k: v for k, v in d.items() if k in _DATASET_FIELDS}) for d in found]


def version_of(data: dict[str, Any]) -> DatasetVersion:
    """A version record from the server's JSON (fields a newer server adds are left out)."""
    return DatasetVersion(**{k: v for k, v in data.items() if k in _VERSION_FIELDS})


def _path(name: str) -> str:
    # Dataset names may hold '/', ' ' and ':': slashes stay (the server's route takes a path), the rest is
    # percent-encoded. The server validates the name again; nothing here is trusted to be safe.
    return quote(name, safe="/")
