"""The `sklearn` flavor: scikit-learn estimators and Pipelines, saved with skops and never with pickle.

Loading trusts only LoopML's allow-list of scikit-learn, numpy and scipy types (`skops_io.TRUSTED_MODULES`),
never a list read from the package, so a crafted file naming any other type is refused before anything is
built. A model holding custom code (a Pipeline with a step of one's own) is refused when saved, with the advice
to register it as a python-flavor model instead. The content hash walks the fitted model, as two skops dumps
of one model differ byte for byte.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from loopml.core.errors import NotFound
from loopml.core.hashing import hash_bytes
from loopml.registry import skops_io
from loopml.registry.flavor import Flavor, installed_version
from loopml.registry.model_hash import NotCanonical, canonical_hash
from loopml.registry.skops_io import UntrustedArtifact

_log = logging.getLogger(__name__)

MODEL_FILE = "model.skops"
# What a skops file needs to be read back: scikit-learn builds the model, numpy and scipy hold its arrays.
_LIBRARIES = ("scikit-learn", "numpy", "scipy", "skops")


class SklearnFlavor(Flavor):
    """scikit-learn estimators, Pipelines and ColumnTransformers as one skops file, `model.skops`."""

    name = "sklearn"
    # A scikit-learn release may change what a fitted estimator computes; numpy and skops patch releases do not.
    checked_libraries = frozenset({"scikit-learn"})

    def accepts(self, model: Any) -> bool:
        """True for an instance with `get_params` whose class lives in `sklearn`."""
        return (
            not isinstance(model, type)
            and type(model).__module__.startswith("sklearn.")
            and hasattr(model, "get_params")
        )

    def save(self, model: Any, folder: Path) -> list[str]:
        """Write `model.skops`; `UntrustedArtifact` when the model holds types `load` would refuse."""
        try:
            data = skops_io.dumps(model)
        except UntrustedArtifact as error:
            raise UntrustedArtifact(
                f"{error.message}; the sklearn flavor loads only scikit-learn, numpy and scipy types, so "
                "register a model with code of its own as a python-flavor model",
                types=error.types,
            ) from None
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MODEL_FILE).write_bytes(data)
        return [MODEL_FILE]

    def load(self, folder: Path, *, trusted: bool = False) -> Any:
        """The estimator, once every type its file names passed LoopML's allow-list (`trusted` is ignored)."""
        path = folder / MODEL_FILE
        if not path.is_file():
            raise NotFound(
                f"the model package at {folder} has no {MODEL_FILE}: it is incomplete or not sklearn"
            )
        return skops_io.loads(path.read_bytes())

    def content_hash(self, model: Any) -> str:
        """Digest of the estimator's class, params and fitted state (not of its skops bytes)."""
        try:
            return canonical_hash(model)
        except NotCanonical as error:
            # Still correct, never shared: registering the same model twice is then not recognised.
            _log.warning("model %s has no canonical hash, hashing its skops bytes: %s", type(model), error)
            return hash_bytes(skops_io.dumps(model))

    def libraries(self, model: Any = None) -> dict[str, str]:
        """Installed versions of scikit-learn, numpy, scipy and skops (`model` adds nothing)."""
        return {name: version for name in _LIBRARIES if (version := installed_version(name)) is not None}
