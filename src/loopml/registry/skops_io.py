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

# What a skops artifact may name, by exact name: skops' own default list (estimators, their internals, ufuncs,
# dtypes, bit generators), plus any *class* defined in scikit-learn outside its test helpers (internals such as
# loss objects that skops' list misses). Never a module prefix for functions: numpy and scipy hold functions
# that run code or touch files (`numpy.testing...runstring`), and skops calls what the artifact names.
TRUSTED_MODULES = ("sklearn.", "numpy.", "scipy.")  # where classes may come from (see `_trusted_name`)
_TEST_PARTS = ("tests", "testing", "_testing", "_test", "conftest")


class UntrustedArtifact(InvalidInput):
    """A model names types outside LoopML's allow-list, so it is refused rather than stored or loaded."""

    code = "untrusted_artifact"

    def __init__(self, message: str, *, types: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.types = tuple(types)


def refused_types(types: Iterable[str], *, trusted_modules: Sequence[str] = ()) -> list[str]:
    """The sorted names in `types` that are not on the allow-list. `trusted_modules` (module prefixes a
    caller adds in code, for its own estimator classes) trusts everything under them."""
    extra = tuple(trusted_modules)
    return sorted(t for t in types if not ((extra and t.startswith(extra)) or _trusted_name(t)))


def _trusted_name(name: str) -> bool:
    if _is_builtin_class(name) or name in _skops_defaults():
        return True
    module, _, attribute = name.rpartition(".")
    if not f"{module}.".startswith(TRUSTED_MODULES) or any(p in _TEST_PARTS for p in module.split(".")):
        return False
    import importlib

    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError):
        return False
    if not isinstance(found, type):
        return False  # functions only by exact name (skops' list)
    if module.startswith("sklearn."):
        return found.__module__.startswith("sklearn.")
    # numpy and scipy: scalar, dtype, random-state and sparse types (an ndarray subclass such as memmap opens
    # files when built, so arrays are trusted as exactly ndarray only).
    return found is _ndarray() or issubclass(found, _data_classes())


def _ndarray() -> type:
    import numpy as np

    return np.ndarray


def _data_classes() -> tuple[type, ...]:
    import numpy as np

    classes: list[type] = [np.dtype, np.generic, np.random.RandomState, np.random.Generator]
    classes.append(np.random.BitGenerator)
    try:
        from scipy.sparse import sparray, spmatrix  # type: ignore[import-untyped]
    except ImportError:
        return tuple(classes)
    return (*classes, sparray, spmatrix)


def _skops_defaults() -> frozenset[str]:
    global _SKOPS_DEFAULTS  # noqa: PLW0603 - computed once, on first use (it imports scipy)
    if _SKOPS_DEFAULTS is None:
        try:
            from skops.io import _trusted_types as known
        except ImportError:
            _SKOPS_DEFAULTS = frozenset()
        else:
            lists = [getattr(known, n) for n in dir(known) if n.endswith("_TYPE_NAMES")]
            _SKOPS_DEFAULTS = frozenset(name for names in lists for name in names if isinstance(name, str))
    return _SKOPS_DEFAULTS


_SKOPS_DEFAULTS: frozenset[str] | None = None


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
