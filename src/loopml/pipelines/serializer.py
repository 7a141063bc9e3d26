"""The contract every serializer implements (`Serializer`), and the errors serializers raise.

Apart from `serializers` (the registry) because the built-in serializers, each in its own module, subclass it,
and the registry imports them to build the default registry: with the contract here no import goes in a circle.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from loopml.core.errors import InvalidInput
from loopml.core.hashing import hash_bytes


class Unserializable(InvalidInput):
    """No registered serializer can store a value (or the one that accepted it failed to)."""

    code = "unserializable"


class Serializer(abc.ABC):
    """Turns one kind of value into bytes and back; `name@version` is recorded with the artifact."""

    name: ClassVar[str]
    version: ClassVar[int]  # bumped when the stored format changes; it is part of cache keys
    extension: ClassVar[str]

    @abc.abstractmethod
    def accepts(self, value: Any) -> bool:
        """True when this serializer can store `value` and give back an equal one."""

    @abc.abstractmethod
    def dump(self, value: Any) -> bytes:
        """The bytes stored for `value`."""

    @abc.abstractmethod
    def load(self, data: bytes) -> Any:
        """The value that `dump` stored as `data`."""

    def content_hash(self, value: Any, data: bytes) -> str:
        """Canonical hash of the value (equal values, equal hash); by default the hash of the stored bytes."""
        return hash_bytes(data)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}@{self.version}>"


def python_type(value: Any) -> str:
    """`module.qualname` of the type of `value`."""
    return f"{type(value).__module__}.{type(value).__qualname__}"
