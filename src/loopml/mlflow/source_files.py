"""Reading MLflow's file store (an `mlruns` folder) as MLflow 3.17 writes it:

```
mlruns/<experiment id>/meta.yaml                     name, lifecycle_stage, artifact_location, creation_time
              .../tags/<key>                         experiment tags (a key with "/" is a sub-folder)
              .../<run id>/meta.yaml                 run_name, status (1..5), times, user_id, artifact_uri
                      .../params/<key>, tags/<key>   one value per file
                      .../metrics/<key>              "<timestamp> <value> <step>[ <dataset> <digest>]" per point
                      .../artifacts/...              the run's files (the default artifact location)
              .../models/<m-id>/meta.yaml            MLflow 3 logged models, with tags/, params/, artifacts/
mlruns/.trash/<experiment id>/...                    deleted experiments, same layout
mlruns/models/<name>/meta.yaml                       the model registry: description, times
                 .../tags/<key>, aliases/<alias>     an alias file holds its version number
                 .../version-<n>/meta.yaml           source, run_id, model_id, storage_location, current_stage
                 .../version-<n>/tags/<key>
```
Artifact locations are absolute `file:` URIs of where the folder was written; a folder that was moved since is
found again through its experiment's recorded `artifact_location`. Symbolic links are never followed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from loopml.core.errors import InvalidInput
from loopml.core.names import safe_relative_path
from loopml.mlflow.source import (
    LOGGED_MODEL_STATUSES,
    RUN_STATUSES,
    MetricPoint,
    SourceExperiment,
    SourceLoggedModel,
    SourceRegisteredModel,
    SourceRun,
    SourceVersion,
    Unreachable,
    model_id_of,
)
from loopml.storage.blobs.store import BlobStore
from loopml.tracking.records import Artifact
from loopml.tracking.values import check_artifact_path

META = "meta.yaml"
TRASH = ".trash"
REGISTRY = "models"
EXPERIMENT_FOLDERS = {"tags", "datasets", "traces", "models"}  # beside the run folders of an experiment
DELETED_VERSION = "Deleted_Internal"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class FolderTree:
    """The files under one folder of the store (symbolic links left out)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def store(self, blobs: BlobStore) -> list[Artifact]:
        """Copy every file into the blob store: small ones packed, large ones streamed."""
        found: list[tuple[str, Path]] = []
        for folder, dirs, files in os.walk(self.root):  # does not descend into linked folders
            dirs.sort()
            for name in sorted(files):
                path = Path(folder, name)
                if not path.is_symlink():
                    found.append((check_artifact_path(path.relative_to(self.root).as_posix()), path))
        stored = blobs.put_files([path for _, path in found])
        return [Artifact(rel, digest, size) for (rel, _), (digest, size) in zip(found, stored, strict=True)]


