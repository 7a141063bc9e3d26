"""Pointer files in git, checkout, and status with the stat cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import loopml
from git_repo import git as _git
from loopml import datasets
from loopml.data import worktree
from loopml.data.pointers import read_pointer
from loopml.tracking.tracker import Tracker

CLIENT_SUITE = True  # every test runs embedded and through a team server


def test_add_in_git_writes_pointer_and_checkout_restores_each_commit(
    sqlite_tracker: Tracker, tmp_path: Path
) -> None:
    repo = tmp_path
    _git(repo, "-c", "init.defaultBranch=main", "init", "-q")
    data = repo / "data"
    data.mkdir()
    (data / "a.txt").write_text("one")
    first = datasets.add("corpus", data).version
    pointer_file = repo / "corpus.loopml.yaml"
    assert read_pointer(pointer_file).ref == "corpus@v1"
    assert "/data" in (repo / ".gitignore").read_text().splitlines()
    _git(repo, "add", "corpus.loopml.yaml", ".gitignore")
    _git(repo, "commit", "-qm", "v1")
    assert _git(repo, "status", "--porcelain") == ""  # the data itself stays out of git
    (data / "a.txt").write_text("two")
    (data / "b.txt").write_text("new")
    datasets.add("corpus", data)
    _git(repo, "commit", "-qam", "v2")
    _git(repo, "checkout", "-q", "HEAD~1")
    assert datasets.checkout(repo) == [("corpus@v1", 1, 0)]
    assert (data / "a.txt").read_text() == "one"
    assert datasets.checkout(repo) == [("corpus@v1", 0, 1)]
    assert first.ref == "corpus@v1"


def test_status_uses_the_pointer_and_sees_every_kind_of_change(
    sqlite_tracker: Tracker, tmp_path: Path
) -> None:
    _git(tmp_path, "-c", "init.defaultBranch=main", "init", "-q")
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(50):
        (folder / f"{i}.bin").write_bytes(os.urandom(100))
    datasets.add("images", folder)
    assert datasets.status(folder).clean
    (folder / "3.bin").write_bytes(b"changed")
    (folder / "4.bin").unlink()
    (folder / "new.bin").write_bytes(b"new")
    result = datasets.status(folder)
    assert result.modified == ["3.bin"]
    assert result.removed == ["4.bin"]
    assert result.added == ["new.bin"]
    assert not datasets.status(folder, "images@v1").clean


def test_status_without_pointer_needs_a_version(sqlite_tracker: Tracker, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(loopml.InvalidInput, match="no pointer file"):
        datasets.status(tmp_path / "f.txt")
    datasets.add("f", tmp_path / "f.txt")
    assert datasets.status(tmp_path / "f.txt", "f@v1").clean


def test_stat_cache_means_unchanged_files_are_not_read(
    sqlite_tracker: Tracker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    (folder / "x.bin").write_bytes(b"content")
    (folder / "y.bin").write_bytes(b"other")
    datasets.add("many", folder)
    hashed: list[Path] = []
    real_hash = worktree.hash_file
    monkeypatch.setattr(worktree, "hash_file", lambda path: hashed.append(path) or real_hash(path))
    assert datasets.status(folder, "many@v1").clean
    assert hashed == []  # nothing re-read: every file's stat matched the cache
    (folder / "y.bin").write_bytes(b"OTHER")
    assert datasets.status(folder, "many@v1").modified == ["y.bin"]
    assert [Path(p) for p in hashed] == [folder / "y.bin"]
