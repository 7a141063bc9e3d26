"""The model registry part of `loopml import mlflow`: registered models, their versions, tags and aliases.

A version's files are found, cheapest first, among what the import copied already: the files of its logged
model (`models:/m-...`), or the artifacts of its run under the source path (`runs:/<run id>/model`); only
failing both are they read from the source. A version is registered with `register_mlflow_files` (flavor
`mlflow`, numbered in LoopML's order: MLflow's v3 can be LoopML's v2 when v2 was deleted there) and recorded
with MLflow's number; an alias is moved to the version its MLflow version became, with the import's record
written in the same transaction as the move.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from loopml.core.errors import InvalidInput, NotFound
from loopml.mlflow.import_writer import ImportWriter
from loopml.mlflow.logged_models import LoggedModelStore
from loopml.mlflow.registration import register_mlflow_files
from loopml.mlflow.source import (
    MlflowSource,
    SourceRegisteredModel,
    SourceVersion,
    Unreachable,
    run_path_of,
)
from loopml.registry.promoter import current_user
from loopml.registry.records import ModelRef
from loopml.registry.store import RegistryStore
from loopml.tracking.records import Artifact

if TYPE_CHECKING:
    from loopml.mlflow.importer import ImportReport
    from loopml.tracking.tracker import Tracker


def import_registry(
    tracker: Tracker,
    source: MlflowSource,
    writer: ImportWriter,
    report: ImportReport,
    tick: Callable[[str, int, int], None],
) -> None:
    """Import every registered model of `source` (its versions, then its aliases, then its tags)."""
    _RegistryImport(tracker, source, writer, report).run(tick)


def _key(name: str, version: int) -> str:
    return f"{name}/{version}"


class _RegistryImport:
    def __init__(
        self, tracker: Tracker, source: MlflowSource, writer: ImportWriter, report: ImportReport
    ) -> None:
        self.tracker = tracker
        self.source = source
        self.writer = writer
        self.report = report
        self.registry = RegistryStore(tracker.stores.db)

    def run(self, tick: Callable[[str, int, int], None]) -> None:
        models = list(self.source.registered_models())
        total = sum(len(m.versions) for m in models)
        versions_done = self.writer.imported("model_version")
        models_done = self.writer.imported("registered_model")
        done = 0
        tick("model versions", 0, total)
        for model in models:
            try:
                ModelRef.parse(model.name)
            except InvalidInput as error:
                self.report.refuse("registered model", repr(model.name), error.message)
                done += len(model.versions)
                tick("model versions", done, total)
                continue
            for version in model.versions:
                if _key(version.name, version.version) in versions_done:
                    self.report.skip("model version")
                else:
                    self._version(version)
                done += 1
                tick("model versions", done, total)
            self._aliases(model)
            if model.name in models_done:
                self.report.skip("registered model")
            else:
                self._model(model)

    def _model(self, model: SourceRegisteredModel) -> None:
        try:
            self.registry.get_model(model.name)
        except NotFound:  # no version could be imported: the model itself still is
            self.registry.create_model(model.name)
        self.tracker.stores.db.transact(
            partial(
                self.writer.model_imported,
                name=model.name,
                description=model.description,
                tags=model.tags,
                created_time=model.created_time,
            )
        )
        self.report.registered_models += 1

    def _version(self, version: SourceVersion) -> None:
        label = f"{version.name} v{version.version}"
        try:
            files = self._files(version)
            registered = register_mlflow_files(
                self.tracker,
                version.name,
                files,
                run_id=version.run_id,
                source_uri=version.source,
                logged_model_id=version.model_id,
                user=version.user,
                description=version.description,
                tags=version.tags,
            )
        except (InvalidInput, NotFound) as error:
            self.report.refuse("model version", label, error.message)
            return
        made = registered.version
        self.tracker.stores.db.transact(
            partial(
                self.writer.version_imported,
                source_id=_key(version.name, version.version),
                version_id=made.version_id,
                ref=made.ref,
                created_time=version.created_time if registered.created else None,
            )
        )
        self.report.model_versions += 1
        if not registered.created:
            self.report.notes.append(f"{label} has the files of {made.ref}, which it now maps to")
        elif made.version != version.version:
            self.report.notes.append(f"{label} is {made.ref} in LoopML")

    def _files(self, version: SourceVersion) -> list[Artifact]:
        """The version's files in the blob store, with paths relative to the folder holding `MLmodel`."""
        tracker = self.tracker
        if version.model_id:
            files = LoggedModelStore(tracker.stores.db).files(version.model_id)
            if files:
                return files
        found = run_path_of(version.source)
        if found is not None:
            run_id, path = found
            try:
                listed = tracker.store.attachments.list_artifacts(run_id, path or None)
            except NotFound:  # the run was not imported: read the files from the source below
                listed = []
            prefix = f"{path}/" if path else ""
            files = [
                Artifact(a.path[len(prefix) :], a.digest, a.size) for a in listed if a.path.startswith(prefix)
            ]
            if files:
                return files
        try:
            return self.source.version_files(version).store(tracker.blobs)
        except Unreachable as reason:
            raise InvalidInput(f"its files cannot be read: {reason}") from None

    def _aliases(self, model: SourceRegisteredModel) -> None:
        mapped = self.writer.imported("model_version")
        done = self.writer.imported("alias")
        for alias, number in sorted(model.aliases.items()):
            key = f"{model.name}@{alias}"
            if key in done:
                self.report.skip("alias")
                continue
            ref = mapped.get(_key(model.name, number))
            if ref is None:
                self.report.refuse("alias", key, f"it points at v{number}, which was not imported")
                continue
            try:
                self.registry.move_alias(
                    model.name,
                    alias,
                    ModelRef.parse(ref).version,
                    forced=True,
                    reason=f"imported from MLflow {self.source.uri} (v{number} there)",
                    user=current_user(),
                    guard=partial(self.writer.record, kind="alias", source_id=key, target_id=ref),
                )
            except InvalidInput as error:
                self.report.refuse("alias", key, error.message)
                continue
            self.report.aliases += 1
