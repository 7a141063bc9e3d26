"""A run being logged to: the object `loopml.start_run()` returns and the module-level API writes through."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from loopml.core.clock import now_ms
from loopml.core.errors import InvalidInput
from loopml.core.names import check_key, safe_relative_path
from loopml.storage.metadata.database import sqlite_path
from loopml.tracking.configs import CONFIG_FOLDER, parse_config
from loopml.tracking.records import Artifact, Run, RunInput, RunStatus
from loopml.tracking.tracker import Tracker
from loopml.tracking.values import (
    INT64_MAX,
    INT64_MIN,
    MAX_NOTE,
    check_artifact_path,
    check_text,
    flatten_params,
    metric_step,
    metric_value,
    param_forms,
    tag_value,
)

# Metric names already checked in this process; checking a name costs more than buffering a point.
_checked_keys: set[str] = set()

MetricHook = Callable[[str, float, int], None]  # sees (key, value, step) of each point a run logs


class ActiveRun:
    """Logging handle of one run. As a context manager it ends the run: FINISHED, or FAILED with the error."""

    def __init__(self, tracker: Tracker, run: Run, *, durable: bool = False) -> None:
        self.tracker = tracker
        self.run_id = run.run_id
        self.experiment_id = run.experiment_id
        self.name = run.name
        self.durable = durable
        # Set by a sweep with early stopping: it may raise to stop the trial at an intermediate metric.
        self.metric_hook: MetricHook | None = None
        self._ended = False
        self._on_end: list[Any] = []

    def __repr__(self) -> str:
        return f"<ActiveRun {self.name} ({self.run_id})>"

    # -- params, tags, notes --------------------------------------------------------------------------

    def log_param(self, key: str, value: Any) -> None:
        """Record one param; logging it again with another value raises `ParamConflict` here."""
        self.tracker.store.log_params(self.run_id, {key: param_forms(key, value)})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record several params; nested dicts become dotted keys."""
        flat = flatten_params(params)
        self.tracker.store.log_params(self.run_id, {k: param_forms(k, v) for k, v in flat.items()})

    def set_tag(self, key: str, value: Any) -> None:
        """Set a tag (tags, unlike params, may change)."""
        self.tracker.store.set_tags(self.run_id, {key: tag_value(key, value)})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set several tags."""
        self.tracker.store.set_tags(self.run_id, {k: tag_value(k, v) for k, v in tags.items()})

    def set_note(self, note: str) -> None:
        """Replace the run's free-text note."""
        self.tracker.store.set_note(self.run_id, check_text("a note", note, MAX_NOTE))

    # -- metrics --------------------------------------------------------------------------------------

    def log_metric(self, key: str, value: float, step: int = 0, timestamp: int | None = None) -> None:
        """Append a metric point (buffered unless the run is durable)."""
        if key not in _checked_keys:
            check_key("metric", key)
            _checked_keys.add(key)
        if type(value) is not float:
            value = metric_value(key, value)
        if type(step) is not int or not INT64_MIN <= step <= INT64_MAX:
            step = metric_step(key, step)
        when = now_ms() if timestamp is None else metric_step(key, timestamp, "timestamp")
        if self.durable:
            self.tracker.store.metrics.append({(self.run_id, key): [(value, step, when)]})
        else:
            self.tracker.buffer.add(self.run_id, key, value, step, when)
        if self.metric_hook is not None:
            self.metric_hook(key, value, step)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0, timestamp: int | None = None) -> None:
        """Append one point for each metric, all at the same step and time."""
        when = timestamp if timestamp is not None else now_ms()
        for key, value in metrics.items():
            self.log_metric(key, value, step, when)

    # -- artifacts and inputs ---------------------------------------------------------------------------

    def log_artifact(
        self, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> list[Artifact]:
        """Store a file or a folder (recursively) in the blob store and record it under `artifact_path`."""
        source = Path(local_path)
        if not source.exists():
            raise InvalidInput(f"cannot log artifact {str(local_path)!r}: no such file or folder")
        prefix = safe_relative_path(artifact_path) + "/" if artifact_path else ""
        if source.is_dir():
            return self._store_folder(source, f"{prefix}{source.name}/")
        return self._store_files([(source, f"{prefix}{source.name}")])

    def log_artifacts(
        self, local_dir: str | os.PathLike[str], artifact_path: str | None = None
    ) -> list[Artifact]:
        """Store the contents of a folder (not the folder itself) under `artifact_path`."""
        source = Path(local_dir)
        if not source.is_dir():
            raise InvalidInput(f"cannot log artifacts from {str(local_dir)!r}: not a folder")
        return self._store_folder(source, safe_relative_path(artifact_path) + "/" if artifact_path else "")

    def log_config(self, path: str | os.PathLike[str], *, as_params: bool = True) -> Artifact:
        """Keep a YAML/TOML/JSON config file as artifact `configs/<name>` and (by default) log its values as params.

        Nested keys become dotted params (`model.depth`); `loopml runs compare` and `config_diff` compare runs.
        """
        source = Path(path)
        values = parse_config(source)
        artifact = self.log_bytes(source.read_bytes(), f"{CONFIG_FOLDER}/{source.name}")
        if as_params:
            self.log_params(values)
        return artifact

    def log_text(self, text: str, artifact_file: str) -> Artifact:
        """Store a string as a UTF-8 file artifact."""
        return self.log_bytes(text.encode("utf-8"), artifact_file)

    def log_bytes(self, data: bytes, artifact_file: str) -> Artifact:
        """Store bytes as a file artifact."""
        path = check_artifact_path(artifact_file)
        digest = self.tracker.blobs.put_bytes(data)
        artifact = Artifact(path, digest, len(data))
        self.tracker.store.attachments.add_artifacts(self.run_id, [artifact])
        return artifact

    def log_input(
        self, dataset: str, version: str, *, digest: str | None = None, context: str | None = None
    ) -> None:
        """Record that this run read a dataset version."""
        self.tracker.store.attachments.add_inputs(
            self.run_id, [RunInput(dataset, str(version), digest, context)]
        )

    def log_inputs(self, inputs: Iterable[RunInput]) -> None:
        """Record several dataset versions this run read."""
        self.tracker.store.attachments.add_inputs(self.run_id, list(inputs))

    def _store_folder(self, folder: Path, prefix: str) -> list[Artifact]:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not self._is_store_file(p))
        return self._store_files([(f, f"{prefix}{f.relative_to(folder).as_posix()}") for f in files])

    def _is_store_file(self, path: Path) -> bool:
        """The store's own files (database, WAL, blobs) are never uploaded when a folder holding them is logged."""
        resolved = path.resolve()
        if resolved.is_relative_to(self.tracker.settings.home_dir.resolve()):
            return True
        database = sqlite_path(self.tracker.settings.metadata_url)
        return database is not None and str(resolved).startswith(database)

    def _store_files(self, named: list[tuple[Path, str]]) -> list[Artifact]:
        artifacts = []
        paths = [check_artifact_path(name) for _, name in named]
        for (file, _), path in zip(named, paths, strict=True):
            digest, size = self.tracker.blobs.put_file(file)
            artifacts.append(Artifact(path, digest, size))
        self.tracker.store.attachments.add_artifacts(self.run_id, artifacts)
        return artifacts

    # -- life -----------------------------------------------------------------------------------------

    @property
    def info(self) -> Run:
        """The run as stored now (buffered metrics are written first)."""
        self.tracker.flush()
        return self.tracker.store.get_run(self.run_id)

    def flush(self) -> None:
        """Write every buffered metric point of this process; returns once committed."""
        self.tracker.flush()

    def end(self, status: RunStatus = RunStatus.FINISHED, *, error: str | None = None) -> None:
        """Flush and mark the run ended (idempotent)."""
        if self._ended:
            return
        self.tracker.flush()
        self.tracker.store.set_status(self.run_id, status, error=error)
        self._ended = True  # only now: a failed end (a locked store) can be tried again
        for callback in self._on_end:
            callback(self)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if error is None:
            self.end(RunStatus.FINISHED)
        elif isinstance(error, KeyboardInterrupt):
            self.end(RunStatus.KILLED, error="KeyboardInterrupt")
        else:
            self.end(RunStatus.FAILED, error=f"{type(error).__name__}: {error}")
