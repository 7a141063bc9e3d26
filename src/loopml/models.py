"""The model registry's Python API: `loopml.models.register(...)`, `.load("fraud@champion")`, aliases, history.

    with loopml.start_run():
        model = RandomForestClassifier().fit(X, y)
        mv = loopml.models.register("fraud", model, sample=X)     # fraud@v1: skops package, signature, lineage
    loopml.models.set_alias("fraud", "champion", mv.version.version, reason="first model")
    model = loopml.models.load("fraud@champion")

Registering inside a run records the run, its dataset inputs, its git commit and its metrics in the
manifest; the held-out dataset version the pipelines' split step registered is found through the run too.
"""

from __future__ import annotations

import getpass
import os
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.core.errors import InvalidInput

if TYPE_CHECKING:
    from loopml.registry.gates import GatePolicy, Scores
    from loopml.registry.promotion import EvaluationData, Promotion
    from loopml.registry.records import AliasEvent, ModelVersion, Registered, RegisteredModel
    from loopml.registry.store import RegistryStore
    from loopml.tracking.tracker import Tracker

EVAL_DATASET_TAG = "loopml.eval.dataset"
EVAL_TARGET_TAG = "loopml.eval.target"
_loaded: dict[tuple[str, str], Any] = {}  # (blob store, package digest) -> model: loaded once per process
_loaded_lock = threading.Lock()


def register(
    name: str,
    model: Any,
    *,
    sample: Any = None,
    run: str | None = None,
    description: str | None = None,
    tags: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
    eval_dataset: str | None = None,
    eval_target: str | None = None,
    tracker: Tracker | None = None,
) -> Registered:
    """Register `model` as the next version of `name` (the same model again returns its existing version).

    `sample` (training rows) gives the signature, the input example and the row hashes that keep
    training rows out of promotion gates; `run` (default: the active run) gives the lineage;
    `eval_dataset` / `eval_target` name held-out rows for the gates (a pipeline's split step sets them).
    Nothing is registered unless the whole package was stored.
    """
    from loopml.registry.package import build_package
    from loopml.registry.records import ModelRef
    from loopml.tracking.fluent import active_run

    ModelRef.parse(name)  # the name must be a valid reference on its own
    opened = _tracker(tracker)
    if run is None and active_run() is not None:
        run = active_run().run_id  # type: ignore[union-attr]
    lineage, run_metrics = _lineage(opened, run, eval_dataset)
    if eval_target is not None:
        lineage["eval_target"] = eval_target
    package = build_package(
        model,
        name=name,
        blobs=opened.blobs,
        sample=sample,
        lineage=lineage,
        metrics={**run_metrics, **(metrics or {})},
    )
    registered = _store(opened).add_version(
        name,
        flavor=str(package.manifest["flavor"]),
        content_hash=package.content_hash,
        package_digest=package.digest,
        run_id=run,
        signature=package.manifest.get("signature"),
        metrics=package.manifest.get("metrics"),
        description=description,
        created_by=_user(),
        tags=dict(tags or {}),
    )
    if registered.created:
        _notify(
            opened,
            "version_registered",
            {"model": name, "version": registered.version.version, "run_id": run},
        )
    return registered


def load(ref: str, *, trusted: bool = False, tracker: Tracker | None = None) -> Any:
    """The model `ref` names (`fraud@champion`, `fraud@v3`, `fraud`); loaded once per process per version."""
    from loopml.registry.package import load_from, open_package, read_manifest

    opened = _tracker(tracker)
    version = _store(opened).get_version(ref)
    key = (opened.blobs.root, version.package_digest)
    with _loaded_lock:
        model = _loaded.get(key)
    if model is None:
        folder = open_package(
            opened.blobs, version.package_digest, opened.settings.home_dir / "cache" / "models"
        )
        model = load_from(folder, read_manifest(folder), trusted=trusted)
        with _loaded_lock:
            model = _loaded.setdefault(key, model)
    return model


def get(ref: str, *, tracker: Tracker | None = None) -> ModelVersion:
    """The version record `ref` names."""
    return _store(_tracker(tracker)).get_version(ref)


