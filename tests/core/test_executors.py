"""Executors share one contract (order, errors, sweeps, bounded batches); processes can be killed and replaced.

Functions given to executors are module-level so worker processes can import them by name.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from pathlib import Path

import pytest

from loopml.core.errors import InvalidInput, LoopMLError
from loopml.core.executors import (
    Executor,
    InlineExecutor,
    ProcessExecutor,
    TaskKilled,
    ThreadExecutor,
    WorkerLost,
    executor_for,
    task_traceback,
)

KINDS: dict[str, Callable[[], Executor]] = {
    "inline": InlineExecutor,
    "threads": lambda: ThreadExecutor(max_workers=2),
    "processes": lambda: ProcessExecutor(max_workers=2),
}


class OddError(Exception):
    """An exception whose constructor does not match its args, so it cannot be unpickled."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}/{b}")


def _square(x: int) -> int:
    return x * x


def _fail(x: int) -> int:
    if x < 0:
        raise ValueError(f"boom {x}")
    return x


def _raise_odd() -> None:
    raise OddError("a", "b")


def _trial(x: int, y: int = 0) -> int:
    if x < 0:
        raise ValueError(f"bad x {x}")
    return x + y


def _total(batch: list[int]) -> int:
    return sum(batch)


def _pid() -> int:
    return os.getpid()


def _identity(value: object) -> object:
    return value


def _exit_now(code: int) -> None:
    os._exit(code)


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _announce_then_sleep(marker: str, seconds: float) -> None:
    Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)


def _sleep_then_touch(marker: str, seconds: float) -> None:
    time.sleep(seconds)
    Path(marker).touch()


def _rendezvous(folder: str, me: str, other: str) -> int:
    """Arrive, then wait up to 10 s for the other task: only possible when both run at the same time."""
    Path(folder, me).touch()
    deadline = time.monotonic() + 10
    while not Path(folder, other).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{other} never arrived: tasks did not run in parallel")
        time.sleep(0.01)
    return os.getpid()


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _worker_children() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name.startswith("loopml-worker")]


@pytest.fixture(params=list(KINDS))
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    with KINDS[request.param]() as created:
        yield created


def test_map_keeps_order(executor: Executor) -> None:
    assert executor.map(_square, range(7)) == [0, 1, 4, 9, 16, 25, 36]
    assert executor.map(_square, []) == []


def test_errors_keep_type_and_traceback(executor: Executor) -> None:
    with pytest.raises(ValueError, match="boom -1") as caught:
        executor.map(_fail, [1, -1, 2])
    text = task_traceback(caught.value)
    assert "in _fail" in text
    assert 'raise ValueError(f"boom {x}")' in text
    error = executor.submit(_fail, -2).exception(timeout=10)
    assert isinstance(error, ValueError)
    assert "in _fail" in task_traceback(error)


def test_sweep_runs_every_trial_and_records_failures(executor: Executor) -> None:
    configs = [{"x": 1}, {"x": -1, "y": 5}, {"x": 2, "y": 3}, {"x": -2}]
    outcomes = executor.sweep(_trial, configs)
    assert [o.index for o in outcomes] == [0, 1, 2, 3]
    assert [o.config for o in outcomes] == configs
    assert [o.value for o in outcomes] == [1, None, 5, None]
    assert [type(o.error) for o in outcomes] == [type(None), ValueError, type(None), ValueError]
    assert str(outcomes[3].error) == "bad x -2"
    assert outcomes[1].error is not None
    assert outcomes[1].traceback is not None
    assert "in _trial" in outcomes[1].traceback
    assert task_traceback(outcomes[1].error) == outcomes[1].traceback
    assert outcomes[0].traceback is None
    assert all(o.duration_s >= 0 for o in outcomes)


def test_map_batches_is_ordered_and_bounded(executor: Executor) -> None:
    pulled = 0

    def batches() -> Iterator[list[int]]:
        nonlocal pulled
        for start in range(0, 50, 5):
            pulled += 1
            yield list(range(start, start + 5))

    results = executor.map_batches(_total, batches(), max_in_flight=3)
    assert pulled == 0  # nothing is pulled before the caller asks
    first = next(results)
    assert pulled <= 3
    assert [first, *results] == [sum(range(s, s + 5)) for s in range(0, 50, 5)]
    assert pulled == 10


