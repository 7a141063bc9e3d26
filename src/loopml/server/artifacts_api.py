"""Artifacts over HTTP: content-addressed blobs and the run records that name them.

```
PUT  /api/v1/blobs/{digest}            editor   the body, streamed; stored only if it hashes to {digest}
GET  /api/v1/blobs/{digest}            reader   the content, streamed
POST /api/v1/blobs/missing  {digests}  reader   which of these (up to 10,000) the server lacks, so a client
                                                uploads only those
POST /api/v1/runs/{run_id}/artifacts  {artifacts: [{path, digest, size}]}   editor
GET  /api/v1/runs/{run_id}/artifacts?path=                                   reader
```
Nothing a client sends becomes a server file path: a blob is named by its BLAKE3 digest (checked to be 64 hex
characters), and an artifact path is a validated relative name stored as data. An upload is spooled (memory,
then a temporary file), hashed while it arrives and refused past `max_upload_bytes`; one that does not hash to
its name (truncated, corrupted) is refused and nothing is stored.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any, cast

import blake3
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from loopml.core.errors import InvalidInput, NotFound
from loopml.core.hashing import is_digest
from loopml.core.plain import to_plain
from loopml.server.fields import who
from loopml.serving.limits import PayloadTooLarge

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

SPOOL_BYTES = 8 * 2**20  # uploads up to this size stay in memory
MAX_ASKED = 10_000  # digests in one "which are missing" request


def artifact_routes(app: FastAPI, tracker: Tracker, read_body: Any, *, max_upload_bytes: int) -> None:
    """Add the blob and artifact routes to `app`."""

    @app.put("/api/v1/blobs/{digest}")
    async def put_blob(digest: str, request: Request) -> Any:
        who(request).require_somewhere("write")
        _check_digest(digest)
        spool, received, size = await receive_upload(request, max_upload_bytes)
        try:
            if received != digest:
                raise InvalidInput(
                    f"the upload ({size} bytes) does not hash to {digest}: truncated or corrupted; nothing stored"
                )
            stored, length = await run_in_threadpool(tracker.blobs.put_stream, spool)
        finally:
            spool.close()
        return {"digest": stored, "size": length}

    @app.get("/api/v1/blobs/{digest}")
    async def get_blob(digest: str, request: Request) -> Any:
        who(request).require_somewhere("read")  # named by content: unguessable
        _check_digest(digest)
        if not await run_in_threadpool(tracker.blobs.exists, digest):
            raise NotFound(f"no blob {digest}")
        return StreamingResponse(_chunks(tracker, digest), media_type="application/octet-stream")

    @app.post("/api/v1/blobs/missing")
    async def missing_blobs(request: Request) -> Any:
        who(request).require_somewhere("read")  # no more than a GET of each would tell
        digests = (await read_body(request)).get("digests")
        if not isinstance(digests, list) or len(digests) > MAX_ASKED:
            raise InvalidInput(f"digests: a list of at most {MAX_ASKED} BLAKE3 digests")
        for index, digest in enumerate(digests):
            if not isinstance(digest, str) or not is_digest(digest):
                raise InvalidInput(f"digests[{index}]: a BLAKE3 digest (64 lowercase hex characters)")
        unique = list(dict.fromkeys(digests))
        missing = await run_in_threadpool(lambda: [d for d in unique if not tracker.blobs.exists(d)])
        return {"missing": missing}

    @app.post("/api/v1/runs/{run_id}/artifacts")
    async def add_artifacts(run_id: str, request: Request) -> Any:
        who(request).require("write")
        body = await read_body(request)
        artifacts = await run_in_threadpool(artifact_records, tracker, body.get("artifacts"))
        await run_in_threadpool(tracker.store.attachments.add_artifacts, run_id, artifacts)
        return {"run_id": run_id, "artifacts": len(artifacts)}

    @app.get("/api/v1/runs/{run_id}/artifacts")
    async def list_artifacts(run_id: str, request: Request, path: str | None = None) -> Any:
        who(request).require("read")
        from loopml.core.names import safe_relative_path

        prefix = safe_relative_path(path) if path else None
        found = await run_in_threadpool(tracker.store.attachments.list_artifacts, run_id, prefix)
        return {"artifacts": to_plain(found)}


async def receive_upload(request: Request, max_bytes: int) -> tuple[IO[bytes], str, int]:
    """The request body spooled (memory, then a temporary file) and rewound, its BLAKE3 digest and size;
    `PayloadTooLarge` past `max_bytes` (declared or counted), with nothing kept."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"the upload is {declared} bytes; this server takes at most {max_bytes}")
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - the caller closes it
    try:
        hasher, size = blake3.blake3(), 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"the upload is over {max_bytes} bytes; nothing was stored")
            hasher.update(chunk)
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return cast(IO[bytes], spool), hasher.hexdigest(), size


def artifact_records(tracker: Tracker, items: Any) -> list[Any]:
    """Artifact records from a request, each checked: a safe relative path, and an uploaded blob of that size."""
    from loopml.tracking.records import Artifact
    from loopml.tracking.values import check_artifact_path

    if not isinstance(items, list) or not items:
        raise InvalidInput("artifacts: a non-empty list of {path, digest, size}")
    found = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != {"path", "digest", "size"}:
            raise InvalidInput(f"artifacts[{index}]: an object with exactly path, digest, size")
        digest, size = item["digest"], item["size"]
        if not isinstance(digest, str) or not is_digest(digest):
            raise InvalidInput(f"artifacts[{index}].digest: a BLAKE3 digest (64 hex characters)")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidInput(f"artifacts[{index}].size: a whole number of bytes")
        if not tracker.blobs.exists(digest) or tracker.blobs.size(digest) != size:
            raise InvalidInput(
                f"artifacts[{index}]: no uploaded blob {digest} of {size} bytes (PUT it first)"
            )
        found.append(Artifact(check_artifact_path(item["path"]), digest, size))
    return found


def _chunks(tracker: Tracker, digest: str) -> Iterator[bytes]:
    from loopml.core.hashing import read_chunks

    with tracker.blobs.open(digest) as source:
        yield from read_chunks(source)


def _check_digest(digest: str) -> None:
    if not is_digest(digest):
        raise InvalidInput("a blob is named by its BLAKE3 digest: 64 lowercase hex characters")
