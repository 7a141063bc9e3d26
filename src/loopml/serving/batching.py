"""Adaptive micro-batching (opt-in per model): concurrent requests for one version run as one model call.

A request's rows wait at most `max_wait_ms` for others to join; a batch is cut as soon as it holds
`max_batch_size` rows. While a batch runs, new requests gather for the next one, so under load the batches
grow by themselves and with a single caller a request waits at most `max_wait_ms`. Rows are validated per
request before they join (one bad request never fails the others); the batch runs in the server's admission
limits like any prediction, so overload still sheds with 503 rather than queueing without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from loopml.core.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class BatchPolicy:
    """How long a request may wait for others, and how many rows one model call takes at most."""

    max_batch_size: int = 64
    max_wait_ms: float = 2.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_batch_size, bool)
            or not isinstance(self.max_batch_size, int)
            or self.max_batch_size < 1
        ):
            raise InvalidInput(f"max_batch_size must be a positive integer, got {self.max_batch_size!r}")
        if not 0 <= self.max_wait_ms <= 10_000:
            raise InvalidInput(f"max_wait_ms must be from 0 to 10000, got {self.max_wait_ms!r}")

    @classmethod
    def parse(cls, text: str) -> tuple[str, BatchPolicy]:
        """`NAME:MAX_BATCH_SIZE:MAX_WAIT_MS` (the CLI's `--batch`), e.g. `fraud:64:2`."""
        parts = text.split(":")
        try:
            if len(parts) != 3 or not parts[0]:
                raise ValueError(text)
            size, wait = int(parts[1]), float(parts[2])
        except ValueError:
            raise InvalidInput(
                f"--batch is NAME:MAX_BATCH_SIZE:MAX_WAIT_MS (e.g. fraud:64:2), got {text!r}"
            ) from None
        return parts[0], cls(size, wait)


Run = Callable[["pd.DataFrame"], Awaitable[dict[str, np.ndarray]]]


class MicroBatcher:
    """Collects validated frames of one model version and runs them together."""

    def __init__(self, policy: BatchPolicy, run: Run) -> None:
        self.policy = policy
        self._run = run
        self._pending: list[tuple[pd.DataFrame, asyncio.Future[dict[str, np.ndarray]]]] = []
        self._rows = 0
        self._timer: asyncio.TimerHandle | None = None
        self.batches = 0  # model calls made (for tests and metrics)

    async def predict(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """The outputs for `frame`'s rows, computed in a batch with whatever else arrives meanwhile."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, np.ndarray]] = loop.create_future()
        self._pending.append((frame, future))
        self._rows += len(frame)
        if self._rows >= self.policy.max_batch_size:
            self._cut()
        elif self._timer is None:
            self._timer = loop.call_later(self.policy.max_wait_ms / 1000, self._cut)
        return await future

    def _cut(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending, self._rows = self._pending, [], 0
        if batch:
            self.batches += 1
            task = asyncio.get_running_loop().create_task(self._answer(batch))
            task.add_done_callback(_keep_quiet)

    async def _answer(self, batch: list[tuple[pd.DataFrame, asyncio.Future[dict[str, np.ndarray]]]]) -> None:
        import pandas as pd

        frames = [frame for frame, _ in batch]
        try:
            joined = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
            outputs = await self._run(joined)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as error:  # every waiting request gets the batch's error
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        start = 0
        for frame, future in batch:
            end = start + len(frame)
            if not future.done():  # its request may have timed out meanwhile
                future.set_result({name: values[start:end] for name, values in outputs.items()})
            start = end


def _keep_quiet(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # errors went to the futures; do not log them again as "never retrieved"
