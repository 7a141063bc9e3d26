"""Loading a version from the blob store alone, as a cluster worker does: whole folders or none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import loopml
from loopml import datasets
from loopml.data import files
from loopml.tracking.tracker import Tracker


def test_a_restore_cut_short_leaves_no_folder_that_looks_complete(
    tracker: Tracker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "images"
    source.mkdir()
    for index in range(5):
        (source / f"f{index}.txt").write_text(str(index))
    version = loopml.datasets.add("images", source, tracker=tracker).version
    real_restore = files.restore

    def killed_after_one_file(blobs: Any, tree: Any, destination: Path) -> list[Path]:
        entry = tree.entries[0]
        blobs.get_file(entry.digest, destination / entry.path)
        raise MemoryError("killed mid-restore")

    monkeypatch.setattr(files, "restore", killed_after_one_file)
    with pytest.raises(MemoryError):
        datasets.load_version(version, tracker=tracker)
    cache = tracker.settings.home_dir / "cache"
    assert not (cache / version.digest).exists()  # nothing there claims to be the version
    assert [p.name for p in cache.iterdir()] == []  # and the partial copy is gone
    monkeypatch.setattr(files, "restore", real_restore)
    restored = datasets.load_version(version, tracker=tracker)
    assert sorted(p.name for p in Path(restored).iterdir()) == [f"f{i}.txt" for i in range(5)]
    assert datasets.load_version(version, tracker=tracker) == restored  # served from the cache after


def test_a_worker_keeps_what_it_read_in_a_folder_of_its_user_only() -> None:
    folder = datasets._worker_cache()
    assert folder.stat().st_mode & 0o077 == 0
    assert folder == datasets._worker_cache()
