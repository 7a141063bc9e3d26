"""What a pipeline run leaves behind: plain records read back by `loopml pipeline show` and `explain`."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

SINGLE_OUTPUT = "output"  # the name of a step's return value when it declares no `outputs=`


class StepStatus(StrEnum):
    """How one step call of a pipeline run ended."""

    FINISHED = "finished"  # ran, outputs stored
    CACHED = "cached"  # outputs reused from an earlier run with the same cache key
    FAILED = "failed"  # raised (after its retries) or timed out
    SKIPPED = "skipped"  # not run because a step it depends on failed


class CacheState(StrEnum):
    """Whether the cache was consulted for a step call, and with what result."""

    HIT = "hit"
    MISS = "miss"
    OFF = "off"  # the step opted out (`cache=False`)
    UNAVAILABLE = "unavailable"  # something in the call cannot be fingerprinted; `cache_note` says what


@dataclass(frozen=True)
class OutputRef:
    """One stored output of a step: the blob holding it and the canonical hash of its value."""

    name: str  # "output", or the declared output name
    digest: str  # blob digest of the serialized bytes
    content_hash: str  # canonical hash of the value: what downstream cache keys see
    serializer: str  # "name@version"
    python_type: str
    size: int

    @property
    def content_digest(self) -> str:
        """What cache keys of the steps reading this output see: the content, not where it is stored."""
        return self.content_hash

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in the metadata database."""
        return {
            "name": self.name,
            "digest": self.digest,
            "content_hash": self.content_hash,
            "serializer": self.serializer,
            "type": self.python_type,
            "size": self.size,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutputRef:
        """The inverse of `to_dict`."""
        return cls(
            name=data["name"],
            digest=data["digest"],
            content_hash=data["content_hash"],
            serializer=data["serializer"],
            python_type=data["type"],
            size=int(data["size"]),
        )


@dataclass(frozen=True)
class StepRecord:
    """One step call of a pipeline run."""

    node: str
    step: str
    status: StepStatus
    cache: CacheState
    run_id: str | None = None
    cache_note: str | None = None
    cache_key: str | None = None
    key: dict[str, Any] | None = None
    cached_from: str | None = None
    upstream: tuple[str, ...] = ()
    outputs: tuple[OutputRef, ...] = ()
    attempts: int = 0
    started_time: int | None = None
    duration_ms: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class PipelineRunRecord:
    """A pipeline run: its tracking run id, what it ran with, and its steps in execution order."""

    run_id: str
    pipeline: str
    params: dict[str, Any]
    executor: str
    mode: str
    status: str
    created_time: int
    end_time: int | None = None
    source_run_id: str | None = None
    result: Any = None
    steps: tuple[StepRecord, ...] = field(default=())

    def step(self, node: str) -> StepRecord:
        """The record of step call `node`; KeyError when the run has none."""
        for record in self.steps:
            if record.node == node:
                return record
        raise KeyError(node)
