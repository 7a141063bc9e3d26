"""One local Ray cluster for the whole test session, bound to 127.0.0.1.

Starting Ray costs 3-7 s and about 0.5 GB on this machine, so the session shares one (Ray's own suite shares
one per module for the same reason). Without Ray installed the tests that need it skip, except under CI,
where the `[ray]` extra is part of the lock file and a missing Ray is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

OBJECT_STORE_BYTES = 256 * 1024 * 1024  # the default takes 30% of RAM as shared memory


def ray_or_skip() -> Any:
    """The `ray` module, imported as LoopML imports it (bound to loopback), or a skip (a failure under CI)."""
    from loopml.core.ray_executor import ClusterUnavailable, ray_module

    try:
        return ray_module(local=True)
    except ClusterUnavailable:
        if os.environ.get("CI"):
            pytest.fail("Ray is not installed, but the [ray] extra is in requirements/dev.lock")
        pytest.skip("Ray is not installed (pip install 'loopml[ray]')")


def local_cluster() -> Iterator[Any]:
    """Start the local cluster (loopback only, 2 CPUs, no dashboard) and stop it afterwards."""
    ray = ray_or_skip()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=OBJECT_STORE_BYTES,
    )
    try:
        yield ray
    finally:
        ray.shutdown()
