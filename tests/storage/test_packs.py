"""Packs: many small files in few writes, each object still verified alone; crashes and gc leave sane stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopml.core.errors import InvalidInput, NotFound, StoreCorrupt
from loopml.core.hashing import hash_bytes
from loopml.data.files import store_files
from loopml.storage.blobs import packs
from loopml.storage.blobs.packs import (
    PACK_MIN_OBJECTS,
    PACK_THRESHOLD,
    PackFolder,
    PackSet,
    PackWriter,
    decode_index,
    encode_index,
)
from loopml.storage.blobs.store import BlobStore


@pytest.fixture(params=["local", "memory"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return BlobStore(str(tmp_path / "blobs"))
    return BlobStore(f"memory://{tmp_path.name}")


def _files(folder: Path, contents: list[bytes]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, content in enumerate(contents):
        path = folder / f"{number:05d}.bin"
        path.write_bytes(content)
        paths.append(path)
    return paths


def _store_files(blobs: BlobStore, suffix: str) -> list[str]:
    base = f"{blobs.root}/packs"
    if not blobs.fs.exists(base):
        return []
    return sorted(
        str(p).rsplit("/", 1)[-1] for p in blobs.fs.ls(base, detail=False) if str(p).endswith(suffix)
    )


def test_many_small_files_go_into_one_pack_and_large_ones_stay_loose(
    blobs: BlobStore, tmp_path: Path
) -> None:
    small = [os.urandom(1024) for _ in range(5000)]
    large = [os.urandom(PACK_THRESHOLD), os.urandom(3 * PACK_THRESHOLD + 1)]
    paths = _files(tmp_path / "src", [*small[:2500], large[0], *small[2500:], large[1]])
    stored = blobs.put_files(paths)
    assert stored == [(hash_bytes(p.read_bytes()), p.stat().st_size) for p in paths]
    assert len(_store_files(blobs, ".pack")) == 1
    assert len(_store_files(blobs, ".idx")) == 1
    assert sorted(blobs.loose_digests()) == sorted(hash_bytes(c) for c in large)
    assert sorted(blobs.digests()) == sorted(hash_bytes(c) for c in small + large)
    for content in [*small[:50], *small[-50:], *large]:
        digest = hash_bytes(content)
        assert blobs.exists(digest)
        assert blobs.size(digest) == len(content)
        assert blobs.get_bytes(digest, verify=True) == content
        with blobs.open(digest) as stream:
            assert stream.read() == content
        assert blobs.get_file(digest, tmp_path / "out" / digest).read_bytes() == content
    assert not blobs.exists(hash_bytes(b"never stored"))
    with pytest.raises(NotFound):
        blobs.get_bytes(hash_bytes(b"never stored"))


def test_results_keep_their_order_and_repeats_are_stored_once(blobs: BlobStore, tmp_path: Path) -> None:
    contents = [f"file {n % 40}".encode() for n in range(100)] + [b""]
    paths = _files(tmp_path / "src", contents)
    stored = blobs.put_files(paths)
    assert stored == [(hash_bytes(c), len(c)) for c in contents]
    (info,) = blobs.packs()
    assert sorted(info.objects) == sorted({hash_bytes(c) for c in contents})
    assert info.size == sum(len(c) for c in set(contents))
    assert blobs.get_bytes(hash_bytes(b""), verify=True) == b""
    assert blobs.put_files([]) == []


def test_adding_the_same_files_again_writes_no_new_pack(blobs: BlobStore, tmp_path: Path) -> None:
    paths = _files(tmp_path / "src", [os.urandom(100) for _ in range(200)])
    first = blobs.put_files(paths)
    before = blobs.packs()
    assert BlobStore(blobs.url).put_files(paths) == first
    assert [p.digest for p in blobs.packs()] == [p.digest for p in before]
    assert _store_files(blobs, ".pack") == [f"{before[0].digest}.pack"]
    extra = _files(tmp_path / "more", [os.urandom(100) for _ in range(PACK_MIN_OBJECTS)])
    blobs.put_files(paths + extra)  # only the new files go into the new pack
    (new,) = [p for p in blobs.packs() if p.digest != before[0].digest]
    assert sorted(new.objects) == sorted(hash_bytes(p.read_bytes()) for p in extra)


def test_objects_already_stored_loose_are_not_packed_again(blobs: BlobStore, tmp_path: Path) -> None:
    contents = [os.urandom(64) for _ in range(40)]
    for content in contents[:10]:
        blobs.put_bytes(content)
    blobs.put_files(_files(tmp_path / "src", contents))
    (info,) = blobs.packs()
    assert sorted(info.objects) == sorted(hash_bytes(c) for c in contents[10:])
    assert sorted(blobs.digests()) == sorted(hash_bytes(c) for c in contents)


def test_a_few_small_files_stay_loose(blobs: BlobStore, tmp_path: Path) -> None:
    contents = [os.urandom(10) for _ in range(PACK_MIN_OBJECTS - 1)]
    blobs.put_files(_files(tmp_path / "src", contents))
    assert blobs.packs() == []
    assert sorted(blobs.loose_digests()) == sorted(hash_bytes(c) for c in contents)


def test_a_corrupt_byte_in_a_pack_is_caught_on_reading_that_object_only(
    blobs: BlobStore, tmp_path: Path
) -> None:
    contents = [os.urandom(500) for _ in range(50)]
    blobs.put_files(_files(tmp_path / "src", contents))
    (info,) = blobs.packs()
    pack_path = f"{blobs.root}/packs/{info.digest}.pack"
    data = bytearray(blobs.fs.cat_file(pack_path))
    victim = contents[17]
    data[data.index(victim) + 123] ^= 0x01
    blobs.fs.pipe_file(pack_path, bytes(data))
    fresh = BlobStore(blobs.url)  # no cached state either
    for store in (blobs, fresh):
        digest = hash_bytes(victim)
        with pytest.raises(StoreCorrupt, match="corrupt"):
            store.get_bytes(digest, verify=True)
        target = tmp_path / "out" / "victim"
        with pytest.raises(StoreCorrupt):
            store.get_file(digest, target)
        assert not target.exists()
        assert store.get_bytes(digest) != victim  # unverified reads are the caller's choice
        for content in contents[:17] + contents[18:]:
            assert store.get_bytes(hash_bytes(content), verify=True) == content
            assert store.get_file(hash_bytes(content), tmp_path / "good").read_bytes() == content


def test_a_truncated_pack_is_corrupt_not_short(blobs: BlobStore, tmp_path: Path) -> None:
    contents = [os.urandom(300) for _ in range(20)]
    blobs.put_files(_files(tmp_path / "src", contents))
    (info,) = blobs.packs()
    pack_path = f"{blobs.root}/packs/{info.digest}.pack"
    data = bytes(blobs.fs.cat_file(pack_path))
    first, last = min(contents, key=data.index), max(contents, key=data.index)
    blobs.fs.pipe_file(pack_path, data[:-10])
    with pytest.raises(StoreCorrupt, match="truncated"):
        blobs.get_bytes(hash_bytes(last))
    assert blobs.get_bytes(hash_bytes(first), verify=True) == first


def test_a_crash_between_pack_and_index_leaves_a_working_store(
    blobs: BlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = _files(tmp_path / "kept", [os.urandom(200) for _ in range(30)])
    blobs.put_files(kept)
    lost = _files(tmp_path / "lost", [os.urandom(200) for _ in range(30)])

    def crash(*args: object) -> bytes:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(packs, "encode_index", crash)
        with pytest.raises(KeyboardInterrupt):
            blobs.put_files(lost)
    assert len(_store_files(blobs, ".pack")) == 2
    assert len(_store_files(blobs, ".idx")) == 1
    reopened = BlobStore(blobs.url)
    lost_digests = [hash_bytes(p.read_bytes()) for p in lost]
    kept_digests = [hash_bytes(p.read_bytes()) for p in kept]
    assert not any(reopened.exists(d) for d in lost_digests)
    with pytest.raises(NotFound):
        reopened.get_bytes(lost_digests[0])
    assert sorted(reopened.digests()) == sorted(kept_digests)
    orphan = [p for p in reopened.packs() if not p.indexed]
    assert [p.objects for p in orphan] == [()]
    assert reopened.put_files(lost) == [(d, 200) for d in lost_digests]  # adding again completes the pack
    assert all(reopened.get_bytes(d, verify=True) for d in lost_digests)
    assert all(p.indexed for p in reopened.packs())
    if blobs.fs.exists(f"{blobs.root}/incoming"):
        assert blobs.fs.ls(f"{blobs.root}/incoming") == []


def test_packs_written_elsewhere_are_found_and_removed_packs_are_forgotten(
    blobs: BlobStore, tmp_path: Path
) -> None:
    reader = BlobStore(blobs.url)
    contents = [os.urandom(80) for _ in range(20)]
    digest = hash_bytes(contents[0])
    assert not reader.exists(digest)  # the reader has listed the (empty) packs folder once
    blobs.put_files(_files(tmp_path / "src", contents))
    assert reader.exists(digest)  # a miss lists the indexes again
    assert reader.get_bytes(digest, verify=True) == contents[0]
    (info,) = blobs.packs()
    blobs.delete_pack(info.digest)
    assert blobs.packs() == []
    assert list(blobs.digests()) == []
    with pytest.raises(NotFound):
        reader.get_bytes(digest)  # its pack vanished under it: listed again, then not found
    assert not reader.exists(digest)
    blobs.delete_pack(info.digest)  # removing it twice is harmless
    with pytest.raises(InvalidInput):
        blobs.delete_pack("../../etc")


def test_delete_of_a_packed_object_removes_nothing(blobs: BlobStore, tmp_path: Path) -> None:
    contents = [os.urandom(80) for _ in range(20)]
    blobs.put_files(_files(tmp_path / "src", contents))
    blobs.delete(hash_bytes(contents[0]))
    assert blobs.get_bytes(hash_bytes(contents[0]), verify=True) == contents[0]


def test_packed_objects_take_their_packs_age_and_reuse_makes_them_young(tmp_path: Path) -> None:
    blobs = BlobStore(str(tmp_path / "blobs"))
    contents = [os.urandom(80) for _ in range(20)]
    paths = _files(tmp_path / "src", contents)
    blobs.put_files(paths)
    (info,) = blobs.packs()
    pack_path = Path(blobs.root) / "packs" / f"{info.digest}.pack"
    os.utime(pack_path, (1_000_000, 1_000_000))
    assert blobs.modified(hash_bytes(contents[3])) == 1_000_000
    assert blobs.packs()[0].modified == 1_000_000
    blobs.put_files(paths[:1])
    assert blobs.modified(hash_bytes(contents[3])) > 1_000_000
    os.utime(pack_path, (1_000_000, 1_000_000))
    blobs.put_bytes(contents[5])
    assert blobs.modified(hash_bytes(contents[3])) > 1_000_000


def test_writer_limits_split_packs_and_every_pack_is_found(blobs: BlobStore) -> None:
    folder = PackFolder(blobs.fs, blobs.root, is_local="file" in blobs.fs.protocol)
    writer = PackWriter(PackSet(folder), max_objects=7, max_bytes=1000)
    contents = [os.urandom(n) for n in [*range(1, 25), 900, 1500, 3]]
    for content in contents:
        writer.add(hash_bytes(content), content)
    writer.flush()
    assert writer.flush() is None
    assert len(writer.written) == len(blobs.packs()) >= 5
    assert all(len(p.objects) <= 7 for p in blobs.packs())
    for content in contents:
        assert blobs.get_bytes(hash_bytes(content), verify=True) == content


def test_store_files_packs_and_names_unreadable_files(blobs: BlobStore, tmp_path: Path) -> None:
    paths = _files(tmp_path / "src", [os.urandom(64) for _ in range(30)])
    tree = store_files(blobs, [(p, f"data/{p.name}") for p in reversed(paths)])
    assert [e.path for e in tree.entries] == sorted(f"data/{p.name}" for p in paths)
    assert all(
        blobs.get_bytes(e.digest, verify=True) == (tmp_path / "src" / e.path[5:]).read_bytes()
        for e in tree.entries
    )
    assert len(blobs.packs()) == 1
    folder = tmp_path / "src" / "sub"
    folder.mkdir()
    with pytest.raises(InvalidInput, match=r"sub'? is a folder"):
        store_files(blobs, [(paths[0], "a"), (folder, "b")])
    with pytest.raises(FileNotFoundError) as error:
        blobs.put_files([tmp_path / "missing"])
    assert error.value.filename == str(tmp_path / "missing")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_store_files_names_a_file_it_may_not_read(blobs: BlobStore, tmp_path: Path) -> None:
    (secret,) = _files(tmp_path / "src", [b"secret"])
    secret.chmod(0)
    with pytest.raises(InvalidInput, match="permission denied") as error:
        store_files(blobs, [(secret, "s")])
    assert str(secret) in str(error.value)


def test_a_damaged_index_is_reported_not_ignored(tmp_path: Path) -> None:
    blobs = BlobStore(str(tmp_path / "blobs"))
    blobs.put_files(_files(tmp_path / "src", [os.urandom(50) for _ in range(20)]))
    (index,) = (Path(blobs.root) / "packs").glob("*.idx")
    data = index.read_bytes()
    index.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # always a different byte (a fixed one is not)
    with pytest.raises(StoreCorrupt, match="index of pack"):
        BlobStore(blobs.url).exists("0" * 64)


@given(st.lists(st.binary(max_size=40), max_size=30, unique=True))
def test_index_round_trip(objects: list[bytes]) -> None:
    entries, offset = [], 0
    for content in objects:
        entries.append((bytes.fromhex(hash_bytes(content)), offset, len(content)))
        offset += len(content)
    pack = hash_bytes(b"".join(objects))
    data = encode_index(pack, offset, entries)
    assert decode_index(data, pack) == sorted(entries)
    with pytest.raises(StoreCorrupt):
        decode_index(data, hash_bytes(b"another pack"))
    for cut in (0, 10, len(data) - 1):
        with pytest.raises(StoreCorrupt):
            decode_index(data[:cut], pack)


def test_store_files_names_the_file_a_permission_error_is_about(
    blobs: BlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _files(tmp_path / "src", [b"open", b"secret"])

    def refuse_secret(path: str, limit: int) -> bytes | None:
        if path.endswith("00001.bin"):
            raise PermissionError(13, "Permission denied", path)
        return Path(path).read_bytes()

    monkeypatch.setattr("loopml.storage.blobs.store.read_small_file", refuse_secret)
    with pytest.raises(InvalidInput, match="permission denied") as error:
        store_files(blobs, [(p, p.name) for p in paths])
    assert repr(str(paths[1])) in str(error.value)


def test_writer_spills_to_a_temporary_file_and_cleans_up(tmp_path: Path) -> None:
    blobs = BlobStore(str(tmp_path / "blobs"))
    folder = PackFolder(blobs.fs, blobs.root, is_local=True)
    contents = [os.urandom(600 * 1024) for _ in range(3)]  # more than one spilled block
    with PackWriter(PackSet(folder)) as writer:
        for content in contents:
            writer.add(hash_bytes(content), content)
        assert writer.take() == [(hash_bytes(c), c) for c in contents]
        assert len(writer) == 0

    def interrupted_write() -> None:
        with PackWriter(PackSet(folder)) as writer:
            for content in contents:
                writer.add(hash_bytes(content), content)
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        interrupted_write()
    assert list((tmp_path / "blobs" / "incoming").iterdir()) == []
    assert blobs.packs() == []
