"""Loading a version's model (once per process per version) and reading what its package holds."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.core.errors import InvalidInput
from loopml.registry.package import (
    load_from,
    load_onnx_copy,
    open_package,
    read_manifest,
    reference_profile,
    training_rows,
)
from loopml.registry.records import ModelVersion

if TYPE_CHECKING:
    import numpy as np

    from loopml.stats import TableProfile
    from loopml.storage.blobs.store import BlobStore
    from loopml.tracking.tracker import Tracker

_loaded: dict[tuple[str, str, bool], Any] = {}  # (blob store, package digest, serving) -> model
_loaded_lock = threading.Lock()


def package_folder(tracker: Tracker, version: ModelVersion) -> Path:
    """The version's package, restored (and verified) into the project's model cache on first use."""
    return open_package(tracker.blobs, version.package_digest, tracker.settings.home_dir / "cache" / "models")


def load_version(
    tracker: Tracker, version: ModelVersion, *, trusted: bool = False, serving: bool = False
) -> Any:
    """The version's model, loaded once per process (later calls return the same object).

    `serving=True` gives what serving runs: the verified ONNX copy when the package has one (ONNX Runtime
    is much faster per row), else the native model. Promotion gates score that same artifact.
    A version someone marked trusted (`RegistryStore.mark_trusted`) loads as if `trusted=True` were given.
    """
    cache = tracker.settings.home_dir / "cache" / "models"
    return load_from_blobs(tracker.blobs, version, cache, trusted=trusted, serving=serving)


def load_from_blobs(
    blobs: BlobStore, version: ModelVersion, cache: Path, *, trusted: bool = False, serving: bool = False
) -> Any:
    """`load_version` without a tracker, for a cluster worker that cannot open the metadata store: the model
    of `version` (a record the driver read) from the blob store `blobs`, its package restored into `cache`.
    The same rules: once per process, the ONNX copy with `serving`, `trusted` also from the record."""
    trusted = trusted or version.trusted_by is not None
    key = (blobs.root, version.package_digest, serving)
    with _loaded_lock:
        model = _loaded.get(key)
    if model is None:
        folder = open_package(blobs, version.package_digest, cache)
        model = load_onnx_copy(folder) if serving else None
        if model is None:
            model = load_from(folder, read_manifest(folder), trusted=trusted)
        with _loaded_lock:
            model = _loaded.setdefault(key, model)
    return model


def forget_loaded(version: ModelVersion | None = None) -> None:
    """Drop the loaded models of this process: every one, or those of `version` (a long-running server drops
    the versions it no longer serves, so memory does not grow with each retrain)."""
    with _loaded_lock:
        if version is None:
            _loaded.clear()
            return
        for key in [k for k in _loaded if k[1] == version.package_digest]:
            del _loaded[key]


def manifest_of(tracker: Tracker, version: ModelVersion) -> dict[str, Any]:
    """The version's manifest."""
    return read_manifest(package_folder(tracker, version))


def columns_of(version: ModelVersion) -> list[str]:
    """The input columns of the version's signature."""
    if not version.signature:
        raise InvalidInput(
            f"{version.ref} has no signature (register it with sample=...): its input columns are unknown"
        )
    return [c["name"] for c in version.signature["inputs"]]


def training_rows_of(tracker: Tracker, version: ModelVersion) -> np.ndarray | None:
    """The row hashes of the version's training sample (None if it was registered without one)."""
    return training_rows(package_folder(tracker, version))


def reference_profile_of(tracker: Tracker, version: ModelVersion) -> TableProfile | None:
    """The profile of the sample the version was registered with (its inputs only), or None."""
    return reference_profile(package_folder(tracker, version))
