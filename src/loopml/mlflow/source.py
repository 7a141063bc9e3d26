"""What `loopml import mlflow` reads from MLflow, whatever holds it: plain records and the small interface a
source implements (`source_files.FolderSource` for an `mlruns` folder, `source_rest.RestSource` for a
tracking server).

A source lists; the importer decides what is new and writes it. Records carry MLflow's own ids and times,
and values as MLflow stores them (params and tags are strings, metric values floats with NaN and ±inf).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from loopml.storage.blobs.store import BlobStore
from loopml.tracking.records import Artifact

# MLflow's run statuses as its file store numbers them (entities/run_status.py); SCHEDULED becomes RUNNING.
RUN_STATUSES = {1: "RUNNING", 2: "RUNNING", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
# MLflow 3's logged model statuses (file store integers and REST enum names).
LOGGED_MODEL_STATUSES = {
    0: "PENDING",
    1: "PENDING",
    2: "READY",
    3: "FAILED",
    "LOGGED_MODEL_STATUS_UNSPECIFIED": "PENDING",
    "LOGGED_MODEL_PENDING": "PENDING",
    "LOGGED_MODEL_READY": "READY",
    "LOGGED_MODEL_UPLOAD_FAILED": "FAILED",
}

MetricPoint = tuple[float, int, int]  # (value, step, timestamp), as LoopML's metric log takes them


class FileTree(Protocol):
    """A folder of files at the source (a run's artifacts, a logged model's files)."""

    def store(self, blobs: BlobStore) -> list[Artifact]:
        """Copy every file into the blob store (streamed); their paths relative to the folder, checked not
        to leave it. Raises `InvalidInput` for a path that would escape."""
        ...


class Unreachable(Exception):
    """The files exist somewhere this source cannot read (say an `s3://` artifact root of a folder import)."""


@dataclass(frozen=True)
class SourceExperiment:
    """An MLflow experiment: LoopML maps it by name."""

    experiment_id: str
    name: str
    lifecycle: str  # active | deleted
    created_time: int | None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceRun:
    """An MLflow run with its params, tags and metric names (the points are read per metric)."""

    run_id: str
    experiment_id: str
    run_name: str | None
    status: str  # RUNNING | FINISHED | FAILED | KILLED
    start_time: int | None
    end_time: int | None
    lifecycle: str  # active | deleted
    deleted_time: int | None
    user: str | None
    artifact_uri: str
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metric_keys: tuple[str, ...] = ()

    @property
    def parent_run_id(self) -> str | None:
        """The parent of a nested run (MLflow keeps it as the tag `mlflow.parentRunId`)."""
        return self.tags.get("mlflow.parentRunId") or None


@dataclass(frozen=True)
class SourceLoggedModel:
    """An MLflow 3 logged model (`m-<hex>`): its run, status, tags and params (files read apart)."""

    model_id: str
    experiment_id: str
    name: str
    source_run_id: str | None
    status: str  # PENDING | READY | FAILED
    model_type: str | None
    created_time: int | None
    updated_time: int | None
    artifact_uri: str
    lifecycle: str = "active"
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceVersion:
    """A version of a registered model, with where its files are (`source`, `model_id`, `storage_location`)."""

    name: str
    version: int
    created_time: int | None
    user: str | None
    description: str | None
    source: str | None  # models:/m-..., runs:/<run id>/<path>, or a storage URI
    run_id: str | None
    model_id: str | None
    storage_location: str | None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceRegisteredModel:
    """A registered model with its versions (by number), tags and aliases (alias -> version number)."""

    name: str
    description: str | None
    created_time: int | None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    versions: tuple[SourceVersion, ...] = ()


class MlflowSource(Protocol):
    """Everything the importer reads; `uri` names the source (its hash keys what was imported from it), and
    `notes` collects what the source left out while reading (an unreadable file, an older server)."""

    uri: str
    notes: list[str]

    def experiments(self) -> list[SourceExperiment]:
        """Every experiment, deleted ones too."""
        ...

    def runs(self, experiment: SourceExperiment) -> Iterator[SourceRun]:
        """Every run of the experiment, deleted ones too, with params, tags and the names of its metrics."""
        ...

    def metric_history(self, run: SourceRun, key: str) -> list[MetricPoint]:
        """Every point of one metric, in the order MLflow returns them."""
        ...

    def run_files(self, run: SourceRun) -> FileTree:
        """The run's artifacts; `Unreachable` when this source cannot read them."""
        ...

    def logged_models(self, experiment: SourceExperiment) -> Iterator[SourceLoggedModel]:
        """MLflow 3's logged models of the experiment."""
        ...

    def logged_model_files(self, model: SourceLoggedModel) -> FileTree:
        """The logged model's files; `Unreachable` when this source cannot read them."""
        ...

    def registered_models(self) -> Iterator[SourceRegisteredModel]:
        """Registered models with their versions (deleted versions left out), tags and aliases."""
        ...

    def version_files(self, version: SourceVersion) -> FileTree:
        """The files of a version whose logged model or run was not imported; `Unreachable` otherwise."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def model_id_of(source: str | None) -> str | None:
    """The logged model a version's source names (`models:/m-<hex>`), else None."""
    if source and source.startswith("models:/m-") and "/" not in source[len("models:/") :]:
        return source[len("models:/") :]
    return None


def run_path_of(source: str | None) -> tuple[str, str] | None:
    """(run id, artifact path) of a `runs:/<run id>/<path>` source, else None."""
    if not source or not source.startswith("runs:/"):
        return None
    run_id, _, path = source[len("runs:/") :].partition("/")
    return (run_id, path.strip("/")) if run_id else None
