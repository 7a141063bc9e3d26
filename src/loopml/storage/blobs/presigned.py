"""Direct transfers between clients and an object store, with presigned URLs, past the team server.

A download URL points at the object itself: the client checks the content against the digest it asked for,
so nothing is trusted. An upload cannot go straight to its content address (S3 does not check BLAKE3 digests,
and a wrong object there would poison that digest for everyone): it goes to a fresh staging key, and
`commit_upload` hashes what arrived before moving it to its address. The server still reads the bytes once
(next to the store), but they no longer travel through it from the client.
"""

from __future__ import annotations

import contextlib
import re
import uuid

import blake3

from loopml.core.errors import InvalidInput, NotFound
from loopml.core.hashing import read_chunks
from loopml.storage.blobs.store import BlobStore

_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


def supports_presigned(blobs: BlobStore) -> bool:
    """True for stores that can sign URLs (S3 and compatible); a local folder cannot."""
    protocols = blobs.fs.protocol if isinstance(blobs.fs.protocol, tuple) else (blobs.fs.protocol,)
    return bool({"s3", "s3a"} & set(protocols))


def download_url(blobs: BlobStore, digest: str, *, expires_s: int) -> str | None:
    """A URL to GET the object's bytes, or None (not a signing store, or the object sits inside a pack)."""
    path = blobs.path_of(digest)
    if not supports_presigned(blobs) or not blobs.fs.exists(path):
        return None
    return str(blobs.fs.url(path, expires=expires_s, client_method="get_object"))


def upload_url(blobs: BlobStore, size: int, *, expires_s: int) -> tuple[str, str] | None:
    """(upload id, URL to PUT exactly `size` bytes to a staging key), or None when the store cannot sign."""
    if not supports_presigned(blobs):
        return None
    upload_id = uuid.uuid4().hex
    url = blobs.fs.url(
        _staged(blobs, upload_id), expires=expires_s, client_method="put_object", ContentLength=size
    )
    return upload_id, str(url)


def commit_upload(blobs: BlobStore, upload_id: str, digest: str, *, max_bytes: int) -> int:
    """Move a staged upload to its content address if it hashes to `digest` (else delete it and refuse);
    returns its size. One larger than `max_bytes` is deleted unread."""
    if not isinstance(upload_id, str) or not _UPLOAD_ID.match(upload_id):
        raise InvalidInput(f"not an upload id: {upload_id!r}")
    blobs.path_of(digest)  # the digest is checked before anything is read
    staged = _staged(blobs, upload_id)
    try:
        too_large = int(blobs.fs.size(staged)) > max_bytes
    except FileNotFoundError:
        raise NotFound(f"upload {upload_id} has not arrived (or was committed already)") from None
    if too_large:
        with contextlib.suppress(FileNotFoundError):
            blobs.fs.rm_file(staged)
        raise InvalidInput(f"upload {upload_id} is over {max_bytes} bytes: discarded")
    hasher, size = blake3.blake3(), 0
    try:
        with blobs.fs.open(staged, "rb") as source:
            for chunk in read_chunks(source):
                hasher.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        raise NotFound(f"upload {upload_id} has not arrived (or was committed already)") from None
    if hasher.hexdigest() != digest:
        with contextlib.suppress(FileNotFoundError):
            blobs.fs.rm_file(staged)
        raise InvalidInput(
            f"upload {upload_id} does not hash to {digest} (truncated or corrupted): discarded"
        )
    blobs.commit_staged(staged, digest)
    return size


def _staged(blobs: BlobStore, upload_id: str) -> str:
    return f"{blobs.root}/incoming/upload-{upload_id}"
