"""Share dataset versions through a remote blob store: any fsspec URL (a folder, `s3://bucket/prefix`).

`push` copies the objects the chosen versions need (each version's tree, the files it lists, its profile)
to the remote when it lacks them; `pull` copies them back for versions this project's metadata database
knows. Only blobs move: version records travel through the shared database or the team server, or through
pointer files in git.

S3-compatible servers (MinIO, Ceph, `rclone serve s3`) are reached with an endpoint URL (`endpoint_url=` or
`LOOPML_S3_ENDPOINT_URL`) and path-style addressing; credentials come from storage options or the usual
`AWS_*` environment variables and never appear in a message.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import fsspec

from loopml.core.errors import InvalidInput, LoopMLError, NotFound, RemoteError
from loopml.data.catalog import DataCatalog
from loopml.data.records import DatasetVersion
from loopml.storage.blobs.store import BlobStore
from loopml.storage.blobs.transfer import Progress, TransferReport, copy_missing
from loopml.storage.blobs.tree import Tree, get_tree
from loopml.storage.endpoints import ENDPOINT_ENV, s3_options

# Object stores whose first path component is a bucket (or container) that must already exist: a push
# never creates one, so a typo in the bucket name is an error instead of a new bucket.
_BUCKETED = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})
_SECRET_WORDS = ("secret", "token", "password", "key")
_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_MAX_DETAIL = 200


def push(
    catalog: DataCatalog,
    remote_url: str,
    refs: Sequence[str] | None = None,
    *,
    endpoint_url: str | None = None,
    workers: int = 8,
    progress: Progress | None = None,
    **storage_options: Any,
) -> TransferReport:
    """Copy the objects of `refs` (default: every version of every dataset) that the remote lacks."""
    versions = _versions(catalog, refs)
    local = catalog.stores.blobs
    needed = _needed(versions, [local])
    remote = remote_store(remote_url, endpoint_url=endpoint_url, workers=workers, **storage_options)
    with remote_errors(remote.display_url, storage_options):
        _probe(remote, must_exist=False)
        return copy_missing(local, remote, needed, workers=workers, progress=progress)


def pull(
    catalog: DataCatalog,
    remote_url: str,
    refs: Sequence[str] | None = None,
    *,
    endpoint_url: str | None = None,
    workers: int = 8,
    progress: Progress | None = None,
    **storage_options: Any,
) -> TransferReport:
    """Copy the objects of `refs` (default: every version this project knows) that are missing locally."""
    versions = _versions(catalog, refs)
    local = catalog.stores.blobs
    remote = remote_store(remote_url, endpoint_url=endpoint_url, workers=workers, **storage_options)
    with remote_errors(remote.display_url, storage_options):
        _probe(remote, must_exist=True)
        needed = _needed(versions, [local, remote])
        return copy_missing(remote, local, needed, workers=workers, progress=progress)


def pull_trees(
    catalog: DataCatalog,
    remote_url: str,
    trees: Sequence[str],
    *,
    endpoint_url: str | None = None,
    workers: int = 8,
    **storage_options: Any,
) -> TransferReport:
    """Copy trees (by digest, e.g. from pointer files) and the files they list, without needing the versions
    in the local metadata database: a fresh clone of a repository can fetch exactly what its pointers name."""
    local = catalog.stores.blobs
    remote = remote_store(remote_url, endpoint_url=endpoint_url, workers=workers, **storage_options)
    with remote_errors(remote.display_url, storage_options):
        _probe(remote, must_exist=True)
        needed: set[str] = set(trees)
        for digest in trees:
            source = local if local.exists(digest) else remote
            needed.update(entry.digest for entry in get_tree(source, digest).entries)
        return copy_missing(remote, local, needed, workers=workers)


def remote_store(
    remote_url: str, *, endpoint_url: str | None = None, workers: int = 8, **storage_options: Any
) -> BlobStore:
    """The blob store at `remote_url`, with S3 endpoint and connection-pool options filled in."""
    if not isinstance(remote_url, str) or not remote_url.strip():
        raise InvalidInput("a remote must be a folder or an fsspec URL such as s3://bucket/prefix")
    protocol = _protocol(remote_url)
    if protocol not in fsspec.available_protocols():
        raise InvalidInput(
            f"{_redact(remote_url)} is not a storage URL (unknown protocol {protocol!r}); "
            "use a folder or a URL such as s3://bucket/prefix"
        )
    options: dict[str, Any] = {}
    if protocol in {"s3", "s3a"}:
        options = s3_options(endpoint_url or os.environ.get(ENDPOINT_ENV) or None, workers)
    for name, value in storage_options.items():
        both_dicts = isinstance(value, dict) and isinstance(options.get(name), dict)
        options[name] = {**options[name], **value} if both_dicts else value
    # A fresh filesystem object, not fsspec's cached one: the cache is keyed by the options, so with
    # credentials from the environment a changed secret would silently reuse the old client and listings.
    options.setdefault("skip_instance_cache", True)
    return BlobStore(remote_url, **options)


@contextlib.contextmanager
def remote_errors(where: str, storage_options: dict[str, Any] | None = None) -> Iterator[None]:
    """Turn a remote's failures into one-line LoopML errors that name `where` and never carry a secret."""
    try:
        yield
    except LoopMLError:
        raise
    except PermissionError:
        credentials = (
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" if where.startswith("s3") else "credentials"
        )
        raise RemoteError(
            f"the remote {where} refused access: check the {credentials} and their permissions"
        ) from None
    except FileNotFoundError as error:
        raise NotFound(f"not found on the remote {where}: {_detail(error, storage_options)}") from None
    except Exception as error:
        # fsspec backends raise their own types (botocore's, aiohttp's) besides OSError; anything else
        # is a bug of ours and keeps its traceback.
        if not isinstance(error, OSError) and not _from_backend(error):
            raise
        name = type(error).__name__
        if "Credentials" in name:
            raise RemoteError(
                f"no credentials for the remote {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or pass key/secret storage options)"
            ) from None
        if "Connect" in name or "Timeout" in name or isinstance(error, ConnectionError | TimeoutError):
            raise RemoteError(
                f"cannot reach the remote {where} ({name}): check the URL and --endpoint-url"
            ) from None
        raise RemoteError(f"the remote {where} failed: {name}: {_detail(error, storage_options)}") from None


