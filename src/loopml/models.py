"""The model registry's Python API: `loopml.models.register(...)`, `.load("fraud@champion")`, `.promote(...)`.

    with loopml.start_run():
        model = RandomForestClassifier().fit(X, y)
        mv = loopml.models.register("fraud", model, sample=X)     # fraud@v1: skops package, signature, lineage
    loopml.models.promote("fraud", mv.version.version, dataset="fraud_holdout@v1", target="label")
    model = loopml.models.load("fraud@champion")

Registering inside a run records the run, its dataset inputs, its git commit and its metrics in the
manifest; the held-out dataset version the pipelines' split step registered is found through the run too.
Every function takes `tracker=` to work on another project than the working directory's.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from loopml.core.errors import InvalidInput

if TYPE_CHECKING:
    from loopml.registry.deployments import Deployment, DeploymentEvent
    from loopml.registry.gates import GatePolicy, Scores
    from loopml.registry.promotion import Promotion
    from loopml.registry.records import AliasEvent, ModelVersion, Registered, RegisteredModel
    from loopml.registry.remote import RemoteRegistry
    from loopml.registry.store import RegistryStore
    from loopml.tracking.tracker import Tracker


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
    onnx: bool = True,
    tracker: Tracker | None = None,
) -> Registered:
    """Register `model` as the next version of `name` (the same model again returns its existing version).

    `sample` (training rows) gives the signature, the input example and the row hashes that keep
    training rows out of promotion gates; `run` (default: the active run) gives the lineage;
    `eval_dataset` / `eval_target` name held-out rows for the gates (a pipeline's split step sets them).
    `onnx` tries a verified ONNX copy of a scikit-learn model (serving prefers it).
    Nothing is registered unless the whole package was stored.
    """
    from loopml.registry.lineage import run_lineage
    from loopml.registry.package import build_package, identify
    from loopml.registry.promoter import current_user
    from loopml.registry.records import ModelRef, Registered
    from loopml.registry.webhooks import announce
    from loopml.tracking.fluent import active_run

    ModelRef.parse(name)  # the name must be a valid reference on its own
    opened = _tracker(tracker)
    current = active_run()
    if run is None and current is not None:
        run = current.run_id
    identity = identify(model, sample)
    existing = _store(opened).find_version(name, identity.content_hash)
    if existing is not None:  # the same model: nothing to save again
        return Registered(existing, created=False)
    lineage, run_metrics = run_lineage(opened, run, eval_dataset)
    if eval_target is not None:
        lineage["eval_target"] = eval_target
    package = build_package(
        model,
        name=name,
        blobs=opened.blobs,
        sample=sample,
        lineage=lineage,
        metrics={**run_metrics, **(metrics or {})},
        onnx=onnx,
        identity=identity,
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
        created_by=current_user(),
        tags=dict(tags or {}),
    )
    if registered.created and not opened.remote:  # a team server announces its own registrations
        payload = {"model": name, "version": registered.version.version, "run_id": run}
        announce(opened.settings.project_dir, "version_registered", payload)
    return registered


def load(ref: str, *, trusted: bool = False, serving: bool = False, tracker: Tracker | None = None) -> Any:
    """The model `ref` names (`fraud@champion`, `fraud@v3`, `fraud`); loaded once per process per version.

    `serving=True` gives the verified ONNX copy when the version has one (what serving runs).
    `trusted=True` is needed only for python-flavor models, whose loading imports and runs their code.
    """
    from loopml.registry.loading import load_version

    opened = _tracker(tracker)
    return load_version(opened, _store(opened).get_version(ref), trusted=trusted, serving=serving)


def get(ref: str, *, tracker: Tracker | None = None) -> ModelVersion:
    """The version record `ref` names."""
    return _store(_tracker(tracker)).get_version(ref)


def manifest(ref: str, *, tracker: Tracker | None = None) -> dict[str, Any]:
    """The manifest of the version `ref` names (flavor, libraries, signature, lineage, metrics, files)."""
    from loopml.registry.loading import manifest_of

    opened = _tracker(tracker)
    return manifest_of(opened, _store(opened).get_version(ref))


def download(ref: str, destination: str | os.PathLike[str], *, tracker: Tracker | None = None) -> Path:
    """Copy the package of `ref` (manifest and model files, verified) into the folder `destination`."""
    from loopml.registry.loading import package_folder

    opened = _tracker(tracker)
    folder = package_folder(opened, _store(opened).get_version(ref))
    target = Path(destination)
    shutil.copytree(folder, target, dirs_exist_ok=True)
    return target


def models(*, tracker: Tracker | None = None) -> list[RegisteredModel]:
    """Every registered model."""
    return _store(_tracker(tracker)).list_models()


def versions(name: str, *, tracker: Tracker | None = None) -> list[ModelVersion]:
    """Every version of `name`, newest first."""
    return _store(_tracker(tracker)).list_versions(name)


def trust(ref: str, *, tracker: Tracker | None = None) -> ModelVersion:
    """Mark the version `ref` names as trusted: its loading may run code (a pickled MLflow model, a
    python-flavor class), and from now on serving, batch scoring and the gates load it. Recorded with who and
    when; on a team server only an admin of the model may do it."""
    from loopml.registry.promoter import current_user

    return _store(_tracker(tracker)).mark_trusted(ref, current_user())


def set_alias(
    name: str, alias: str, version: int, *, reason: str | None = None, tracker: Tracker | None = None
) -> AliasEvent:
    """Point `alias` at `version` directly (no gates), recorded in the audit trail as forced with `reason`."""
    from loopml.registry.promoter import current_user
    from loopml.registry.webhooks import alias_payload, announce

    opened = _tracker(tracker)
    event = _store(opened).move_alias(name, alias, version, forced=True, reason=reason, user=current_user())
    if not opened.remote:
        announce(opened.settings.project_dir, "alias_moved", alias_payload(event))
    return event


def delete_alias(
    name: str, alias: str, *, reason: str | None = None, tracker: Tracker | None = None
) -> AliasEvent:
    """Remove `alias` from `name`, recorded in the audit trail."""
    from loopml.registry.promoter import current_user
    from loopml.registry.webhooks import alias_payload, announce

    opened = _tracker(tracker)
    store = _store(opened)
    store.get_version(f"{name}@{alias}")  # NotFound when the alias is not set
    event = store.move_alias(name, alias, None, reason=reason, user=current_user())
    if not opened.remote:
        announce(opened.settings.project_dir, "alias_moved", alias_payload(event))
    return event


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
    `X` and `y`, else the held-out dataset version in the challenger's manifest. The policy is `policy`,
    else `[models.NAME.gates.ALIAS]` in `loopml.toml`, else "not worse than the current holder on the
    primary metric". `force=True` (with a `reason`) skips the gates and is recorded as forced.
    """
    from loopml.registry import promoter

    opened = _tracker(tracker)
    remote = _remote(opened)
    if remote is not None:
        return remote.promote(
            name,
            version,
            X=X,
            y=y,
            alias=alias,
            policy=policy,
            dataset=dataset,
            target=target,
            force=force,
            reason=reason,
        )
    return promoter.promote(
        opened,
        name,
        version,
        alias=alias,
        policy=policy,
        dataset=dataset,
        X=X,
        y=y,
        target=target,
        force=force,
        reason=reason,
    )


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
    """Score versions or aliases of `name` (e.g. "champion", "challenger", "v3") on the same held-out rows."""
    from loopml.registry import promoter

    opened = _tracker(tracker)
    remote = _remote(opened)
    if remote is not None:
        return remote.compare(name, refs, X=X, y=y, dataset=dataset, target=target, slice_by=slice_by)
    return promoter.compare(opened, name, *refs, dataset=dataset, X=X, y=y, target=target, slice_by=slice_by)


def history(name: str, alias: str | None = None, *, tracker: Tracker | None = None) -> list[AliasEvent]:
    """Which version held each alias when: every alias event of `name`, oldest first."""
    return _store(_tracker(tracker)).history(name, alias)


def validate(ref: str, frame: Any, *, strict: bool = False, tracker: Tracker | None = None) -> Any:
    """`frame` checked against the signature of `ref` (missing/extra columns, types, nulls; with `strict`,
    unseen levels and out-of-range values too): returns it ordered and typed as the model expects, or raises
    `SignatureMismatch` listing every problem."""
    from loopml.registry.signature import Signature
    from loopml.registry.signature_check import validate as check

    version = _store(_tracker(tracker)).get_version(ref)
    if not version.signature:
        raise InvalidInput(f"{version.ref} has no signature (register it with sample=...)")
    return check(Signature.from_dict(version.signature), frame, strict_levels=strict, strict_ranges=strict)


def deploy(
    name: str,
    *,
    champion: str = "champion",
    challenger: str | None = None,
    mode: str = "single",
    share: float = 0.0,
    sticky_key: str | None = None,
    limits: dict[str, float] | None = None,
    reason: str | None = None,
    tracker: Tracker | None = None,
) -> Deployment:
    """Set how `name` is served: `mode` "single", "canary" (`share` of requests to `challenger`) or "shadow"
    (`share` of requests mirrored to it, the champion answers). Running servers follow within their poll
    interval. `limits` (max_error_rate, max_p99_ms, min_requests) take the challenger out when broken."""
    from loopml.registry.deployments import Deployment, DeploymentStore
    from loopml.registry.promoter import current_user

    wanted = Deployment(
        model=name,
        champion=champion,
        challenger=challenger,
        mode=mode,
        share=share,
        sticky_key=sticky_key,
        limits=dict(limits or {}),
    )
    opened = _tracker(tracker)
    remote = _remote(opened)
    if remote is not None:
        return remote.deploy(wanted, reason=reason)
    for ref in (champion, challenger):
        if ref is not None:
            _store(opened).get_version(f"{name}@{ref}")  # NotFound now, not in a server later
    return DeploymentStore(opened.stores.db).set(
        wanted, user=current_user(), detail={"reason": reason} if reason else None
    )


def deployment(name: str, *, tracker: Tracker | None = None) -> Deployment | None:
    """How `name` is served (None: no deployment; servers serve the reference they were started with)."""
    from loopml.registry.deployments import DeploymentStore

    opened = _tracker(tracker)
    remote = _remote(opened)
    if remote is not None:
        return remote.deployment(name)
    return DeploymentStore(opened.stores.db).get(name)


def deployment_history(name: str, *, tracker: Tracker | None = None) -> list[DeploymentEvent]:
    """Every change of the deployment of `name`, oldest first (set by users, limits broken by servers)."""
    from loopml.registry.deployments import DeploymentStore

    opened = _tracker(tracker)
    remote = _remote(opened)
    if remote is not None:
        return remote.deployment_events(name)
    return DeploymentStore(opened.stores.db).events(name)


def _tracker(tracker: Tracker | None) -> Tracker:
    from loopml.tracking.tracker import default_tracker

    return tracker or default_tracker()


def _remote(tracker: Tracker) -> RemoteRegistry | None:
    """The team server's registry when `tracker` talks to one."""
    if not tracker.remote:
        return None
    from loopml.registry.remote import RemoteRegistry

    return RemoteRegistry(tracker.store.http)  # type: ignore[attr-defined]


def _store(tracker: Tracker) -> RegistryStore:
    remote = _remote(tracker)
    if remote is not None:  # the methods `loopml.models` uses, served by the team server
        return cast("RegistryStore", remote)
    from loopml.registry.store import RegistryStore

    return RegistryStore(tracker.stores.db)