def test_map_batches_rejects_a_bad_bound(executor: Executor) -> None:
    with pytest.raises(InvalidInput, match="max_in_flight"):
        executor.map_batches(_total, [], max_in_flight=0)


def test_submit_after_shutdown_is_refused(executor: Executor) -> None:
    assert executor.submit(_square, 3).result(timeout=10) == 9
    executor.shutdown()
    with pytest.raises(RuntimeError, match="shutdown"):
        executor.submit(_square, 3)


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_pools_run_tasks_in_parallel(kind: str, tmp_path: Path) -> None:
    with KINDS[kind]() as executor:
        a = executor.submit(_rendezvous, str(tmp_path), "a", "b")
        b = executor.submit(_rendezvous, str(tmp_path), "b", "a")
        a_pid, b_pid = a.result(timeout=15), b.result(timeout=15)
    assert (a_pid != b_pid) == (kind == "processes")


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_a_failing_map_cancels_queued_items(kind: str, tmp_path: Path) -> None:
    executor = ThreadExecutor(max_workers=1) if kind == "threads" else ProcessExecutor(max_workers=1)
    with executor:
        executor.submit(_square, 1).result(timeout=10)  # the worker is up, so the failure comes first
        items = [-1, *range(5)]
        with pytest.raises(ValueError, match="boom -1"):
            executor.map(_fail_or_touch, [(str(tmp_path), i) for i in items])
    # At most the item already picked up when the failure arrived ran; the rest were cancelled.
    assert len(list(tmp_path.iterdir())) <= 1


def _fail_or_touch(item: tuple[str, int]) -> None:
    folder, i = item
    _fail(i)
    _sleep_then_touch(str(Path(folder, str(i))), 0.2)


