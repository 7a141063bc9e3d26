"""Dataset versions as pipeline inputs: `dataset: DatasetRef = "transactions@latest"` in a pipeline signature.

The reference is resolved once, when the run starts, to a fixed version: the run records that version as an
input, and cache keys see the version's content hash, so a new version with the same content changes
nothing and `@latest` never hides which data a run read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopml.data.records import DatasetVersion


class DatasetRef:
    """A resolved dataset version (annotate a pipeline parameter with this type and pass `NAME@latest`)."""

    __slots__ = ("content_digest", "kind", "name", "record", "version")

    def __init__(
        self, name: str, version: int, content_digest: str, kind: str, record: DatasetVersion | None = None
    ) -> None:
        self.name = name
        self.version = version
        self.content_digest = content_digest  # what cache keys see
        self.kind = kind
        # The version's record, when the pipeline resolved it: a step loads the data from the blob store
        # with it, without the catalog (which a step on a cluster worker cannot reach).
        self.record = record

    def __str__(self) -> str:
        return f"{self.name}@v{self.version}"

    def __repr__(self) -> str:
        return f"DatasetRef({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DatasetRef) and other.content_digest == self.content_digest

    def __hash__(self) -> int:
        return hash(self.content_digest)

    def __reduce__(self) -> Any:
        return (DatasetRef, (self.name, self.version, self.content_digest, self.kind, self.record))

    def load(self) -> Any:
        """The version's content (a DataFrame for tables, else its folder); recorded as an input of the run."""
        from loopml.datasets import load, load_version

        return load(str(self)) if self.record is None else load_version(self.record)
