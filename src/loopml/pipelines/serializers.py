"""How pipeline step outputs become stored artifacts: pluggable serializers, chosen by the value, and content hashes.

Each output is dumped to bytes by the first serializer of a registry that accepts it and stored as a
content-addressed blob under `name@version`. Its `content_hash` enters the cache keys of downstream steps, so it
is a hash of the *value*: equal values hash equal even when their bytes differ (Parquet writer metadata, skops
zip entries). Built-ins, in order: json, npy, parquet, skops; user serializers go first by default. None uses
pickle, and loading a skops model only trusts types on LoopML's allow-list, never a list read from the artifact.

pandas, pyarrow, numpy, scikit-learn and skops are optional: a value's type is recognised through `sys.modules`
(a value of a package never imported cannot exist) and the package is imported only to dump or load one.

This module holds the registry and the functions above it (`serialize`, `deserialize`, the default registry);
each built-in lives in a module of its own (`json_serializer`, `array_serializer`, `table_serializer`,
`model_serializer`) under the contract in `serializer`, so one format can be read without the others. Every
name is re-exported here, the one place to import from.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from loopml.core.errors import InvalidInput, NotFound
from loopml.pipelines.array_serializer import NpySerializer
from loopml.pipelines.json_serializer import MAX_JSON_DEPTH, JsonSerializer
from loopml.pipelines.model_serializer import SkopsSerializer
from loopml.pipelines.serializer import Serializer, Unserializable, python_type
from loopml.pipelines.table_serializer import ParquetSerializer
from loopml.registry.skops_io import TRUSTED_MODULES, UntrustedArtifact

__all__ = [
    "MAX_JSON_DEPTH", "TRUSTED_MODULES", "JsonSerializer", "NpySerializer", "ParquetSerializer", "Serializer",
    "SerializerRegistry", "SkopsSerializer", "Stored", "Unserializable", "UntrustedArtifact", "default_registry",
    "deserialize", "python_type", "register_serializer", "serialize",
]  # fmt: skip

_LABEL = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)@(?P<version>[0-9]+)$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class SerializerRegistry:
    """An ordered list of serializers; a value goes to the first that accepts it."""

    def __init__(self, serializers: Iterable[Serializer] = ()) -> None:
        self._serializers: list[Serializer] = []
        self._lock = threading.Lock()
        for serializer in serializers:
            self.register(serializer, first=False)

    def register(self, serializer: Serializer, *, first: bool = True) -> None:
        """Add `serializer` first (it wins over the built-ins) or last; one with the same name is replaced."""
        _check(serializer)
        with self._lock:  # readers iterate a snapshot, so the list is replaced, never changed in place
            kept = [s for s in self._serializers if s.name != serializer.name]
            self._serializers = [serializer, *kept] if first else [*kept, serializer]

    def __iter__(self) -> Iterator[Serializer]:
        return iter(self._serializers)

    def for_value(self, value: Any) -> Serializer:
        """The first serializer that accepts `value`; `Unserializable` when none does."""
        for serializer in self._serializers:
            if serializer.accepts(value):
                return serializer
        raise Unserializable(
            f"no serializer accepts a value of type {python_type(value)}{_why(value)} (registered: "
            f"{', '.join(self.names()) or 'none'}); convert it to one of those types or register a serializer "
            "with loopml.pipelines.serializers.register_serializer"
        )

    def by_name(self, name: str) -> Serializer:
        """The serializer registered as `name`; `NotFound` otherwise."""
        for serializer in self._serializers:
            if serializer.name == name:
                return serializer
        raise NotFound(f"no serializer named {name!r} is registered (registered: {', '.join(self.names())})")

    def names(self) -> list[str]:
        """`name@version` of every serializer, in the order they are tried."""
        return [f"{s.name}@{s.version}" for s in self._serializers]


def _why(value: Any) -> str:
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.generic):  # np.mean() and friends return these
        return " (a numpy scalar: return value.item() or numpy.asarray(value))"
    if getattr(getattr(value, "dtype", None), "hasobject", False):
        return " holding Python objects, which would need pickle (LoopML never uses it)"
    return ""


def _check(serializer: Any) -> None:
    if not isinstance(serializer, Serializer):
        raise InvalidInput(f"a serializer must subclass Serializer, got {python_type(serializer)}")
    name, version = getattr(serializer, "name", None), getattr(serializer, "version", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            f"{python_type(serializer)}.name must be letters, digits, '_', '.' or '-', got {name!r}"
        )
    if type(version) is not int or version < 0:
        raise InvalidInput(f"{python_type(serializer)}.version must be an integer >= 0, got {version!r}")
    if not str(getattr(serializer, "extension", "")).startswith("."):
        raise InvalidInput(f"{python_type(serializer)}.extension must start with '.', e.g. '.bin'")


@dataclass(frozen=True)
class Stored:
    """A serialized output: the bytes to store, the value's canonical hash and how to read it back."""

    data: bytes
    content_hash: str
    serializer: str  # name@version
    python_type: str  # module.qualname of the value


def serialize(value: Any, registry: SerializerRegistry | None = None) -> Stored:
    """Store `value` with the first serializer of `registry` (the default registry) that accepts it."""
    serializer = (default_registry if registry is None else registry).for_value(value)
    data = serializer.dump(value)
    label = f"{serializer.name}@{serializer.version}"
    return Stored(data, serializer.content_hash(value, data), label, python_type(value))


def deserialize(data: bytes, serializer: str, registry: SerializerRegistry | None = None) -> Any:
    """The value stored as `data` by `serializer` ("name@version"), which must be registered at that version."""
    match = _LABEL.match(serializer)
    if match is None:
        raise InvalidInput(f"a serializer is given as name@version, e.g. 'json@1', got {serializer!r}")
    found = (default_registry if registry is None else registry).by_name(match["name"])
    if found.version != int(match["version"]):
        raise InvalidInput(
            f"the artifact was written by {serializer} but {found.name}@{found.version} is registered, which "
            "cannot read it; re-run the step that made it, or register a serializer that reads that version"
        )
    return found.load(data)


default_registry = SerializerRegistry(
    [JsonSerializer(), NpySerializer(), ParquetSerializer(), SkopsSerializer()]
)


def register_serializer(serializer: Serializer, *, first: bool = True) -> None:
    """Register `serializer` on the default registry, before the built-ins unless `first=False`."""
    default_registry.register(serializer, first=first)
