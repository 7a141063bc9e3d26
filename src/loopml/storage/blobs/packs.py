"""Packs: many small objects in one content-addressed file plus a sorted index, as git packs them.

`packs/<digest>.pack` is the concatenation of its objects' bytes, named by the BLAKE3 of those bytes.
`packs/<digest>.idx` says where each object is (all integers big-endian):

    header   b"LOOPMLPK" | u32 version (1) | u32 object count | u64 pack size | 32-byte pack digest
    entries  count x (32-byte object digest | u64 offset | u64 size), sorted by object digest
    trailer  32-byte BLAKE3 of header and entries

The pack is written before its index, each atomically (a temporary name renamed into place on local disks, one
plain put on object stores), so whoever sees an index finds its pack. A pack without an index (a crash between
the two writes) is invisible to readers; `PackSet.packs()` lists it with no objects so garbage collection can
remove it. Objects are verified by their own digest on read (a read takes only the object's byte range).
Packs are immutable: an object in a pack cannot be deleted by itself, only the whole pack can.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import blake3

from loopml.core.errors import InvalidInput, StoreCorrupt
from loopml.core.hashing import is_digest

PACK_THRESHOLD = 64 * 1024  # files smaller than this are packed; larger ones stay loose objects, streamed
PACK_MAX_BYTES = 64 * 1024 * 1024  # a pack is written once it holds this many bytes ...
PACK_MAX_OBJECTS = 50_000  # ... or this many objects
# Fewer new small objects than this are stored loose: a pack of a handful costs as many writes as loose
# objects and can only be garbage-collected as a whole (git likewise unpacks small pushes).
PACK_MIN_OBJECTS = 16

INDEX_MAGIC = b"LOOPMLPK"
INDEX_VERSION = 1
_HEADER = struct.Struct(">8sIIQ32s")
_ENTRY = struct.Struct(">32sQQ")
_TRAILER = 32
_SPILL_BYTES = 1024 * 1024  # objects are joined into blocks of this size for one write and one hash update
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0)


class Location(NamedTuple):
    """Where a packed object is: its pack's digest, and its byte range in that pack."""

    pack: str
    offset: int
    size: int


@dataclass(frozen=True)
class PackInfo:
    """One pack of a store, for garbage collection: a pack is removed whole, once none of its objects is used."""

    digest: str
    objects: tuple[str, ...]  # empty for a pack whose index was never written (a crashed writer)
    size: int
    modified: float
    indexed: bool


def encode_index(pack_digest: str, pack_size: int, entries: list[tuple[bytes, int, int]]) -> bytes:
    """The index of a pack: `entries` are (raw object digest, offset, size)."""
    body = bytearray(
        _HEADER.pack(INDEX_MAGIC, INDEX_VERSION, len(entries), pack_size, bytes.fromhex(pack_digest))
    )
    for entry in sorted(entries):
        body += _ENTRY.pack(*entry)
    body += blake3.blake3(body).digest()
    return bytes(body)


def decode_index(data: bytes, pack_digest: str) -> list[tuple[bytes, int, int]]:
    """The (raw object digest, offset, size) entries of a pack's index; anything malformed is `StoreCorrupt`."""
    problem = _index_problem(data, pack_digest)
    if problem:
        raise StoreCorrupt(f"the index of pack {pack_digest} is corrupt: {problem}")
    _, _, _, pack_size, _ = _HEADER.unpack_from(data)
    entries = list(_ENTRY.iter_unpack(memoryview(data)[_HEADER.size : -_TRAILER]))
    if any(offset + size > pack_size for _, offset, size in entries):
        raise StoreCorrupt(f"the index of pack {pack_digest} points past the end of its pack")
    return entries


