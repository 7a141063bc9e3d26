"""Executors: where pipeline steps, sweep trials and scoring batches run (caller, threads, processes or Ray).

`Executor` is the seam: implementations provide `submit`, `kill` and `shutdown`; `map`, `sweep` and `map_batches`
are built once on top of `submit`. Pick one with `executor_for("threads:4")`. Executors follow the scikit-learn
rule: the constructor only stores its keyword arguments; threads and processes start on the first `submit`.

This module holds the seam and what every executor shares (the errors, `TrialOutcome`, `task_traceback`), plus
the inline and thread executors. The process pool is in `loopml.core.process_pool`, apart because its worker and
pipe machinery is as long as all of this; `ProcessExecutor` is still importable from here. The Ray executor
(`loopml.core.ray_executor`) needs the `loopml[ray]` extra and is imported only when asked for.
"""

from __future__ import annotations

import abc
import os
import pickle
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, TypeVar

from loopml.core.errors import InvalidInput, LoopMLError

if TYPE_CHECKING:
    from loopml.core.process_pool import ProcessExecutor
    from loopml.core.resources import Resources

__all__ = [
    "Executor", "InlineExecutor", "ProcessExecutor", "TaskKilled", "ThreadExecutor", "TrialOutcome", "WorkerLost",
    "executor_for", "task_traceback",
]  # fmt: skip

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")
R = TypeVar("R")

_SPEC_FORMS = "'inline', 'threads', 'threads:N', 'processes', 'processes:N', 'ray' or 'ray://HOST:PORT'"


class TaskKilled(LoopMLError):
    """The task was stopped by `Executor.kill` while it was running."""

    code = "task_killed"


class WorkerLost(LoopMLError):
    """The worker process died (crash, `os._exit`, out-of-memory kill) while it was running the task."""

    code = "worker_lost"


@dataclass(frozen=True)
class TrialOutcome:
    """The result of one `sweep` trial: `value` when `fn(**config)` returned, else `error` and its `traceback`."""

    index: int
    config: Mapping[str, Any]
    value: Any
    error: BaseException | None
    traceback: str | None
    duration_s: float


class Mailbox(Protocol):
    """Where a task on a cluster leaves items under a key while it runs, so they outlive a worker that dies.

    Handles are picklable: a task receives the mailbox and posts to it; the driver takes the items of a
    task that did not reply (killed, timed out, its worker lost), or drops them once it has the reply.
    """

    def post(self, key: str, item: Any) -> None:
        """Leave `item` under `key` (does not wait; items of one poster arrive in order)."""

    def take(self, key: str) -> list[Any]:
        """The items left under `key`, removed; later posts under it are ignored."""

    def drop(self, key: str) -> None:
        """Forget `key`'s items (does not wait); later posts under it are ignored."""


