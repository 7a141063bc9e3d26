"""The `skops` serializer: scikit-learn estimators saved with skops, loaded only when every type is trusted.

One module per built-in serializer, so each format reads on its own; this one's allow-list is what keeps
loading a model from running arbitrary code. scikit-learn and skops are imported only to dump or load a model.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from loopml.core.errors import InvalidInput
from loopml.core.hashing import hash_bytes
from loopml.pipelines.model_hash import NotCanonical, canonical_hash
from loopml.pipelines.serializer import Serializer, Unserializable, UntrustedArtifact, python_type

_log = logging.getLogger(__name__)

# Module prefixes a skops artifact may name; "what skops needs" is skops itself. builtins are handled apart.
TRUSTED_MODULES = ("sklearn.", "numpy.", "scipy.", "collections.", "skops.")


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
        sio = _skops()
        try:
            data = bytes(sio.dumps(value))
        except Exception as error:  # skops raises whatever its dispatch hits; all mean "cannot store"
            raise Unserializable(f"skops cannot save this {python_type(value)}: {error}") from error
        refused = self._refused(sio.get_untrusted_types(data=data))
        if refused:
            raise Unserializable(
                f"this {python_type(value)} holds types LoopML would refuse to load: {', '.join(refused)}; "
                "register SkopsSerializer(trusted_modules=[...]) naming modules you trust"
            )
        return data

    def load(self, data: bytes) -> Any:
        """The estimator, after checking every type the artifact names against the allow-list."""
        sio = _skops()
        try:
            untrusted = sio.get_untrusted_types(data=data)
        except Exception as error:  # a damaged zip or schema raises anything from zipfile to json
            raise InvalidInput(f"not a readable skops artifact: {error}") from None
        refused = self._refused(untrusted)
        if refused:
            raise UntrustedArtifact(
                f"skops artifact refused: it names types outside LoopML's allow-list: {', '.join(refused)}"
            )
        try:
            return sio.loads(data, trusted=untrusted)
        except Exception as error:  # as above: a damaged artifact can fail anywhere in skops' loaders
            raise InvalidInput(f"not a loadable skops artifact: {error}") from None

    def content_hash(self, value: Any, data: bytes) -> str:
        """Hash of the estimator's class, params and fitted state: two dumps of one model hash equal."""
        try:
            return canonical_hash(value)
        except NotCanonical as error:  # correct but never reused: a cache miss, not a wrong hit
            _log.warning("model %s has no canonical hash, hashing its bytes: %s", python_type(value), error)
            return hash_bytes(data)

    def _refused(self, types: Iterable[str]) -> list[str]:
        prefixes = (*TRUSTED_MODULES, *self.trusted_modules)
        return sorted(t for t in types if not (t.startswith(prefixes) or _is_builtin_class(t)))


def _is_builtin_class(name: str) -> bool:
    module, _, attribute = name.partition(".")
    return module == "builtins" and isinstance(getattr(builtins, attribute, None), type)


def _skops() -> Any:
    try:
        import skops.io
    except ModuleNotFoundError:
        raise InvalidInput("storing scikit-learn models needs skops: pip install 'loopml[sklearn]'") from None
    return skops.io