def manifest(ref: str, *, tracker: Tracker | None = None) -> dict[str, Any]:
    """The manifest of the version `ref` names (flavor, libraries, signature, lineage, metrics, files)."""
    from loopml.registry.package import open_package, read_manifest

    opened = _tracker(tracker)
    version = _store(opened).get_version(ref)
    return read_manifest(
        open_package(opened.blobs, version.package_digest, opened.settings.home_dir / "cache" / "models")
    )


def download(ref: str, destination: str | os.PathLike[str], *, tracker: Tracker | None = None) -> Path:
    """Copy the package of `ref` (manifest and model files, verified) into the folder `destination`."""
    from loopml.registry.package import open_package

    opened = _tracker(tracker)
    version = _store(opened).get_version(ref)
    folder = open_package(opened.blobs, version.package_digest, opened.settings.home_dir / "cache" / "models")
    target = Path(destination)
    shutil.copytree(folder, target, dirs_exist_ok=True)
    return target


def models(*, tracker: Tracker | None = None) -> list[RegisteredModel]:
    """Every registered model."""
    return _store(_tracker(tracker)).list_models()


def versions(name: str, *, tracker: Tracker | None = None) -> list[ModelVersion]:
    """Every version of `name`, newest first."""
    return _store(_tracker(tracker)).list_versions(name)


def set_alias(
    name: str, alias: str, version: int, *, reason: str | None = None, tracker: Tracker | None = None
) -> AliasEvent:
    """Point `alias` at `version` directly (no gates), recorded in the audit trail with `reason`."""
    opened = _tracker(tracker)
    event = _store(opened).move_alias(name, alias, version, forced=True, reason=reason, user=_user())
    _notify(opened, "alias_moved", _event_payload(event))
    return event


def delete_alias(
    name: str, alias: str, *, reason: str | None = None, tracker: Tracker | None = None
) -> AliasEvent:
    """Remove `alias` from `name`, recorded in the audit trail."""
    store = _store(_tracker(tracker))
    store.get_version(f"{name}@{alias}")  # NotFound when the alias is not set
    return store.move_alias(name, alias, None, reason=reason, user=_user())


def promote(
    name: str,
    version: int,
    *,
    alias: str = "champion",
    policy: GatePolicy | None = None,
    dataset: str | None = None,
    X: Any = None,
    y: Any = None,
    target: str | None = None,
    force: bool = False,
    reason: str | None = None,
    tracker: Tracker | None = None,
) -> Promotion:
    """Move `alias` to `version` if it passes the gates; else record the refusal and raise `PromotionRefused`.

    Both models are scored on the same held-out rows: `dataset` (a dataset version holding `target`), or
    `X` and `y`, else the held-out dataset version in the challenger's manifest. With no policy, the gate is
    "not worse than the current holder on the primary metric". `force=True` (with a `reason`) skips the
    gates and is recorded as forced.
    """
    from loopml.registry.gates import GatePolicy as Policy
    from loopml.registry.promotion import (
        Promotion,
        PromotionRefused,
        check_disjoint,
        decide,
        primary,
        score,
    )

    opened = _tracker(tracker)
    store = _store(opened)
    challenger = store.get_version(f"{name}@v{version}")
    holder_version = store.get_model(name).aliases.get(alias)
    if holder_version == version:
        raise InvalidInput(f"{name}@{alias} is already v{version}")
    user = _user()
    if force:
        if not reason:
            raise InvalidInput("a forced promotion needs a reason (it is kept in the alias history)")
        event = store.move_alias(
            name,
            alias,
            version,
            forced=True,
            reason=reason,
            user=user,
            check_from=True,
            expected_from=holder_version,
        )
        _notify(opened, "alias_moved", _event_payload(event))
        return Promotion(event, [], None)
    from loopml.registry.config import gate_policy

    policy = policy or gate_policy(opened.settings.project_dir, name, alias) or Policy()
    evaluation = _evaluation(opened, challenger, dataset=dataset, X=X, y=y, target=target)
    challenger_scores = holder_scores = None
    metric = policy.metric or "primary"
    if evaluation is not None:
        challenger_model = load(challenger.ref, tracker=opened)
        metric = policy.metric or primary(challenger_model)
        columns = _columns(challenger)
        trained = {challenger.ref: _training_rows(opened, challenger)}
        holder = store.get_version(f"{name}@v{holder_version}") if holder_version is not None else None
        if holder is not None:
            trained[holder.ref] = _training_rows(opened, holder)
        check_disjoint(evaluation, columns, trained)
        challenger_scores = score(challenger_model, evaluation, columns, policy.slice_by)
        if holder is not None:
            holder_scores = score(
                load(holder.ref, tracker=opened), evaluation, _columns(holder), policy.slice_by
            )
    gates = decide(
        policy,
        challenger=challenger,
        metric=metric,
        challenger_scores=challenger_scores,
        holder_scores=holder_scores,
        holder_version=holder_version,
    )
    evidence = [g.to_dict() for g in gates] + [
        {"policy": policy.to_dict(), "evaluation": evaluation.source if evaluation else None}
    ]
    failed = [g for g in gates if not g.passed]
    if failed:
        refusal = store.record_refusal(
            name, alias, version, reason=reason or "gates failed", gates=evidence, user=user
        )
        _notify(opened, "promotion_refused", _event_payload(refusal))
        lines = "; ".join(f"{g.gate}: {g.detail}" for g in failed)
        raise PromotionRefused(f"{challenger.ref} was not promoted to {alias}: {lines}", gates=gates)
    event = store.move_alias(
        name,
        alias,
        version,
        reason=reason or "gates passed",
        gates=evidence,
        user=user,
        check_from=True,
        expected_from=holder_version,
    )
    _notify(opened, "alias_moved", _event_payload(event))
    return Promotion(event, gates, evaluation.source if evaluation else None)


