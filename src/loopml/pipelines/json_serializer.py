"""The `json` serializer: plain Python values as readable JSON, with what JSON loses tagged.

One module per built-in serializer, so each format reads on its own; this one's tagged encoding is also used
by the Parquet serializer to store a Series' name.
"""

from __future__ import annotations

import json
import math
from typing import Any

from loopml.core.errors import InvalidInput
from loopml.core.hashing import hash_bytes
from loopml.pipelines.serializer import Serializer

MAX_JSON_DEPTH = 100
_TAG = "__loopml__"


class JsonSerializer(Serializer):
    """None, bool, int, float, str and lists, tuples and str-keyed dicts of them, round-tripping exactly.

    Plain JSON, readable by eye; what JSON loses is tagged: `{"__loopml__": "tuple", "items": [...]}`,
    `{"__loopml__": "float", "value": "nan"}`, and a dict that has a `__loopml__` key is wrapped as
    `{"__loopml__": "dict", "items": {...}}`. The content hash is over the encoding with sorted keys.
    """

    name = "json"
    version = 1
    extension = ".json"

    def accepts(self, value: Any) -> bool:
        """True for JSON-like values nested at most `MAX_JSON_DEPTH` containers deep."""
        return json_ok(value, 0)

    def dump(self, value: Any) -> bytes:
        """UTF-8 JSON in the value's own key order."""
        encoded = json_encode(value)
        try:
            return (json.dumps(encoded, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate only survives as an ASCII escape
            return (json.dumps(encoded, allow_nan=False) + "\n").encode("ascii")

    def load(self, data: bytes) -> Any:
        """The value, with tuples, non-finite floats and tag-keyed dicts restored."""
        try:
            return json_decode(json.loads(data))
        except (ValueError, RecursionError, KeyError, TypeError, AttributeError) as error:
            raise InvalidInput(f"not a LoopML json artifact: {error}") from None

    def content_hash(self, value: Any, data: bytes) -> str:
        """Hash of the encoding with sorted keys: dict order does not matter, True/1/1.0 stay apart."""
        canonical = json.dumps(json_encode(value), allow_nan=False, sort_keys=True, separators=(",", ":"))
        return hash_bytes(canonical.encode("ascii"))


def json_ok(value: Any, depth: int) -> bool:
    # Exact types: a subclass (an IntEnum, an OrderedDict, numpy.float64) would come back as its base.
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return True
    if kind not in (list, tuple, dict) or depth >= MAX_JSON_DEPTH:
        return False
    if kind is dict:
        return all(type(k) is str and json_ok(v, depth + 1) for k, v in value.items())
    return all(json_ok(item, depth + 1) for item in value)


def json_encode(value: Any) -> Any:
    kind = type(value)
    if kind is float and not math.isfinite(value):
        return {_TAG: "float", "value": repr(value)}
    if kind is tuple:
        return {_TAG: "tuple", "items": [json_encode(item) for item in value]}
    if kind is list:
        return [json_encode(item) for item in value]
    if kind is dict:
        items = {key: json_encode(item) for key, item in value.items()}
        return {_TAG: "dict", "items": items} if _TAG in value else items
    return value


def json_decode(node: Any) -> Any:
    if type(node) is list:
        return [json_decode(item) for item in node]
    if type(node) is not dict:
        return node
    if _TAG not in node:
        return {key: json_decode(item) for key, item in node.items()}
    tag = node[_TAG]
    if tag == "tuple":
        return tuple(json_decode(item) for item in node["items"])
    if tag == "float" and node["value"] in ("nan", "inf", "-inf"):
        return float(node["value"])
    if tag == "dict":
        return {key: json_decode(item) for key, item in node["items"].items()}
    raise ValueError(f"unknown tag {tag!r}")
