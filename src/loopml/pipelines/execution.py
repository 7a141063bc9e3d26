"""The worker side of a step call: run the function, capture its logs, serialize its outputs.

`execute_step` is what an executor runs, in a thread or in a worker process. It never raises for the
step's own errors: it returns them (with the traceback text and the captured log), so a failed call keeps
what it printed. Outputs are serialized here, in the worker, so a process executor sends bytes back.

A worker of a cluster (`StepRun.remote`) may be on another machine: it reads its inputs from the shared blob
store (`StoredInput`), writes its outputs there and sends back only their references, and its tracking
writes travel back as a journal that the driver replays (`loopml.tracking.journal`). While the step runs, the
journal is also posted to the executor's mailbox, so what a killed step logged is replayed all the same.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from loopml.core.errors import InvalidInput
from loopml.core.executors import Mailbox
from loopml.core.settings import Settings
from loopml.pipelines.capture import captured
from loopml.pipelines.graph import copied, replace_handles
from loopml.pipelines.records import SINGLE_OUTPUT, OutputRef
from loopml.pipelines.serializers import Stored, Unserializable, deserialize, serialize
from loopml.pipelines.step import Step
from loopml.storage.blobs.store import BlobStore
from loopml.storage.endpoints import storage_options_for
from loopml.tracking.active_run import ActiveRun, MetricHook
from loopml.tracking.fluent import activated
from loopml.tracking.journal import Journal, JournalSpooler, JournalTracker
from loopml.tracking.records import Run
from loopml.tracking.tracker import Tracker, tracker_for, use_tracker


class StepError(Exception):
    """Stands in for a step's exception that could not travel back from a worker process."""


@dataclass(frozen=True)
class StepRun:
    """Where a step call logs: its tracking run, and how to reach the store from a worker process."""

    run: Run
    tracker: Tracker | None  # the driver's, when the call runs in the driver's process
    settings: Settings | None = None  # for a worker process, which opens its own tracker
    remote: bool = False  # a cluster worker: blobs in and out, tracking journaled (see the module doc)
    metric_hook: MetricHook | None = None  # sees every metric point the step logs (early stopping)
    mailbox: Mailbox | None = None  # a cluster worker posts its journal here as it goes, under mailbox_key
    mailbox_key: str = ""


@dataclass(frozen=True)
class StoredInput:
    """An input a cluster worker reads from the blob store itself, instead of receiving its value."""

    ref: OutputRef


@dataclass
class CallResult:
    """What a step call returns to the driver."""

    stored: dict[str, Stored] = field(default_factory=dict)
    values: dict[str, Any] | None = None  # the live values, when the call ran in the driver's process
    refs: dict[str, OutputRef] | None = None  # outputs a cluster worker already put in the blob store
    journal: Journal | None = None  # a cluster worker's tracking writes, for the driver to replay
    log: str = ""
    duration_s: float = 0.0
    error: BaseException | None = None
    traceback: str | None = None


def execute_step(
    step: Step, args: tuple[Any, ...], kwargs: dict[str, Any], *, context: StepRun
) -> CallResult:
    """Run one attempt of a step call; errors are returned, not raised."""
    if context.remote:
        return _execute_on_cluster(step, args, kwargs, context)
    in_process = context.tracker is not None
    result = CallResult()
    with captured() as log, _prints_to_stderr(not in_process):
        started = time.perf_counter()
        try:
            with _step_run(context) as run:
                value = step.fn(*args, **kwargs)
                run.flush()
            result.duration_s = time.perf_counter() - started
            outputs = split_outputs(step, value)
            result.stored = {name: _serialize(step, name, v) for name, v in outputs.items()}
            if in_process:
                result.values = outputs
        except Exception as error:
            result.duration_s = time.perf_counter() - started
            result.traceback = "".join(traceback.format_exception(error))
            result.error = error if in_process else _portable(error)
    result.log = log.text()
    return result


def _execute_on_cluster(
    step: Step, args: tuple[Any, ...], kwargs: dict[str, Any], context: StepRun
) -> CallResult:
    if context.settings is None:
        raise InvalidInput("a step call on a cluster worker needs the project settings")
    blobs = worker_blobs(context.settings)
    tracker = JournalTracker(context.settings, blobs)
    result = CallResult(journal=tracker.journal)
    with captured() as log, _prints_to_stderr(True):
        started = time.perf_counter()
        try:
            args, kwargs = _loaded(args, blobs), _loaded(kwargs, blobs)
            started = time.perf_counter()
            active = ActiveRun(tracker.as_tracker(), context.run)
            active.metric_hook = context.metric_hook
            # The worker's default tracker too: code reaching for the registry gets a clear refusal rather
            # than a store of its own in the worker's folder.
            previous = use_tracker(tracker.as_tracker())
            try:
                with activated(active), _spooled(tracker.journal, context):
                    value = step.fn(*args, **kwargs)
            finally:
                use_tracker(previous)
            result.duration_s = time.perf_counter() - started
            result.refs = {}
            for name, output in split_outputs(step, value).items():
                stored = _serialize(step, name, output)
                digest = blobs.put_bytes(stored.data)
                result.refs[name] = OutputRef(
                    name, digest, stored.content_hash, stored.serializer, stored.python_type, len(stored.data)
                )
        except Exception as error:
            result.duration_s = time.perf_counter() - started
            result.traceback = "".join(traceback.format_exception(error))
            result.error = _portable(error)
    result.log = log.text()
    return result