def history(name: str, alias: str | None = None, *, tracker: Tracker | None = None) -> list[AliasEvent]:
    """Which version held each alias when: every alias event of `name`, oldest first."""
    return _store(_tracker(tracker)).history(name, alias)


def compare(
    name: str,
    *refs: str,
    dataset: str | None = None,
    X: Any = None,
    y: Any = None,
    target: str | None = None,
    slice_by: str | None = None,
    tracker: Tracker | None = None,
) -> dict[str, Scores]:
    """Score versions or aliases of `name` (e.g. "champion", "challenger", "v3") on the same held-out rows.

    The rows are `dataset`, or `X` and `y`, else the held-out dataset of the first version's manifest; rows
    any of the models was trained on are refused.
    """
    from loopml.registry.promotion import check_disjoint, score

    opened = _tracker(tracker)
    store = _store(opened)
    if len(refs) < 2:
        raise InvalidInput(
            "compare needs at least two versions or aliases, e.g. compare('fraud', 'champion', 'v3')"
        )
    versions = [store.get_version(f"{name}@{r}") for r in refs]
    evaluation = _evaluation(opened, versions[0], dataset=dataset, X=X, y=y, target=target)
    if evaluation is None:
        raise InvalidInput(f"no evaluation data to compare {name} versions: pass dataset=NAME@vN, or X and y")
    for version in versions:
        check_disjoint(evaluation, _columns(version), {version.ref: _training_rows(opened, version)})
    return {
        ref: score(load(version.ref, tracker=opened), evaluation, _columns(version), slice_by)
        for ref, version in zip(refs, versions, strict=True)
    }


def validate(ref: str, frame: Any, *, strict: bool = False, tracker: Tracker | None = None) -> Any:
    """`frame` checked against the signature of `ref` (missing/extra columns, types, nulls; with `strict`,
    unseen levels and out-of-range values too): returns it ordered and typed as the model expects, or raises
    `SignatureMismatch` listing every problem."""
    from loopml.registry.signature import Signature
    from loopml.registry.signature_check import validate as check

    version = _store(_tracker(tracker)).get_version(ref)
    if not version.signature:
        raise InvalidInput(f"{version.ref} has no signature (register it with sample=...)")
    signature = Signature.from_dict(version.signature)
    return check(signature, frame, strict_levels=strict, strict_ranges=strict)


def _notify(tracker: Tracker, event: str, payload: dict[str, Any]) -> None:
    from loopml.registry.config import webhooks
    from loopml.registry.webhooks import notify

    hooks = webhooks(tracker.settings.project_dir)
    if hooks:
        notify(hooks, event, payload)


def _event_payload(event: AliasEvent) -> dict[str, Any]:
    return {
        "model": event.name,
        "alias": event.alias,
        "from_version": event.from_version,
        "to_version": event.to_version,
        "outcome": event.outcome,
        "forced": event.forced,
        "reason": event.reason,
        "gates": event.gates,
        "user": event.user,
        "time": event.time,
    }


