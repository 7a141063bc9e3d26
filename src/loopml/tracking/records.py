"""Plain record types of experiment tracking, as returned by the store and the client."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum


class RunStatus(StrEnum):
    """Where a run is in its life; FINISHED, FAILED and KILLED are final."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class Lifecycle(StrEnum):
    """Soft deletion: a deleted run can be restored until `loopml gc` purges it."""

    ACTIVE = "active"
    DELETED = "deleted"


@dataclass(frozen=True)
class Experiment:
    """A named group of runs."""

    experiment_id: str
    name: str
    lifecycle: Lifecycle
    created_time: int
    description: str | None = None


@dataclass(frozen=True)
class Metric:
    """One point of a metric's history. NaN and ±inf are kept as given."""

    key: str
    value: float
    step: int
    timestamp: int

    def same_point(self, other: Metric) -> bool:
        """Equality that treats NaN as equal to NaN."""
        both_nan = math.isnan(self.value) and math.isnan(other.value)
        return (self.key, self.step, self.timestamp) == (other.key, other.step, other.timestamp) and (
            both_nan or self.value == other.value
        )


@dataclass(frozen=True)
class Artifact:
    """A file logged to a run, stored once in the blob store under its digest."""

    path: str
    digest: str
    size: int


@dataclass(frozen=True)
class RunInput:
    """A reference to a dataset version that a run read."""

    dataset: str
    version: str
    digest: str | None = None
    context: str | None = None


@dataclass(frozen=True)
class GitInfo:
    """The code a run came from."""

    commit: str | None = None
    branch: str | None = None
    dirty: bool | None = None
    diff_hash: str | None = None


@dataclass(frozen=True)
class Run:
    """A run with its params, tags and latest metric values."""

    run_id: str
    experiment_id: str
    name: str
    status: RunStatus
    start_time: int
    end_time: int | None
    lifecycle: Lifecycle
    parent_run_id: str | None = None
    note: str | None = None
    error: str | None = None
    user: str | None = None
    entry_point: str | None = None
    git: GitInfo = field(default_factory=GitInfo)
    environment_hash: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def duration_ms(self) -> int | None:
        """Wall time from start to end, None while running."""
        return None if self.end_time is None else self.end_time - self.start_time
