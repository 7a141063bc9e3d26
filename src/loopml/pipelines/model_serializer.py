"""The `skops` serializer: scikit-learn estimators saved with skops, loaded only when every type is trusted.

One module per built-in serializer, so each format reads on its own. The safety code (the allow-list, the check
of untrusted types at dump and at load) and the canonical model hash live in the registry, which stores models
the same way (`loopml.registry.skops_io`, `loopml.registry.model_hash`); this is the `Serializer` over them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from loopml.core.errors import InvalidInput
from loopml.core.hashing import hash_bytes
from loopml.pipelines.serializer import Serializer, Unserializable, python_type
from loopml.registry import skops_io
from loopml.registry.model_hash import NotCanonical, canonical_hash
from loopml.registry.skops_io import UntrustedArtifact

_log = logging.getLogger(__name__)


class SkopsSerializer(Serializer):
    """scikit-learn estimators (Pipelines and ColumnTransformers included) saved with skops, never pickle.

    Loading trusts only the types whose module starts with one of `TRUSTED_MODULES` or `trusted_modules`, and
    builtins that are classes (not functions such as `eval`); anything else refuses the artifact. Dumping checks
    the same list, so a model that could not be loaded back is refused when it is stored, not later.
    """

    name = "skops"
    version = 1
    extension = ".skops"

    def __init__(self, *, trusted_modules: Sequence[str] = ()) -> None:
        self.trusted_modules = trusted_modules

    def accepts(self, value: Any) -> bool:
        """True for an instance with `get_params` whose class lives in `sklearn`."""
        return (
            not isinstance(value, type)
            and type(value).__module__.startswith("sklearn.")
            and hasattr(value, "get_params")
        )

    def dump(self, value: Any) -> bytes:
        """The skops file; `Unserializable` when skops cannot save it or it names untrusted types."""
        try:
            return skops_io.dumps(value, trusted_modules=self.trusted_modules)
        except UntrustedArtifact as error:
            raise Unserializable(
                f"{error.message}; register SkopsSerializer(trusted_modules=[...]) naming modules you trust"
            ) from None
        except InvalidInput as error:
            raise Unserializable(error.message) from error

    def load(self, data: bytes) -> Any:
        """The estimator, after checking every type the artifact names against the allow-list."""
        return skops_io.loads(data, trusted_modules=self.trusted_modules)

    def content_hash(self, value: Any, data: bytes) -> str:
        """Hash of the estimator's class, params and fitted state: two dumps of one model hash equal."""
        try:
            return canonical_hash(value)
        except NotCanonical as error:  # correct but never reused: a cache miss, not a wrong hit
            _log.warning("model %s has no canonical hash, hashing its bytes: %s", python_type(value), error)
            return hash_bytes(data)