def _index_problem(data: bytes, pack_digest: str) -> str:
    if len(data) < _HEADER.size + _TRAILER:
        return "too short"
    magic, version, count, _, named = _HEADER.unpack_from(data)
    checks = [
        (magic == INDEX_MAGIC, "not a LoopML pack index"),
        (
            version == INDEX_VERSION,
            f"unknown version {version} (this LoopML reads {INDEX_VERSION}; upgrade it)",
        ),
        (len(data) == _HEADER.size + count * _ENTRY.size + _TRAILER, "its length does not match its count"),
        (blake3.blake3(memoryview(data)[:-_TRAILER]).digest() == data[-_TRAILER:], "its checksum differs"),
        (named.hex() == pack_digest, "it names another pack"),
    ]
    return next((problem for passed, problem in checks if not passed), "")


def read_small_file(path: str, limit: int) -> bytes | None:
    """The whole content of a file shorter than `limit` bytes, or None for a longer one (then stream it).

    An error names the file (`error.filename`), even one raised by a read.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
        try:
            data = os.read(fd, limit)
            if len(data) >= limit:
                return None
            while more := os.read(fd, limit):  # a short read is usually the end, but is not promised to be
                data += more
                if len(data) >= limit:
                    return None
            return data
        finally:
            os.close(fd)
    except OSError as error:
        if error.filename is None:
            raise type(error)(error.errno, error.strerror, path) from None
        raise


class PackFolder:
    """The `packs/` folder of a store: listing, reading and writing pack and index files."""

    def __init__(self, fs: Any, root: str, *, is_local: bool) -> None:
        self.fs = fs
        self.root = root
        self.folder = f"{root}/packs"
        self.is_local = is_local

    def path(self, pack: str, suffix: str) -> str:
        """Where a pack's `.pack` or `.idx` file is."""
        if not is_digest(pack):
            raise InvalidInput(f"not a pack digest: {pack!r} (expected 64 lowercase hex digits)")
        return f"{self.folder}/{pack}{suffix}"

    def names(self, suffix: str) -> set[str]:
        """Digests of the packs that have a file with this suffix."""
        try:
            if self.is_local:
                listed = os.listdir(self.folder)
            else:
                self.fs.invalidate_cache(self.folder)  # object stores' listings are cached by fsspec
                listed = [
                    str(p).rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.folder, detail=False)
                ]
        except FileNotFoundError:
            return set()
        found = (name.removesuffix(suffix) for name in listed if name.endswith(suffix))
        return {name for name in found if is_digest(name)}

    def read_index(self, pack: str) -> bytes:
        """The bytes of a pack's index."""
        return bytes(self.fs.cat_file(self.path(pack, ".idx")))

    def read(self, location: Location) -> bytes:
        """One object's bytes (exactly its range of the pack); a short read is `StoreCorrupt`."""
        path = self.path(location.pack, ".pack")
        if self.is_local:
            with open(path, "rb", buffering=0) as source:
                source.seek(location.offset)
                got = source.read(location.size) or b""
                while len(got) < location.size and (more := source.read(location.size - len(got))):
                    got += more
        elif location.size == 0:
            got = b""
        else:
            got = bytes(self.fs.cat_file(path, location.offset, location.offset + location.size))
        if len(got) != location.size:
            raise StoreCorrupt(f"pack {location.pack} is truncated (an object reaches past its end)")
        return got

    def temp_path(self) -> str:
        """A new temporary file for a pack being written: in the store on local disks, else a local one."""
        if self.is_local:
            incoming = f"{self.root}/incoming"
            os.makedirs(incoming, exist_ok=True)
            return f"{incoming}/{uuid.uuid4().hex}"
        fd, path = tempfile.mkstemp(prefix="loopml-pack-")
        os.close(fd)
        return path

    def publish(self, temp: str, pack_digest: str, size: int, entries: list[tuple[bytes, int, int]]) -> bytes:
        """Move a written (and synced) pack file into place, then write its index; returns the index bytes."""
        if self.is_local:
            os.makedirs(self.folder, exist_ok=True)
            os.replace(temp, self.path(pack_digest, ".pack"))
            _fsync_folder(self.folder)  # the pack's name is on disk before its index's can be
        else:
            self.fs.makedirs(self.folder, exist_ok=True)
            self.fs.put_file(temp, self.path(pack_digest, ".pack"))
            os.remove(temp)
        index = encode_index(pack_digest, size, entries)
        if self.is_local:
            index_temp = self.temp_path()
            _write_synced(index_temp, index)
            os.replace(index_temp, self.path(pack_digest, ".idx"))
        else:
            self.fs.pipe_file(self.path(pack_digest, ".idx"), index)
        return index

    def delete(self, pack: str) -> None:
        """Remove a pack: its index first, so no reader finds an index without its pack."""
        for suffix in (".idx", ".pack"):
            with contextlib.suppress(FileNotFoundError):
                if self.is_local:
                    os.remove(self.path(pack, suffix))
                else:
                    self.fs.rm_file(self.path(pack, suffix))

    def stat(self, pack: str) -> tuple[int, float]:
        """(size, modification time) of a pack file."""
        path = self.path(pack, ".pack")
        if self.is_local:
            info = os.stat(path)
            return info.st_size, info.st_mtime
        return int(self.fs.size(path)), float(self.fs.modified(path).timestamp())

    def touch(self, pack: str) -> None:
        """Mark a pack used again (garbage collection keeps young packs); remote stores keep their write time."""
        if self.is_local:
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.path(pack, ".pack"))


