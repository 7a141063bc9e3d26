"""Presigned URLs: clients move large blobs to and from the server's S3 store directly.

```
POST /api/v1/blobs/{digest}/download-url              reader   {url} to GET the bytes from the store, or
                                                               {url: null}: fetch through GET /api/v1/blobs/...
POST /api/v1/blobs/uploads  {size}                    editor   {upload_id, url} to PUT exactly `size` bytes to a
                                                               staging key, or {url: null}: upload through PUT
                                                               /api/v1/blobs/...
POST /api/v1/blobs/uploads/{upload_id}/commit  {digest}        editor   the server hashes what arrived and moves it
                                                               to its address; a mismatch is discarded (400)
```
URLs expire after `EXPIRES_S`; the upload's size is part of the signature, so the store refuses any other
length, and `max_upload_bytes` bounds it as for proxied uploads. A local-folder store signs nothing: every
answer is `{url: null}` and clients proxy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from loopml.server.fields import BIGGEST, text, who, whole
from loopml.serving.limits import PayloadTooLarge
from loopml.storage.blobs import presigned

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

EXPIRES_S = 900


def direct_routes(app: FastAPI, tracker: Tracker, read_body: Any, *, max_upload_bytes: int) -> None:
    """Add the presigned-URL routes to `app`."""
    blobs = tracker.blobs

    @app.post("/api/v1/blobs/{digest}/download-url")
    async def download_url(digest: str, request: Request) -> Any:
        who(request).require("read")
        blobs.path_of(digest)  # a 400 for anything that is not a digest
        url = await run_in_threadpool(presigned.download_url, blobs, digest, expires_s=EXPIRES_S)
        return {"url": url, "expires_s": EXPIRES_S if url else None}

    @app.post("/api/v1/blobs/uploads")
    async def start_upload(request: Request) -> Any:
        who(request).require_somewhere("write")
        size = whole(await read_body(request), "size", minimum=0, maximum=BIGGEST)
        if size > max_upload_bytes:
            raise PayloadTooLarge(f"the upload is {size} bytes; this server takes at most {max_upload_bytes}")
        made = await run_in_threadpool(presigned.upload_url, blobs, size, expires_s=EXPIRES_S)
        if made is None:
            return {"upload_id": None, "url": None}
        return {"upload_id": made[0], "url": made[1], "expires_s": EXPIRES_S}

    @app.post("/api/v1/blobs/uploads/{upload_id}/commit")
    async def commit_upload(upload_id: str, request: Request) -> Any:
        who(request).require_somewhere("write")
        digest = text(await read_body(request), "digest")
        size = await run_in_threadpool(
            lambda: presigned.commit_upload(blobs, upload_id, digest, max_bytes=max_upload_bytes)
        )
        return {"digest": digest, "size": size}
