"""The Ray executor: tasks run on a Ray cluster, local (started here) or remote (`ray://head:10001`).

`executor_for("ray")` connects to `RAY_ADDRESS` when it is set, else starts a local cluster bound to
127.0.0.1 (Ray binds to the machine's external address unless told otherwise); `"ray://HOST:PORT"` goes
through Ray Client. Tasks travel as the same pickled payload the process pool sends, so errors come back
with the worker's traceback. Ray's own task retries are off: a step's `retries` policy decides, and a
lost worker is reported as `WorkerLost`, like a crashed worker process.

On a cluster this process started (or one on this machine), workers see this process's `sys.path`, and
before each task a worker imports afresh the first-party modules whose files changed since it imported them,
so a long-lived worker does not run stale code. A remote cluster gets its code from its runtime environment
(see docs/ray.md).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import ipaddress
import os
import socket
import sys
import sysconfig
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from loopml.core.errors import InvalidInput, LoopMLError
from loopml.core.executors import Executor, TaskKilled, WorkerLost
from loopml.core.process_pool import pickle_task, run_payload, settle, task_label
from loopml.core.resources import Resources

__all__ = ["ClusterUnavailable", "RayExecutor", "RayMailbox", "ray_module"]

T = TypeVar("T")

CONNECT_TIMEOUT_S = 5.0
_LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class ClusterUnavailable(LoopMLError):
    """The Ray cluster cannot be reached, or Ray is not installed."""

    code = "cluster_unavailable"
    exit_code = 3


def ray_module(*, local: bool = True) -> Any:
    """`import ray` (for a cluster on this machine: bound to loopback), or a one-line error naming the extra."""
    if local:
        # Ray reads this once, when imported: without it a local cluster listens on the external address.
        os.environ.setdefault(_LOOPBACK_ONLY, "0")
    try:
        ray = importlib.import_module("ray")
    except ImportError as error:
        raise ClusterUnavailable(f"the Ray executor needs Ray: pip install 'loopml[ray]' ({error})") from None
    if local and not ray.is_initialized():
        constants = importlib.import_module("ray._private.ray_constants")
        # Imported earlier by other code, before the variable was set: the constant is what Ray consults.
        vars(constants)["ENABLE_RAY_CLUSTER"] = False
    return ray


class RayExecutor(Executor):
    """Runs tasks as Ray tasks; `max_workers` is the cluster's CPU count unless given."""

    name = "ray"
    remote_workers = True

    def __init__(
        self,
        *,
        address: str | None = None,
        max_workers: int | None = None,
        init_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.address = address
        self._max_workers = max_workers
        self.init_options = dict(init_options or {})
        self._lock = threading.Lock()
        self._ray: Any = None
        self._remote_fn: Any = None
        self._started_cluster = False
        self._local = False
        self._refs: dict[Future[Any], tuple[Any, dict[str, float]]] = {}  # future -> (ref, what it holds)
        self._reserved: dict[str, float] = {}  # CPU, GPU, memory, custom: held by the tasks in flight
        self._closed = False
        self._totals: dict[str, float] = {}

    # -- connecting ------------------------------------------------------------------------------------

    @property
    def max_workers(self) -> int:  # type: ignore[override]
        if self._max_workers is not None:
            return self._max_workers
        self.connect()
        return max(1, int(self._totals.get("CPU", 1)))

    @property
    def local_cluster(self) -> bool:
        """Whether every worker runs on this machine (so they share its files)."""
        self.connect()
        return self._local

    def connect(self) -> Any:
        """Connect to (or start) the cluster on first use; returns the `ray` module."""
        with self._lock:
            # Checked even when connected: after ray.shutdown, Ray would start a new cluster for any call.
            if self._closed:
                raise RuntimeError("cannot submit to a RayExecutor after shutdown()")
            if self._ray is not None:
                return self._ray
            address = self.address or os.environ.get("RAY_ADDRESS") or None
            local = address in (None, "local", "auto") or _is_loopback(str(address))
            ray = ray_module(local=local)
            if address not in (None, "local", "auto"):
                _check_reachable(str(address))
            if not ray.is_initialized():
                self._init(ray, address)
            elif self.address is not None and _connection["address"] not in (None, self.address):
                raise ClusterUnavailable(
                    f"this process is already connected to the Ray cluster at {_connection['address']}; it cannot also "
                    f"use {self.address}"
                )
            self._totals = dict(ray.cluster_resources())
            self._local = local
            self._remote_fn = ray.remote(_run_ray_task)
            self._ray = ray
            return ray

    def _init(self, ray: Any, address: str | None) -> None:
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, **self.init_options}
        if address is None and self._max_workers is not None:
            options.setdefault("num_cpus", self._max_workers)
        try:
            # "local" starts a cluster of our own: None would join any cluster `ray start` left a note of.
            ray.init(address=address or "local", **options)
        except (ConnectionError, TimeoutError, RuntimeError) as error:
            raise ClusterUnavailable(
                f"cannot connect to the Ray cluster at {address or 'a new local cluster'}: {error}"
            ) from None
        _connection["address"] = address
        self._started_cluster = True

    # -- the Executor primitives ----------------------------------------------------------------------

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run `fn(*args, **kwargs)` as a Ray task with 1 CPU."""
        return self.submit_with(None, fn, *args, **kwargs)

    def submit_with(
        self, resources: Resources | None, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> Future[T]:
        """Run `fn(*args, **kwargs)` as a Ray task reserving `resources`; one the cluster can never give fails."""
        ray = self.connect()
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()
        label = _describe(fn, args)
        try:
            payload = pickle_task(fn, args, kwargs)
            options, asks = self._options(resources, label)
        except InvalidInput as error:
            future.set_exception(error)
            return future
        ref = self._remote_fn.options(**options).remote(payload, list(sys.path) if self._local else None)
        with self._lock:
            if self._closed:
                ray.cancel(ref, force=True)
                raise RuntimeError("cannot submit to a RayExecutor after shutdown()")
            self._refs[future] = (ref, asks)
            for key, amount in asks.items():
                self._reserved[key] = self._reserved.get(key, 0.0) + amount
        ref.future().add_done_callback(lambda done: self._settle(future, done))
        return future

    def mailbox(self) -> RayMailbox:
        """The mailbox of this process's tasks on the cluster: a 0-CPU actor, started on first use (without
        waiting for it) and shared by every executor of the connection, since an actor is a process of its
        own; it ends with the connection."""
        ray = self.connect()
        context = ray.get_runtime_context()
        # A new cluster (ray.shutdown, then ray.init) numbers its jobs from 1 again: its node ids are new.
        connection = (context.get_node_id(), context.get_job_id())
        with _mailbox_lock:
            mailbox = _mailbox.get(connection)
            if mailbox is None:
                _mailbox.clear()
                actor = ray.remote(num_cpus=0, max_restarts=0)(_MailboxActor)
                mailbox = _mailbox[connection] = RayMailbox(actor.remote())
            return mailbox

    def has_room(self, resources: Resources | None) -> bool:
        """Whether a task asking for `resources` would start now: what the tasks in flight hold leaves enough
        of every resource it asks for (an idle cluster always has room, so an impossible request fails)."""
        self.connect()
        asks = _asks(resources or Resources())
        with self._lock:
            if not self._refs:
                return True
            return all(self._reserved.get(k, 0.0) + v <= self._totals.get(k, 0.0) for k, v in asks.items())

    def _options(self, resources: Resources | None, label: str) -> tuple[dict[str, Any], dict[str, float]]:
        wanted = resources or Resources()
        # Retries belong to the step's policy, which records each attempt; Ray's would be invisible.
        options: dict[str, Any] = {"num_cpus": wanted.cpu, "max_retries": 0, "retry_exceptions": False}
        if wanted.gpu:
            options["num_gpus"] = wanted.gpu
        if wanted.memory_bytes is not None:
            options["memory"] = wanted.memory_bytes
        if wanted.custom:
            options["resources"] = dict(wanted.custom)
        asks = _asks(wanted)
        for key, amount in asks.items():
            if amount > self._totals.get(key, 0.0):
                raise InvalidInput(
                    f"{label} asks for {wanted.describe()}, but the Ray cluster has "
                    f"{self._totals.get(key, 0.0):g} {key} in all: it could never run"
                )
        return options, asks

    def _settle(self, future: Future[Any], done: Future[Any]) -> None:
        self._release(future)
        if future.done():
            return
        try:
            reply = done.result()
        except BaseException as error:  # every Ray failure becomes one of ours
            future.set_exception(self._translated(error))
            return
        settle(future, reply)

    def _release(self, future: Future[Any]) -> Any:
        with self._lock:
            entry = self._refs.pop(future, None)
            if entry is None:
                return None
            for key, amount in entry[1].items():
                self._reserved[key] = max(0.0, self._reserved.get(key, 0.0) - amount)
            return entry[0]

    def _translated(self, error: BaseException) -> BaseException:
        exceptions = self._ray.exceptions
        if isinstance(error, exceptions.TaskCancelledError):
            return TaskKilled("the Ray task was cancelled")
        lost = (exceptions.WorkerCrashedError, exceptions.NodeDiedError, exceptions.ObjectLostError)
        if isinstance(error, lost) or type(error).__name__ in ("ActorDiedError", "OwnerDiedError"):
            return WorkerLost(f"the Ray worker running the task died: {_first_line(error)}")
        return LoopMLError(f"the Ray task failed: {type(error).__name__}: {_first_line(error)}")

    def kill(self, future: Future[Any]) -> bool:
        """Cancel the task (force-killing its worker if it runs); its future raises `TaskKilled`."""
        if future.done():
            return False
        ref = self._release(future)
        if ref is None:
            return False
        self._ray.cancel(ref, force=True)
        if not future.done():
            with contextlib.suppress(Exception):  # the Ray callback may have settled it meanwhile
                future.set_exception(TaskKilled("the Ray task was stopped"))
        return True

    def shutdown(self, *, wait: bool = True) -> None:
        """Refuse new tasks; `wait=False` also cancels the tasks in flight. A cluster this executor started
        is stopped once its tasks are done."""
        with self._lock:
            self._closed = True
            pending = list(self._refs)
        for future in pending:
            if wait:
                with contextlib.suppress(Exception):
                    future.exception()
            else:
                self.kill(future)
        if self._started_cluster and self._ray is not None:
            with _mailbox_lock:
                _mailbox.clear()
            self._ray.shutdown()
            self._started_cluster = False
            _connection["address"] = None

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r})"


class _MailboxActor:
    """Items posted under keys by tasks, kept until the driver takes or drops them (see `Mailbox`)."""

    _CLOSED_KEYS = 100_000  # remembered, so a late post of a finished task is not kept forever

    def __init__(self) -> None:
        self._items: dict[str, list[Any]] = {}
        self._closed: OrderedDict[str, None] = OrderedDict()

    def post(self, key: str, item: Any) -> None:
        if key not in self._closed:
            self._items.setdefault(key, []).append(item)

    def take(self, key: str) -> list[Any]:
        self._close(key)
        return self._items.pop(key, [])

    def drop(self, key: str) -> None:
        self._close(key)
        self._items.pop(key, None)

    def _close(self, key: str) -> None:
        self._closed[key] = None
        if len(self._closed) > self._CLOSED_KEYS:
            self._closed.popitem(last=False)


@dataclass(frozen=True)
class RayMailbox:
    """A `Mailbox` held by a Ray actor, which outlives the workers that post to it."""

    actor: Any
    take_timeout_s: float = 3.0

    def post(self, key: str, item: Any) -> None:
        if _connected():
            self.actor.post.remote(key, item)

    def take(self, key: str) -> list[Any]:
        if not _connected():
            return []
        try:
            items: list[Any] = ray_module(local=False).get(
                self.actor.take.remote(key), timeout=self.take_timeout_s
            )
        except Exception:  # the actor (or the cluster) is gone: what it held is lost, the run goes on
            return []
        return items

    def drop(self, key: str) -> None:
        if _connected():
            with contextlib.suppress(Exception):  # the actor (or the cluster) is gone: nothing to drop
                self.actor.drop.remote(key)


def _connected() -> bool:
    """Whether this process is still connected to Ray: once it is not, any call would start a new cluster."""
    ray = sys.modules.get("ray")
    return ray is not None and bool(ray.is_initialized())


def _run_ray_task(payload: bytes, paths: list[str] | None) -> bytes:
    """In a Ray worker: see the driver's code, then run the task as a worker process would.

    `paths` (the driver's sys.path) comes only on a cluster on the driver's machine, which shares its files:
    then first-party modules changed on disk since this worker imported them are imported afresh.
    """
    if paths is not None:
        for path in reversed(paths):
            if path not in sys.path:
                sys.path.insert(0, path)
        _forget_stale()
    try:
        return run_payload(payload)
    finally:
        if paths is not None:
            _imported_stamps.update(
                {n: s for n, s in _first_party_stamps().items() if n not in _imported_stamps}
            )


# Stamps (mtime_ns, size) of the first-party module files as this worker imported them.
_imported_stamps: dict[str, tuple[int, int]] = {}
# The address this process connected to (None: a local cluster it started, or none yet).
_connection: dict[str, str | None] = {"address": None}
_mailbox: dict[tuple[str, str], RayMailbox] = {}  # (node, job) of the connection -> its mailbox
_mailbox_lock = threading.Lock()


def _forget_stale() -> None:
    now = _first_party_stamps()
    if any(_imported_stamps.get(name, stamp) != stamp for name, stamp in now.items()):
        # A module that imported a changed one holds its old objects: drop every first-party module.
        for name in now:
            sys.modules.pop(name, None)
        _imported_stamps.clear()
        importlib.invalidate_caches()


@functools.cache
def _excluded_roots() -> tuple[str, ...]:
    roots = {sysconfig.get_path(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # loopml itself
    return tuple(sorted(os.path.realpath(r) + os.sep for r in roots if r))


def _first_party_stamps() -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of each loaded module file outside the standard library, site-packages and LoopML."""
    excluded = _excluded_roots()
    stamps: dict[str, tuple[int, int]] = {}
    for name, module in list(sys.modules.items()):
        filename = getattr(module, "__file__", None)
        if not isinstance(filename, str) or not filename.endswith(".py") or name == "__main__":
            continue
        if filename.startswith(excluded) or "site-packages" in filename:
            continue
        with contextlib.suppress(OSError):
            stat = os.stat(filename)
            stamps[name] = (stat.st_mtime_ns, stat.st_size)
    return stamps


def _asks(wanted: Resources) -> dict[str, float]:
    """A task's request in Ray's resource names."""
    asks = {"CPU": wanted.cpu}
    if wanted.gpu:
        asks["GPU"] = wanted.gpu
    if wanted.memory_bytes is not None:
        asks["memory"] = float(wanted.memory_bytes)
    asks.update(wanted.custom)
    return asks


def _describe(fn: Callable[..., Any], args: tuple[Any, ...]) -> str:
    """What a message calls the task: the pipeline step it runs, else the function."""
    step = getattr(args[0], "qualified_name", None) if args else None
    return f"step {step}" if isinstance(step, str) else task_label(fn)


def _check_reachable(address: str) -> None:
    """Fail in seconds on an address nothing listens on (Ray itself retries for minutes)."""
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as error:
        raise ClusterUnavailable(
            f"cannot reach the Ray cluster at {address}: {error.strerror or error} "
            "(is it running? `ray status` on the head node tells)"
        ) from None


def _host_port(address: str) -> tuple[str, int]:
    if address.startswith(("http://", "https://")):
        raise InvalidInput(
            f"Ray address {address!r} is the Ray Jobs API (dashboard) address; LoopML needs the cluster: "
            "HOST:6379 (the GCS) or ray://HOST:10001 (Ray Client)"
        )
    bare = address.removeprefix("ray://")
    host, sep, port = bare.rpartition(":")
    if not sep or not port.isdecimal() or not host:
        raise InvalidInput(f"Ray address {address!r} must look like HOST:PORT or ray://HOST:PORT")
    return host.strip("[]"), int(port)


def _is_loopback(address: str) -> bool:
    host, _ = _host_port(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:500] if text else type(error).__name__