class PackSet:
    """Every indexed pack of a store, loaded lazily into one dict: object digest -> `Location`.

    A lookup that misses lists the indexes again (one listing) and loads any new ones, so packs written by
    other processes are found; packs removed since are dropped.
    """

    def __init__(self, folder: PackFolder) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._indexes: dict[str, list[tuple[bytes, int, int]]] = {}
        self._table: dict[bytes, Location] = {}
        self._loaded = False

    def find(self, digest: str, *, reload: bool = True) -> Location | None:
        """Where a packed object is; None when no pack holds it. Without `reload`, only the packs known now."""
        key = bytes.fromhex(digest)
        if not self._loaded:
            self.refresh()
        found = self._table.get(key)
        if found is None and reload and self.refresh():
            found = self._table.get(key)
        return found

    def refresh(self) -> bool:
        """Load indexes written since the last listing and drop removed ones; True when anything changed."""
        with self._lock:
            names = self.folder.names(".idx")
            known = set(self._indexes)
            if names == known:
                self._loaded = True
                return False
            for pack in sorted(names - known):
                try:
                    data = self.folder.read_index(pack)
                except FileNotFoundError:  # removed between the listing and the read
                    continue
                self._add(pack, decode_index(data, pack))
            if known - names:
                for pack in known - names:
                    del self._indexes[pack]
                self._rebuild()
            self._loaded = True  # only now: a reader that saw True must find every listed index loaded
            return True

    def register(self, pack: str, index: bytes) -> None:
        """Know a pack this process has just written (without listing the folder again)."""
        with self._lock:
            if pack not in self._indexes:
                self._add(pack, decode_index(index, pack))

    def forget(self, pack: str) -> None:
        """Drop a removed pack."""
        with self._lock:
            if self._indexes.pop(pack, None) is not None:
                self._rebuild()

    def read(self, location: Location) -> bytes:
        """An object's bytes (not verified)."""
        return self.folder.read(location)

    def digests(self) -> Iterator[str]:
        """Every packed object's digest (after listing the indexes again)."""
        self.refresh()
        for key in list(self._table):
            yield key.hex()

    def packs(self) -> list[PackInfo]:
        """Every pack with its objects, including packs left without an index by a crash."""
        self.refresh()
        infos = []
        for pack in sorted(self.folder.names(".pack")):
            try:
                size, modified = self.folder.stat(pack)
            except FileNotFoundError:
                continue
            entries = self._indexes.get(pack)
            objects = tuple(key.hex() for key, _, _ in entries or ())
            infos.append(PackInfo(pack, objects, size, modified, indexed=entries is not None))
        return infos

    def _add(self, pack: str, entries: list[tuple[bytes, int, int]]) -> None:
        self._indexes[pack] = entries
        table = self._table
        for key, offset, size in entries:
            table.setdefault(key, Location(pack, offset, size))

    def _rebuild(self) -> None:
        table: dict[bytes, Location] = {}
        for pack, entries in self._indexes.items():
            for key, offset, size in entries:
                table.setdefault(key, Location(pack, offset, size))
        self._table = table


