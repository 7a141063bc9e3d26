"""`loopml import mlflow`: copy an MLflow tracking server's or `mlruns` folder's experiments, runs, logged
models and registered models into a LoopML project.

    report = import_mlflow(tracker, "./mlruns")             # or "http://mlflow.internal:5000"
    print(report.summary())

What maps to what: experiments by name (MLflow's "Default" is LoopML's "Default"); runs and logged models keep
MLflow's ids, times, status and lifecycle, so links to them stay valid; every metric point is copied with its
step and timestamp (NaN and ±inf too); artifacts go to the blob store byte for byte; a registered version
becomes a LoopML version of flavor `mlflow` (numbered in LoopML's order) and aliases follow their versions.

Resumable: each entity is written in one transaction together with its `mlflow_imports` row, after its files
are in the blob store. Running the import again, after a crash or against a source that grew, copies only
what is missing; the report counts what was skipped as already imported.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from loopml.core.errors import InvalidInput, LoopMLError
from loopml.core.ids import is_id
from loopml.mlflow.import_registry import import_registry
from loopml.mlflow.import_writer import ImportWriter
from loopml.mlflow.source import (
    FileTree,
    MlflowSource,
    SourceExperiment,
    SourceLoggedModel,
    SourceRun,
    Unreachable,
)
from loopml.tracking.records import Artifact
from loopml.tracking.values import check_name

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

_LOGGED_MODEL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class ImportProgress:
    """Where an import is: `done` of `total` items of a stage (runs, logged models, model versions)."""

    stage: str
    done: int
    total: int


@dataclass
class ImportReport:
    """What one import copied, what it skipped as already imported (per kind), and what it refused (why)."""

    source: str
    experiments: int = 0
    runs: int = 0
    metric_points: int = 0
    params: int = 0
    tags: int = 0
    artifacts: int = 0
    artifact_bytes: int = 0
    logged_models: int = 0
    registered_models: int = 0
    model_versions: int = 0
    aliases: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def skip(self, kind: str) -> None:
        """Count one entity of `kind` found already imported."""
        self.skipped[kind] = self.skipped.get(kind, 0) + 1

    def refuse(self, kind: str, name: str, reason: str) -> None:
        """Note one entity that was not imported, and why."""
        self.refused.append(f"{kind} {name}: {reason}")

    def summary(self) -> str:
        """One line: the counts of what was imported, skipped and refused."""
        skipped = ", ".join(_count(n, kind) for kind, n in sorted(self.skipped.items())) or "nothing"
        return (
            f"Imported {_count(self.experiments, 'experiment')}, {_count(self.runs, 'run')} "
            f"({_count(self.metric_points, 'metric point')}, {_count(self.params, 'param')}, "
            f"{_count(self.tags, 'tag')}, {_count(self.artifacts, 'artifact')}, "
            f"{self.artifact_bytes / 2**20:.1f} MiB), {_count(self.logged_models, 'logged model')}, "
            f"{_count(self.model_versions, 'model version')} of {_count(self.registered_models, 'registered model')}, "
            f"{_count(self.aliases, 'alias')}; skipped as already imported: {skipped}; "
            f"not imported: {len(self.refused)}"
        )


def _count(number: int, noun: str) -> str:
    plural = noun if number == 1 else f"{noun}es" if noun.endswith("s") else f"{noun}s"
    return f"{number} {plural}"


ProgressCallback = Callable[[ImportProgress], None]


def open_source(
    uri: str, *, token: str | None = None, username: str | None = None, password: str | None = None
) -> MlflowSource:
    """The source `uri` names: an `mlruns` folder (a path or `file:` URI) or an MLflow server (http/https).
    Without credentials, a server's are read as MLflow's client reads them (`MLFLOW_TRACKING_TOKEN`, or
    `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`)."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        from loopml.mlflow.source_rest import RestSource, credentials_from_env

        if token is None and username is None:
            found = credentials_from_env(os.environ)
            token, username, password = found["token"], found["username"], found["password"]
        return RestSource(uri, token=token, username=username, password=password)
    from loopml.mlflow.source_files import FolderSource

    if parts.scheme == "file":
        return FolderSource(Path(unquote(parts.path)))
    if not parts.scheme or len(parts.scheme) == 1:  # a path (or a Windows drive letter)
        return FolderSource(Path(uri).expanduser())
    raise InvalidInput(
        f"cannot import from {uri!r}: give an mlruns folder, a file:// URI or an MLflow server's http(s):// URL"
    )


