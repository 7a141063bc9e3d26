"""Large files go into a local store with O_DIRECT writes (or the ordinary path where refused)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopml.core.hashing import hash_file
from loopml.storage.blobs import store as store_module
from loopml.storage.blobs.direct import copy_direct
from loopml.storage.blobs.store import BlobStore


@pytest.mark.parametrize("size", [3 << 20, (3 << 20) + 123, 4095, 0])
def test_direct_copy_hashes_and_copies_exactly(tmp_path: Path, size: int) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(size))
    target = tmp_path / "copy.bin"
    result = copy_direct(str(source), str(target))
    if result is None:  # this filesystem refuses O_DIRECT: nothing may be left behind
        assert not target.exists()
        return
    digest, copied = result
    assert copied == size
    assert digest == hash_file(source)
    assert target.read_bytes() == source.read_bytes()


def test_large_files_take_the_direct_path_into_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "DIRECT_MIN_BYTES", 1 << 20)
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom((2 << 20) + 77))
    blobs = BlobStore(str(tmp_path / "blobs"))
    digest, size = blobs.put_file(source)
    assert (digest, size) == (hash_file(source), (2 << 20) + 77)
    assert blobs.get_bytes(digest, verify=True) == source.read_bytes()
    assert blobs.put_file(source) == (digest, size)  # stored again: deduplicated
    assert list((tmp_path / "blobs" / "incoming").iterdir()) == []
