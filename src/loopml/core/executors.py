"""Executors: where pipeline steps, sweep trials and scoring batches run (in the caller, threads or processes).

`Executor` is the seam: implementations provide `submit`, `kill` and `shutdown`; `map`, `sweep` and `map_batches`
are built once on top of `submit`. Pick one with `executor_for("threads:4")`. Executors follow the scikit-learn
rule: the constructor only stores its keyword arguments; threads and processes start on the first `submit`.

`ProcessExecutor` runs its own worker processes instead of `concurrent.futures.ProcessPoolExecutor`, because that
pool can neither stop one task nor survive the death of one worker. Each worker process is fed one task at a time
by a thread of the parent, so `kill` knows which process to terminate and a dead worker costs only its own task.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from queue import SimpleQueue
from typing import Any, ClassVar, Self, TypeVar

from loopml.core.errors import InvalidInput, LoopMLError

__all__ = [
    "Executor", "InlineExecutor", "ProcessExecutor", "TaskKilled", "ThreadExecutor", "TrialOutcome", "WorkerLost",
    "executor_for", "task_traceback",
]  # fmt: skip

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")
R = TypeVar("R")

_SPEC_FORMS = "'inline', 'threads', 'threads:N', 'processes' or 'processes:N'"
# A worker asked to stop gets this long to exit before it is killed.
_STOP_GRACE_S = 5.0


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

    @abc.abstractmethod
    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Schedule `fn(*args, **kwargs)`; raise `RuntimeError` after `shutdown`."""

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
        error = None if self.error is None else _portable_error(self.error)
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


def _worker_count(max_workers: int | None) -> int:
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
        self.max_workers = _worker_count(max_workers)
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


@dataclass(eq=False)
class _Task:
    future: Future[Any]
    payload: bytes
    label: str
    process: BaseProcess | None = None
    killed: bool = False