class _RemoteTraceback(Exception):
    """Set as `__cause__` of an error re-raised in the parent, so printing it shows the worker's traceback."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


def task_traceback(error: BaseException) -> str:
    """The formatted traceback of where a task raised `error`, also when it was raised in a worker process."""
    if isinstance(error.__cause__, _RemoteTraceback):
        return error.__cause__.text
    return "".join(traceback.format_exception(error))


class Executor(abc.ABC):
    """Runs callables somewhere; `submit`, `kill` and `shutdown` are the primitives, the rest is built on them."""

    name: ClassVar[str]
    max_workers: int
    # True when workers may run on other machines: they then read inputs from and write outputs to the
    # shared blob store themselves, and send tracking writes back to the driver (see loopml.pipelines.runner).
    remote_workers: ClassVar[bool] = False

    @abc.abstractmethod
    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Schedule `fn(*args, **kwargs)`; raise `RuntimeError` after `shutdown`."""

    def submit_with(
        self, resources: Resources | None, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> Future[T]:
        """`submit`, reserving `resources` where the executor places tasks (a cluster); here they are hints."""
        return self.submit(fn, *args, **kwargs)

    def mailbox(self) -> Mailbox | None:
        """Where tasks leave what must outlive them, if they run where a dead task's memory is gone
        (a cluster); local executors have none: their tasks write to the stores themselves."""
        return None

    def has_room(self, resources: Resources | None) -> bool:
        """Whether a task asking for `resources` would start at once. Cluster executors answer from the tasks
        in flight; local ones always say yes (their callers count tasks against `max_workers`)."""
        return True

    @abc.abstractmethod
    def kill(self, future: Future[Any]) -> bool:
        """Stop the task behind `future`: True if it was cancelled or stopped, False if it cannot be (any more)."""

    @abc.abstractmethod
    def shutdown(self, *, wait: bool = True) -> None:
        """Refuse new tasks and stop the workers once the submitted tasks are done; `wait` blocks until then."""

    def map(self, fn: Callable[[A], R], items: Iterable[A]) -> list[R]:
        """`[fn(item) for item in items]` in parallel; the first failure is raised and queued items cancelled."""
        futures = [self.submit(fn, item) for item in items]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            # The earliest item among the failed ones, so inline and parallel runs raise the same error.
            for future in futures:
                if future in done and future.exception() is not None:
                    future.result()
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise

    def sweep(self, fn: Callable[..., Any], configs: Sequence[Mapping[str, Any]]) -> list[TrialOutcome]:
        """Call `fn(**config)` for every config in parallel; every trial runs, failures are recorded per trial."""
        futures: list[Future[_TrialReport]] = []
        started: list[float] = []
        ended: dict[Future[_TrialReport], float] = {}
        for config in configs:
            started.append(time.perf_counter())
            future = self.submit(_run_trial, fn, dict(config))
            # Only read when the trial never reported its own time (killed, worker lost, unpicklable config).
            future.add_done_callback(lambda done: ended.setdefault(done, time.perf_counter()))
            futures.append(future)
        try:
            wait(futures)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        outcomes = []
        for index, (config, future) in enumerate(zip(configs, futures, strict=True)):
            try:
                report = future.result()
            except Exception as exc:
                # Callbacks run just after waiters wake, so the end time may not be recorded yet.
                duration = ended.get(future, time.perf_counter()) - started[index]
                report = _TrialReport(None, exc, task_traceback(exc), duration)
            outcomes.append(
                TrialOutcome(index, config, report.value, report.error, report.traceback, report.duration_s)
            )
        return outcomes

    def map_batches(
        self, fn: Callable[[B], R], batches: Iterable[B], *, max_in_flight: int | None = None
    ) -> Iterator[R]:
        """Lazily yield `fn(batch)` in order, pulling batches so at most `max_in_flight` are submitted at once."""
        limit = 2 * self.max_workers if max_in_flight is None else max_in_flight
        if not isinstance(limit, int) or limit < 1:
            raise InvalidInput(f"max_in_flight must be a positive integer, got {max_in_flight!r}")
        return self._bounded(fn, iter(batches), limit)

    def _bounded(self, fn: Callable[[B], R], batches: Iterator[B], limit: int) -> Iterator[R]:
        pending: deque[Future[R]] = deque()
        try:
            for batch in batches:
                pending.append(self.submit(fn, batch))
                if len(pending) >= limit:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_workers={self.max_workers})"


@dataclass(frozen=True)
class _TrialReport:
    """What a sweep trial sends back; errors are caught inside the task so each trial reports its own time."""

    value: Any
    error: BaseException | None
    traceback: str | None
    duration_s: float

    def __reduce__(self) -> tuple[Any, ...]:
        error = None if self.error is None else portable_error(self.error)
        return (_rebuild_report, (self.value, error, self.traceback, self.duration_s))


def _rebuild_report(
    value: Any, error: BaseException | None, text: str | None, duration_s: float
) -> _TrialReport:
    if error is not None and text is not None:
        error.__cause__ = _RemoteTraceback(text)
    return _TrialReport(value, error, text, duration_s)


def _run_trial(fn: Callable[..., Any], config: dict[str, Any]) -> _TrialReport:
    started = time.perf_counter()
    try:
        value = fn(**config)
    except Exception as exc:
        return _TrialReport(None, exc, task_traceback(exc), time.perf_counter() - started)
    return _TrialReport(value, None, None, time.perf_counter() - started)


# Shared with loopml.core.process_pool: sweep reports, like task replies, cross from worker processes.
def _type_name(value: object) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def portable_error(error: BaseException) -> BaseException:
    """`error` if it survives pickling as itself, else a `LoopMLError` carrying its type name and message."""
    try:
        if type(pickle.loads(pickle.dumps(error, protocol=pickle.HIGHEST_PROTOCOL))) is type(error):  # noqa: S301
            return error
    except Exception:  # noqa: S110 - any failure means it cannot cross; the fallback below says so
        pass
    return LoopMLError(f"{_type_name(error)}: {error} (the exception could not be sent back from the worker)")


