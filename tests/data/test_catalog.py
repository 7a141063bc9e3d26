"""Data versioning end to end through the Python API, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import loopml
from loopml import datasets
from loopml.tracking.tracker import Tracker

CLIENT_SUITE = True  # every test runs embedded and through a team server


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


def test_folder_versions_are_immutable_deduplicated_and_restorable(tracker: Tracker, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "images", {"a.txt": b"alpha", "sub/b.bin": os.urandom(5000), ".git/x": b"no"})
    first = datasets.add("images", folder, message="first")
    assert first.created
    assert first.version.ref == "images@v1"
    assert first.version.kind == "folder"
    assert first.version.file_count == 2
    again = datasets.add("images", folder)
    assert not again.created
    assert again.version.ref == "images@v1"
    (folder / "a.txt").write_bytes(b"ALPHA")
    (folder / "c.txt").write_bytes(b"new")
    second = datasets.add("images", folder)
    assert second.version.ref == "images@v2"
    restored = tmp_path / "restored"
    datasets.get("images@v1", restored)
    assert (restored / "a.txt").read_bytes() == b"alpha"
    assert not (restored / "c.txt").exists()
    assert not (restored / ".git").exists()
    change = datasets.catalog().diff("images@v1", "images@v2")
    assert change.added == ["c.txt"]
    assert change.changed == ["a.txt"]
    assert change.removed == []
    assert [v.version for v in datasets.versions("images")] == [2, 1]
    assert datasets.catalog().get("images").version == 2


def test_globs_and_single_files(tracker: Tracker, tmp_path: Path) -> None:
    _folder(tmp_path / "logs", {"a.log": b"1", "b.log": b"2", "c.txt": b"3", "deep/d.log": b"4"})
    added = datasets.add("logs", str(tmp_path / "logs" / "**" / "*.log"))
    assert [e.path for e in datasets.catalog().tree(added.version).entries] == [
        "a.log",
        "b.log",
        "deep/d.log",
    ]
    single = datasets.add("one", tmp_path / "logs" / "c.txt")
    assert single.version.kind == "file"
    assert single.version.size == 1


def test_dataframes_are_tables_with_schema_and_profile(tracker: Tracker) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "amount": rng.normal(100, 15, 5000),
            "country": rng.choice(["DE", "FR", "US"], 5000),
            "fraud": rng.random(5000) < 0.02,
        }
    )
    frame.loc[::100, "amount"] = np.nan
    added = datasets.add("transactions", frame)
    version = added.version
    assert version.kind == "table"
    assert version.row_count == 5000
    assert [c["name"] for c in version.schema or []] == ["amount", "country", "fraud"]
    amount = next(c for c in version.schema or [] if c["name"] == "amount")
    assert amount["nullable"] is True
    assert amount["logical"] == "numeric"
    assert not datasets.add("transactions", frame.copy()).created  # same values, new object
    with loopml.start_run() as run:
        loaded = datasets.load("transactions@v1")
    pd.testing.assert_frame_equal(loaded, frame)
    assert loopml.Client().runs_with_input("transactions", "v1") == [run.run_id]
    assert datasets.catalog().profile(version) is not None


def test_csv_files_are_profiled_in_batches(tracker: Tracker, tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    pd.DataFrame({"x": range(1000), "y": ["a", "b"] * 500}).to_csv(path, index=False)
    version = datasets.add("csv", path).version
    assert version.kind == "table"
    assert version.row_count == 1000
    assert {c["name"]: c["logical"] for c in version.schema or []} == {"x": "numeric", "y": "categorical"}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.csv", "no such file"),
        (lambda p: _folder(p / "empty", {}) if (p / "empty").mkdir() is None else p, "holds no files"),
        (lambda p: str(p / "*.nothing"), "matches no files"),
        (lambda p: (p / "ragged.csv").write_text("a,b\n1,2\n3,4,5\n") and p / "ragged.csv", "cannot read"),
    ],
)
def test_bad_sources_are_refused_and_register_nothing(
    tracker: Tracker, tmp_path: Path, make: object, message: str
) -> None:
    with pytest.raises(loopml.InvalidInput, match=message):
        datasets.add("bad", make(tmp_path))  # type: ignore[operator]
    assert datasets.datasets() == []


@pytest.mark.parametrize("ref", ["nope", "nope@v1", "images@v99", "images@v0", "images@x", "@v1"])
def test_unknown_or_malformed_references(tracker: Tracker, tmp_path: Path, ref: str) -> None:
    datasets.add("images", _folder(tmp_path / "f", {"a": b"a"}))
    with pytest.raises(loopml.LoopMLError):
        datasets.catalog().get(ref)


@pytest.mark.embedded_only  # tampers with the store's files, which only the server can reach
def test_corrupt_blob_is_detected_not_served(tracker: Tracker, tmp_path: Path) -> None:
    version = datasets.add("f", _folder(tmp_path / "f", {"a.txt": b"original"})).version
    entry = datasets.catalog().tree(version).entries[0]
    Path(tracker.blobs.path_of(entry.digest)).write_bytes(b"tampered")
    with pytest.raises(loopml.StoreError, match="corrupt"):
        datasets.get("f@v1", tmp_path / "out")
    assert not (tmp_path / "out" / "a.txt").exists()


def test_gc_keeps_dataset_files_and_removes_only_orphans(tracker: Tracker, tmp_path: Path) -> None:
    version = datasets.add("f", _folder(tmp_path / "f", {"a.txt": b"kept", "b.txt": b"kept too"})).version
    orphan = tracker.blobs.put_bytes(b"nobody refers to me")
    with loopml.start_run() as run:
        run.log_text("artifact", "a.txt")
    preview = loopml.Client().gc(blob_grace_s=0, dry_run=True)
    assert preview.removed_blobs == 1
    assert preview.freed_bytes == len(b"nobody refers to me")
    assert tracker.blobs.exists(orphan)
    assert loopml.Client().gc(blob_grace_s=0).removed_blobs == 1
    assert not tracker.blobs.exists(orphan)
    datasets.get(version.ref, tmp_path / "out")
    assert (tmp_path / "out" / "b.txt").read_bytes() == b"kept too"


@pytest.mark.embedded_only  # in-place versions name files on one machine; a server refuses them
def test_no_copy_tracks_in_place_and_detects_changes(tracker: Tracker, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "lake", {"part-0.parquet": b"0" * 1000, "part-1.parquet": b"1" * 1000})
    before = set(tracker.blobs.digests())
    version = datasets.add("lake", folder, no_copy=True).version
    assert version.kind == "external"
    assert version.file_count == 2
    assert len(set(tracker.blobs.digests()) - before) == 1  # only the small tree, no content
    data = datasets.catalog()
    assert data.external_changes(version).identical
    (folder / "part-1.parquet").write_bytes(b"changed")
    (folder / "part-2.parquet").write_bytes(b"new")
    change = data.external_changes(version)
    assert change.changed == ["part-1.parquet"]
    assert change.added == ["part-2.parquet"]
    with pytest.raises(loopml.InvalidInput, match="tracked in place"):
        datasets.get(version.ref, tmp_path / "out")
    with loopml.start_run() as run:
        assert datasets.load(version.ref) == str(folder)
    assert loopml.Client().runs_with_input("lake", "v1") == [run.run_id]


@pytest.mark.embedded_only  # in-place versions name files on one machine; a server refuses them
def test_no_copy_remote_objects_are_fingerprinted_without_download(tracker: Tracker) -> None:
    import fsspec

    memory = fsspec.filesystem("memory")
    memory.pipe("/bucket/prefix/a.csv", b"x,y\n1,2\n")
    memory.pipe("/bucket/prefix/b.csv", b"x,y\n3,4\n")
    version = datasets.add("remote", "memory://bucket/prefix", no_copy=True).version
    assert version.file_count == 2
    assert datasets.catalog().external_changes(version).identical
    memory.pipe("/bucket/prefix/b.csv", b"x,y\n3,4\n5,6\n")
    assert datasets.catalog().external_changes(version).changed == ["b.csv"]
    memory.rm("/bucket", recursive=True)
