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
    """Every regular file under `folder`, sorted, using the directory entries' cached types (no extra stat)."""
    found: list[Path] = []
    pending = [folder]
    while pending:
        current = pending.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name not in SKIPPED_FOLDERS:
                        pending.append(Path(entry.path))
                elif entry.is_file():
                    found.append(Path(entry.path))
    return sorted(found)


def _from_glob(pattern: str) -> list[tuple[Path, str]]:
    base = Path(pattern.split("*", maxsplit=1)[0].split("?", maxsplit=1)[0].split("[", maxsplit=1)[0] or ".")
    base = base if pattern.endswith(os.sep) or base.is_dir() else base.parent
    matches = sorted(Path(p) for p in globbing.glob(pattern, recursive=True))
    files = [p for p in matches if p.is_file() and not SKIPPED_FOLDERS.intersection(p.parts)]
    if not files:
        raise InvalidInput(f"the pattern {pattern!r} matches no files")
    return [(f, f.relative_to(base).as_posix()) for f in files]


def store_files(blobs: BlobStore, files: list[tuple[Path, str]]) -> Tree:
    """Store every file in the blob store (small ones packed together); returns their tree."""
    try:
        stored = blobs.put_files([path for path, _ in files])
    except PermissionError as error:
        raise InvalidInput(f"cannot read {str(error.filename)!r}: permission denied") from None
    except IsADirectoryError as error:
        raise InvalidInput(f"{str(error.filename)!r} is a folder, not a file") from None
    return Tree.of(
        TreeEntry(name, size, digest) for (_, name), (digest, size) in zip(files, stored, strict=True)
    )


def restore(blobs: BlobStore, tree: Tree, destination: Path) -> list[Path]:
    """Write every file of a tree under `destination` (each verified by its hash while copying)."""
    written = []
    for entry in tree.entries:
        written.append(blobs.get_file(entry.digest, destination / entry.path, verify=True))
    return written