def _probe(remote: BlobStore, *, must_exist: bool) -> None:
    """Fail early, with a clear message, on a missing bucket (or a missing folder to pull from)."""
    protocol = _protocol(remote.url)
    if protocol in _BUCKETED:
        bucket = remote.root.split("/", 1)[0]
        try:
            remote.fs.info(bucket)
        except FileNotFoundError:
            raise NotFound(
                f"the bucket {bucket!r} of the remote {remote.display_url} does not exist: create it first"
            ) from None
    elif must_exist and not remote.fs.isdir(remote.root):
        raise NotFound(f"the remote {remote.display_url} does not exist: nothing was pushed there")


def _versions(catalog: DataCatalog, refs: Sequence[str] | None) -> list[DatasetVersion]:
    if refs is None:
        return [v for dataset in catalog.datasets() for v in catalog.versions(dataset.name)]
    if isinstance(refs, str):  # one reference passed bare would be iterated character by character
        refs = [refs]
    return [catalog.get(ref) for ref in refs]


def _needed(versions: Sequence[DatasetVersion], stores: Sequence[BlobStore]) -> set[str]:
    """Every object the versions need: trees, the files they list, profiles (trees read from `stores`)."""
    needed: set[str] = set()
    for version in versions:
        needed.add(version.manifest_digest)
        if version.profile_digest:
            needed.add(version.profile_digest)
        needed.update(entry.digest for entry in _tree(version, stores).entries)
    return needed


def _tree(version: DatasetVersion, stores: Sequence[BlobStore]) -> Tree:
    for store in stores:
        if store.exists(version.manifest_digest):
            return get_tree(store, version.manifest_digest)
    where = " nor in ".join(store.display_url for store in stores)
    raise NotFound(
        f"{version.ref} cannot be transferred: its file list (object {version.manifest_digest}) is "
        f"{'neither' if len(stores) > 1 else 'not'} in {where}"
    )


def _protocol(url: str) -> str:
    protocol = fsspec.core.split_protocol(url)[0]
    return str(protocol) if protocol else "file"


def _from_backend(error: Exception) -> bool:
    return type(error).__module__.split(".", 1)[0] in {"botocore", "aiobotocore", "aiohttp", "fsspec", "s3fs"}


def _detail(error: Exception, storage_options: dict[str, Any] | None) -> str:
    """The first line of an error's text, shortened, with every known secret blanked out."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    secrets = [os.environ.get(name, "") for name in _SECRET_ENV]
    secrets += _secret_values(storage_options or {})
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return _redact(text)[:_MAX_DETAIL]


def _secret_values(options: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for name, value in options.items():
        if isinstance(value, dict):
            found += _secret_values(value)
        elif isinstance(value, str) and any(word in name.lower() for word in _SECRET_WORDS):
            found.append(value)
    return found


def _redact(text: str) -> str:
    return re.sub(r"(://)[^/@\s]*@", r"\1", text)