def test_kill_stops_a_running_process_task_and_the_worker_is_replaced(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    with ProcessExecutor(max_workers=1) as executor:
        running = executor.submit(_announce_then_sleep, str(marker), 30)
        queued = executor.submit(_square, 4)
        _wait_for(marker.exists)
        worker_pid = int(marker.read_text())

        assert executor.kill(queued) is True
        assert queued.cancelled()
        started = time.monotonic()
        assert executor.kill(running) is True
        with pytest.raises(TaskKilled):
            running.result(timeout=10)
        assert time.monotonic() - started < 5
        _wait_for(lambda: not _alive(worker_pid))

        assert executor.submit(_square, 5).result(timeout=10) == 25
        assert executor.submit(_pid).result(timeout=10) != worker_pid
        done = executor.submit(_square, 6)
        assert done.result(timeout=10) == 36
        assert executor.kill(done) is False


def test_threads_cannot_be_killed_while_running(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    with ThreadExecutor(max_workers=1) as executor:
        running = executor.submit(_announce_then_sleep, str(marker), 0.3)
        queued = executor.submit(_square, 2)
        _wait_for(marker.exists)
        assert executor.kill(queued) is True
        assert executor.kill(running) is False
        assert running.result(timeout=10) is None
        with pytest.raises(CancelledError):
            queued.result()


def test_a_dying_worker_fails_only_its_task() -> None:
    with ProcessExecutor(max_workers=2) as executor:
        lost = executor.submit(_exit_now, 3)
        with pytest.raises(WorkerLost, match="exit code 3"):
            lost.result(timeout=10)
        signalled = executor.submit(_kill_self)
        with pytest.raises(WorkerLost, match="SIGKILL"):
            signalled.result(timeout=10)
        assert executor.map(_square, range(4)) == [0, 1, 4, 9]


def test_unpicklable_tasks_are_invalid_input() -> None:
    with ProcessExecutor(max_workers=1) as executor:
        with pytest.raises(InvalidInput, match=r"argument 0 \(_thread\.lock\)"):
            executor.submit(_identity, threading.Lock()).result(timeout=10)
        with pytest.raises(InvalidInput, match="lambda"):
            executor.submit(lambda: 1).result(timeout=10)
        with pytest.raises(InvalidInput, match=r"returned a _thread\.RLock"):
            executor.submit(threading.RLock).result(timeout=10)
        outcomes = executor.sweep(_trial, [{"x": 1}, {"x": threading.Lock()}])
        assert outcomes[0].value == 1
        assert isinstance(outcomes[1].error, InvalidInput)


def test_unpicklable_exceptions_come_back_by_name() -> None:
    with ProcessExecutor(max_workers=1) as executor:
        error = executor.submit(_raise_odd).exception(timeout=10)
    assert isinstance(error, LoopMLError)
    assert "OddError: a/b" in str(error)
    assert "in _raise_odd" in task_traceback(error)


def test_shutdown_leaves_no_worker_processes(tmp_path: Path) -> None:
    executor = ProcessExecutor(max_workers=2)
    a = executor.submit(_rendezvous, str(tmp_path), "a", "b")
    b = executor.submit(_rendezvous, str(tmp_path), "b", "a")
    pids = {a.result(timeout=15), b.result(timeout=15)}
    assert len(pids) == 2
    assert all(_alive(pid) for pid in pids)
    executor.shutdown()
    assert _worker_children() == []
    _wait_for(lambda: not any(_alive(pid) for pid in pids))
    with pytest.raises(RuntimeError, match="shutdown"):
        executor.submit(_square, 2)


def test_constructors_only_store_their_config() -> None:
    threads_before = threading.active_count()
    children_before = multiprocessing.active_children()
    executors = [ThreadExecutor(max_workers=3), ProcessExecutor(max_workers=2), ProcessExecutor()]
    assert threading.active_count() == threads_before
    assert multiprocessing.active_children() == children_before
    assert [e.max_workers for e in executors] == [3, 2, os.cpu_count()]
    assert repr(executors[0]) == "ThreadExecutor(max_workers=3)"
    with pytest.raises(InvalidInput, match="max_workers"):
        ProcessExecutor(max_workers=0)


@pytest.mark.parametrize(
    ("spec", "max_workers", "kind", "workers"),
    [
        (None, None, ThreadExecutor, os.cpu_count()),
        (None, 3, ThreadExecutor, 3),
        ("inline", None, InlineExecutor, 1),
        ("threads", None, ThreadExecutor, os.cpu_count()),
        ("threads:4", None, ThreadExecutor, 4),
        ("threads", 2, ThreadExecutor, 2),
        ("processes", None, ProcessExecutor, os.cpu_count()),
        ("processes:2", 2, ProcessExecutor, 2),
    ],
)
def test_executor_for_parses_specs(
    spec: str | None, max_workers: int | None, kind: type[Executor], workers: int
) -> None:
    executor = executor_for(spec, max_workers=max_workers)
    assert type(executor) is kind
    assert executor.max_workers == workers
    assert executor.name == (spec or "threads").partition(":")[0]


def test_executor_for_returns_an_executor_as_is() -> None:
    given = InlineExecutor()
    assert executor_for(given) is given


@pytest.mark.parametrize(
    ("spec", "max_workers", "message"),
    [
        (
            "dask",
            None,
            "use 'inline', 'threads', 'threads:N', 'processes', 'processes:N', 'ray' or 'ray://HOST:PORT'",
        ),
        ("threads:x", None, "unknown executor"),
        ("threads:", None, "unknown executor"),
        ("inline:2", None, "unknown executor"),
        ("threads:0", None, "max_workers must be a positive integer"),
        ("threads", 0, "max_workers must be a positive integer"),
        ("threads:4", 2, "contradicts max_workers=2"),
        ("ray:4", None, "a Ray cluster is named 'ray' or 'ray://HOST:PORT'"),
    ],
)
def test_executor_for_refuses_bad_specs(spec: str, max_workers: int | None, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        executor_for(spec, max_workers=max_workers)
    assert caught.value.exit_code == 2
