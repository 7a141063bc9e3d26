"""Deployment export: a model version as a self-contained Docker build context (and Kubernetes manifests).

    DIR/
      Dockerfile            python:3.X-slim, pinned requirements installed at build, non-root, HEALTHCHECK
      requirements.txt      loopml[extras] + the model's libraries at the versions its manifest recorded
      .dockerignore, README.md
      project/              a tiny LoopML project: .loopml/ holds only this model, this version, its alias
      wheels/               (only with `loopml_wheel`) the LoopML wheel the requirements install
      k8s/                  (target kubernetes) deployment.yaml, service.yaml, hpa.yaml

The model is baked into `project/` at export time, so the container runs the ordinary `loopml serve` against a
local store: no registry to reach, no environment to solve at start-up. The baked version keeps its number,
id, signature, content hash and package digest, so every prediction it answers names the same version as in
the source project. Everything is built in a temporary sibling folder and renamed into place at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from loopml.core.errors import InvalidInput, StoreCorrupt
from loopml.core.settings import HOME_DIR, load_settings
from loopml.registry.records import ModelRef, ModelVersion
from loopml.registry.store import RegistryStore
from loopml.serving.export_context import (
    DOCKERIGNORE,
    FLAVOR_EXTRAS,
    PROJECT,
    dockerfile,
    readme,
    requirements_for,
    requirements_text,
)
from loopml.serving.export_kubernetes import kubernetes_manifests, resource_name
from loopml.storage.blobs.store import BlobStore
from loopml.storage.blobs.tree import get_tree, put_tree
from loopml.storage.metadata import schema as t
from loopml.storage.stores import Stores

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

__all__ = ["TARGETS", "Export", "export_deployment"]

TARGETS = ("docker", "kubernetes")


@dataclass(frozen=True)
class Export:
    """What `export_deployment` wrote: the folder, the version baked in, the image tag and the files."""

    directory: Path
    version: ModelVersion
    serve_ref: str
    image: str
    target: str
    files: list[str]
    requirements: list[str]


def export_deployment(
    ref: str,
    output: str | os.PathLike[str],
    *,
    target: str = "docker",
    image: str | None = None,
    replicas: int = 2,
    port: int = 8000,
    force: bool = False,
    loopml_wheel: str | os.PathLike[str] | None = None,
    tracker: Tracker | None = None,
) -> Export:
    """Write a Docker build context serving `ref` (`NAME@ALIAS`, `NAME@vN` or `NAME`) into `output`.

    `target="kubernetes"` adds `k8s/` manifests for `image` (default `loopml-NAME:vN`) with `replicas` pods.
    An `output` folder that holds anything is refused unless `force` (then it is replaced as a whole).
    `loopml_wheel` bundles a LoopML wheel the image installs instead of `loopml==VERSION` from the package
    index (for a LoopML that is not published there). `tracker` is the source project (default: the working
    folder's). Nothing is left half-written when anything fails.
    """
    from loopml.tracking.tracker import default_tracker

    if target not in TARGETS:
        raise InvalidInput(f"unsupported deployment target {target!r}; choose one of: {', '.join(TARGETS)}")
    if not 1 <= port <= 65535:
        raise InvalidInput(f"port must be between 1 and 65535, got {port}")
    if replicas < 1:
        raise InvalidInput(f"replicas must be at least 1, got {replicas}")
    wheel = Path(loopml_wheel) if loopml_wheel is not None else None
    if wheel is not None and not (
        wheel.is_file() and wheel.name.startswith("loopml-") and wheel.suffix == ".whl"
    ):
        raise InvalidInput(f"{wheel} is not a LoopML wheel file (loopml-VERSION-....whl)")
    parsed = ModelRef.parse(ref)
    source = tracker or default_tracker()
    destination = Path(output).resolve()
    _check_destination(destination, force=force, protected=[source.settings.project_dir, Path.cwd()])
    version = RegistryStore(source.stores.db).get_version(parsed)  # NotFound lists what exists
    if version.flavor not in FLAVOR_EXTRAS:
        raise InvalidInput(
            f"{version.ref} is a {version.flavor}-flavor model, which imports its own code when loaded; "
            f"export supports {', '.join(sorted(FLAVOR_EXTRAS))} models"
        )
    manifest = _read_manifest(source.blobs, version.package_digest)
    serve_ref = str(parsed)
    image = image or f"loopml-{resource_name(version.name, limit=100)}:v{version.version}"
    destination.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{destination.name}.export-", dir=destination.parent))
    try:
        _bake_project(source, version, parsed, temp / PROJECT)
        wheel_ref = None
        if wheel is not None:
            (temp / "wheels").mkdir()
            shutil.copy2(wheel, temp / "wheels" / wheel.name)
            wheel_ref = f"./wheels/{wheel.name}"
        requirements = requirements_for(manifest, loopml_wheel=wheel_ref)
        (temp / "requirements.txt").write_text(requirements_text(version, requirements), encoding="utf-8")
        (temp / "Dockerfile").write_text(
            dockerfile(version, serve_ref, port=port, wheels=wheel is not None), encoding="utf-8"
        )
        (temp / ".dockerignore").write_text(DOCKERIGNORE, encoding="utf-8")
        (temp / "README.md").write_text(readme(version, serve_ref, image, target, port), encoding="utf-8")
        if target == "kubernetes":
            (temp / "k8s").mkdir()
            manifests = kubernetes_manifests(version, serve_ref, image=image, replicas=replicas, port=port)
            for kind, document in manifests.items():
                (temp / "k8s" / f"{kind}.yaml").write_text(
                    yaml.dump(document, Dumper=_PlainDumper, sort_keys=False), encoding="utf-8"
                )
        written = (p.relative_to(temp) for p in temp.rglob("*") if p.is_file())
        files = sorted(p.as_posix() for p in written if p.parts[0] != PROJECT)
        _move_into_place(temp, destination)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return Export(destination, version, serve_ref, image, target, [*files, f"{PROJECT}/"], requirements)


class _PlainDumper(yaml.SafeDumper):
    """YAML without anchors and aliases (`&id001`): manifests are read by people and by kubectl diff."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


# -- the baked project ----------------------------------------------------------------------------------------


def _bake_project(source: Tracker, version: ModelVersion, ref: ModelRef, folder: Path) -> None:
    """A fresh LoopML project in `folder` holding only `version` of its model (and `ref`'s alias)."""
    home = folder / HOME_DIR
    home.mkdir(parents=True)
    (folder / "loopml.toml").write_text(
        f"# A LoopML project baked by `loopml deploy export {ref}`: it holds {version.ref} only.\n",
        encoding="utf-8",
    )
    # Every store location is explicit so no LOOPML_* variable of the exporting shell (a team database,
    # an S3 blob store) can send the copy anywhere but this folder.
    settings = load_settings(
        project_dir=folder,
        home=home,
        database_url=f"sqlite:///{home / 'loopml.db'}",
        artifact_url=str(home / "blobs"),
    )
    stores = Stores.open(settings)
    try:
        _copy_package(source.blobs, stores.blobs, version.package_digest)
        model = RegistryStore(source.stores.db).get_model(version.name)
        _insert_version(stores, version, description=model.description, owner=model.owner, tags=model.tags)
        if ref.alias is not None:
            RegistryStore(stores.db).move_alias(
                version.name, ref.alias, version.version, reason=f"baked by loopml deploy export {ref}"
            )
        baked = RegistryStore(stores.db).get_version(ref)
        if (baked.version_id, baked.content_hash) != (version.version_id, version.content_hash):
            raise StoreCorrupt(f"the baked project resolves {ref} to {baked.ref}, not {version.ref}")
    finally:
        stores.close()  # the last connection to close checkpoints the WAL into loopml.db


def _copy_package(source: BlobStore, target: BlobStore, digest: str) -> None:
    """Copy a package's tree and files; each copy is hashed on the way, so a corrupt source is refused."""
    tree = get_tree(source, digest)
    for entry in tree.entries:
        with source.open(entry.digest) as stream:
            copied, _ = target.put_stream(stream)
        if copied != entry.digest:
            raise StoreCorrupt(f"file {entry.path!r} of package {digest[:12]} no longer matches its hash")
    if put_tree(target, tree) != digest:
        raise StoreCorrupt(f"the copy of package {digest[:12]} has another digest")


def _insert_version(
    stores: Stores, version: ModelVersion, *, description: str | None, owner: str | None, tags: dict[str, str]
) -> None:
    """The model and `version` as they are in the source: same number and id (the registry's `add_version`
    numbers versions from 1, and the baked version must answer as the one it is)."""

    def change(conn: Any) -> None:
        model_id = version.version_id  # a fresh database: any unique id will do for the one model
        now = version.created_time
        conn.execute(
            t.registered_models.insert(),
            {"model_id": model_id, "name": version.name, "description": description, "owner": owner,
             "created_time": now, "updated_time": now},
        )  # fmt: skip
        if tags:
            conn.execute(
                t.model_tags.insert(), [{"model_id": model_id, "key": k, "value": v} for k, v in tags.items()]
            )
        conn.execute(
            t.model_versions.insert(),
            {
                "version_id": version.version_id,
                "model_id": model_id,
                "version": version.version,
                "flavor": version.flavor,
                "content_hash": version.content_hash,
                "package_digest": version.package_digest,
                "run_id": version.run_id,
                "signature_json": json.dumps(version.signature, sort_keys=True)
                if version.signature
                else None,
                "metrics_json": json.dumps(version.metrics, sort_keys=True),
                "description": version.description,
                "created_by": version.created_by,
                "created_time": version.created_time,
            },
        )
        if version.tags:
            conn.execute(
                t.model_version_tags.insert(),
                [{"version_id": version.version_id, "key": k, "value": v} for k, v in version.tags.items()],
            )

    stores.db.transact(change)


def _read_manifest(blobs: BlobStore, digest: str) -> dict[str, Any]:
    from loopml.registry.package import MANIFEST

    entries = {entry.path: entry for entry in get_tree(blobs, digest).entries}
    if MANIFEST not in entries:
        raise StoreCorrupt(f"model package {digest[:12]} has no {MANIFEST}")
    manifest = yaml.safe_load(blobs.get_bytes(entries[MANIFEST].digest, verify=True))
    if not isinstance(manifest, dict):
        raise StoreCorrupt(f"model package {digest[:12]} has a malformed {MANIFEST}")
    return manifest


# -- the folder -----------------------------------------------------------------------------------------------


def _check_destination(destination: Path, *, force: bool, protected: list[Path]) -> None:
    if destination.exists() and not destination.is_dir():
        raise InvalidInput(f"{destination} exists and is not a folder; choose another output folder")
    # Replacing a folder that holds the project (or the working folder) would delete it: never, even with force.
    for folder in (p.resolve() for p in protected):
        if destination == folder or destination in folder.parents:
            raise InvalidInput(f"{destination} holds {folder}; export into a new folder (e.g. -o deploy/)")
    if destination.is_dir() and any(destination.iterdir()) and not force:
        raise InvalidInput(f"{destination} exists and is not empty; choose a new folder or pass --force")


def _move_into_place(temp: Path, destination: Path) -> None:
    """Rename the finished folder to `destination`; an existing one is renamed away first, then deleted."""
    old = None
    if destination.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{destination.name}.old-", dir=destination.parent))
        os.replace(destination, old / "content")
    try:
        os.replace(temp, destination)
    except BaseException:
        if old is not None:  # put the previous export back: the caller keeps what they had
            os.replace(old / "content", destination)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
