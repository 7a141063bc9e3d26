"""Building the cache key of a step call from the step, its resolved arguments and the environment."""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loopml.pipelines.cache_key import CacheKey, NotFingerprintable, canonical
from loopml.pipelines.fingerprint import CodeFingerprint, code_fingerprint, environment_fingerprint
from loopml.pipelines.graph import Node
from loopml.pipelines.records import SINGLE_OUTPUT, CacheState
from loopml.pipelines.serializers import Unserializable, default_registry, serialize

LOCK_FILES = ("uv.lock", "poetry.lock", "pdm.lock", "Pipfile.lock", "requirements.lock", "requirements.txt")


class KeyMaker:
    """Makes cache keys for the step calls of one pipeline run (fingerprints are computed once per step)."""

    def __init__(self, *, project_dir: Path, cache_dir: Path | None) -> None:
        self.project_dir = project_dir
        self.cache_dir = cache_dir
        self._code: dict[int, CodeFingerprint] = {}
        self._environments: dict[frozenset[str], dict[str, str]] = {}
        self._lock_files = [project_dir / name for name in LOCK_FILES if (project_dir / name).is_file()]
        self._lock_files += sorted((project_dir / "requirements").glob("*.lock"))

    def key_for(
        self, node: Node, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> tuple[CacheKey | None, CacheState, str | None]:
        """(key, cache state, note): the key is None when the call cannot be fingerprinted."""
        step = node.step
        code = self._code.get(id(step.fn))
        if code is None:
            code = self._code[id(step.fn)] = code_fingerprint(step.fn)
        if code.uncacheable:
            return None, CacheState.UNAVAILABLE, code.uncacheable
        bound = inspect.signature(step.fn).bind(*args, **kwargs)
        bound.apply_defaults()
        params: dict[str, Any] = {}
        inputs: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            try:
                form = canonical(value, _content_hash)
            except NotFingerprintable as error:
                return (
                    None,
                    CacheState.UNAVAILABLE,
                    f"argument {name!r} is {error}, which has no content hash",
                )
            (inputs if '"content"' in json.dumps(form) else params)[name] = form
        environment = self._environments.get(code.packages)
        if environment is None:  # once per run and package set: the installed packages do not change mid-run
            environment = environment_fingerprint(
                code.packages, cache_dir=self.cache_dir, lock_files=self._lock_files
            )
            self._environments[code.packages] = environment
        key = CacheKey.build(
            step=step.qualified_name,
            code=code.digest,
            code_parts=code.parts,
            params=params,
            inputs=inputs,
            environment=environment,
            serializers=default_registry.names(),
            outputs=list(step.outputs or (SINGLE_OUTPUT,)),
            salt=step.cache_salt,
        )
        if not step.cache:  # the key is still recorded: `explain` and lineage use its input hashes
            return key, CacheState.OFF, "the step opted out (cache=False)"
        return key, CacheState.MISS, None


def _content_hash(value: Any) -> str | None:
    """The content hash of a data value passed straight to a step (a DataFrame, an array, a model)."""
    try:
        return serialize(value).content_hash
    except Unserializable:
        return None
