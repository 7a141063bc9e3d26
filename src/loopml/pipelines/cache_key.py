"""A step call's cache key: a structured, versioned record, hashed canonically, and compared part by part.

The record holds the step's name, the fingerprint of its code and of the first-party code it calls, its
params in a type-tagged canonical form, the content hashes of its inputs (never ids, paths or times), the
Python version and the installed packages its code imports, the output serializers, and a user salt.
Keeping the parts (not only their hash) is what lets `loopml pipeline explain` say why a step re-ran.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from loopml.core.hashing import hash_text

KEY_VERSION = 2
_MAX_DEPTH = 50


class NotFingerprintable(Exception):
    """A value has no canonical form (the step then runs uncached and says why)."""


def canonical(value: Any, content_hash: Callable[[Any], str | None], depth: int = 0) -> Any:  # noqa: PLR0911, PLR0912  (one branch per type)
    """A JSON form of `value` in which values of different types never collide (1, 1.0, True, "1").

    Values that are data rather than configuration (DataFrames, arrays, models) enter as the content hash
    `content_hash` gives them; anything else without a canonical form raises `NotFingerprintable`.
    """
    if depth > _MAX_DEPTH:
        raise NotFingerprintable(f"a value nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, str):
        return value
    # Step outputs and dataset versions enter by content only (looked up on the type first: a stray
    # object with a permissive __getattr__ must not be asked).
    if hasattr(type(value), "content_digest") and isinstance(value.content_digest, str):
        return {"content": value.content_digest}
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, int):
        return {"int": str(value)}
    if isinstance(value, float):
        return {"float": repr(value) if math.isfinite(value) else str(value)}
    if isinstance(value, enum.Enum):
        return {"enum": f"{type(value).__module__}.{type(value).__qualname__}.{value.name}"}
    if isinstance(value, list | tuple):
        kind = "list" if isinstance(value, list) else "tuple"
        return {kind: [canonical(v, content_hash, depth + 1) for v in value]}
    if isinstance(value, set | frozenset):
        items = [canonical(v, content_hash, depth + 1) for v in value]
        return {"set": sorted(items, key=lambda item: json.dumps(item, sort_keys=True))}
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise NotFingerprintable("a dict with keys that are not strings")
        return {"dict": {k: canonical(v, content_hash, depth + 1) for k, v in sorted(value.items())}}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        return {"dataclass": kind, "fields": canonical(fields, content_hash, depth + 1)}
    digest = content_hash(value)
    if digest is None:
        raise NotFingerprintable(f"a {type(value).__module__}.{type(value).__qualname__}")
    return {"content": digest}


@dataclasses.dataclass(frozen=True)
class CacheKey:
    """The parts of a cache key and their digest."""

    record: dict[str, Any]
    digest: str

    @classmethod
    def build(
        cls,
        *,
        step: str,
        code: str,
        code_parts: Mapping[str, str],
        params: Mapping[str, Any],
        inputs: Mapping[str, Any],
        environment: Mapping[str, str],
        serializers: list[str],
        outputs: list[str],
        salt: str | None,
    ) -> CacheKey:
        """The key of one step call from its already canonical parts."""
        record = {
            "version": KEY_VERSION,
            "step": step,
            "code": code,
            "code_parts": dict(sorted(code_parts.items())),
            "params": dict(sorted(params.items())),
            "inputs": dict(sorted(inputs.items())),
            "environment": dict(sorted(environment.items())),
            "serializers": list(serializers),
            "outputs": list(outputs),
            "salt": salt,
        }
        return cls(record, hash_text(json.dumps(record, sort_keys=True, separators=(",", ":"))))


def explain_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two key records, one line per changed part, most telling first."""
    if old.get("version") != new.get("version"):
        return [f"the cache key format changed (version {old.get('version')} -> {new.get('version')})"]
    lines: list[str] = []
    if old.get("step") != new.get("step"):
        lines.append(f"step renamed: {old.get('step')} -> {new.get('step')}")
    if old.get("code") != new.get("code"):
        lines.extend(_code_changes(old.get("code_parts", {}), new.get("code_parts", {})))
    lines.extend(_dict_changes("param", old.get("params", {}), new.get("params", {})))
    lines.extend(_dict_changes("input", old.get("inputs", {}), new.get("inputs", {})))
    lines.extend(_dict_changes("environment", old.get("environment", {}), new.get("environment", {})))
    if old.get("serializers") != new.get("serializers"):
        lines.append(f"output serializers changed: {old.get('serializers')} -> {new.get('serializers')}")
    if old.get("outputs") != new.get("outputs"):
        lines.append(f"declared outputs changed: {old.get('outputs')} -> {new.get('outputs')}")
    if old.get("salt") != new.get("salt"):
        lines.append(f"cache salt changed: {old.get('salt')!r} -> {new.get('salt')!r}")
    return lines


def _code_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    lines = [f"code changed: {name}" for name in sorted(old.keys() & new.keys()) if old[name] != new[name]]
    lines += [f"code now also calls {name}" for name in sorted(new.keys() - old.keys())]
    lines += [f"code no longer calls {name}" for name in sorted(old.keys() - new.keys())]
    return lines or ["code changed"]


def _dict_changes(kind: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    lines = []
    for name in sorted(old.keys() | new.keys()):
        if name not in new:
            lines.append(f"{kind} {name!r} removed (was {_shown(old[name])})")
        elif name not in old:
            lines.append(f"{kind} {name!r} added: {_shown(new[name])}")
        elif old[name] != new[name]:
            lines.append(f"{kind} {name!r} changed: {_shown(old[name])} -> {_shown(new[name])}")
    return lines


def _shown(value: Any) -> str:
    """A canonical value in the way a user wrote it."""
    plain = _plain(value)
    text = plain if isinstance(plain, str) and plain.startswith("content ") else json.dumps(plain)
    return text if len(text) <= 120 else text[:117] + "..."


def _plain(value: Any) -> Any:  # noqa: PLR0911  (one return per tag)
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "bool":
            return inner
        if tag == "int":
            return int(inner)
        if tag == "float":
            return float(inner)
        if tag in ("list", "tuple", "set"):
            return [_plain(v) for v in inner]
        if tag == "dict":
            return {k: _plain(v) for k, v in inner.items()}
        if tag == "content":
            return f"content {inner[:12]}"
        if tag == "enum":
            return inner
    return value
