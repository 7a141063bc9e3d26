"""Pointer files: `NAME.loopml.yaml`, small enough to commit, naming the dataset version a folder holds.

`loopml data add` inside a git repository writes one next to the data (and keeps the data itself out of git
with a `.gitignore` entry); `loopml data checkout` restores what the pointers of the current commit name.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from loopml.core.errors import InvalidInput
from loopml.core.hashing import is_digest
from loopml.core.names import safe_relative_path
from loopml.data.records import DatasetVersion

SUFFIX = ".loopml.yaml"
HEADER = "# LoopML dataset pointer: commit this file; `loopml data checkout` restores the data it names.\n"


@dataclass(frozen=True)
class Pointer:
    """What a pointer file says."""

    dataset: str
    version: int
    digest: str
    manifest: str
    kind: str
    path: str  # where the data lives, relative to the pointer file's folder
    size: int
    files: int

    @property
    def ref(self) -> str:
        """`NAME@vN`."""
        return f"{self.dataset}@v{self.version}"


def write_pointer(version: DatasetVersion, data_path: Path) -> Path:
    """Write `NAME.loopml.yaml` beside the data and keep the data out of git; returns the pointer's path."""
    folder = data_path.parent.resolve()
    pointer = Pointer(
        dataset=version.name,
        version=version.version,
        digest=version.digest,
        manifest=version.manifest_digest,
        kind=version.kind,
        path=data_path.name,
        size=version.size,
        files=version.file_count,
    )
    target = folder / f"{version.name}{SUFFIX}"
    temp = target.with_name(f".{target.name}.tmp")
    temp.write_text(HEADER + yaml.safe_dump(asdict(pointer), sort_keys=False))
    os.replace(temp, target)
    _ignore_in_git(folder, data_path.name)
    return target


def read_pointer(path: Path) -> Pointer:
    """Parse and check a pointer file; a malformed one is `InvalidInput` naming it."""
    try:
        body: Any = yaml.safe_load(path.read_text())
        pointer = Pointer(**{k: body[k] for k in Pointer.__dataclass_fields__})
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        raise InvalidInput(
            f"{path} is not a valid LoopML pointer file ({type(error).__name__}: {error})"
        ) from None
    if not (is_digest(str(pointer.digest)) and is_digest(str(pointer.manifest))):
        raise InvalidInput(f"{path} names a malformed digest")
    safe_relative_path(str(pointer.path))
    return pointer


def find_pointers(root: Path) -> list[Path]:
    """Every pointer file under `root` (not inside .git or the store)."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in (".git", ".loopml")]
        found.extend(Path(folder, f) for f in files if f.endswith(SUFFIX))
    return sorted(found)


def _ignore_in_git(folder: Path, name: str) -> None:
    ignore = folder / ".gitignore"
    entry = f"/{name}"
    text = ignore.read_text() if ignore.is_file() else ""
    if entry not in text.splitlines():
        with ignore.open("a") as handle:
            handle.write(("\n" if text and not text.endswith("\n") else "") + f"{entry}\n")
