"""Content hashing with BLAKE3: one digest format (64 lowercase hex digits) for blobs, environments and code."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import blake3

DIGEST_LENGTH = 64
CHUNK_SIZE = 1 << 20
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def hash_bytes(data: bytes) -> str:
    """BLAKE3 digest of `data`."""
    return str(blake3.blake3(data).hexdigest())


def hash_text(text: str) -> str:
    """BLAKE3 digest of the UTF-8 bytes of `text`."""
    return hash_bytes(text.encode("utf-8"))


def hash_chunks(chunks: Iterable[bytes]) -> str:
    """BLAKE3 digest of a stream of byte chunks, read once."""
    hasher = blake3.blake3()
    for chunk in chunks:
        hasher.update(chunk)
    return str(hasher.hexdigest())


def read_chunks(stream: IO[bytes], size: int = CHUNK_SIZE) -> Iterable[bytes]:
    """Yield `stream` in chunks so large files are never read whole into memory."""
    while chunk := stream.read(size):
        yield chunk


def hash_file(path: Path) -> str:
    """BLAKE3 digest of a file's content, streamed."""
    with path.open("rb") as stream:
        return hash_chunks(read_chunks(stream))


def is_digest(value: str) -> bool:
    """True when `value` is a well-formed digest (and so safe to use as a file name)."""
    return bool(_DIGEST.fullmatch(value))  # fullmatch: "$" would also accept a trailing newline
