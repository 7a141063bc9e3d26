"""Registry records: registered models, their versions, and the audit trail of alias moves."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from loopml.core.errors import InvalidInput

_REF = re.compile(
    r"^(?P<name>[^@/\s][^@\s]*?)(?:@(?:v(?P<version>\d{1,9})|(?P<alias>[A-Za-z_][\w.-]{0,249})))?$"
)


@dataclass(frozen=True)
class ModelRef:
    """`name`, `name@v3` (a version) or `name@champion` (an alias); a bare name means its latest version."""

    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """Parse a reference; `InvalidInput` for anything else."""
        match = _REF.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise InvalidInput(f"not a model reference: {text!r} (expected NAME, NAME@v3 or NAME@ALIAS)")
        version = match["version"]
        if version is not None and int(version) < 1:
            raise InvalidInput(f"model versions start at v1, got {text!r}")
        alias = match["alias"]
        return cls(match["name"], int(version) if version else None, None if alias == "latest" else alias)

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@v{self.version}"
        return f"{self.name}@{self.alias}" if self.alias else self.name


@dataclass(frozen=True)
class RegisteredModel:
    """A named model: its versions are numbered, its aliases point at versions."""

    model_id: str
    name: str
    created_time: int
    updated_time: int
    description: str | None = None
    owner: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)  # alias -> version number
    latest_version: int | None = None


@dataclass(frozen=True)
class ModelVersion:
    """One immutable version: its package (a tree in the blob store) and what it was made from."""

    name: str
    version: int
    version_id: str
    flavor: str
    content_hash: str
    package_digest: str
    created_time: int
    run_id: str | None = None
    signature: dict[str, Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    description: str | None = None
    created_by: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    trusted_by: str | None = None  # who marked a version whose loading runs code as safe to load
    trusted_time: int | None = None
    source_uri: str | None = None  # registered through MLflow's API: the source it named
    logged_model_id: str | None = None  # ... and the MLflow logged model it came from

    @property
    def ref(self) -> str:
        """`name@vN`."""
        return f"{self.name}@v{self.version}"


@dataclass(frozen=True)
class Registered:
    """What `register` did: the version, and whether it is new (False: the same model was there already)."""

    version: ModelVersion
    created: bool


@dataclass(frozen=True)
class AliasEvent:
    """One alias move (or a refused promotion): who moved it, when, from which version to which, and why."""

    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    outcome: str  # moved | removed | refused
    forced: bool
    time: int
    reason: str | None = None
    gates: list[dict[str, Any]] | None = None
    user: str | None = None
