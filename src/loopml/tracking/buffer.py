"""The metric buffer: `log_metric` appends to memory; a background thread writes batches to the store.

A flush is triggered by age (`flush_interval_s`), by size (`flush_max_points`), by `flush()`/`end_run()` and at
interpreter exit. Points taken from the buffer are written with retries until they are committed, so nothing
that `flush()` acknowledged can be lost. After a fork the child starts with an empty buffer and no thread:
the parent still owns (and will write) the points it had buffered.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable

from loopml.tracking.metric_log import SeriesBatch

logger = logging.getLogger(__name__)
_live_buffers: weakref.WeakSet[MetricBuffer] = weakref.WeakSet()


class MetricBuffer:
    """Buffered metric points for one store, flushed by a daemon thread."""

    def __init__(
        self,
        write: Callable[[SeriesBatch], None],
        *,
        interval_s: float = 1.0,
        max_points: int = 200_000,
    ) -> None:
        self._write = write
        self.interval_s = interval_s
        self.max_points = max_points
        self._reset()
        _live_buffers.add(self)

    def _reset(self) -> None:
        self._series: SeriesBatch = {}
        self._count = 0
        self._lock = threading.Lock()  # guards _series and _count
        self._flush_lock = threading.Lock()  # one writer at a time, so points keep their order
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._error: BaseException | None = None

    def add(self, run_id: str, key: str, value: float, step: int, timestamp: int) -> None:
        """Buffer one point (the hot path: an append under a lock)."""
        with self._lock:
            points = self._series.get((run_id, key))
            if points is None:
                points = self._series[(run_id, key)] = []
            points.append((value, step, timestamp))
            self._count += 1
            full = self._count >= self.max_points
        if self._thread is None:
            self._start()
        if full:
            self.flush()  # back-pressure: the caller helps instead of growing memory without bound

    def flush(self) -> None:
        """Write every buffered point; returns when they are committed."""
        with self._flush_lock:
            with self._lock:
                batch, self._series, self._count = self._series, {}, 0
            if not batch:
                return
            try:
                self._write(batch)
            except BaseException:
                with self._lock:  # keep them, in order, for the next attempt
                    for pair, points in batch.items():
                        self._series[pair] = points + self._series.get(pair, [])
                        self._count += len(points)
                raise

    def close(self) -> None:
        """Flush and stop the background thread."""
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=60)
        self.flush()

    def pending(self) -> int:
        """Number of points not yet handed to the store."""
        with self._lock:
            return self._count

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="loopml-metric-flush", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception as error:  # logged, and the points are not lost: see _write's retries
                logger.exception("LoopML could not write buffered metrics: %s", error)
                self._error = error

    def _after_fork_in_child(self) -> None:
        # The parent keeps its points and its thread; the child must neither write them again nor wait on
        # a lock that another parent thread held at the moment of the fork.
        self._reset()


def _flush_all_at_exit() -> None:
    for buffer in list(_live_buffers):
        try:
            buffer.close()
        except Exception as error:
            logger.error("LoopML could not write buffered metrics at exit: %s", error)


def _reset_all_in_child() -> None:
    for buffer in list(_live_buffers):
        buffer._after_fork_in_child()


atexit.register(_flush_all_at_exit)
os.register_at_fork(after_in_child=_reset_all_in_child)
