"""Turning a path, folder or glob into (file, relative name) pairs, and storing them as a tree."""

from __future__ import annotations

import glob as globbing
import os
from pathlib import Path

from loopml.core.errors import InvalidInput
from loopml.storage.blobs.store import BlobStore
from loopml.storage.blobs.tree import Tree, TreeEntry

# Version control and LoopML's own store are never part of a dataset folder.
SKIPPED_FOLDERS = frozenset({".git", ".loopml", ".dvc", "__pycache__"})
_GLOB_CHARACTERS = frozenset("*?[")


def collect(source: str | os.PathLike[str]) -> tuple[str, list[tuple[Path, str]]]:
    """('file' | 'folder', [(path, name inside the version)]) for a file, a folder or a glob pattern."""
    text = os.fspath(source)
    if _GLOB_CHARACTERS & set(text):
        return "folder", _from_glob(text)
    path = Path(text)
    if path.is_file():
        return "file", [(path, path.name)]
    if path.is_dir():
        files = [(f, f.relative_to(path).as_posix()) for f in _walk(path)]
        if not files:
            raise InvalidInput(f"folder {text!r} holds no files to version")
        return "folder", files
    raise InvalidInput(f"no such file or folder: {text!r}")


def _walk(folder: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_FOLDERS)
        found.extend(Path(root, name) for name in sorted(files))
    return [f for f in found if f.is_file()]


def _from_glob(pattern: str) -> list[tuple[Path, str]]:
    base = Path(pattern.split("*", maxsplit=1)[0].split("?", maxsplit=1)[0].split("[", maxsplit=1)[0] or ".")
    base = base if pattern.endswith(os.sep) or base.is_dir() else base.parent
    matches = sorted(Path(p) for p in globbing.glob(pattern, recursive=True))
    files = [p for p in matches if p.is_file() and not SKIPPED_FOLDERS.intersection(p.parts)]
    if not files:
        raise InvalidInput(f"the pattern {pattern!r} matches no files")
    return [(f, f.relative_to(base).as_posix()) for f in files]


def store_files(blobs: BlobStore, files: list[tuple[Path, str]]) -> Tree:
    """Stream every file into the blob store (hashing while copying); returns their tree."""
    entries = []
    for path, name in files:
        try:
            digest, size = blobs.put_file(path)
        except PermissionError:
            raise InvalidInput(f"cannot read {str(path)!r}: permission denied") from None
        except IsADirectoryError:
            raise InvalidInput(f"{str(path)!r} is a folder, not a file") from None
        entries.append(TreeEntry(name, size, digest))
    return Tree.of(entries)


def restore(blobs: BlobStore, tree: Tree, destination: Path) -> list[Path]:
    """Write every file of a tree under `destination` (each verified by its hash while copying)."""
    written = []
    for entry in tree.entries:
        written.append(blobs.get_file(entry.digest, destination / entry.path, verify=True))
    return written
