"""The Ray executor on the session's local cluster: results, errors, lost workers, kills, resources, loopback."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from loopml.core.errors import InvalidInput
from loopml.core.executors import TaskKilled, WorkerLost, executor_for
from loopml.core.ray_executor import ClusterUnavailable, RayExecutor
from loopml.core.resources import Resources, parse_resources


def square(x: int) -> int:
    return x * x


def fail(message: str) -> None:
    raise ValueError(message)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def post_then_die(mailbox: Any, key: str) -> None:
    mailbox.post(key, "first")
    mailbox.post(key, "second")
    time.sleep(1.0)  # posts do not wait: give them time to leave before the worker dies
    os.kill(os.getpid(), signal.SIGKILL)


def assigned() -> dict[str, float]:
    import ray

    return dict(ray.get_runtime_context().get_assigned_resources())


@pytest.fixture
def executor(ray_cluster: Any) -> Any:
    chosen = executor_for("ray")
    yield chosen
    chosen.shutdown()


def test_tasks_run_on_ray_workers_and_errors_keep_their_traceback(executor: RayExecutor) -> None:
    assert isinstance(executor, RayExecutor)
    assert executor.max_workers == 2  # the cluster's CPUs
    assert executor.map(square, range(6)) == [0, 1, 4, 9, 16, 25]
    future = executor.submit(fail, "broken on purpose")
    error = future.exception(timeout=60)
    assert isinstance(error, ValueError)
    assert str(error) == "broken on purpose"
    assert "in fail" in str(error.__cause__)  # the worker's traceback
    outcomes = executor.sweep(lambda x: x, [{"x": 1}])  # a lambda cannot cross: recorded, not raised
    assert outcomes[0].error is not None
    assert "cannot be pickled" in str(outcomes[0].error)


def test_a_worker_that_dies_is_reported_as_lost_and_the_cluster_goes_on(executor: RayExecutor) -> None:
    error = executor.submit(die).exception(timeout=120)
    assert isinstance(error, WorkerLost), repr(error)
    assert "died" in str(error)
    assert executor.submit(square, 7).result(timeout=60) == 49  # Ray started another worker


def test_what_a_task_posted_to_the_mailbox_outlives_its_worker(executor: RayExecutor) -> None:
    mailbox = executor.mailbox()
    other = executor_for("ray")
    assert other.mailbox() is mailbox  # one actor per connection (an actor is a process), not per executor
    other.shutdown()
    error = executor.submit(post_then_die, mailbox, "run-1/1").exception(timeout=120)
    assert isinstance(error, WorkerLost), repr(error)
    assert mailbox.take("run-1/1") == ["first", "second"]
    assert mailbox.take("run-1/1") == []  # taken once
    mailbox.post("run-1/1", "late")  # a post after the driver took the key is not kept
    mailbox.post("run-2/1", "kept")
    mailbox.drop("run-2/1")
    assert mailbox.take("run-1/1") == []
    assert mailbox.take("run-2/1") == []


def test_a_running_task_is_killed(executor: RayExecutor) -> None:
    future = executor.submit(sleep, 60.0)
    time.sleep(1.0)
    assert executor.kill(future)
    assert isinstance(future.exception(timeout=60), TaskKilled)
    assert executor.submit(square, 3).result(timeout=60) == 9


def test_resources_are_reserved_and_impossible_ones_fail_at_once(executor: RayExecutor) -> None:
    wanted = parse_resources({"cpu": 2, "memory": "100MB"}, where="test")
    got = executor.submit_with(wanted, assigned).result(timeout=60)
    assert got["CPU"] == 2.0
    assert got["memory"] == 100_000_000
    too_many = executor.submit_with(Resources(cpu=64), assigned)
    error = too_many.exception(timeout=5)
    assert isinstance(error, InvalidInput)
    assert "asks for 64 CPU, but the Ray cluster has 2 CPU in all" in str(error)
    gpu = executor.submit_with(Resources(gpu=1), assigned).exception(timeout=5)
    assert isinstance(gpu, InvalidInput)
    assert "0 GPU" in str(gpu)


def test_admission_counts_every_resource_the_tasks_in_flight_hold(
    executor: RayExecutor, ray_cluster: Any
) -> None:
    total = ray_cluster.cluster_resources()["memory"]
    big = Resources(cpu=0.5, memory_bytes=int(total * 0.6))
    assert executor.has_room(big)
    first = executor.submit_with(big, sleep, 2.0)
    assert not executor.has_room(big)  # memory is short, not CPU
    assert executor.has_room(Resources(cpu=0.5))
    assert first.result(timeout=60) == 2.0
    assert executor.has_room(big)


def test_bad_resource_hints_are_refused_with_the_reason() -> None:
    for hints, reason in [
        ({"cpu": "two"}, "must be a number"),
        ({"cpu": -1}, "between 0"),
        ({"cpu": 1.5}, "whole number"),
        ({"memory": "lots"}, "a size like '4GB'"),
        ({"memory": 0}, "between 1 byte"),
        ({"gpus!": 1}, "not a resource name"),
        ({"cpu": True}, "must be a number"),
    ]:
        with pytest.raises(InvalidInput, match=reason):
            parse_resources(hints, where="@step on m:f")
    assert parse_resources({"memory": "512MiB", "gpu": 0.5}, where="x") == Resources(
        cpu=1.0, gpu=0.5, memory_bytes=512 * 2**20
    )


def test_the_local_cluster_listens_on_loopback_only(ray_cluster: Any) -> None:
    inodes = _socket_inodes(_descendants(os.getpid()))
    listening = _listening(inodes)
    assert len(listening) >= 3, listening  # the GCS, the raylet, the object manager at least
    outside = [address for address in listening if not _is_loopback(address)]
    assert outside == [], f"Ray listens beyond loopback on {outside}"


def test_an_unreachable_cluster_fails_in_seconds_with_the_address() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    started = time.monotonic()
    chosen = executor_for(f"ray://127.0.0.1:{port}")
    with pytest.raises(ClusterUnavailable, match=rf"cannot reach the Ray cluster at ray://127.0.0.1:{port}"):
        chosen.submit(square, 2)
    assert time.monotonic() - started < 60  # Ray alone retries for minutes
    with pytest.raises(InvalidInput, match="HOST:PORT"):
        executor_for("ray://nowhere").submit(square, 2)
    with pytest.raises(InvalidInput, match="unknown executor"):
        executor_for("ray:4")


def test_a_jobs_api_address_is_refused_with_what_to_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    with pytest.raises(InvalidInput, match=r"Ray Jobs API .* ray://HOST:10001"):
        executor_for("ray").submit(square, 2)


def test_without_ray_installed_the_error_names_the_extra(tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['ray'] = None\n"
        "from loopml.core.executors import executor_for\n"
        "from loopml.core.ray_executor import ClusterUnavailable\n"
        "try:\n"
        "    executor_for('ray').submit(print)\n"
        "except ClusterUnavailable as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'loopml[ray]'" in done.stdout


# -- reading who listens where, from /proc ---------------------------------------------------------------


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdecimal():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


def _socket_inodes(pids: set[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(f) for f in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        inodes.update(link[8:-1] for link in links if link.startswith("socket:["))
    return inodes


def _listening(inodes: set[str]) -> list[str]:
    addresses = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                addresses.append(_address(fields[1].split(":")[0], width))
    return addresses


def _is_loopback(text: str) -> bool:
    address = ipaddress.ip_address(text)
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _address(hex_text: str, width: int) -> str:
    raw = bytes.fromhex(hex_text)
    if width == 8:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)