class FolderSource:
    """An `mlruns` folder written by MLflow's file store."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise InvalidInput(f"no such folder: {folder}")
        self.root = folder.resolve()
        if not _looks_like_mlruns(self.root):
            raise InvalidInput(
                f"{folder} is not an MLflow file store: it holds no <experiment id>/meta.yaml "
                "(point --from at the mlruns folder itself)"
            )
        self.uri = self.root.as_uri()
        self.notes: list[str] = []
        self._experiments: dict[str, Path] = {}
        self._runs: dict[str, Path] = {}
        self._locations: list[tuple[str, Path]] = []  # recorded artifact_location -> folder it is in now

    def experiments(self) -> list[SourceExperiment]:
        found = []
        for parent, lifecycle in ((self.root, "active"), (self.root / TRASH, "deleted")):
            for folder in _subfolders(parent):
                if parent == self.root and folder.name in {TRASH, REGISTRY}:
                    continue
                meta = self._meta(folder / META)
                if meta is None or "experiment_id" not in meta or "name" not in meta:
                    continue
                experiment = SourceExperiment(
                    experiment_id=str(meta["experiment_id"]),
                    name=str(meta["name"]),
                    lifecycle=str(meta.get("lifecycle_stage") or lifecycle),
                    created_time=_int(meta.get("creation_time")),
                    tags=_values(folder / "tags"),
                )
                self._experiments[experiment.experiment_id] = folder
                location = meta.get("artifact_location")
                if isinstance(location, str) and (path := _file_path(location)) is not None:
                    self._locations.append((path.rstrip("/"), folder))
                found.append(experiment)
        return found

    def runs(self, experiment: SourceExperiment) -> Iterator[SourceRun]:
        for folder in _subfolders(self._experiments[experiment.experiment_id]):
            if folder.name in EXPERIMENT_FOLDERS:
                continue
            meta = self._meta(folder / META)
            if meta is None:
                continue
            run_id = str(meta.get("run_id") or meta.get("run_uuid") or "")
            if run_id != folder.name:
                self.notes.append(f"{folder}: its meta.yaml names run {run_id!r}; the folder was left out")
                continue
            tags = _values(folder / "tags")
            status = meta.get("status")
            self._runs[run_id] = folder
            yield SourceRun(
                run_id=run_id,
                experiment_id=experiment.experiment_id,
                run_name=_text(meta.get("run_name")) or tags.get("mlflow.runName"),
                status=RUN_STATUSES.get(status, str(status)) if isinstance(status, int) else str(status),
                start_time=_int(meta.get("start_time")),
                end_time=_int(meta.get("end_time")),
                lifecycle=str(meta.get("lifecycle_stage") or "active"),
                deleted_time=_int(meta.get("deleted_time")),
                user=_text(meta.get("user_id")),
                artifact_uri=str(meta.get("artifact_uri") or ""),
                params=_values(folder / "params"),
                tags=tags,
                metric_keys=tuple(sorted(_relative_files(folder / "metrics"))),
            )

    def metric_history(self, run: SourceRun, key: str) -> list[MetricPoint]:
        path = self._runs[run.run_id] / "metrics" / safe_relative_path(key)
        points = []
        with path.open(encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                parts = line.split()
                if not parts:
                    continue
                try:  # the step is the third field (MLflow's own reader drops it for 5-field lines)
                    points.append((float(parts[1]), int(parts[2]) if len(parts) > 2 else 0, int(parts[0])))
                except (IndexError, ValueError):
                    raise InvalidInput(
                        f"{path}, line {number}: not an MLflow metric point: {line!r:.80}"
                    ) from None
        return points

    def run_files(self, run: SourceRun) -> FolderTree:
        return FolderTree(self._local(run.artifact_uri, self._runs[run.run_id] / "artifacts"))

    def logged_models(self, experiment: SourceExperiment) -> Iterator[SourceLoggedModel]:
        for folder in _subfolders(self._experiments[experiment.experiment_id] / "models"):
            meta = self._meta(folder / META)
            if meta is None or meta.get("model_id") != folder.name:
                continue
            status = meta.get("status")
            yield SourceLoggedModel(
                model_id=folder.name,
                experiment_id=experiment.experiment_id,
                name=str(meta.get("name") or folder.name),
                source_run_id=_text(meta.get("source_run_id")),
                status=LOGGED_MODEL_STATUSES.get(status, "PENDING")
                if isinstance(status, int | str)
                else "PENDING",
                model_type=_text(meta.get("model_type")),
                created_time=_int(meta.get("creation_timestamp")),
                updated_time=_int(meta.get("last_updated_timestamp")),
                artifact_uri=str(meta.get("artifact_location") or ""),
                lifecycle=str(meta.get("lifecycle_stage") or "active"),
                tags=_values(folder / "tags"),
                params=_values(folder / "params"),
            )

    def logged_model_files(self, model: SourceLoggedModel) -> FolderTree:
        folder = self._experiments[model.experiment_id] / "models" / model.model_id
        return FolderTree(self._local(model.artifact_uri, folder / "artifacts"))

    def registered_models(self) -> Iterator[SourceRegisteredModel]:
        for folder in _subfolders(self.root / REGISTRY):
            meta = self._meta(folder / META)
            if meta is None or "name" not in meta:
                continue
            versions = [v for v in map(self._version, _subfolders(folder)) if v is not None]
            aliases = {}
            for alias, number in _values(folder / "aliases").items():
                if number.strip().isdigit():
                    aliases[alias] = int(number)
            yield SourceRegisteredModel(
                name=str(meta["name"]),
                description=_text(meta.get("description")),
                created_time=_int(meta.get("creation_timestamp")),
                tags=_values(folder / "tags"),
                aliases=aliases,
                versions=tuple(sorted(versions, key=lambda v: v.version)),
            )

    def version_files(self, version: SourceVersion) -> FolderTree:
        for uri in (version.storage_location, version.source):
            if uri and _file_path(uri) is not None:
                return FolderTree(self._local(uri, None))
        raise Unreachable(f"its files are at {version.storage_location or version.source}")

    def close(self) -> None:
        """Nothing to release."""

    def _version(self, folder: Path) -> SourceVersion | None:
        if not folder.name.startswith("version-"):
            return None
        meta = self._meta(folder / META)
        if meta is None or meta.get("current_stage") == DELETED_VERSION or _int(meta.get("version")) is None:
            return None
        source = _text(meta.get("source"))
        return SourceVersion(
            name=str(meta.get("name")),
            version=int(meta["version"]),
            created_time=_int(meta.get("creation_timestamp")),
            user=_text(meta.get("user_id")),
            description=_text(meta.get("description")),
            source=source,
            run_id=_text(meta.get("run_id")),
            model_id=_text(meta.get("model_id")) or model_id_of(source),
            storage_location=_text(meta.get("storage_location")),
            tags=_values(folder / "tags"),
        )

    def _local(self, uri: str, default: Path | None) -> Path:
        """The folder a `file:` artifact URI names, found again inside this store if the store was moved."""
        if not uri:
            if default is None:
                raise Unreachable("it names no artifact location")
            return default
        path = _file_path(uri)
        if path is None:
            raise Unreachable(
                f"its files are at {uri}, which a folder import cannot read (import from the server)"
            )
        for original, folder in self._locations:
            if path == original or path.startswith(original + "/"):
                moved = folder / path[len(original) :].lstrip("/")
                if moved.exists() or not Path(path).exists():
                    return moved
        if Path(path).exists():
            return Path(path)
        if default is not None and default.exists():
            return default
        raise Unreachable(f"its files were at {path}, which does not exist")

    def _meta(self, path: Path) -> dict[str, Any] | None:
        if not path.is_file():
            return None
        try:
            meta = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)  # noqa: S506 - a safe loader
        except (yaml.YAMLError, UnicodeDecodeError, OSError) as error:
            self.notes.append(f"{path} is not readable ({type(error).__name__}); it was left out")
            return None
        return meta if isinstance(meta, dict) else None


def _looks_like_mlruns(root: Path) -> bool:
    candidates = [*_subfolders(root), *_subfolders(root / TRASH)]
    if any((folder / META).is_file() for folder in candidates if folder.name != REGISTRY):
        return True
    return any((folder / META).is_file() for folder in _subfolders(root / REGISTRY))


def _subfolders(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())


def _relative_files(folder: Path) -> Iterator[str]:
    """Files under `folder` as relative POSIX paths (a key with "/" is stored as sub-folders)."""
    for parent, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(parent, name)
            if not path.is_symlink():
                yield path.relative_to(folder).as_posix()


def _values(folder: Path) -> dict[str, str]:
    """{key: file content} of a params, tags or aliases folder."""
    return {key: (folder / key).read_bytes().decode("utf-8", "replace") for key in _relative_files(folder)}


def _file_path(uri: str) -> str | None:
    """The local path of a `file:` URI or a plain absolute path; None for any other scheme."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return unquote(parts.path)
    if not parts.scheme and uri.startswith("/"):
        return uri
    return None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None
