"""Data tracked in place (`--no-copy`): a tree of fingerprints of files that stay where they are.

Local files are fingerprinted by their BLAKE3 content hash; objects in a remote store (s3://...) by their
ETag (or size and modification time when the store gives none), so nothing large is downloaded to notice
a change. The content is never copied into the blob store; only the small tree is.
"""

from __future__ import annotations

import re
from typing import Any

import fsspec

from loopml.core.errors import InvalidInput, NotFound, RemoteError
from loopml.core.hashing import hash_file, hash_text
from loopml.storage.blobs.tree import Tree, TreeEntry
from loopml.storage.endpoints import storage_options_for


def fingerprint_tree(url: str, **storage_options: Any) -> Tree:
    """The fingerprints of the file or of every file under the folder/prefix at `url`."""
    options = {**storage_options_for(url), "skip_instance_cache": True, **storage_options}
    if "://" not in url:
        options.pop("skip_instance_cache")
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except (ImportError, ValueError) as error:
        raise InvalidInput(f"cannot open {url!r}: {error}") from None
    local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
    try:
        if fs.isfile(root):
            listing = {root: fs.info(root)}
            base = root.rsplit("/", 1)[0]
        else:
            listing = fs.find(root, detail=True)
            base = root.rstrip("/")
    except FileNotFoundError:
        raise NotFound(f"nothing at {_shown(url)!r}") from None
    except OSError as error:  # refused credentials, unreachable endpoint: say which, never the secret
        raise RemoteError(f"cannot list {_shown(url)}: {type(error).__name__}: {str(error)[:200]}") from None
    if not listing:
        raise InvalidInput(f"{url!r} holds no files to track")
    entries = []
    for path, info in sorted(listing.items()):
        name = str(path)[len(base) :].lstrip("/")
        size = int(info.get("size") or 0)
        digest = hash_file(_local_path(path)) if local else hash_text(f"external:{_remote_fingerprint(info)}")
        entries.append(TreeEntry(name, size, digest))
    return Tree.of(entries)


def _shown(url: str) -> str:
    return re.sub(r"(://)[^/@]*@", r"\1", url)


def _local_path(path: str) -> Any:
    from pathlib import Path

    return Path(path)


def _remote_fingerprint(info: dict[str, Any]) -> str:
    for key in ("ETag", "etag", "md5", "checksum"):
        if info.get(key):
            return f"{key}={str(info[key]).strip(chr(34))}"
    stamp = info.get("LastModified") or info.get("mtime") or info.get("created") or ""
    return f"size={info.get('size')};modified={stamp}"
