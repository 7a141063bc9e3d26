"""Tracking from a worker that cannot reach the metadata store: write a journal, replay it in the driver.

A step on a Ray node cannot open the project's SQLite file (nor should a thousand workers hold PostgreSQL
connections), so `JournalTracker` stands in for `Tracker` there: params, tags, notes, metric points,
artifacts and inputs logged through `loopml.log_*` are appended to a `Journal`, and blobs go straight to the
shared blob store. The driver, the only writer of the metadata, replays the journal into the step's run
once the call returns: the run then holds exactly what an in-process call would have written. While the
step runs, `JournalSpooler` posts the journal's new parts to the executor's mailbox, from which the driver
takes them when no reply comes (the worker was killed or lost).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from loopml.core.errors import InvalidInput, ParamConflict
from loopml.core.settings import Settings
from loopml.storage.blobs.store import BlobStore
from loopml.tracking.metric_log import MetricPoint, SeriesBatch
from loopml.tracking.records import Artifact, Run, RunInput, RunStatus
from loopml.tracking.tracker import Tracker


class NotOnWorker(InvalidInput, AttributeError):
    """What a cluster worker cannot do: reach the metadata beyond logging to its step's run."""


@dataclass
class Journal:
    """The tracking writes of one step call, in order; metric points are kept apart, per key."""

    writes: list[tuple[str, Any]] = field(default_factory=list)
    metrics: dict[str, list[MetricPoint]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.writes or self.metrics)

    def since(self, mark: JournalMark) -> tuple[Journal, JournalMark]:
        """What was logged after `mark`, and the mark of now. Safe while the step goes on logging: it only
        reads lengths and slices of lists that are only appended to."""
        writes = len(self.writes)
        counts = {key: len(points) for key, points in dict(self.metrics).items()}
        delta = Journal(
            self.writes[mark.writes : writes],
            {
                key: self.metrics[key][mark.points.get(key, 0) : count]
                for key, count in counts.items()
                if count > mark.points.get(key, 0)
            },
        )
        return delta, JournalMark(writes, counts)

    @classmethod
    def joined(cls, parts: Iterable[Journal]) -> Journal:
        """One journal of consecutive parts, in order."""
        whole = cls()
        for part in parts:
            whole.writes.extend(part.writes)
            for key, points in part.metrics.items():
                whole.metrics.setdefault(key, []).extend(points)
        return whole


@dataclass(frozen=True)
class JournalMark:
    """How much of a journal was already sent: its writes, and each metric's points."""

    writes: int = 0
    points: dict[str, int] = field(default_factory=dict)


class JournalSpooler:
    """Posts what a step logged, every `interval_s`, so it outlives a worker that is killed or lost.

    The journal still travels back with the step's reply; the posted parts serve only when no reply
    comes (the driver then takes them from the executor's mailbox). What was logged in the last
    `interval_s` before a kill may be lost.
    """

    def __init__(self, journal: Journal, post: Callable[[Journal], None], interval_s: float = 0.5) -> None:
        self._journal = journal
        self._post = post
        self._interval_s = interval_s
        self._mark = JournalMark()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loopml-journal-spooler", daemon=True)

    def __enter__(self) -> JournalSpooler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            delta, mark = self._journal.since(self._mark)
            if not delta:
                continue
            try:
                self._post(delta)
            except Exception:  # noqa: S112  (the mailbox is a safety net: the reply still carries it all)
                continue
            self._mark = mark


class _JournalMetrics:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def append(self, batch: SeriesBatch, *, retry_forever: bool = False) -> None:
        for (_, key), points in batch.items():
            self._journal.metrics.setdefault(key, []).extend(points)


class _JournalAttachments:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def add_artifacts(self, run_id: str, artifacts: Iterable[Artifact]) -> None:
        self._journal.writes.append(("artifacts", list(artifacts)))

    def add_inputs(self, run_id: str, inputs: Iterable[RunInput]) -> None:
        self._journal.writes.append(("inputs", list(inputs)))


class _JournalStore:
    """The part of `TrackingStore` that a run's logging calls write through."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._params: dict[str, str] = {}
        self.metrics = _JournalMetrics(journal)
        self.attachments = _JournalAttachments(journal)

    def __getattr__(self, name: str) -> Any:
        # Anything but logging to the step's own run (nested runs, searches, other runs) reads or writes
        # the metadata, which is the driver's.
        raise NotOnWorker(
            f"a step on a cluster worker can only log to its own run ({name} is not available there): "
            "use loopml.log_* inside the step, or mark it @loopml.step(in_driver=True)"
        )

    def log_params(self, run_id: str, params: dict[str, tuple[str, str]]) -> None:
        # Params never change: a conflict is raised here, where the step logs it, as the store would.
        for key, (_, value_json) in params.items():
            earlier = self._params.get(key)
            if earlier is not None and earlier != value_json:
                raise ParamConflict(
                    f"param {key!r} of run {run_id} is already {earlier}; cannot change it to {value_json}"
                )
        self._params.update({key: forms[1] for key, forms in params.items()})
        self._journal.writes.append(("params", params))

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self._journal.writes.append(("tags", tags))

    def set_note(self, run_id: str, note: str) -> None:
        self._journal.writes.append(("note", note))

    def get_run(self, run_id: str) -> Run:
        raise InvalidInput(
            "a step on a remote executor cannot read its run back (run.info): the metadata store is the driver's"
        )

    def set_status(self, run_id: str, status: RunStatus, *, error: str | None = None) -> None:
        raise InvalidInput("a step's run is ended by the pipeline, not by the step")


class _JournalBuffer:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def add(self, run_id: str, key: str, value: float, step: int, timestamp: int) -> None:
        self._journal.metrics.setdefault(key, []).append((value, step, timestamp))


class JournalTracker:
    """Quacks like `Tracker` for `ActiveRun`: writes go to `journal`, blobs to the shared `blobs`."""

    remote = False

    def __init__(self, settings: Settings, blobs: BlobStore) -> None:
        self.settings = settings
        self.blobs = blobs
        self.journal = Journal()
        self.store = _JournalStore(self.journal)
        self.buffer = _JournalBuffer(self.journal)

    @property
    def stores(self) -> Any:
        """Refused: the metadata (registry, datasets, pipelines) is the driver's."""
        raise NotOnWorker(
            "a step on a cluster worker cannot reach the project's registry or datasets: read them in a step "
            "marked @loopml.step(in_driver=True) and pass what it returns, or use a team server "
            "(LOOPML_TRACKING_URI)"
        )

    def flush(self) -> None:
        """Nothing to write: the journal travels back with the call's result."""

    def as_tracker(self) -> Tracker:
        """This object, typed as what `ActiveRun` takes."""
        return cast(Tracker, self)


def replay(journal: Journal, tracker: Tracker, run_id: str) -> None:
    """Write a worker's journal into run `run_id`, in the order the step logged it."""
    store = tracker.store
    for kind, value in journal.writes:
        if kind == "params":
            store.log_params(run_id, value)
        elif kind == "tags":
            store.set_tags(run_id, value)
        elif kind == "note":
            store.set_note(run_id, value)
        elif kind == "artifacts":
            store.attachments.add_artifacts(run_id, value)
        elif kind == "inputs":
            store.attachments.add_inputs(run_id, value)
    if journal.metrics:
        store.metrics.append({(run_id, key): points for key, points in journal.metrics.items()})
