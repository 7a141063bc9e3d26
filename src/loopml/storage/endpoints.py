"""Storage options for remote URLs: the S3 endpoint (custom servers, path-style) and connection pools."""

from __future__ import annotations

import os
from typing import Any

ENDPOINT_ENV = "LOOPML_S3_ENDPOINT_URL"


def storage_options_for(url: str, *, endpoint_url: str | None = None, workers: int = 8) -> dict[str, Any]:
    """fsspec options for `url`: for s3:// the endpoint (argument, else `LOOPML_S3_ENDPOINT_URL`)."""
    protocol = url.split("://", 1)[0].lower() if "://" in url else "file"
    if protocol not in {"s3", "s3a"}:
        return {}
    return s3_options(endpoint_url or os.environ.get(ENDPOINT_ENV) or None, workers)


def s3_options(endpoint_url: str | None, workers: int) -> dict[str, Any]:
    """s3fs options: one pooled connection per worker, and path-style addressing for custom endpoints."""
    # botocore's default pool of 10 would queue larger transfers.
    # SigV4 also for presigned URLs (botocore signs those with SigV2 by default, which most S3-compatible
    # servers and newer AWS regions refuse).
    config: dict[str, Any] = {"max_pool_connections": max(10, workers), "signature_version": "s3v4"}
    options: dict[str, Any] = {"config_kwargs": config}
    if endpoint_url:
        # S3-compatible servers rarely resolve bucket subdomains (bucket.127.0.0.1): address by path.
        config["s3"] = {"addressing_style": "path"}
        options["client_kwargs"] = {"endpoint_url": endpoint_url}
    return options
