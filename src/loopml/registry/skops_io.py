"""scikit-learn models to skops bytes and back, loaded only when every type they name is on LoopML's allow-list.

skops stores a model as a zip of JSON and `.npy` files and builds it back by importing the types its schema
names; the allow-list is what keeps loading a model from running arbitrary code. The list of types to trust is
always LoopML's (`TRUSTED_MODULES`, plus what a caller adds in code), never one read from the artifact. Dumping
checks the same list, so a model that could not be loaded back is refused when it is stored, not later.

Used by the registry's scikit-learn flavor and by the pipelines' `skops` serializer. scikit-learn and skops are
optional: skops is imported only to dump or load a model.
"""

from __future__ import annotations

import builtins
import contextlib
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from zipfile import ZIP_STORED, ZipFile

from loopml.core.errors import InvalidInput

__all__ = ["TRUSTED_MODULES", "UntrustedArtifact", "dumps", "loads", "refused_types"]

# Module prefixes a skops artifact may name; "what skops needs" is skops itself. builtins are handled apart.
TRUSTED_MODULES = ("sklearn.", "numpy.", "scipy.", "collections.", "skops.")


class UntrustedArtifact(InvalidInput):
    """A model names types outside LoopML's allow-list, so it is refused rather than stored or loaded."""

    code = "untrusted_artifact"

    def __init__(self, message: str, *, types: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.types = tuple(types)


def refused_types(types: Iterable[str], *, trusted_modules: Sequence[str] = ()) -> list[str]:
    """The sorted names in `types` that are neither on the allow-list nor builtin classes."""
    prefixes = (*TRUSTED_MODULES, *trusted_modules)
    return sorted(t for t in types if not (t.startswith(prefixes) or _is_builtin_class(t)))


def dumps(model: Any, *, trusted_modules: Sequence[str] = ()) -> bytes:
    """The skops file of `model`.

    `InvalidInput` when skops cannot save it; `UntrustedArtifact` (with `.types`) when it holds types that
    `loads` would refuse with the same `trusted_modules`.
    """
    sio = _skops()
    kind = _python_type(model)
    try:
        data = _compact_dumps(model)
    except Exception as error:  # skops raises whatever its dispatch hits; all mean "cannot store"
        raise InvalidInput(f"skops cannot save this {kind}: {error}") from error
    refused = refused_types(sio.get_untrusted_types(data=data), trusted_modules=trusted_modules)
    if refused:
        raise UntrustedArtifact(
            f"this {kind} holds types LoopML would refuse to load: {', '.join(refused)}", types=refused
        )
    return data


def _compact_dumps(model: Any) -> bytes:
    """`skops.io.dumps` with compact JSON: skops writes its schema indented, which forces Python's slow
    encoder (about half the save time of a 100-tree forest) and a third more bytes. The file is the same
    format; if skops' internals differ from the ones this relies on, its public `dumps` is used."""
    import json

    try:
        import skops
        from skops.io._utils import SaveContext, get_state
    except ImportError:
        return bytes(_skops().dumps(model))
    buffer = io.BytesIO()
    with ZipFile(buffer, "w", compression=ZIP_STORED) as zip_file:
        context = SaveContext(zip_file=zip_file)
        state = get_state(model, context)
        context.clear_memo()
        state["protocol"] = context.protocol
        state["_skops_version"] = skops.__version__
        zip_file.writestr("schema.json", json.dumps(state, separators=(",", ":")))
    return buffer.getvalue()


def loads(data: bytes, *, trusted_modules: Sequence[str] = ()) -> Any:
    """The model stored as `data`, after checking every type the artifact names against the allow-list.

    `UntrustedArtifact` naming the refused types, before anything is imported or built; `InvalidInput` when
    `data` is not a readable skops artifact.
    """
    with _parsed(data) as tree:
        refused = refused_types(sorted(tree.get_unsafe_set()), trusted_modules=trusted_modules)
        if refused:
            raise UntrustedArtifact(
                f"skops artifact refused: it names types outside LoopML's allow-list: {', '.join(refused)}",
                types=refused,
            )
        try:
            # Every name the tree holds passed the check above: LoopML's list is trusted, not the artifact's.
            return tree.construct()
        except Exception as error:  # as below: a damaged artifact can fail anywhere in skops' loaders
            raise InvalidInput(f"not a loadable skops artifact: {error}") from None


@contextlib.contextmanager
def _parsed(data: bytes) -> Iterator[Any]:
    """skops' node tree of `data`, parsed once and open while it is used. The public pair
    `get_untrusted_types` + `loads` parses and audits the whole schema twice (a third of loading a 100-tree
    forest). Building the tree imports and calls nothing the artifact names; only `construct()` does, and
    `loads` calls it after the audit. If skops' internals moved, the public API stands in."""
    try:
        from skops.io._audit import get_tree
        from skops.io._persist import read_schema
    except ImportError:
        yield _PublicTree(data)
        return
    try:
        zip_file = ZipFile(io.BytesIO(data), "r")
        schema, load_context = read_schema(zip_file)
        tree = get_tree(schema, load_context, trusted=None)
    except Exception as error:  # a damaged zip or schema raises anything from zipfile to json
        raise InvalidInput(f"not a readable skops artifact: {error}") from None
    with zip_file:
        yield tree


class _PublicTree:
    """Stands in for skops' tree through its public API (which parses the artifact twice)."""

    def __init__(self, data: bytes) -> None:
        try:
            self._untrusted = _skops().get_untrusted_types(data=data)
        except Exception as error:
            raise InvalidInput(f"not a readable skops artifact: {error}") from None
        self._data = data

    def get_unsafe_set(self) -> set[str]:
        return set(self._untrusted)

    def construct(self) -> Any:
        return _skops().loads(self._data, trusted=self._untrusted)


def _is_builtin_class(name: str) -> bool:
    # Classes only: builtins also holds functions such as `eval` and `exec`.
    module, _, attribute = name.partition(".")
    return module == "builtins" and isinstance(getattr(builtins, attribute, None), type)


def _python_type(value: Any) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _skops() -> Any:
    try:
        import skops.io
    except ModuleNotFoundError:
        raise InvalidInput("storing scikit-learn models needs skops: pip install 'loopml[sklearn]'") from None
    return skops.io