class PackWriter:
    """Writes small objects into packs of at most `max_bytes` / `max_objects`, through a temporary file.

    Objects are appended to the pack file in blocks of `_SPILL_BYTES` (hashing the pack on the way), so memory
    stays small whatever the pack size. Use it as a context manager: leaving it discards an unfinished pack.
    """

    def __init__(
        self, packs: PackSet, *, max_bytes: int = PACK_MAX_BYTES, max_objects: int = PACK_MAX_OBJECTS
    ) -> None:
        self.packs = packs
        self.max_bytes = max_bytes
        self.max_objects = max_objects
        self.written: list[str] = []
        self._temp: str | None = None
        self._file: io.RawIOBase | None = None
        self._entries: list[tuple[bytes, int, int]] = []
        self._size = 0
        self._block: list[bytes] = []
        self._block_size = 0
        self._hasher: Any = blake3.blake3()

    def __enter__(self) -> PackWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.discard()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, digest: str, data: bytes) -> None:
        """Add an object (`digest` must be its BLAKE3); writes a pack when this one is full."""
        self._entries.append((bytes.fromhex(digest), self._size, len(data)))
        self._size += len(data)
        self._block.append(data)
        self._block_size += len(data)
        if self._block_size >= _SPILL_BYTES:
            self._spill()
        if self._size >= self.max_bytes or len(self._entries) >= self.max_objects:
            self.flush()

    def flush(self) -> str | None:
        """Finish the pack being written and its index; returns the pack digest (None if empty)."""
        if not self._entries:
            return None
        file, temp = self._spill()
        if self.packs.folder.is_local:
            os.fsync(file.fileno())
        file.close()
        pack = str(self._hasher.hexdigest())
        index = self.packs.folder.publish(temp, pack, self._size, self._entries)
        self._temp = self._file = None
        self.packs.register(pack, index)
        self.written.append(pack)
        self._reset()
        return pack

    def take(self) -> list[tuple[str, bytes]]:
        """Remove the collected objects without writing a pack; returns them as (digest, data)."""
        data = b"".join(self._block)
        if self._file is not None and self._temp is not None:
            self._file.close()
            with open(self._temp, "rb") as spilled:
                data = spilled.read() + data
        taken = [(key.hex(), data[offset : offset + size]) for key, offset, size in self._entries]
        self.discard()
        return taken

    def discard(self) -> None:
        """Drop the pack being written (its temporary file too)."""
        if self._file is not None:
            self._file.close()
        if self._temp is not None:
            with contextlib.suppress(OSError):
                os.remove(self._temp)
        self._temp = self._file = None
        self._reset()

    def _spill(self) -> tuple[io.RawIOBase, str]:
        """Append the collected block to the pack file (opened on first use); returns (file, its path)."""
        if self._file is None or self._temp is None:
            self._temp = self.packs.folder.temp_path()
            self._file = open(self._temp, "wb", buffering=0)  # noqa: SIM115 (closed by flush or discard)
        block = b"".join(self._block)
        self._hasher.update(block)
        _write_all(self._file, block)
        self._block, self._block_size = [], 0
        return self._file, self._temp

    def _reset(self) -> None:
        self._entries, self._size = [], 0
        self._block, self._block_size = [], 0
        self._hasher = blake3.blake3()


def _write_synced(path: str, data: bytes) -> None:
    try:
        with open(path, "wb", buffering=0) as target:
            _write_all(target, data)
            os.fsync(target.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(path)
        raise


def _write_all(target: io.RawIOBase, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = target.write(view)
        if not written:
            raise OSError(f"could not write to {target.name!r}")  # type: ignore[attr-defined]
        view = view[written:]


def _fsync_folder(folder: str) -> None:
    if not hasattr(os, "O_DIRECTORY"):  # Windows cannot open a folder to sync it
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
