"""Canary and shadow routing, per-version request counts, and the limits that take a bad challenger out.

`choose` picks who answers a request: in a canary, a `share` of requests go to the challenger, drawn at
random, or by a hash of the sticky header's value so one caller always meets the same version. In a shadow
deployment the champion always answers and `mirror` says whether the challenger also runs the request (in
`Mirror`'s own thread, after the answer, dropped rather than queued when it falls behind).

`Watch` keeps, per served version, the count of requests and failures and a window of recent outcomes. When
the challenger breaks the deployment's limits (error rate or p99 latency over the window, once it has seen
`min_requests`), `on_breach` is called once per deployment revision: the pool then writes share 0 with the
evidence, and every server polling that deployment stops routing to the challenger.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loopml.serving.pool import Route, ServedModel

log = logging.getLogger(__name__)
WINDOW = 500  # outcomes kept per version for the limits
DEFAULT_MIN_REQUESTS = 20


def choose(route: Route, headers: Mapping[str, str]) -> tuple[ServedModel, str]:
    """Who answers this request, and in which role ("champion" or "challenger")."""
    deployment = route.deployment
    if deployment.mode != "canary" or route.challenger is None or deployment.share <= 0:
        return route.champion, "champion"
    if _draw(deployment.sticky_key, headers) < deployment.share:
        return route.challenger, "challenger"
    return route.champion, "champion"


def mirror(route: Route, headers: Mapping[str, str]) -> ServedModel | None:
    """The challenger to run this request in the shadow of the champion, or None."""
    deployment = route.deployment
    if deployment.mode != "shadow" or route.challenger is None or deployment.share <= 0:
        return None
    return route.challenger if _draw(deployment.sticky_key, headers) < deployment.share else None


def _draw(sticky_key: str | None, headers: Mapping[str, str]) -> float:
    value = headers.get(sticky_key.lower()) if sticky_key else None
    if value is None:
        return random.random()  # noqa: S311 - traffic splitting, not security
    digest = hashlib.blake2b(value.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class VersionStats:
    """What one version served: totals, and a window of (ok, latency ms) for the limits."""

    requests: int = 0
    failures: int = 0
    window: deque[tuple[bool, float]] = field(default_factory=lambda: deque(maxlen=WINDOW))


class Watch:
    """Per-version counts, and the challenger's limits checked after each of its requests."""

    def __init__(self, on_breach: Callable[[Route, dict[str, Any]], None]) -> None:
        self.on_breach = on_breach
        self.stats: dict[tuple[str, int], VersionStats] = {}
        self._reported: set[tuple[str, int]] = set()  # (model, revision) already reported
        self._lock = threading.Lock()

    def record(self, route: Route, served: ServedModel, ok: bool, latency_ms: float) -> None:
        """Count one outcome of `served`; check the limits when it is the route's challenger."""
        key = (served.name, served.number)
        with self._lock:
            stats = self.stats.setdefault(key, VersionStats())
            stats.requests += 1
            stats.failures += 0 if ok else 1
            stats.window.append((ok, latency_ms))
            if route.challenger is None or served is not route.challenger:
                return
            evidence = _breach(route, stats)
            report = (served.name, route.deployment.revision)
            if evidence is None or report in self._reported:
                return
            self._reported.add(report)
        log.warning("challenger %s broke its limits: %s", served.version.ref, evidence["reason"])
        self.on_breach(route, evidence)

    def counts(self, name: str) -> dict[int, dict[str, int]]:
        """Requests and failures per version of `name` since the server started."""
        with self._lock:
            return {
                version: {"requests": s.requests, "failures": s.failures}
                for (model, version), s in sorted(self.stats.items())
                if model == name
            }


def _breach(route: Route, stats: VersionStats) -> dict[str, Any] | None:
    limits = route.deployment.limits
    seen = len(stats.window)
    if not limits or seen < limits.get("min_requests", DEFAULT_MIN_REQUESTS):
        return None
    outcomes = list(stats.window)
    error_rate = sum(1 for ok, _ in outcomes if not ok) / seen
    p99 = float(np.percentile([ms for _, ms in outcomes], 99))
    evidence = {"window": seen, "error_rate": round(error_rate, 4), "p99_ms": round(p99, 3), "limits": limits}
    challenger = route.challenger.version.ref if route.challenger else "?"
    if "max_error_rate" in limits and error_rate > limits["max_error_rate"]:
        reason = (
            f"{challenger}: error rate {error_rate:.1%} over {seen} requests > {limits['max_error_rate']:.1%}"
        )
        return {**evidence, "reason": reason}
    if "max_p99_ms" in limits and p99 > limits["max_p99_ms"]:
        reason = f"{challenger}: p99 latency {p99:.1f} ms over {seen} requests > {limits['max_p99_ms']:g} ms"
        return {**evidence, "reason": reason}
    return None


class Mirror:
    """Runs shadow predictions in one background thread; drops them when `max_pending` are waiting."""

    def __init__(self, max_pending: int = 64) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loopml-shadow")
        self._slots = threading.BoundedSemaphore(max_pending)
        self.dropped = 0

    def submit(self, call: Callable[[], None]) -> bool:
        """Run `call` later; False (and counted) when the shadow queue is full."""
        if not self._slots.acquire(blocking=False):
            self.dropped += 1
            return False

        def run() -> None:
            try:
                call()
            except Exception:  # a failing shadow is recorded by `call`; nothing may escape into the pool
                log.exception("shadow prediction failed")
            finally:
                self._slots.release()

        self._executor.submit(run)
        return True

    def close(self) -> None:
        """Finish what is queued."""
        self._executor.shutdown(wait=True)
