"""`PredictionLog`: the asynchronous writer of the prediction log, shared by serving and batch scoring.

    log = PredictionLog(tracker, max_rows=10_000, max_age_s=60, hash={"email"})
    log.append(PredictionBatch(model="fraud", version=3, route="champion", ...))   # never blocks, never raises
    log.flush()                                                                    # tests, shutdown

`append` only puts the batch on a bounded queue: when the queue is full (the store is slower than traffic) or
the log is closed, the batch is dropped and counted in `dropped_rows`, so a request is never slowed or failed
by logging. One background thread drains the queue and keeps one open segment per (model, version, route,
source); a segment is closed, written and indexed when it reaches `max_rows` rows, when it has been open
`max_age_s` seconds, when a batch with a different column schema arrives for it, or on `flush` / `close`.
A failed write (disk full, database locked too long, unknown model) is logged once per kind of error, counted
in `write_errors` and its rows in `dropped_rows`; the thread carries on.

`count_request` counts a request by status (failed ones too, which have no rows to log); the same thread adds
the counts to the store about once a second (`loopml.predictions.requests`).
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from loopml.core.errors import InvalidInput, NotFound
from loopml.predictions.privacy import apply_policy, check_policy, project_key
from loopml.predictions.records import PredictionBatch, Segment
from loopml.predictions.requests import RequestCounts, write_request_counts
from loopml.predictions.segments import check_batch, segment_table, stores_of, write_segment
from loopml.storage.metadata.lookups import model_id_of

if TYPE_CHECKING:
    from loopml.storage.stores import Stores
    from loopml.tracking.tracker import Tracker

logger = logging.getLogger("loopml.predictions")

_Key = tuple[str, int, str, str]  # model, version, route, source


@dataclass
class _Open:
    """A segment being filled: its batches not yet converted, the Arrow tables of those converted (in
    chunks of `CHUNK_BATCHES`), their layout (input columns and output names) and when it was opened."""

    layout: tuple[tuple[str, ...], tuple[str, ...]]
    opened_at: float
    batches: list[PredictionBatch] = field(default_factory=list)
    tables: list[pa.Table] = field(default_factory=list)
    rows: int = 0


# Batches are converted to Arrow in chunks: once per request would cost ~1 ms each (one-row conversions);
# once per segment would hold the GIL for up to a second every 10,000 rows and stall the server meanwhile.
CHUNK_BATCHES = 256
DRAIN_S = 0.1  # how often an idle writer looks for new batches
COUNTS_S = 1.0  # how often request counts are added to the store
MAX_COUNT_KEYS = 10_000  # (version, minute, status) counts kept across failed writes


@dataclass(frozen=True)
class _Flush:
    done: threading.Event
    stop: bool = False


class PredictionLog:
    """Writes prediction batches to Parquet segments in the background; see the module docstring.

    `redact`: input columns left out of the log; `hash`: input columns stored as keyed BLAKE3 digests
    (`hash_key`, 32 bytes; default a per-project key, see `loopml.predictions.privacy`). `clock` (monotonic
    seconds) decides segment age; tests pass their own.
    """

    def __init__(
        self,
        project: Tracker | Stores,
        *,
        max_rows: int = 10_000,
        max_age_s: float = 60.0,
        queue_size: int = 1_000,
        redact: Collection[str] = (),
        hash: Collection[str] = (),  # the policy's name in the issue and in loopml.toml
        hash_key: bytes | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_policy(redact, hash, hash_key)
        if max_rows < 1 or max_age_s <= 0 or queue_size < 1:
            raise InvalidInput("max_rows and queue_size must be at least 1 and max_age_s above 0")
        self.project = project
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.queue_size = queue_size
        self.redact = frozenset(redact)
        self.hash = frozenset(hash)
        self.hash_key = hash_key
        self.clock = clock
        self.dropped_rows = 0
        self.written_rows = 0
        self.write_errors = 0
        self.written: list[Segment] = []  # the segments this log closed, oldest first (bounded below)
        self._queue: queue.Queue[PredictionBatch | _Flush] = queue.Queue(maxsize=queue_size)
        self._closed = False
        self._count_lock = threading.Lock()
        self._open: dict[_Key, _Open] = {}
        self._pending = 0  # rows in open segments (written by the writer thread only)
        self._model_ids: dict[str, str] = {}
        self._seen_errors: set[str] = set()
        self._wake = threading.Event()  # set by flush and close; batches wait for the next drain
        self._requests = RequestCounts()
        self._counts_written = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="loopml-prediction-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- the caller's side: never blocks, never raises -----------------------------------------------------

    def append(self, batch: PredictionBatch) -> bool:
        """Queue `batch` for writing; False (and its rows counted as dropped) when the queue is full or the
        log is closed. Never blocks and never raises; do not modify the batch's frame afterwards."""
        try:
            if not self._closed:
                self._queue.put_nowait(batch)
                return True
        except queue.Full:
            pass
        except Exception:  # logging must never fail a request
            logger.debug("prediction batch refused", exc_info=True)
        self._drop(_rows(batch))
        return False

    def count_request(self, model: str, version: int, time_ms: int, status: int) -> None:
        """Count one request to a model version by its HTTP status. Never raises."""
        try:
            self._requests.add(model, version, time_ms, status)
        except Exception:  # counting must never fail a request
            logger.debug("request not counted", exc_info=True)

    @property
    def queue_depth(self) -> int:
        """Batches waiting to be written."""
        return self._queue.qsize()

    @property
    def pending_rows(self) -> int:
        """Rows in open segments, not yet written."""
        return self._pending

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Write everything queued and close every open segment; True when done within `timeout_s`."""
        return self._control(_Flush(threading.Event()), timeout_s)

    def close(self, timeout_s: float = 30.0) -> bool:
        """Flush, stop the writer thread and refuse later batches (idempotent)."""
        if self._closed:
            return not self._thread.is_alive()
        self._closed = True
        atexit.unregister(self.close)
        done = self._control(_Flush(threading.Event(), stop=True), timeout_s)
        self._thread.join(timeout=timeout_s)
        return done

    def _control(self, request: _Flush, timeout_s: float) -> bool:
        if not self._thread.is_alive():
            return False
        deadline = time.monotonic() + timeout_s
        try:
            self._queue.put(request, timeout=timeout_s)  # may wait: flushing is allowed to
        except queue.Full:
            return False
        self._wake.set()
        return request.done.wait(max(0.0, deadline - time.monotonic()))

    def _drop(self, rows: int) -> None:
        with self._count_lock:
            self.dropped_rows += rows

    # -- the writer thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        poll = min(1.0, self.max_age_s / 4)
        while True:
            item = self._next(poll)
            try:
                if isinstance(item, _Flush):
                    self._close_all()
                else:  # aged segments close before a new batch could join them
                    self._close_aged()
                    if item is not None:
                        self._add(item)
            except Exception as error:  # the writer must outlive any one bad batch
                self._failed("writer", error)
            if isinstance(item, _Flush) or time.monotonic() - self._counts_written >= COUNTS_S:
                self._write_counts()
            if isinstance(item, _Flush):
                item.done.set()  # even after an error: a waiting flush must not hang
                if item.stop:
                    return

    def _next(self, poll: float) -> PredictionBatch | _Flush | None:
        """The next queued item; when the queue is empty, wait for `DRAIN_S` (or a flush) before looking
        again. Waking for every batch would hand the GIL back and forth with the serving thread on each
        request (measured: ~0.15 ms of a one-row request); draining a tenth of a second's batches at a
        time costs the server nothing it notices."""
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            pass
        self._wake.wait(min(poll, DRAIN_S))
        self._wake.clear()
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def _add(self, batch: PredictionBatch) -> None:
        try:
            check_batch(batch)
            layout = (tuple(str(c) for c in batch.inputs.columns), tuple(batch.outputs))
        except Exception as error:  # a malformed batch is dropped, not fatal
            self._failed("malformed batch", error)
            self._drop(_rows(batch))
            return
        key: _Key = (batch.model, batch.version, batch.route, batch.source)
        current = self._open.get(key)
        if current is not None and current.layout != layout:
            self._close(key)  # e.g. a column came and went: its rows go to a segment of their own
            current = None
        rows, offset = len(batch.prediction_ids), 0
        while offset < rows:
            if current is None:
                current = self._open[key] = _Open(layout, self.clock())
            take = min(self.max_rows - current.rows, rows - offset)
            current.batches.append(batch if take == rows else _slice(batch, offset, offset + take))
            if len(current.batches) >= CHUNK_BATCHES:
                self._compact(current)
            current.rows += take
            self._pending += take
            offset += take
            if current.rows >= self.max_rows:
                self._close(key)
                current = None

    def _compact(self, segment: _Open) -> None:
        """Convert the segment's waiting batches to one Arrow table (their rows are dropped if that fails)."""
        batches, segment.batches = segment.batches, []
        try:
            segment.tables.append(self._table(batches))
        except Exception as error:
            lost = sum(len(b.prediction_ids) for b in batches)
            segment.rows -= lost
            self._pending -= lost
            self._failed("convert", error)
            self._drop(lost)

    def _table(self, batches: list[PredictionBatch]) -> pa.Table:
        import pandas as pd

        frames = [b.inputs for b in batches]
        joined = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        key = None
        if self.hash:
            key = self.hash_key or project_key(stores_of(self.project).settings.home_dir)
            self.hash_key = key  # read once per log
        return segment_table(batches, apply_policy(joined, self.redact, self.hash, key))

    def _close_aged(self) -> None:
        now = self.clock()
        for key in [k for k, s in self._open.items() if now - s.opened_at >= self.max_age_s]:
            self._close(key)

    def _close_all(self) -> None:
        for key in list(self._open):
            self._close(key)

    def _close(self, key: _Key) -> None:
        segment = self._open.pop(key)
        self._pending -= segment.rows
        model, version, route, source = key
        try:
            tables = segment.tables + ([self._table(segment.batches)] if segment.batches else [])
            # Chunks may differ where a column was all null in one of them, or int in one and float in another.
            table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
            stores = stores_of(self.project)
            written = write_segment(
                stores,
                table,
                model_id=self._model_id(model),
                model=model,
                version=version,
                route=route,
                source=source,
            )
        except Exception as error:  # counted and logged; the next segment may well succeed
            self._failed("write", error)
            self._drop(segment.rows)
            return
        with self._count_lock:
            self.written_rows += written.rows
            self.written.append(written)
            del self.written[:-1000]

    def _write_counts(self) -> None:
        """Add the request counts to the store, one transaction per model: a model deleted meanwhile loses
        its own counts, not everyone's. Counts a passing failure (a locked database) took are kept for the
        next write."""
        self._counts_written = time.monotonic()
        by_model: dict[str, Counter[tuple[str, int, int, int]]] = {}
        for key, requests in self._requests.take().items():
            by_model.setdefault(key[0], Counter())[key] = requests
        for counts in by_model.values():
            try:
                write_request_counts(self.project, counts)
            except Exception as error:
                self._failed("count", error)
                if not isinstance(error, NotFound) and not self._closed and len(counts) < MAX_COUNT_KEYS:
                    self._requests.give_back(counts)

    def _model_id(self, name: str) -> str:
        if name not in self._model_ids:
            with stores_of(self.project).db.read() as conn:
                self._model_ids[name] = model_id_of(conn, name)
        return self._model_ids[name]

    def _failed(self, stage: str, error: Exception) -> None:
        with self._count_lock:
            self.write_errors += 1
        kind = f"{stage}:{type(error).__name__}"
        if kind not in self._seen_errors:  # once per kind: a full disk must not flood the server's log
            self._seen_errors.add(kind)
            logger.error("prediction log %s failed (%s); counting and carrying on", stage, error)


def _slice(batch: PredictionBatch, start: int, stop: int) -> PredictionBatch:
    """Rows [start, stop) of a batch (a batch larger than a segment's room is split across segments)."""
    return replace(
        batch,
        prediction_ids=list(batch.prediction_ids[start:stop]),
        inputs=batch.inputs.iloc[start:stop],
        outputs={name: np.asarray(values)[start:stop] for name, values in batch.outputs.items()},
    )


def _rows(batch: object) -> int:
    try:
        return len(batch.prediction_ids)  # type: ignore[attr-defined]
    except Exception:  # counting a malformed batch must not raise either
        return 0
