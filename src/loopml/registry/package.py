"""A model package: the model's files in its flavor's safe format plus a manifest, stored as a blob tree.

    loopml-model.yaml     format, flavor, libraries, signature, lineage (run, datasets, commit), metrics
    model/...             the flavor's files (skops, native text/JSON; never pickle)
    input_example.json    a few rows of the training sample

The package's content hash is canonical: the flavor's hash of the model plus the signature, never the bytes
of a file, so the same model registered twice is recognised even though skops writes different bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from loopml._version import __version__
from loopml.core.errors import InvalidInput, StoreCorrupt
from loopml.core.hashing import hash_text
from loopml.registry.flavor import flavor_for, flavor_named
from loopml.registry.onnx_copy import try_onnx_copy
from loopml.registry.promotion import ROW_HASHES, row_hashes
from loopml.registry.signature import Signature, infer_signature
from loopml.stats import TableProfile, profile_columns
from loopml.storage.blobs.store import BlobStore
from loopml.storage.blobs.tree import Tree, TreeEntry, get_tree, put_tree

MANIFEST = "loopml-model.yaml"
ONNX_COPY = "onnx/model.onnx"  # the verified ONNX copy that serving (and the gates) prefer
REFERENCE_PROFILE = "reference_profile.json"  # the training sample's profile: monitoring's default reference
PACKAGE_FORMAT = 1
EXAMPLE_ROWS = 5
# The C implementations of YAML's safe dumper and loader when libyaml is there (about 5x faster).
_YAML_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LibraryMismatch(UserWarning):
    """A model is loaded with other library versions than it was saved with."""


@dataclass(frozen=True)
class Package:
    """A stored package: its tree digest, its canonical content hash and its manifest."""

    digest: str
    content_hash: str
    manifest: dict[str, Any]


@dataclass(frozen=True)
class Identity:
    """What makes a model the same model: its flavor, canonical hash and signature (cheap to compute, so a
    registration of a model that is already there is recognised before anything is saved)."""

    flavor: str
    model_hash: str
    signature: dict[str, Any] | None

    @property
    def content_hash(self) -> str:
        """The canonical content hash of the package."""
        content = json.dumps(
            {"flavor": self.flavor, "model": self.model_hash, "signature": self.signature}, sort_keys=True
        )
        return hash_text(content)


def identify(model: Any, sample: Any = None) -> Identity:
    """The identity of `model` (refuses a model no flavor can store safely)."""
    flavor = flavor_for(model)
    return Identity(flavor.name, flavor.content_hash(model), _signature(model, sample))


def build_package(
    model: Any,
    *,
    name: str,
    blobs: BlobStore,
    sample: Any = None,
    lineage: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    onnx: bool = True,
    identity: Identity | None = None,
) -> Package:
    """Save `model` in its flavor's format with a manifest into the blob store (nothing is registered yet).

    With `onnx` (and a sample), a scikit-learn model also gets an ONNX copy, kept only if its predictions
    match the native model's on the sample; the outcome is recorded in the manifest either way.
    """
    identity = identity or identify(model, sample)
    flavor = flavor_named(identity.flavor)
    model_hash, signature = identity.model_hash, identity.signature
    with tempfile.TemporaryDirectory(prefix="loopml-package-") as temp:
        folder = Path(temp)
        files = [f"model/{f}" for f in flavor.save(model, folder / "model")]
        if sample is not None:
            (folder / "input_example.json").write_text(_example(sample), encoding="utf-8")
            files.append("input_example.json")
            if signature is not None and hasattr(sample, "iloc"):
                # Row hashes of the training sample: promotion refuses evaluation rows the model was trained on.
                columns = [c["name"] for c in signature["inputs"]]
                with (folder / ROW_HASHES).open("wb") as stream:
                    np.save(stream, np.unique(row_hashes(sample, columns)), allow_pickle=False)
                files.append(ROW_HASHES)
                # A few KB a column, mergeable: drift is measured against it without the training rows.
                profile = profile_columns({c: sample[c].to_numpy() for c in columns})
                (folder / REFERENCE_PROFILE).write_text(json.dumps(profile.to_dict()), encoding="utf-8")
                files.append(REFERENCE_PROFILE)
        onnx_outcome = None
        if onnx and sample is not None and flavor.name == "sklearn":
            outcome = try_onnx_copy(model, sample=sample)
            onnx_outcome = outcome.to_dict()
            if outcome.kept and outcome.onnx_bytes is not None:
                (folder / ONNX_COPY).parent.mkdir()
                (folder / ONNX_COPY).write_bytes(outcome.onnx_bytes)
                files.append(ONNX_COPY)
        manifest = {
            "format": PACKAGE_FORMAT,
            "onnx": onnx_outcome,
            "name": name,
            "flavor": flavor.name,
            "model_hash": model_hash,
            "libraries": flavor.libraries(),
            "python": ".".join(map(str, sys.version_info[:3])),
            "loopml": __version__,
            "signature": signature,
            "lineage": lineage or {},
            "metrics": metrics or {},
            "files": sorted(files),
        }
        (folder / MANIFEST).write_text(
            yaml.dump(manifest, Dumper=_YAML_DUMPER, sort_keys=True), encoding="utf-8"
        )
        paths = [*files, MANIFEST]
        stored = blobs.put_files([folder / p for p in paths])
        digest = put_tree(
            blobs, Tree.of(TreeEntry(p, size, d) for p, (d, size) in zip(paths, stored, strict=True))
        )
    return Package(digest, identity.content_hash, manifest)


def open_package(blobs: BlobStore, digest: str, cache: Path) -> Path:
    """The package's folder under `cache`, restored (and every file verified) on first use."""
    folder = cache / digest
    if folder.is_dir():
        return folder
    tree = get_tree(blobs, digest)
    cache.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=".restoring-", dir=cache))
    try:
        for entry in tree.entries:
            try:
                blobs.get_file(entry.digest, temp / entry.path, verify=True)
            except StoreCorrupt as error:
                raise StoreCorrupt(
                    f"file {entry.path!r} of model package {digest[:12]} no longer matches its hash: {error}"
                ) from None
        try:
            os.replace(temp, folder)
        except OSError:  # another process restored it first: theirs is as good
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return folder


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a restored package; a package from a newer LoopML is refused with both versions."""
    try:
        manifest = yaml.load((folder / MANIFEST).read_text(encoding="utf-8"), Loader=_YAML_LOADER)  # noqa: S506
    except (OSError, yaml.YAMLError) as error:
        raise StoreCorrupt(f"model package {folder.name[:12]} has no readable {MANIFEST}: {error}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("format"), int):
        raise StoreCorrupt(f"model package {folder.name[:12]} has a malformed {MANIFEST}")
    if manifest["format"] > PACKAGE_FORMAT:
        raise InvalidInput(
            f"model package {folder.name[:12]} was written by LoopML {manifest.get('loopml')} in package format "
            f"{manifest['format']}; this LoopML ({__version__}) reads format {PACKAGE_FORMAT}: upgrade LoopML"
        )
    return manifest


def load_from(folder: Path, manifest: dict[str, Any], *, trusted: bool = False) -> Any:
    """The model of a restored package, loaded by its flavor (library version differences are warned about)."""
    flavor = flavor_named(str(manifest.get("flavor")))
    for problem in flavor.check_libraries(manifest.get("libraries") or {}):
        warnings.warn(problem, LibraryMismatch, stacklevel=3)
    return flavor.load(folder / "model", trusted=trusted)


def _signature(model: Any, sample: Any) -> dict[str, Any] | None:
    if sample is None:
        return None
    head = sample.iloc[:100] if hasattr(sample, "iloc") else sample[:100]
    probabilities = None
    classes = getattr(model, "classes_", None)
    if hasattr(model, "predict_proba"):
        try:
            probabilities = model.predict_proba(head)
        except Exception:  # some estimators expose predict_proba only for some settings
            probabilities = None
    try:
        # A classifier's labels follow from its probabilities: one model call instead of two.
        if probabilities is not None and classes is not None and np.ndim(probabilities) == 2:
            predictions = np.asarray(classes)[np.argmax(probabilities, axis=1)]
        else:
            predictions = model.predict(head)
    except Exception as error:
        raise InvalidInput(
            f"the model cannot predict on the sample given for its signature: {error}"
        ) from None
    # Inputs from every sample row (ranges, levels); outputs from the predictions on the first rows only.
    inputs = infer_signature(sample)
    outputs = infer_signature(
        head,
        predictions=predictions,
        probabilities=probabilities,
        classes=list(classes) if classes is not None else None,
    )
    signature = Signature(inputs=inputs.inputs, outputs=outputs.outputs)
    return signature.to_dict()


def _example(sample: Any) -> str:
    head = sample.iloc[:EXAMPLE_ROWS] if hasattr(sample, "iloc") else sample[:EXAMPLE_ROWS]
    if hasattr(head, "to_json"):
        return str(head.to_json(orient="split", index=False, date_format="iso"))
    return json.dumps({"data": [list(map(_plain, row)) for row in head]})


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def load_onnx_copy(folder: Path) -> Any | None:
    """The verified ONNX copy of a restored package as a model with predict/predict_proba, or None."""
    path = folder / ONNX_COPY
    if not path.is_file():
        return None
    from loopml.registry.flavor_onnx import OnnxModel

    return OnnxModel.of(path.read_bytes())


def reference_profile(folder: Path) -> TableProfile | None:
    """The profile of the training sample stored in a restored package (None: registered without a sample)."""
    path = folder / REFERENCE_PROFILE
    if not path.is_file():
        return None
    return TableProfile.from_dict(json.loads(path.read_text(encoding="utf-8")))


def training_rows(folder: Path) -> np.ndarray | None:
    """The row hashes of the training sample stored with a package (None when it was registered without one)."""
    path = folder / ROW_HASHES
    if not path.is_file():
        return None
    hashes: np.ndarray = np.load(path, allow_pickle=False)
    return hashes
