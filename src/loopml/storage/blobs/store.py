"""A content-addressed blob store over any fsspec filesystem (a local folder by default).

Objects live at `objects/ab/cdef…` named by the BLAKE3 digest of their bytes. A write streams into a temporary
name inside the store and is renamed into place, so a reader never sees a partial object and an object, once
written, is never rewritten. Only digests name objects, so no user-given name can reach outside the store.

Small files stored together (`put_files`) go into packs instead (`packs/`, see `packs.py`): one large write
for thousands of objects. Every read sees loose objects first, then packed ones, and a packed object is read
(and verified) alone, by its byte range.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import blake3
import fsspec

from loopml.core.errors import InvalidInput, NotFound, StoreCorrupt
from loopml.core.hashing import CHUNK_SIZE, hash_bytes, is_digest, read_chunks
from loopml.storage.blobs.direct import DIRECT_MIN_BYTES, copy_direct
from loopml.storage.blobs.packs import (
    PACK_MIN_OBJECTS,
    PACK_THRESHOLD,
    Location,
    PackFolder,
    PackInfo,
    PackSet,
    PackWriter,
    decode_index,
    read_small_file,
)

DIRECT_PUT_LIMIT = 8 << 20  # bytes: smaller objects are written to remote stores in one request


class BlobStore:
    """Put and get immutable byte objects by content digest."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.url = url
        try:
            fs, root = fsspec.core.url_to_fs(url, **storage_options)
        except ImportError as error:
            raise InvalidInput(f"the blob store needs an extra package: {error}") from None
        except ValueError as error:
            raise InvalidInput(f"LOOPML_ARTIFACT_URL is not a storage URL ({error})") from None
        self.fs: fsspec.AbstractFileSystem = fs
        self.root = str(root).rstrip("/")
        self._is_local = "file" in _protocols(fs)
        self._packs = PackSet(PackFolder(fs, self.root, is_local=self._is_local))

    @property
    def is_local(self) -> bool:
        """Whether the blobs are files of this machine (other machines cannot read them)."""
        return self._is_local

    @property
    def display_url(self) -> str:
        """The store URL without any user name or password in it (for messages)."""
        return re.sub(r"(://)[^/@]*@", r"\1", self.url)

    def put_file(self, path: str | os.PathLike[str]) -> tuple[str, int]:
        """Store a file's content (streamed); returns (digest, size)."""
        if self._is_local and os.path.getsize(path) >= DIRECT_MIN_BYTES:
            temp = self._temp_path()
            self.fs.makedirs(self._parent(temp), exist_ok=True)
            copied = copy_direct(os.fspath(path), temp)
            if copied is not None:
                self._commit(temp, copied[0])
                return copied
        with open(path, "rb") as source:
            return self.put_stream(source)

    def put_files(self, paths: Iterable[str | os.PathLike[str]]) -> list[tuple[str, int]]:
        """Store many files; returns (digest, size) for each, in order.

        Files under `PACK_THRESHOLD` bytes are packed (objects already stored, and repeats, are written once);
        larger ones are streamed as loose objects. An `OSError` names the file it is about (`.filename`).
        """
        self._packs.refresh()  # one listing now; the checks below look only at what is known
        is_loose = self._loose_checker()
        seen: set[str] = set()
        reused_packs: set[str] = set()
        results = []
        with PackWriter(self._packs) as writer:
            for path in (os.fspath(p) for p in paths):
                data = read_small_file(path, PACK_THRESHOLD)
                if data is None:
                    results.append(self.put_file(path))
                    continue
                digest = hash_bytes(data)
                results.append((digest, len(data)))
                if digest in seen:
                    continue
                seen.add(digest)
                if is_loose(digest):
                    self._touch(self.path_of(digest))
                elif (location := self._packs.find(digest, reload=False)) is not None:
                    reused_packs.add(location.pack)
                else:
                    writer.add(digest, data)
            if writer.written or len(writer) >= PACK_MIN_OBJECTS:
                writer.flush()
            else:
                for _, data in writer.take():
                    self.put_stream(io.BytesIO(data))
        for pack in reused_packs:  # stored again = used again (see `_touch`)
            self._packs.folder.touch(pack)
        return results

    def put_bytes(self, data: bytes) -> str:
        """Store `data`; returns its digest."""
        digest = hash_bytes(data)
        if self.exists(digest):
            self._touch_object(digest)
        else:
            self.put_stream(io.BytesIO(data))
        return digest

    def put_stream(self, source: IO[bytes]) -> tuple[str, int]:
        """Store everything read from `source`, hashing while copying; returns (digest, size)."""
        head = b""
        if not self._is_local:
            # An object store's PUT is atomic: a small object goes straight to its final key in one request,
            # with no temporary name, no folder to create and no copy (ten requests become one on S3).
            head = source.read(DIRECT_PUT_LIMIT + 1)
            if len(head) <= DIRECT_PUT_LIMIT:
                digest = hash_bytes(head)
                self.fs.pipe_file(self.path_of(digest), head)
                return digest, len(head)
        hasher = blake3.blake3()
        size = 0
        temp = self._temp_path()
        if self._is_local:
            self.fs.makedirs(self._parent(temp), exist_ok=True)
        try:
            with self.fs.open(temp, "wb") as target:
                for chunk in itertools.chain([head] if head else [], read_chunks(source, CHUNK_SIZE)):
                    hasher.update(chunk)
                    target.write(chunk)
                    size += len(chunk)
                if self._is_local:
                    target.flush()
                    os.fsync(target.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                self.fs.rm_file(temp)
            raise
        digest = str(hasher.hexdigest())
        self._commit(temp, digest)
        return digest, size

    def get_bytes(self, digest: str, *, verify: bool = False) -> bytes:
        """The content of an object; with `verify`, check it still hashes to its name."""
        path = self.path_of(digest)
        try:
            data = bytes(self.fs.cat_file(path))
        except FileNotFoundError:
            data = self._read_packed(digest)
        if verify and hash_bytes(data) != digest:
            raise StoreCorrupt(f"object {digest} in {self.display_url} is corrupt (its content hash differs)")
        return data

    @contextlib.contextmanager
    def open(self, digest: str) -> Iterator[IO[bytes]]:
        """A binary stream of an object's content (not verified; use `get_file(verify=True)` for that)."""
        path = self.path_of(digest)
        try:
            stream = self.fs.open(path, "rb")
        except FileNotFoundError:
            stream = io.BytesIO(self._read_packed(digest))  # packed objects are small
        with stream:
            yield stream

    def get_file(self, digest: str, destination: str | os.PathLike[str], *, verify: bool = True) -> Path:
        """Copy an object to a local file (written atomically), checking its hash while copying."""
        target = Path(destination)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        hasher = blake3.blake3()
        try:
            with self.open(digest) as source, temp.open("wb") as sink:
                for chunk in read_chunks(source):
                    hasher.update(chunk)
                    sink.write(chunk)
            if verify and hasher.hexdigest() != digest:
                raise StoreCorrupt(
                    f"object {digest} in {self.display_url} is corrupt (its content hash differs)"
                )
            temp.replace(target)
        finally:
            temp.unlink(missing_ok=True)
        return target

    def exists(self, digest: str) -> bool:
        """True when the object is stored."""
        return bool(self.fs.exists(self.path_of(digest))) or self._packs.find(digest) is not None

    def size(self, digest: str) -> int:
        """Size of a stored object in bytes."""
        try:
            return int(self.fs.size(self.path_of(digest)))
        except FileNotFoundError:
            return self._packed_location(digest).size

    def modified(self, digest: str) -> float:
        """When an object was written (or stored again), as a Unix timestamp; for a packed one, its pack's."""
        try:
            return float(self.fs.modified(self.path_of(digest)).timestamp())
        except FileNotFoundError:
            pass
        try:
            return self._packs.folder.stat(self._packed_location(digest).pack)[1]
        except FileNotFoundError:  # the pack was removed since it was listed
            raise NotFound(f"object {digest} is not in the blob store {self.display_url}") from None

    def delete(self, digest: str) -> None:
        """Remove a loose object (garbage collection only: callers must know nothing refers to it).

        A packed object cannot be removed by itself: packs are removed whole (`packs()`, `delete_pack`).
        """
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path_of(digest))

    def digests(self) -> Iterator[str]:
        """Every stored digest, loose and packed, each once (for garbage collection and checks)."""
        loose = set()
        for digest in self.loose_digests():
            loose.add(digest)
            yield digest
        for digest in self._packs.digests():
            if digest not in loose:
                yield digest

    def loose_digests(self) -> Iterator[str]:
        """Every digest stored as a loose object (those `delete` removes)."""
        base = f"{self.root}/objects"
        if not self.fs.exists(base):
            return
        for path in self.fs.find(base):
            parts = str(path).rstrip("/").split("/")
            digest = parts[-2] + parts[-1]
            if is_digest(digest):
                yield digest

    def packs(self) -> list[PackInfo]:
        """Every pack with the digests it holds (a pack a crashed writer left without index holds none)."""
        return self._packs.packs()

    def adopt_pack(self, source: BlobStore, pack_digest: str) -> int:
        """Copy a whole pack and its index from another store (a handful of writes for thousands of objects).

        The pack's bytes must hash to its name and its index must decode, else `StoreCorrupt` and nothing is
        published here. Returns the pack's size.
        """
        index = source._packs.folder.read_index(pack_digest)
        entries = decode_index(index, pack_digest)
        temp = self._packs.folder.temp_path()
        hasher = blake3.blake3()
        size = 0
        try:
            with (
                source.fs.open(source._packs.folder.path(pack_digest, ".pack"), "rb") as stream,
                open(temp, "wb") as sink,
            ):
                for chunk in read_chunks(stream):
                    hasher.update(chunk)
                    sink.write(chunk)
                    size += len(chunk)
                if self._is_local:
                    sink.flush()
                    os.fsync(sink.fileno())
            if hasher.hexdigest() != pack_digest:
                raise StoreCorrupt(
                    f"pack {pack_digest} in {source.display_url} is corrupt; it was not copied"
                )
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(temp)
            raise
        self._packs.register(pack_digest, self._packs.folder.publish(temp, pack_digest, size, entries))
        return size

    def delete_pack(self, pack_digest: str) -> None:
        """Remove a whole pack (garbage collection only: callers must know nothing refers to its objects)."""
        self._packs.folder.delete(pack_digest)
        self._packs.forget(pack_digest)

    def path_of(self, digest: str) -> str:
        """Where an object lives; refuses anything that is not a digest, so no name can escape the store."""
        if not isinstance(digest, str) or not is_digest(digest):
            raise InvalidInput(f"not an object digest: {digest!r} (expected 64 lowercase hex digits)")
        return f"{self.root}/objects/{digest[:2]}/{digest[2:]}"

    def _read_packed(self, digest: str) -> bytes:
        try:
            return self._packs.read(self._packed_location(digest))
        except FileNotFoundError:  # the pack was removed since it was listed; it may be elsewhere now
            self._packs.refresh()
        try:
            return self._packs.read(self._packed_location(digest))
        except FileNotFoundError:
            raise NotFound(f"object {digest} is not in the blob store {self.display_url}") from None

    def _packed_location(self, digest: str) -> Location:
        location = self._packs.find(digest)
        if location is None:
            raise NotFound(f"object {digest} is not in the blob store {self.display_url}")
        return location

    def _loose_checker(self) -> Callable[[str], bool]:
        """A test for "stored as a loose object" that costs no request per object on remote stores."""
        objects = f"{self.root}/objects"
        if self._is_local:
            try:
                prefixes = set(os.listdir(objects))
            except FileNotFoundError:
                prefixes = set()
            return lambda digest: (
                digest[:2] in prefixes and os.path.exists(f"{objects}/{digest[:2]}/{digest[2:]}")
            )
        listed: dict[str, set[str]] = {}

        def is_loose(digest: str) -> bool:
            names = listed.get(digest[:2])
            if names is None:
                folder = f"{objects}/{digest[:2]}"
                self.fs.invalidate_cache(folder)
                try:
                    names = {str(p).rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(folder, detail=False)}
                except FileNotFoundError:
                    names = set()
                listed[digest[:2]] = names
            return digest[2:] in names

        return is_loose

    def _touch_object(self, digest: str) -> None:
        if not self._is_local:
            return
        try:
            os.utime(self.path_of(digest))
        except FileNotFoundError:
            location = self._packs.find(digest, reload=False)
            if location is not None:
                self._packs.folder.touch(location.pack)

    def _temp_path(self) -> str:
        return f"{self.root}/incoming/{uuid.uuid4().hex}"

    @staticmethod
    def _parent(path: str) -> str:
        return path.rsplit("/", 1)[0]

    def drop_incoming(self, *, older_than: float) -> int:
        """Delete temporary files under `incoming/` last modified before `older_than` (epoch seconds)."""
        folder = f"{self.root}/incoming"
        try:
            found = self.fs.ls(folder, detail=True)
        except FileNotFoundError:
            return 0
        dropped = 0
        for entry in found:
            if entry.get("type") != "file":
                continue
            try:
                modified = self.fs.modified(entry["name"]).timestamp()
            except (FileNotFoundError, NotImplementedError):
                continue
            if modified < older_than:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(entry["name"])
                    dropped += 1
        return dropped

    def commit_staged(self, staged: str, digest: str) -> None:
        """Move an object written under `incoming/` (and already checked to hash to `digest`) to its address."""
        if not staged.startswith(f"{self.root}/incoming/"):
            raise InvalidInput("only objects staged under incoming/ are committed")
        self._commit(staged, digest)

    def _commit(self, temp: str, digest: str) -> None:
        final = self.path_of(digest)
        if self.fs.exists(final):
            self.fs.rm_file(temp)
            self._touch(final)
            return
        if self._is_local:
            self.fs.makedirs(self._parent(final), exist_ok=True)
            os.replace(
                temp, final
            )  # atomic on one filesystem; a concurrent writer of the same digest is harmless
        else:
            self.fs.mv(temp, final)  # object stores have no folders to create

    def _touch(self, path: str) -> None:
        # Stored again = used again: garbage collection keeps objects modified within its grace period, so
        # a blob re-used while gc runs must look young. (Remote stores keep their first write time.)
        if self._is_local:
            with contextlib.suppress(FileNotFoundError):
                os.utime(path)


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
