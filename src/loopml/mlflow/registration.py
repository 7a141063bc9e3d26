"""An MLflow model folder (the files `log_model` uploaded) registered as a LoopML model version.

The version's package is a tree over the same blobs, `model/<MLflow's files>` plus LoopML's manifest, so
nothing is copied: MLflow's client downloads its files back unchanged, and LoopML's registry, gates, serving
and monitoring see an ordinary version of flavor `mlflow` (see `loopml.registry.flavor_mlflow` for what loads).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import yaml

from loopml._version import __version__
from loopml.core.errors import InvalidInput, LoopMLError, NotFound
from loopml.core.hashing import hash_text
from loopml.registry.flavor_mlflow import MLMODEL
from loopml.registry.lineage import run_lineage
from loopml.registry.package import MANIFEST, PACKAGE_FORMAT
from loopml.registry.records import ModelRef, Registered
from loopml.registry.signature import Signature
from loopml.registry.store import RegistryStore
from loopml.storage.blobs.tree import Tree, TreeEntry, put_tree
from loopml.tracking.records import Artifact

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

# MLflow's column types -> LoopML's signature types (binary and nested types have no LoopML equivalent).
_TYPES = {
    "double": "float",
    "float": "float",
    "long": "integer",
    "integer": "integer",
    "boolean": "boolean",
    "string": "string",
    "datetime": "datetime",
}


def register_mlflow_files(
    tracker: Tracker,
    name: str,
    files: Sequence[Artifact],
    *,
    run_id: str | None = None,
    source_uri: str | None = None,
    logged_model_id: str | None = None,
    user: str | None = None,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Registered:
    """Register the MLflow model whose files (paths relative to the folder holding `MLmodel`) are stored
    blobs as the next version of `name`; the same files again give the existing version."""
    ModelRef.parse(name)
    spec = _mlmodel(tracker, files)
    signature = signature_of(spec)
    try:
        lineage, metrics = run_lineage(tracker, run_id, None) if run_id else ({}, {})
    except NotFound:  # the run was purged since: the version keeps its id, not its lineage
        lineage, metrics = {"run_id": run_id}, {}
    listed = sorted((f.path, f.digest) for f in files)
    content_hash = hash_text(json.dumps({"flavor": "mlflow", "files": listed, "signature": signature}))
    manifest = {
        "format": PACKAGE_FORMAT,
        "onnx": None,
        "name": name,
        "flavor": "mlflow",
        "model_hash": hash_text(json.dumps(listed)),
        "libraries": {},
        "python": ".".join(map(str, sys.version_info[:3])),
        "loopml": __version__,
        "signature": signature,
        "lineage": lineage,
        "metrics": metrics,
        "files": sorted(f"model/{f.path}" for f in files),
        "mlflow": {
            "flavors": sorted(spec.get("flavors") or {}),
            "model_id": logged_model_id,
            "source": source_uri,
            "mlflow_version": spec.get("mlflow_version"),
        },
    }
    text = yaml.safe_dump(manifest, sort_keys=True).encode()
    entries = [TreeEntry(f"model/{f.path}", f.size, f.digest) for f in files]
    entries.append(TreeEntry(MANIFEST, len(text), tracker.blobs.put_bytes(text)))
    digest = put_tree(tracker.blobs, Tree.of(entries))
    return RegistryStore(tracker.stores.db).add_version(
        name,
        flavor="mlflow",
        content_hash=content_hash,
        package_digest=digest,
        run_id=run_id,
        signature=signature,
        metrics=metrics,
        description=description,
        created_by=user,
        tags=tags,
        source_uri=source_uri,
        logged_model_id=logged_model_id,
    )


def _mlmodel(tracker: Tracker, files: Sequence[Artifact]) -> dict[str, Any]:
    found = [f for f in files if f.path == MLMODEL]
    if not found:
        raise InvalidInput(
            f"the source holds no {MLMODEL} file at its top ({len(files)} files): it is not an MLflow model folder"
        )
    try:
        spec = yaml.safe_load(tracker.blobs.get_bytes(found[0].digest))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise InvalidInput(f"the model's {MLMODEL} file is not readable YAML: {error}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("flavors", {}), dict):
        raise InvalidInput(f"the model's {MLMODEL} file is not a YAML mapping with a mapping of flavors")
    return spec


def signature_of(spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """LoopML's signature for the named columns of an `MLmodel`'s signature; None for tensors, unnamed or
    untranslatable columns (the version then serves without a column check, as MLflow would)."""
    raw = (spec.get("signature") or {}).get("inputs") if isinstance(spec.get("signature"), dict) else None
    try:
        columns = json.loads(raw) if isinstance(raw, str) else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(columns, list) or not columns:
        return None
    inputs = []
    for column in columns:
        if not isinstance(column, dict) or not isinstance(column.get("name"), str):
            return None
        kind = _TYPES.get(str(column.get("type")))
        if kind is None:
            return None
        inputs.append({"name": column["name"], "type": kind, "nullable": not column.get("required", True)})
    try:
        return Signature.from_dict({"inputs": inputs, "outputs": []}).to_dict()
    except LoopMLError:
        return None
