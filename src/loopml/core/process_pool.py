"""The process pool: `ProcessExecutor`, its worker processes and the parent threads that feed them.

`ProcessExecutor` runs its own worker processes instead of `concurrent.futures.ProcessPoolExecutor`, because that
pool can neither stop one task nor survive the death of one worker. Each worker process is fed one task at a time
by a thread of the parent, so `kill` knows which process to terminate and a dead worker costs only its own task.

Apart from `loopml.core.executors` (which re-exports `ProcessExecutor` and builds it in `executor_for`) because
this machinery (pipes, pickling across processes, reaping, exit handling) is as long as all other executors.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from queue import SimpleQueue
from typing import Any, TypeVar

from loopml.core.errors import InvalidInput, LoopMLError
from loopml.core.executors import (
    Executor,
    TaskKilled,
    WorkerLost,
    _RemoteTraceback,
    _type_name,
    portable_error,
    task_traceback,
    worker_count,
)

__all__ = ["ProcessExecutor"]

T = TypeVar("T")

# A worker asked to stop gets this long to exit before it is killed.
_STOP_GRACE_S = 5.0


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
        self.max_workers = worker_count(max_workers)
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
            payload = pickle_task(fn, args, kwargs)
        except InvalidInput as exc:
            future.set_running_or_notify_cancel()
            future.set_exception(exc)
            return future
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a ProcessExecutor after shutdown()")
            task = _Task(future, payload, task_label(fn))
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
            settle(future, reply)

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


def settle(future: Future[Any], reply: bytes) -> None:
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


def task_label(fn: object) -> str:
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module else str(name)


def pickle_task(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
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
        f"cannot send {task_label(fn)} to a worker process: {what} cannot be pickled ({problem}); submit a "
        "module-level function with picklable arguments, or use the 'threads' executor"
    ) from problem


def run_payload(payload: bytes) -> bytes:
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
        return pickle.dumps(("error", portable_error(exc), task_traceback(exc)))
    try:
        return pickle.dumps(("ok", value), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        error = InvalidInput(
            f"{task_label(fn)} returned a {_type_name(value)} that cannot be pickled ({exc})"
        )
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
            conn.send_bytes(run_payload(payload))
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
