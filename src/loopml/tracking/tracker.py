"""The tracking side of one project: its stores, the record store and the metric buffer, opened once."""

from __future__ import annotations

import multiprocessing.util
import os
import threading
import weakref
from typing import Any, cast

from loopml.core.settings import Settings, load_settings
from loopml.storage.stores import Stores
from loopml.tracking.buffer import MetricBuffer
from loopml.tracking.metric_log import SeriesBatch
from loopml.tracking.store import TrackingStore


class Tracker:
    """Owns the connections and the metric buffer of one project; shared by runs and clients in a process."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        uri = self.settings.tracking_uri
        self.remote = bool(uri)
        if uri:  # a team server: tracking goes over HTTP; the local stores are not opened
            from loopml.tracking.remote import NotServed, RemoteTrackingStore

            token = self.settings.token.get_secret_value() if self.settings.token else None
            # Typed as the local classes: RemoteTrackingStore serves the methods tracking uses, and
            # NotServed turns any other use into a one-line error naming what is not served yet.
            self.store = cast(TrackingStore, RemoteTrackingStore(uri, token))
            self.stores = cast(Stores, NotServed(uri, "the local stores (datasets, models, pipelines)"))
        else:
            self.stores = Stores.open(self.settings)
            self.store = TrackingStore(self.stores.db)
        self.blobs = self.stores.blobs if not uri else self.store.blobs  # type: ignore[attr-defined]
        self.buffer = MetricBuffer(
            self._write_buffered,
            interval_s=self.settings.flush_interval_s,
            max_points=self.settings.flush_max_points,
        )
        _live_trackers.add(self)
        # multiprocessing's forked workers end with os._exit (no atexit): flush from its own exit hook there.
        multiprocessing.util.register_after_fork(self, Tracker._flush_at_worker_exit)

    def _flush_at_worker_exit(self) -> None:
        multiprocessing.util.Finalize(self, self.buffer.close, exitpriority=20)

    def _after_fork_in_child(self) -> None:
        # The parent's pooled connections must not be used (or closed) by the child: drop them unclosed.
        if not self.remote:
            self.stores.db.dispose(close=False)

    def _write_buffered(self, batch: SeriesBatch) -> None:
        self.store.metrics.append(batch, retry_forever=True)

    def flush(self) -> None:
        """Write every buffered metric point; returns once they are committed."""
        self.buffer.flush()

    def close(self) -> None:
        """Flush, stop the flush thread and release connections."""
        self.buffer.close()
        if self.remote:
            self.store.http.close()  # type: ignore[attr-defined]
        else:
            self.stores.close()


_live_trackers: weakref.WeakSet[Tracker] = weakref.WeakSet()


def _reset_trackers_in_child() -> None:
    for tracker in list(_live_trackers):
        tracker._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_trackers_in_child)

_default: Tracker | None = None
_default_lock = threading.Lock()


def default_tracker() -> Tracker:
    """The process-wide tracker for the project of the working directory, opened on first use."""
    global _default  # noqa: PLW0603 - one lazily opened tracker per process is the point
    tracker = _default
    if tracker is None:
        with _default_lock:
            if _default is None:
                _default = Tracker()
            tracker = _default
    return tracker


def use_tracker(tracker: Tracker | None) -> Tracker | None:
    """Replace the process-wide tracker (tests, `loopml.configure`); returns the previous one, not closed."""
    global _default
    with _default_lock:
        previous, _default = _default, tracker
    return previous


def configure(settings: Settings | None = None, **overrides: Any) -> Tracker:
    """Point the module-level API at a project: `loopml.configure(home="/data/ml")`."""
    tracker = Tracker(settings or load_settings(**overrides))
    previous = use_tracker(tracker)
    if previous is not None:
        previous.close()
    return tracker


_by_settings: dict[str, Tracker] = {}


def tracker_for(settings: Settings) -> Tracker:
    """This process's tracker for the project `settings` describe (how worker processes reach the store)."""
    key = settings.model_dump_json()
    with _default_lock:
        if key not in _by_settings:
            _by_settings[key] = Tracker(settings)
        return _by_settings[key]