class ProcessExecutor(Executor):
    """`max_workers` reusable worker processes (default: CPU count) for CPU-bound Python; tasks can be killed.

    Functions and arguments are pickled, so submit module-level functions. Workers start with "forkserver" on
    Linux (forking a parent that runs threads is unsafe) and "spawn" elsewhere.
    """

    name = "processes"

    def __init__(self, *, max_workers: int | None = None) -> None:
        self.max_workers = _worker_count(max_workers)
        self._lock = threading.Lock()
        # Process start and reaping are serialised: two threads polling one forkserver child can lose its exit code.
        self._lifecycle = threading.Lock()
        self._queue: SimpleQueue[_Task | None] = SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._tasks: dict[Future[Any], _Task] = {}
        self._workers: list[_Worker] = []
        self._closed = False
        self._terminating = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Queue `fn(*args, **kwargs)` for a worker process; pickling errors surface as `InvalidInput`."""
        if self._closed:
            raise RuntimeError("cannot submit to a ProcessExecutor after shutdown()")
        future: Future[T] = Future()
        try:
            payload = _pickle_task(fn, args, kwargs)
        except InvalidInput as exc:
            future.set_running_or_notify_cancel()
            future.set_exception(exc)
            return future
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a ProcessExecutor after shutdown()")
            task = _Task(future, payload, _label(fn))
            self._tasks[future] = task
            self._queue.put(task)
            # As ThreadPoolExecutor does: reuse an idle worker if there is one, else add one up to the limit.
            if not self._idle.acquire(blocking=False) and len(self._workers) < self.max_workers:
                worker = _Worker(self, len(self._workers))
                self._workers.append(worker)
                if len(self._workers) == 1:
                    _LIVE.add(self)
                worker.thread.start()
        return future

    def kill(self, future: Future[Any]) -> bool:
        """Cancel a queued task, or terminate the worker process running it (its future raises `TaskKilled`)."""
        if future.cancel():
            return True
        with self._lock:
            task = self._tasks.get(future)
            if task is None or future.done():
                return False
            task.killed = True
            if task.process is not None:
                task.process.kill()
            return True

    def shutdown(self, *, wait: bool = True) -> None:
        """Refuse new tasks; each worker process exits after the queued tasks, and `wait` joins them all."""
        with self._lock:
            if not self._closed:
                self._closed = True
                for _ in self._workers:
                    self._queue.put(None)
            workers = list(self._workers)
        if wait:
            for worker in workers:
                worker.thread.join()
        _LIVE.discard(self)

    def _terminate(self) -> None:
        """At interpreter exit: cancel what is queued and kill the workers, so no process outlives the parent."""
        with self._lifecycle, self._lock:
            self._terminating = True
            futures = [task.future for task in self._tasks.values()]
            processes = [worker.process for worker in self._workers if worker.process is not None]
        for future in futures:
            future.cancel()
        self.shutdown(wait=False)
        # Not joined here: multiprocessing's own exit handler, which runs next, reaps them.
        for process in processes:
            process.kill()


class _Worker:
    """One worker process and the parent thread that feeds it tasks one at a time (the process starts lazily)."""

    def __init__(self, owner: ProcessExecutor, number: int) -> None:
        self.owner = owner
        self.number = number
        self.process: BaseProcess | None = None
        self.conn: multiprocessing.connection.Connection | None = None
        self.thread = threading.Thread(
            target=self._serve, name=f"loopml-process-feeder-{number}", daemon=True
        )

    def _serve(self) -> None:
        try:
            while (task := self.owner._queue.get()) is not None:
                self._execute(task)
                self.owner._idle.release()
        finally:
            if self.process is not None and self.conn is not None:
                with contextlib.suppress(OSError):  # already gone: reaping it is all that is left to do
                    self.conn.send_bytes(b"")
                self._reap(grace_s=_STOP_GRACE_S)

    def _execute(self, task: _Task) -> None:
        owner, future = self.owner, task.future
        if not future.set_running_or_notify_cancel():
            with owner._lock:
                owner._tasks.pop(future, None)
            return
        try:
            process, conn = self._ensure_process()
        except Exception as exc:  # e.g. out of file descriptors or memory: fail this task, keep serving
            with owner._lock:
                owner._tasks.pop(future, None)
            future.set_exception(WorkerLost(f"could not start a worker process for {task.label}: {exc}"))
            return
        with owner._lock:
            task.process = process
            killed_before_start = task.killed
        reply = None if killed_before_start else _exchange(process, conn, task.payload)
        with owner._lock:
            killed = task.killed
            owner._tasks.pop(future, None)
        if killed:
            if not killed_before_start:
                self._reap(grace_s=0.0)
            future.set_exception(TaskKilled(f"task {task.label} was killed"))
        elif reply is None:
            status = _describe_exit(self._reap(grace_s=1.0))
            future.set_exception(
                WorkerLost(f"the worker process running {task.label} died ({status}); it has been replaced")
            )
        else:
            _settle(future, reply)

    def _ensure_process(self) -> tuple[BaseProcess, multiprocessing.connection.Connection]:
        if self.process is not None and self.conn is not None:
            with self.owner._lifecycle:
                alive = self.process.is_alive()
            if alive:
                return self.process, self.conn
            self._reap(grace_s=0.0)
        context = multiprocessing.get_context("forkserver" if sys.platform == "linux" else "spawn")
        parent_end, child_end = context.Pipe()
        process = context.Process(  # type: ignore[attr-defined]
            target=_worker_main, args=(child_end,), name=f"loopml-worker-{self.number}", daemon=False
        )
        try:
            with self.owner._lifecycle:
                if self.owner._terminating:
                    raise RuntimeError("the executor is shutting down")
                process.start()
                # Under the lock, so that `_terminate` cannot miss a process that has just started.
                self.process, self.conn = process, parent_end
        except BaseException:
            parent_end.close()
            raise
        finally:
            # The child holds its own copy; closing ours lets the parent see EOF when the child dies.
            child_end.close()
        return process, parent_end

    def _reap(self, *, grace_s: float) -> int | None:
        """Wait up to `grace_s` for the process to exit, kill it if it has not, and collect its exit code."""
        process, conn = self.process, self.conn
        self.process = self.conn = None
        if conn is not None:
            conn.close()
        if process is None:
            return None
        if not multiprocessing.connection.wait([process.sentinel], timeout=grace_s):
            process.kill()
        with self.owner._lifecycle:
            process.join()
        return process.exitcode


def _exchange(
    process: BaseProcess, conn: multiprocessing.connection.Connection, payload: bytes
) -> bytes | None:
    """Send one task and wait for its reply; None when the process died first."""
    try:
        conn.send_bytes(payload)
        ready = multiprocessing.connection.wait([conn, process.sentinel])
        # A reply written just before the process died is still in the pipe, so the pipe is checked first.
        return conn.recv_bytes() if conn in ready else None
    except (EOFError, OSError):
        return None


def _settle(future: Future[Any], reply: bytes) -> None:
    try:
        kind, *rest = pickle.loads(reply)  # noqa: S301 - our own worker's reply, never stored data
    except Exception as exc:
        future.set_exception(LoopMLError(f"the reply of a worker process could not be read: {exc}"))
        return
    if kind == "ok":
        future.set_result(rest[0])
    else:
        error, text = rest
        error.__cause__ = _RemoteTraceback(text)
        future.set_exception(error)


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _label(fn: object) -> str:
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module else str(name)


def _type_name(value: object) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _pickle_task(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    try:
        return pickle.dumps((fn, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        problem: Exception = exc
    # Pickle again part by part only on failure, to name what cannot cross to the worker process.
    parts = [("the function", fn), *((f"argument {i}", a) for i, a in enumerate(args))]
    parts += [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
    for part, value in parts:
        try:
            pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            problem, what = exc, f"{part} ({_type_name(value)})"
            break
    else:
        what = "the task"
    raise InvalidInput(
        f"cannot send {_label(fn)} to a worker process: {what} cannot be pickled ({problem}); submit a "
        "module-level function with picklable arguments, or use the 'threads' executor"
    ) from problem


def _portable_error(error: BaseException) -> BaseException:
    """`error` if it survives pickling as itself, else a `LoopMLError` carrying its type name and message."""
    try:
        if type(pickle.loads(pickle.dumps(error, protocol=pickle.HIGHEST_PROTOCOL))) is type(error):  # noqa: S301
            return error
    except Exception:  # noqa: S110 - any failure means it cannot cross; the fallback below says so
        pass
    return LoopMLError(f"{_type_name(error)}: {error} (the exception could not be sent back from the worker)")


def _run_payload(payload: bytes) -> bytes:
    """In the worker: run one pickled task and return the pickled reply, whatever happens."""
    try:
        fn, args, kwargs = pickle.loads(payload)  # noqa: S301 - sent by our own parent process
    except BaseException as exc:
        error: BaseException = InvalidInput(
            f"the worker process could not load the task ({_type_name(exc)}: {exc}); functions must be "
            "importable by module and name in a fresh process"
        )
        return pickle.dumps(("error", error, task_traceback(exc)))
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:
        return pickle.dumps(("error", _portable_error(exc), task_traceback(exc)))
    try:
        return pickle.dumps(("ok", value), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        error = InvalidInput(f"{_label(fn)} returned a {_type_name(value)} that cannot be pickled ({exc})")
        return pickle.dumps(("error", error, task_traceback(exc)))


def _worker_main(conn: multiprocessing.connection.Connection) -> None:
    """Entry point of a worker process: run tasks until told to stop or the parent goes away."""
    # Ctrl-C is the parent's to handle; a worker that died of it would only be reported as lost.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, name="loopml-parent-watch", daemon=True).start()
    while True:
        try:
            payload = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not payload:
            return
        try:
            conn.send_bytes(_run_payload(payload))
        except OSError:
            return


def _exit_with_parent() -> None:
    """In the worker: exit as soon as the parent dies, even mid-task, so no worker is left orphaned."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)