def worker_count(max_workers: int | None) -> int:
    count = (os.cpu_count() or 1) if max_workers is None else max_workers
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise InvalidInput(f"max_workers must be a positive integer, got {max_workers!r}")
    return count


class InlineExecutor(Executor):
    """Runs each task in the caller's thread inside `submit`: for debugging, tests and tiny workloads.

    Exceptions other than `Exception` (KeyboardInterrupt, SystemExit) propagate from `submit` as from a call.
    """

    name = "inline"

    def __init__(self) -> None:
        self.max_workers = 1
        self._closed = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run `fn(*args, **kwargs)` now and return its already completed future."""
        if self._closed:
            raise RuntimeError("cannot submit to an InlineExecutor after shutdown()")
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def kill(self, future: Future[Any]) -> bool:
        """Always False: an inline task has finished by the time its future exists."""
        return False

    def shutdown(self, *, wait: bool = True) -> None:
        """Refuse further tasks."""
        self._closed = True


class ThreadExecutor(Executor):
    """A pool of `max_workers` threads (default: CPU count); for I/O and code that releases the GIL."""

    name = "threads"

    def __init__(self, *, max_workers: int | None = None) -> None:
        self.max_workers = worker_count(max_workers)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Queue `fn(*args, **kwargs)` for a pool thread, starting the pool on first use."""
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a ThreadExecutor after shutdown()")
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="loopml-thread")
            return self._pool.submit(fn, *args, **kwargs)

    def kill(self, future: Future[Any]) -> bool:
        """Cancel a queued task; a running thread cannot be stopped (False: abandon its result instead)."""
        return future.cancel()

    def shutdown(self, *, wait: bool = True) -> None:
        """Refuse new tasks; the pool threads exit after the queued tasks."""
        with self._lock:
            self._closed = True
            pool = self._pool
        if pool is not None:
            pool.shutdown(wait=wait)


def executor_for(spec: str | Executor | None = None, *, max_workers: int | None = None) -> Executor:
    """The executor named by `spec`: None (threads), an `Executor` (returned as is), or one of the forms
    'inline', 'threads', 'threads:N', 'processes', 'processes:N', 'ray' (RAY_ADDRESS, else a local cluster)
    or 'ray://HOST:PORT'. `max_workers` sizes a pool named without N (for Ray: the CPUs of a local cluster).
    """
    if max_workers is not None:
        worker_count(max_workers)
    if isinstance(spec, Executor):
        return spec
    if spec is None:
        return ThreadExecutor(max_workers=max_workers)
    if not isinstance(spec, str):
        raise InvalidInput(f"executor must be {_SPEC_FORMS} or an Executor, got {type(spec).__name__}")
    kind, sep, count = spec.strip().partition(":")
    if kind == "ray":
        from loopml.core.ray_executor import RayExecutor

        if sep and not count.startswith("//"):
            raise InvalidInput(
                f"unknown executor {spec!r}; a Ray cluster is named 'ray' or 'ray://HOST:PORT'"
            )
        return RayExecutor(address=spec.strip() if sep else None, max_workers=max_workers)
    if kind == "inline" and not sep:
        return InlineExecutor()
    if kind not in {"threads", "processes"} or (sep and not count.isdecimal()):
        raise InvalidInput(f"unknown executor {spec!r}; use {_SPEC_FORMS}")
    if sep:
        if max_workers is not None and max_workers != int(count):
            raise InvalidInput(
                f"executor {spec!r} contradicts max_workers={max_workers}; give the count once"
            )
        max_workers = int(count)
    if kind == "threads":
        return ThreadExecutor(max_workers=max_workers)
    from loopml.core.process_pool import ProcessExecutor

    return ProcessExecutor(max_workers=max_workers)


if not TYPE_CHECKING:  # mypy sees the import at the top instead, so misspelt names stay errors

    def __getattr__(name: str) -> Any:
        # process_pool imports this module, so it is imported on first use rather than at the top.
        if name == "ProcessExecutor":
            from loopml.core.process_pool import ProcessExecutor

            return ProcessExecutor
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