def _spooled(journal: Journal, context: StepRun) -> contextlib.AbstractContextManager[object]:
    """While the step runs, its journal is posted to the executor's mailbox, so a killed step's logs stay."""
    mailbox = context.mailbox
    if mailbox is None:
        return contextlib.nullcontext()
    return JournalSpooler(journal, functools.partial(mailbox.post, context.mailbox_key))


def worker_settings(settings: Settings) -> Settings:
    """What a cluster worker is sent: no database URL (it never opens the metadata), and the token only
    when it talks to a team server, so no secret travels with a task that does not need it."""
    return settings.model_copy(
        update={"database_url": None, "token": settings.token if settings.tracking_uri else None}
    )


_worker_blobs: dict[tuple[str | None, str], BlobStore] = {}


def worker_blobs(settings: Settings) -> BlobStore:
    """The project's blob store as a cluster worker reaches it: the team server's, or the configured URL."""
    where = (settings.tracking_uri, settings.blob_url)
    if where not in _worker_blobs:
        if settings.tracking_uri:
            from loopml.tracking.remote import RemoteTrackingStore

            token = settings.token.get_secret_value() if settings.token else None
            _worker_blobs[where] = cast(BlobStore, RemoteTrackingStore(settings.tracking_uri, token).blobs)
        else:
            _worker_blobs[where] = BlobStore(settings.blob_url, **storage_options_for(settings.blob_url))
    return _worker_blobs[where]


def _loaded(value: Any, blobs: BlobStore) -> Any:
    def load(item: Any) -> Any:
        if isinstance(item, StoredInput):
            return deserialize(blobs.get_bytes(item.ref.digest), item.ref.serializer)
        return item

    return replace_handles(value, lambda handle: handle, leaf=load)


@contextlib.contextmanager
def _prints_to_stderr(active: bool) -> Iterator[None]:
    # A worker process shares the terminal's stdout, where a CLI writes the pipeline's value: keep it clean.
    if not active:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def split_outputs(step: Step, value: Any) -> dict[str, Any]:
    """The named outputs of a step's return value (one, unless the step declares `outputs=`)."""
    if not step.outputs:
        return {SINGLE_OUTPUT: value}
    if not isinstance(value, tuple | list) or len(value) != len(step.outputs):
        raise InvalidInput(
            f"step {step.name!r} declares outputs {step.outputs} but returned "
            f"{type(value).__name__}{f' of length {len(value)}' if isinstance(value, tuple | list) else ''}"
        )
    return dict(zip(step.outputs, value, strict=True))


def read_only(value: Any) -> Any:
    """A view of `value` a step can use without changing what other steps see.

    Arrays become read-only views (writes raise); DataFrames and Series become copy-on-write copies (a
    step's changes stay its own); other values are deep-copied.
    """
    kind = type(value)
    module = kind.__module__
    if module == "numpy" and kind.__name__ == "ndarray":
        view = value.view()
        view.flags.writeable = False
        return view
    if module.startswith("pandas.") and kind.__name__ in ("DataFrame", "Series"):
        # With copy-on-write (pandas 3, or opted in on 2.x) a shallow copy isolates; without it, only a deep one.
        return value.copy(deep=not _pandas_copy_on_write())
    return copied(value)


def _pandas_copy_on_write() -> bool:
    import pandas as pd

    if int(pd.__version__.split(".")[0]) >= 3:
        return True
    return bool(pd.options.mode.copy_on_write is True)


def _serialize(step: Step, name: str, value: Any) -> Stored:
    try:
        return serialize(value)
    except Unserializable as error:
        which = "its return value" if name == SINGLE_OUTPUT else f"output {name!r}"
        raise Unserializable(f"step {step.name!r}: {which} cannot be stored: {error}") from None


@contextlib.contextmanager
def _step_run(context: StepRun) -> Iterator[ActiveRun]:
    tracker = context.tracker or _worker_tracker(context.settings)
    active = ActiveRun(tracker, context.run)
    active.metric_hook = context.metric_hook
    with activated(active) as run:
        yield run


def _worker_tracker(settings: Settings | None) -> Tracker:
    if settings is None:
        raise InvalidInput("a step call in a worker process needs the project settings")
    return tracker_for(settings)


def _portable(error: BaseException) -> BaseException:
    """`error` if it survives pickling (it must cross a process boundary), else a StepError saying what it was."""
    import pickle

    try:
        pickle.loads(pickle.dumps(error))  # noqa: S301  (our own bytes, just made)
    except Exception:
        return StepError(f"{type(error).__module__}.{type(error).__qualname__}: {error}")
    return error


def call_params(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The plain arguments of a call of `fn` (defaults filled in): the params of its step run."""
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    return step_params(bound.arguments)


def step_params(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The plain (JSON-able) arguments of a step call, logged as the params of its run."""
    plain: dict[str, Any] = {}
    for name, value in arguments.items():
        if (
            value is None
            or isinstance(value, str | int | float | bool)
            or (isinstance(value, list | tuple | dict) and len(repr(value)) <= 1000 and _is_json(value))
        ):
            plain[name] = value
    return plain


def _is_json(value: Any, depth: int = 0) -> bool:
    if depth > 20:
        return False
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list | tuple):
        return all(_is_json(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v, depth + 1) for k, v in value.items())
    return False