# Executors with worker processes, killed at interpreter exit. Registered after multiprocessing's own exit
# handler (imported above), so this runs first: that handler joins child processes and would wait forever.
_LIVE: weakref.WeakSet[ProcessExecutor] = weakref.WeakSet()


@atexit.register
def _terminate_live_executors() -> None:
    for executor in list(_LIVE):
        executor._terminate()


def executor_for(spec: str | Executor | None = None, *, max_workers: int | None = None) -> Executor:
    """The executor named by `spec`: None (threads), an `Executor` (returned as is), or one of the forms
    'inline', 'threads', 'threads:N', 'processes', 'processes:N'. `max_workers` sizes a pool named without N.
    """
    if max_workers is not None:
        _worker_count(max_workers)
    if isinstance(spec, Executor):
        return spec
    if spec is None:
        return ThreadExecutor(max_workers=max_workers)
    if not isinstance(spec, str):
        raise InvalidInput(f"executor must be {_SPEC_FORMS} or an Executor, got {type(spec).__name__}")
    kind, sep, count = spec.strip().partition(":")
    if kind == "ray":
        raise InvalidInput(
            f"executor {spec!r}: the Ray executor comes with the `loopml[ray]` extra and is not available in this "
            f"version; use {_SPEC_FORMS}"
        )
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
    return ProcessExecutor(max_workers=max_workers)
