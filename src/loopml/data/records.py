"""Plain record types of data versioning, and the `NAME@vN` reference syntax."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from loopml.core.errors import InvalidInput
from loopml.core.names import check_key

_REF = re.compile(r"^(?P<name>[^@]+?)(?:@(?:v(?P<version>\d{1,9})|(?P<latest>latest)))?$")


@dataclass(frozen=True)
class VersionRef:
    """`NAME` or `NAME@latest` (the newest version) or `NAME@v3`."""

    name: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> VersionRef:
        """Parse a reference; anything else is `InvalidInput` saying what is expected."""
        match = _REF.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise InvalidInput(f"not a dataset reference: {text!r} (expected NAME, NAME@latest or NAME@v3)")
        version = match.group("version")
        if version is not None and int(version) < 1:
            raise InvalidInput(f"dataset versions start at v1, got {text!r}")
        return cls(check_key("dataset", match.group("name")), int(version) if version else None)

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@v{self.version}"


@dataclass(frozen=True)
class Dataset:
    """A named series of versions."""

    dataset_id: str
    name: str
    created_time: int
    latest_version: int | None = None
    description: str | None = None


@dataclass(frozen=True)
class DatasetVersion:
    """One immutable version of a dataset."""

    name: str
    version: int
    digest: str  # the content hash of the whole version (its tree's digest)
    kind: str  # file | folder | table
    manifest_digest: str
    size: int
    file_count: int
    created_time: int
    source: str | None = None
    message: str | None = None
    row_count: int | None = None
    schema: list[dict[str, Any]] | None = None
    profile_digest: str | None = None
    git_commit: str | None = None
    status: str = "accepted"  # or "rejected": stored with --force although it broke its expectations
    validation: list[dict[str, Any]] | None = None
    user: str | None = None  # who added it through a team server (None for a local add)

    @property
    def ref(self) -> str:
        """`NAME@vN`."""
        return f"{self.name}@v{self.version}"


@dataclass(frozen=True)
class Added:
    """The outcome of an add: the version, and whether it is new (identical content adds none)."""

    version: DatasetVersion
    created: bool
