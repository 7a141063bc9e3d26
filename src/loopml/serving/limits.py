"""Bounded work: how many predictions run at once, how many may wait, how long one may take, how big a body is.

Beyond `max_concurrency + max_queue` requests a server answers 503 with `Retry-After` at once instead of
queueing without bound; a prediction that has not finished after `timeout_s` (waiting included) answers 504
(its thread is abandoned, not killed: Python cannot stop a running call, and the limiter keeps it counted
until it returns). Bodies over `max_body_bytes` are refused with 413 while they are read, so a 100 MB upload
is never held in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from loopml.core.errors import InvalidInput, LoopMLError

T = TypeVar("T")


class PayloadTooLarge(InvalidInput):
    """A request body over the server's limit."""

    code = "payload_too_large"
    http_status = 413


class Overloaded(LoopMLError):
    """More requests than the server runs and queues; the client should retry after `retry_after_s`."""

    code = "overloaded"
    http_status = 503
    exit_code = 3

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PredictionTimeout(LoopMLError):
    """A prediction did not finish within the server's timeout."""

    code = "prediction_timeout"
    http_status = 504


class Admission:
    """Runs blocking calls in worker threads, at most `max_concurrency` at once and `max_queue` waiting."""

    def __init__(self, *, max_concurrency: int, max_queue: int, timeout_s: float) -> None:
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self._limiter: anyio.CapacityLimiter | None = None  # made inside the event loop that uses it
        self.admitted = 0  # running or waiting; only the event loop thread changes it

    @property
    def waiting(self) -> int:
        """Calls admitted but not yet running."""
        return max(0, self.admitted - self.max_concurrency)

    async def run(self, call: Callable[[], T]) -> T:
        """`call()` in a worker thread; `Overloaded` at once when full, `PredictionTimeout` after `timeout_s`."""
        if self.admitted >= self.max_concurrency + self.max_queue:
            raise Overloaded(
                f"the server is at capacity ({self.max_concurrency} running, {self.max_queue} waiting); retry shortly"
            )
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.max_concurrency)
        self.admitted += 1
        try:
            with anyio.fail_after(self.timeout_s):
                return await anyio.to_thread.run_sync(call, limiter=self._limiter, abandon_on_cancel=True)
        except TimeoutError:
            raise PredictionTimeout(f"the prediction took longer than {self.timeout_s:g} s") from None
        finally:
            self.admitted -= 1


class BodyLimit:
    """ASGI middleware refusing bodies over `max_body_bytes` (by Content-Length, and while streaming)."""

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, int(declared), limit)
            return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # raised into the route reading the body; its handler answers 413
                    raise PayloadTooLarge(_too_large(seen, limit))
            return message

        await self.app(scope, counted, send)


def _too_large(size: int, limit: int) -> str:
    return f"the request body ({size:,} bytes or more) is over the limit of {limit:,} bytes; send smaller batches"


async def _refuse(send: Any, size: int, limit: int) -> None:
    import json

    body = json.dumps({"error": _too_large(size, limit), "code": PayloadTooLarge.code}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
