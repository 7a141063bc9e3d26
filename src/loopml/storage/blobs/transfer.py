"""Copy the objects one blob store lacks from another: listed once, copied in parallel, each one verified.

Only public `BlobStore` methods are used, so the same code moves objects between a local folder, a shared
folder and an object store in either direction. Each object streams from `source.open` into
`target.put_stream` through a reader that hashes what passes; a mismatch fails the read before the end of the
stream, so `put_stream` discards its temporary object and nothing corrupt (and no stray object named by the
corrupt bytes' own hash) is ever committed in the target.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

import blake3

from loopml.core.errors import InvalidInput, StoreCorrupt
from loopml.core.hashing import CHUNK_SIZE, is_digest
from loopml.storage.blobs.store import BlobStore

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

Progress = Callable[[int, int], None]
MAX_WORKERS = 256


@dataclass(frozen=True)
class TransferReport:
    """What a transfer did: objects copied, objects the target already had, and bytes copied."""

    copied: int
    skipped: int
    bytes: int


def copy_missing(
    source: BlobStore,
    target: BlobStore,
    digests: Iterable[str],
    *,
    workers: int = 8,
    progress: Progress | None = None,
) -> TransferReport:
    """Copy the objects among `digests` that `target` lacks from `source`, `workers` at a time.

    `progress(done, total)` is called from the calling thread: once with `done=0` before the first copy,
    then after each copied object. The first failure stops the transfer (objects already copied stay:
    they are complete and verified) and is raised.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise InvalidInput(f"workers must be a whole number from 1 to {MAX_WORKERS}, got {workers!r}")
    wanted = _checked(digests)
    # One listing of the target instead of one existence request per object (a HEAD each on S3).
    present = {d for d in target.digests() if d in wanted} if wanted else set()
    missing = wanted - present
    total = len(missing)
    if progress is not None:
        progress(0, total)
    copied_bytes = 0
    done = 0
    # Whole packs first: thousands of small objects travel as one file (and one index) instead of one
    # request each. A pack goes when at least half of its objects are wanted; the rest go one by one.
    for pack in source.packs():
        needed = missing.intersection(pack.objects)
        if needed and 2 * len(needed) >= len(pack.objects):
            copied_bytes += target.adopt_pack(source, pack.digest)
            missing -= needed
            done += len(needed)
            if progress is not None:
                progress(done, total)
    missing_in_order = sorted(missing)
    queue = iter(missing_in_order)
    pending: set[Future[int]] = set()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="loopml-transfer") as pool:
        try:
            while True:
                # A bounded window rather than one future per object: memory stays flat for a million
                # objects, and a failure stops the transfer after the copies in flight, not after all.
                while len(pending) < 2 * workers and (digest := next(queue, None)) is not None:
                    pending.add(pool.submit(_copy_one, source, target, digest))
                if not pending:
                    break
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    copied_bytes += future.result()
                    done += 1
                    if progress is not None:
                        progress(done, total)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return TransferReport(copied=done, skipped=len(present), bytes=copied_bytes)


def _checked(digests: Iterable[str]) -> set[str]:
    if isinstance(digests, str):  # one digest passed bare would be iterated character by character
        raise InvalidInput("digests must be a collection of object digests, not a single string")
    wanted = set(digests)
    bad = sorted(repr(d) for d in wanted if not isinstance(d, str) or not is_digest(d))
    if bad:
        raise InvalidInput(f"not object digests: {', '.join(bad[:3])} (expected 64 lowercase hex digits)")
    return wanted


def _copy_one(source: BlobStore, target: BlobStore, digest: str) -> int:
    with source.open(digest) as stream:
        reader = _VerifyingReader(stream, digest, source.display_url)
        stored, size = target.put_stream(io.BufferedReader(reader, CHUNK_SIZE))
    if stored != digest:  # the reader already refused a mismatch; this guards against a buggy store
        raise StoreCorrupt(
            f"object {digest} arrived in {target.display_url} as {stored}: the copy is not trustworthy"
        )
    return size


class _VerifyingReader(io.RawIOBase):
    """A raw stream that hashes what it passes and fails at the end if the content is not `digest`."""

    def __init__(self, stream: IO[bytes], digest: str, where: str) -> None:
        super().__init__()
        self._stream = stream
        self._digest = digest
        self._where = where
        self._hasher = blake3.blake3()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        chunk = self._stream.read(len(view))
        if not chunk:
            # Raising here (not after the copy) makes put_stream discard its temporary object.
            if self._hasher.hexdigest() != self._digest:
                raise StoreCorrupt(
                    f"object {self._digest} in {self._where} is corrupt (its content hash differs); "
                    "it was not copied"
                )
            return 0
        self._hasher.update(chunk)
        size = len(chunk)
        view[:size] = chunk
        return size