def import_mlflow(
    tracker: Tracker,
    source: str | MlflowSource,
    *,
    progress: ProgressCallback | None = None,
    token: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> ImportReport:
    """Copy everything `source` holds that this project lacks (see the module docstring); `progress` is
    called after every item. Raises `InvalidInput` for a source that is not MLflow's."""
    if tracker.remote:
        raise InvalidInput(
            "loopml import mlflow writes to the project's own stores; it cannot import through a team "
            "server (unset LOOPML_TRACKING_URI and point the project at the server's database instead)"
        )
    opened = (
        open_source(source, token=token, username=username, password=password)
        if isinstance(source, str)
        else source
    )
    try:
        return _Importer(tracker, opened, progress).run()
    finally:
        if isinstance(source, str):
            opened.close()


class _Importer:
    def __init__(self, tracker: Tracker, source: MlflowSource, progress: ProgressCallback | None) -> None:
        self.tracker = tracker
        self.source = source
        self.progress = progress
        self.db = tracker.stores.db
        self.writer = ImportWriter(self.db, source.uri)
        self.report = ImportReport(source.uri)
        self.experiments: dict[str, str] = {}  # MLflow experiment id -> LoopML experiment id

    def run(self) -> ImportReport:
        done = self.writer.imported("experiment")
        experiments = [e for e in self.source.experiments() if self._experiment(e, done)]
        self._runs(experiments)
        self._logged_models(experiments)
        import_registry(self.tracker, self.source, self.writer, self.report, self.tick)
        self.report.notes.extend(self.source.notes)
        return self.report

    def tick(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(ImportProgress(stage, done, total))

    def _experiment(self, experiment: SourceExperiment, done: dict[str, str]) -> bool:
        if experiment.experiment_id in done:
            self.experiments[experiment.experiment_id] = done[experiment.experiment_id]
            self.report.skip("experiment")
            return True
        try:
            check_name("experiment", experiment.name)
        except InvalidInput as error:
            self.report.refuse("experiment", repr(experiment.name), error.message)
            return False
        experiment_id, _ = self.db.transact(partial(self.writer.experiment, experiment=experiment))
        self.experiments[experiment.experiment_id] = experiment_id
        self.report.experiments += 1
        return True

    def _runs(self, experiments: list[SourceExperiment]) -> None:
        ordered = _parents_first([run for e in experiments for run in self.source.runs(e)])
        done = self.writer.imported("run")
        self.tick("runs", 0, len(ordered))
        for index, run in enumerate(ordered, 1):
            if run.run_id in done:
                self.report.skip("run")
            else:
                self._run(run)
            self.tick("runs", index, len(ordered))

    def _run(self, run: SourceRun) -> None:
        if not is_id(run.run_id):
            self.report.refuse("run", run.run_id, "not a 32-hex-digit run id, which LoopML's runs need")
            return
        with self.db.read() as conn:
            taken = self.writer.run_exists(conn, run.run_id)
        if taken:
            self.report.refuse(
                "run",
                run.run_id,
                "LoopML already holds a run with this id, not from this source (the same data under another path or URL?)",
            )
            return
        try:
            history = {(run.run_id, key): self.source.metric_history(run, key) for key in run.metric_keys}
            artifacts = self._files(partial(self.source.run_files, run), f"run {run.run_id}")
        except InvalidInput as error:
            self.report.refuse("run", run.run_id, error.message)
            return
        except OSError as error:
            self.report.refuse("run", run.run_id, f"{error.filename or 'a file'}: {error.strerror}")
            return
        metrics = {series: points for series, points in history.items() if points}
        store = self.tracker.store
        write = partial(
            self.writer.run,
            run=run,
            experiment_id=self.experiments[run.experiment_id],
            metrics=metrics,
            artifacts=artifacts,
            metric_log=store.metrics,
        )
        try:
            self.db.transact(write)
        except BaseException:
            store.metrics.forget()  # series ids cached in a rolled-back transaction are not in the database
            raise
        self.report.runs += 1
        self.report.metric_points += sum(len(points) for points in metrics.values())
        self.report.params += len(run.params)
        self.report.tags += len(run.tags)
        self.report.artifacts += len(artifacts)
        self.report.artifact_bytes += sum(a.size for a in artifacts)

    def _logged_models(self, experiments: list[SourceExperiment]) -> None:
        models = [m for e in experiments for m in self.source.logged_models(e)]
        done = self.writer.imported("logged_model")
        self.tick("logged models", 0, len(models))
        for index, model in enumerate(models, 1):
            if model.model_id in done:
                self.report.skip("logged model")
            elif not _LOGGED_MODEL_ID.fullmatch(model.model_id):
                self.report.refuse("logged model", repr(model.model_id), "not an MLflow model id")
            else:
                with self.db.read() as conn:
                    taken = self.writer.logged_model_exists(conn, model.model_id)
                if taken:
                    reason = "LoopML already holds a logged model with this id, not from this source"
                    self.report.refuse("logged model", model.model_id, reason)
                else:
                    self._logged_model(model)
            self.tick("logged models", index, len(models))

    def _logged_model(self, model: SourceLoggedModel) -> None:
        try:
            files = self._files(
                partial(self.source.logged_model_files, model), f"logged model {model.model_id}"
            )
        except InvalidInput as error:
            self.report.refuse("logged model", model.model_id, error.message)
            return
        write = partial(
            self.writer.logged_model,
            model=model,
            experiment_id=self.experiments[model.experiment_id],
            files=files,
        )
        self.db.transact(write)
        self.report.logged_models += 1
        self.report.artifacts += len(files)
        self.report.artifact_bytes += sum(f.size for f in files)

    def _files(self, tree: Callable[[], FileTree], what: str) -> list[Artifact]:
        """The files of a tree, stored; none (and a note) when the source cannot read them."""
        try:
            return tree().store(self.tracker.blobs)
        except Unreachable as reason:
            self.report.notes.append(f"{what}: files not imported: {reason}")
            return []
        except LoopMLError:
            raise
        except OSError as error:
            raise InvalidInput(f"{error.filename or 'a file'}: {error.strerror}") from None


def _parents_first(runs: list[SourceRun]) -> list[SourceRun]:
    """The runs with every parent before its children (a parent missing from the list is ignored)."""
    by_id = {run.run_id: run for run in runs}
    placed: set[str] = set()
    ordered = []
    for run in runs:
        chain: list[SourceRun] = []
        seen: set[str] = set()
        current: SourceRun | None = run
        while current is not None and current.run_id not in placed and current.run_id not in seen:
            chain.append(current)
            seen.add(current.run_id)
            current = by_id.get(current.parent_run_id or "")
        for found in reversed(chain):
            placed.add(found.run_id)
            ordered.append(found)
    return ordered