def _evaluation(
    tracker: Tracker, challenger: ModelVersion, *, dataset: str | None, X: Any, y: Any, target: str | None
) -> EvaluationData | None:
    from loopml.registry.promotion import EvaluationData

    if X is not None or y is not None:
        if X is None or y is None:
            raise InvalidInput("pass both X and y (features and their labels), or a dataset")
        frame = X.copy() if hasattr(X, "copy") else X
        label = target or "__target__"
        frame[label] = list(y)
        return EvaluationData(frame, label, f"given X, y ({len(frame)} rows)")
    lineage = manifest(challenger.ref, tracker=tracker).get("lineage") or {}
    source = dataset or lineage.get("eval_dataset")
    if source is None:
        return None
    named: str | None = target or lineage.get("eval_target")
    if named is None:
        raise InvalidInput(f"name the target column of {source} (target=..., CLI: --target)")
    label = named
    from loopml.datasets import load as load_dataset

    frame = load_dataset(source, context="evaluation", tracker=tracker)
    if label not in frame.columns:
        raise InvalidInput(
            f"dataset {source} has no target column {label!r}; its columns: {', '.join(frame.columns)}"
        )
    return EvaluationData(frame, label, f"dataset {source}")


def _columns(version: ModelVersion) -> list[str]:
    if not version.signature:
        raise InvalidInput(
            f"{version.ref} has no signature (register it with sample=...): its input columns are unknown"
        )
    return [c["name"] for c in version.signature["inputs"]]


def _training_rows(tracker: Tracker, version: ModelVersion) -> Any:
    from loopml.registry.package import open_package, training_rows

    return training_rows(
        open_package(tracker.blobs, version.package_digest, tracker.settings.home_dir / "cache" / "models")
    )


def _lineage(
    tracker: Tracker, run_id: str | None, eval_dataset: str | None
) -> tuple[dict[str, Any], dict[str, float]]:
    if run_id is None:
        return ({"eval_dataset": eval_dataset} if eval_dataset else {}), {}
    store = tracker.store
    tracker.flush()  # metrics logged just before registering are part of the version's record
    run = store.get_run(run_id)
    inputs = store.attachments.list_inputs(run_id)
    parent = store.get_run(run.parent_run_id) if run.parent_run_id else None
    eval_target = run.tags.get(EVAL_TARGET_TAG) or _sibling_tag(tracker, run.parent_run_id, EVAL_TARGET_TAG)
    if eval_dataset is None:
        eval_dataset = run.tags.get(EVAL_DATASET_TAG) or _sibling_tag(
            tracker, run.parent_run_id, EVAL_DATASET_TAG
        )
    if not inputs and parent is not None:  # a pipeline step: the pipeline run holds the dataset inputs
        inputs = store.attachments.list_inputs(parent.run_id)
    lineage = {
        "run_id": run_id,
        "pipeline_run_id": parent.run_id if parent is not None else None,
        "git_commit": run.git.commit,
        "git_dirty": run.git.dirty,
        "datasets": [{"name": i.dataset, "version": i.version, "digest": i.digest} for i in inputs],
        "eval_dataset": eval_dataset,
        "eval_target": eval_target,
    }
    return {k: v for k, v in lineage.items() if v is not None}, dict(run.metrics)


def _sibling_tag(tracker: Tracker, parent_run_id: str | None, key: str) -> str | None:
    """A tag set on another step run of the same pipeline run (the split step tags its held-out rows)."""
    if parent_run_id is None:
        return None
    from loopml.tracking.client import Client

    runs = (
        Client(tracker)
        .search_runs(filter=f"tags.`loopml.pipeline_run` = '{parent_run_id}'", max_results=1000)
        .runs
    )
    found = [r.tags[key] for r in runs if key in r.tags]
    return found[0] if found else None


def _tracker(tracker: Tracker | None) -> Tracker:
    from loopml.tracking.tracker import default_tracker

    return tracker or default_tracker()


def _store(tracker: Tracker) -> RegistryStore:
    from loopml.registry.store import RegistryStore

    return RegistryStore(tracker.stores.db)


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None
