"""The metric buffer across threads, forks and processes: nothing acknowledged is lost, nothing is doubled."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import loopml
from loopml.core.settings import load_settings
from loopml.tracking.tracker import Tracker, configure, use_tracker


def test_points_reach_the_store_without_flush_after_the_interval(tmp_path: Path) -> None:
    tracker = Tracker(load_settings(project_dir=tmp_path, flush_interval_s=0.05))
    try:
        with loopml.start_run(tracker=tracker) as run:
            run.log_metric("m", 1.0)
            done = threading.Event()
            for _ in range(200):  # the background thread flushes on its own; wait for it, bounded
                if tracker.store.metrics.history(run.run_id, "m"):
                    done.set()
                    break
                threading.Event().wait(0.02)
            assert done.is_set()
    finally:
        tracker.close()


def test_size_bound_flushes_inline(tmp_path: Path) -> None:
    tracker = Tracker(load_settings(project_dir=tmp_path, flush_max_points=100, flush_interval_s=60))
    try:
        with loopml.start_run(tracker=tracker) as run:
            for step in range(250):
                run.log_metric("m", float(step), step=step)
            assert tracker.buffer.pending() < 100
    finally:
        tracker.close()


def test_active_run_is_per_thread(sqlite_tracker: Tracker) -> None:
    seen: list[object] = []
    with loopml.start_run() as main_run:

        def worker() -> None:
            seen.append(loopml.active_run())
            with loopml.start_run(name="in-thread") as own:
                loopml.log_metric("t", 1.0)
                seen.append(own.run_id)

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        assert loopml.active_run() is main_run
    assert seen[0] is None
    assert loopml.Client().get_run(str(seen[1])).metrics == {"t": 1.0}


def test_flush_waits_for_a_locked_database_and_loses_nothing(sqlite_tracker: Tracker, tmp_path: Path) -> None:
    with loopml.start_run() as run:
        for step in range(1000):
            loopml.log_metric("m", float(step), step=step)
        blocker = sqlite3.connect(tmp_path / ".loopml" / "loopml.db", timeout=5)
        blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        sqlite_tracker.stores.db.busy_timeout_s = 0.2
        flushed = threading.Thread(target=loopml.flush)
        flushed.start()
        flushed.join(timeout=1.0)
        assert flushed.is_alive()  # still retrying, past the busy timeout, and not dropping points
        blocker.rollback()
        blocker.close()
        flushed.join(timeout=30)
        assert not flushed.is_alive()
    assert len(loopml.Client().get_metric_history(run.run_id, "m")) == 1000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_with_unflushed_points_writes_no_duplicates(sqlite_tracker: Tracker) -> None:
    with loopml.start_run(name="parent") as run:
        for step in range(500):
            loopml.log_metric("parent", float(step), step=step)
        assert sqlite_tracker.buffer.pending() > 0
        pid = os.fork()
        if pid == 0:  # the child logs its own run, flushes, and exits without running atexit handlers
            code = 1
            try:
                assert sqlite_tracker.buffer.pending() == 0
                with loopml.start_run(name="child", tracker=sqlite_tracker, nested=True) as child:
                    for step in range(300):
                        child.log_metric("child", float(step), step=step)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    client = loopml.Client()
    assert len(client.get_metric_history(run.run_id, "parent")) == 500
    children = client.search_runs(filter='run_name = "child"').runs
    assert len(children) == 1
    assert len(client.get_metric_history(children[0].run_id, "child")) == 300
    assert client.get_metric_history(children[0].run_id, "parent") == []


def _log_points(project: str, worker: int, points: int) -> str:
    tracker = configure(project_dir=project)
    with loopml.start_run(experiment="parallel", name=f"worker-{worker}") as run:
        for step in range(points):
            loopml.log_metric("m", float(step), step=step)
    tracker.close()
    return run.run_id


def test_eight_processes_lose_no_points(tmp_path: Path) -> None:
    Tracker(load_settings(project_dir=tmp_path)).close()  # create the store once, before the race
    context = multiprocessing.get_context("spawn")
    with context.Pool(8) as pool:
        run_ids = pool.starmap(_log_points, [(str(tmp_path), i, 10_000) for i in range(8)])
    tracker = Tracker(load_settings(project_dir=tmp_path))
    try:
        client = loopml.Client(tracker)
        for run_id in run_ids:
            steps = [p.step for p in client.get_metric_history(run_id, "m")]
            assert steps == list(range(10_000))
    finally:
        tracker.close()


def test_script_exit_ends_active_run_and_writes_buffered_points(tmp_path: Path) -> None:
    script = (
        "import loopml\n"
        "run = loopml.start_run(name='left-open')\n"
        "for step in range(1000):\n"
        "    loopml.log_metric('m', float(step), step=step)\n"
        "print(run.run_id)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    env["LOOPML_FLUSH_INTERVAL_S"] = "60"  # only the exit handler can write these points
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    run_id = result.stdout.strip()
    tracker = Tracker(load_settings(project_dir=tmp_path))
    try:
        run = loopml.Client(tracker).get_run(run_id)
        assert run.status is loopml.RunStatus.FINISHED
        assert len(loopml.Client(tracker).get_metric_history(run_id, "m")) == 1000
    finally:
        tracker.close()


def test_script_dying_of_an_error_marks_its_open_run_failed(tmp_path: Path) -> None:
    script = (
        "import loopml\nrun = loopml.start_run()\nprint(run.run_id, flush=True)\nraise RuntimeError('boom')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 1
    tracker = Tracker(load_settings(project_dir=tmp_path))
    try:
        run = loopml.Client(tracker).get_run(result.stdout.strip())
        assert run.status is loopml.RunStatus.FAILED
        assert run.error == "RuntimeError: boom"
    finally:
        tracker.close()


def _worker_logs(run_id: str) -> None:
    client_run = loopml.start_run(name=f"worker-of-{run_id[:6]}")
    for step in range(100):
        client_run.log_metric("w", float(step), step=step)
    client_run.end()
    loopml.log_metric  # noqa: B018 - the module stays importable in the worker
    with loopml.start_run(name="unended"):
        pass
    open_run = loopml.start_run(name="left-open-in-worker")
    open_run.log_metric("late", 1.0)  # only the worker's exit hook can write this


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs the fork start method")
def test_forked_multiprocessing_worker_flushes_and_leaves_parent_run_alone(sqlite_tracker: Tracker) -> None:
    with loopml.start_run(name="parent") as parent:
        loopml.log_metric("p", 1.0)  # unflushed at fork time
        worker = multiprocessing.get_context("fork").Process(target=_worker_logs, args=(parent.run_id,))
        worker.start()
        worker.join(timeout=60)
        assert worker.exitcode == 0
        assert loopml.Client().get_run(parent.run_id).status is loopml.RunStatus.RUNNING
    client = loopml.Client()
    assert client.get_run(parent.run_id).status is loopml.RunStatus.FINISHED
    assert len(client.get_metric_history(parent.run_id, "p")) == 1
    late = client.search_runs(filter='run_name = "left-open-in-worker"').runs
    assert len(late) == 1
    assert client.get_metric_history(late[0].run_id, "late")[0].value == 1.0
    worker_run = client.search_runs(filter=f'run_name = "worker-of-{parent.run_id[:6]}"').runs[0]
    assert len(client.get_metric_history(worker_run.run_id, "w")) == 100


def test_failed_end_can_be_retried(tmp_path: Path) -> None:
    tracker = Tracker(load_settings(project_dir=tmp_path, busy_timeout_s=0.2))
    previous = use_tracker(tracker)
    try:
        run = loopml.start_run()
        blocker = sqlite3.connect(tmp_path / ".loopml" / "loopml.db", timeout=5)
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(loopml.StoreError):
            loopml.end_run()
        blocker.rollback()
        blocker.close()
        loopml.end_run()
        assert loopml.Client().get_run(run.run_id).status is loopml.RunStatus.FINISHED
        assert loopml.active_run() is None
    finally:
        use_tracker(previous)
        tracker.close()
