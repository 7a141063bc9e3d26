"""The content-addressed blob store: dedup, atomic writes, verification, and no escape through names."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from loopml.core.errors import InvalidInput, NotFound, StoreCorrupt
from loopml.core.hashing import hash_bytes
from loopml.storage.blobs.store import BlobStore
from loopml.storage.gc import sweep


@pytest.fixture(params=["local", "memory"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return BlobStore(str(tmp_path / "blobs"))
    return BlobStore(f"memory://{tmp_path.name}")


def test_put_get_and_dedup(blobs: BlobStore) -> None:
    digest = blobs.put_bytes(b"hello")
    assert digest == hash_bytes(b"hello")
    assert blobs.put_bytes(b"hello") == digest
    assert blobs.get_bytes(digest, verify=True) == b"hello"
    assert list(blobs.digests()) == [digest]
    assert blobs.size(digest) == 5


def test_streamed_put_of_large_content(blobs: BlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    digest, size = blobs.put_stream(io.BytesIO(data))
    assert size == len(data)
    assert digest == hash_bytes(data)
    with blobs.open(digest) as stream:
        assert stream.read() == data


def test_get_file_verifies_and_never_leaves_partial_files(tmp_path: Path) -> None:
    blobs = BlobStore(str(tmp_path / "blobs"))
    digest = blobs.put_bytes(b"original content")
    Path(blobs.path_of(digest)).write_bytes(b"tampered content")
    target = tmp_path / "out" / "file.txt"
    with pytest.raises(StoreCorrupt):
        blobs.get_file(digest, target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []
    with pytest.raises(StoreCorrupt):
        blobs.get_bytes(digest, verify=True)


@pytest.mark.parametrize("name", ["../../etc/passwd", "a" * 64 + "/..", "ABC", "", "g" * 64])
def test_only_digests_name_objects(blobs: BlobStore, name: str) -> None:
    with pytest.raises(InvalidInput):
        blobs.path_of(name)


def test_missing_object_is_not_found(blobs: BlobStore) -> None:
    with pytest.raises(NotFound):
        blobs.get_bytes("0" * 64)


def test_failed_write_leaves_no_object(tmp_path: Path) -> None:
    blobs = BlobStore(str(tmp_path / "blobs"))

    class Broken(io.RawIOBase):
        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            raise OSError("disk went away")

        def readable(self) -> bool:
            return True

    with pytest.raises(OSError, match="went away"):
        blobs.put_stream(io.BufferedReader(Broken()))
    assert list(blobs.digests()) == []
    assert list((tmp_path / "blobs" / "incoming").iterdir()) == []


def test_credentials_never_appear_in_messages() -> None:
    blobs = BlobStore("memory://bob:hunter2@host/blobs")
    with pytest.raises(NotFound) as error:
        blobs.get_bytes("0" * 64)
    assert "hunter2" not in str(error.value)


def test_storing_existing_content_again_makes_it_young(tmp_path: Path) -> None:
    blobs = BlobStore(str(tmp_path / "blobs"))
    digest = blobs.put_bytes(b"reused")
    os.utime(blobs.path_of(digest), (1_000_000, 1_000_000))
    blobs.put_bytes(b"reused")
    assert blobs.modified(digest) > 1_000_000
    os.utime(blobs.path_of(digest), (1_000_000, 1_000_000))
    blobs.put_stream(io.BytesIO(b"reused"))
    assert blobs.modified(digest) > 1_000_000


def test_gc_drops_temporary_files_of_unfinished_writes_after_a_day(tmp_path: Path) -> None:
    blobs = BlobStore(str(tmp_path / "blobs"))
    kept = blobs.put_bytes(b"kept")
    incoming = tmp_path / "blobs" / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    old, fresh = incoming / "upload-old", incoming / "upload-fresh"
    old.write_bytes(b"abandoned")
    fresh.write_bytes(b"still arriving")
    two_days_ago = time.time() - 2 * 86_400
    os.utime(old, (two_days_ago, two_days_ago))
    sweep(blobs, {kept}, grace_s=0, dry_run=True)
    assert old.exists()  # a dry run deletes nothing
    sweep(blobs, {kept}, grace_s=0)
    assert not old.exists()
    assert fresh.exists()  # an hour-old upload may still be under way: a day at least
    assert blobs.get_bytes(kept) == b"kept"
