"""Environment fingerprints: the Python build and the installed distributions a step's code imports.

Apart from `fingerprint` because it reads installed metadata rather than code, and keeps its own cache on disk:
`importlib.metadata.packages_distributions()` is slow, so the table it gives is memoized per environment.
`loopml.pipelines.fingerprint` re-exports `environment_fingerprint`.
"""

from __future__ import annotations

import functools
import sysconfig
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from loopml.core.hashing import hash_text
from loopml.core.installed import cached_json, installed_key
from loopml.pipelines.sources import SCHEMA

_TABLES: dict[str, dict[str, list[list[str]]]] = {}  # environment key -> import name -> [[dist, version]]


def environment_fingerprint(
    packages: Iterable[str], *, cache_dir: Path | None = None, lock_files: Sequence[Path] = ()
) -> dict[str, str]:
    """{"python": "CPython 3.11.7 linux-x86_64"} plus "<dist>": "<version>:<RECORD hash>" per installed import name.

    Import names map to distributions through `importlib.metadata.packages_distributions()`, which is slow, so
    the table is memoized in-process and in `cache_dir/environment-<key>.json`. The key covers the Python build,
    `sys.prefix`, the entry names of every site-packages folder on `sys.path` (dist-info names carry versions,
    so a pip install changes them) and the content of `lock_files`. Names that are not installed are ignored.
    """
    key = installed_key(lock_files, schema=f"pipelines-environment-{SCHEMA}")
    table = _TABLES.get(key)
    if table is None:
        path = cache_dir / f"environment-{key}.json" if cache_dir is not None else None
        table = cached_json(path, _package_table, valid=_valid_table)
        _TABLES[key] = table
    result = {"python": _python_tag()}
    for name in sorted(set(packages)):
        result.update((dist, value) for dist, value in table.get(name, []))
    return result


def _package_table() -> dict[str, list[list[str]]]:
    """import name -> [[distribution, "version:RECORD hash"], ...] for everything installed."""
    from importlib import metadata

    versions: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name not in versions:  # the first on sys.path wins, as it does for imports
            record = dist.read_text("RECORD")
            versions[name] = dist.version if record is None else f"{dist.version}:{hash_text(record)}"
    return {
        name: sorted([dist, versions[dist]] for dist in set(dists) if dist in versions)
        for name, dists in metadata.packages_distributions().items()
    }


def _valid_table(table: Any) -> bool:
    return isinstance(table, dict) and all(isinstance(rows, list) for rows in table.values())


@functools.cache
def _python_tag() -> str:
    import platform

    return f"{platform.python_implementation()} {platform.python_version()} {sysconfig.get_platform()}"
