"""LoopML team server vs MLflow tracking server, both on one PostgreSQL server (two databases), one run.

    bash bench/setup_peers.sh                                     # once: .venv-peers with the pinned MLflow
    .venv-peers/bin/pip install "psycopg[binary]==3.3.9"          # once: MLflow's PostgreSQL driver
    .venv/bin/python bench/server.py                              # full run (~3.5 min)
    .venv/bin/python bench/server.py --quick                      # small sizes, smoke test (~1 min)
    .venv/bin/python bench/server.py --no-mlflow                  # LoopML side only
    .venv/bin/python bench/server.py --profile log                # timers + cProfile of LoopML's server; also search

What runs: a throwaway PostgreSQL cluster (`initdb` + `pg_ctl` from Debian's postgresql, as tests/conftest.py
finds it; its default durability: fsync and synchronous_commit on) on 127.0.0.1, with databases `loopml` and
`mlflow`. `loopml db upgrade`, `loopml server create-admin --name bench` (its last line is the token) and
`loopml server --host 127.0.0.1 --port P`, with LOOPML_DATABASE_URL on the `loopml` database; and
`.venv-peers/bin/mlflow server --backend-store-uri postgresql+psycopg://.../mlflow --host 127.0.0.1` (its
defaults: 4 workers, no authentication). Every client runs in a subprocess of its own venv (MLflow is never
imported into LoopML's venv), one side after the other, never both at once.

Measurements:
  log     remote logging throughput, one run, 5 metric keys per step, from the first call until everything is
          committed. LoopML: `loopml.start_run` + `loopml.log_metric` against the server (LOOPML_TRACKING_URI and
          LOOPML_TOKEN given through `loopml.configure`), then `loopml.flush()`: the client as shipped, and with
          50,000-point requests (a bench-side patch of `loopml.tracking.remote.BATCH_POINTS`). MLflow:
          `MlflowClient().log_batch` with 1,000 metrics per call (its documented limit).
  search  10,000 runs (4 params, 3 metrics each; the same seeded values on both sides), written directly into
          each side's database through its own Python API (LoopML: `TrackingStore` on the server's database;
          MLflow: `MlflowClient` on a `postgresql+psycopg://` URI), 4 threads each; then, through HTTP,
          `metrics.auc > 0.9 and params.model = 'rf'` ordered by `metrics.auc DESC`, max_results 100, median of
          N after 2 warm-ups; and a broad query (`metrics.loss < 0.5`, ~5,000 matches). Both sides must return
          the same 100 runs in the same order.
Each phase records the CPU of the client, the server (its session), PostgreSQL (postmaster and backends) and
everything else (noise). Prints a markdown table and appends one JSON line to bench/results/server.json.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import pwd
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from peers.noise import machine_busy_s  # bench/ is on sys.path: this script runs as bench/server.py

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LOOPML_BIN = REPO / ".venv" / "bin"
PEERS_BIN = REPO / ".venv-peers" / "bin"
HOST = "127.0.0.1"

KEYS = ("loss", "accuracy", "learning_rate", "grad_norm", "val_loss")  # logged at every step
MODELS = ("rf", "lr", "xgb", "svm")
QUERIES = {
    "target": ("metrics.auc > 0.9 and params.model = 'rf'", "metrics.auc DESC"),
    "broad": ("metrics.loss < 0.5", "metrics.accuracy DESC"),
}
MAX_RESULTS = 100
THROUGHPUT_TARGET = 50_000.0  # points/s
SEARCH_TARGET_MS = 150.0
TS = 1_764_000_000_000  # a fixed timestamp (ms) for every point

now = time.perf_counter


# -- the workload, shared by both sides (stdlib only: also imported under .venv-peers) ------------------------


def point_values(n: int, seed: int = 1) -> list[float]:
    rnd = random.Random(seed)
    return [rnd.random() for _ in range(n)]


def run_data(r: int) -> tuple[dict[str, str], dict[str, float]]:
    """Params and metrics of search run r (the same on both sides)."""
    rnd = random.Random(1000 + r)
    params = {
        "model": MODELS[rnd.randrange(len(MODELS))],
        "learning_rate": f"{rnd.uniform(1e-4, 0.1):.6f}",
        "depth": str(rnd.randrange(2, 12)),
        "seed": str(r),
    }
    metrics = {"auc": rnd.uniform(0.5, 1.0), "loss": rnd.random(), "accuracy": rnd.uniform(0.5, 1.0)}
    return params, metrics


def run_name(r: int) -> str:
    return f"run-{r:05d}"


def expected_results(n_runs: int) -> dict[str, dict[str, Any]]:
    """For each query: how many runs match and the names of the first page, computed here."""
    rows = [(run_name(r), *run_data(r)) for r in range(n_runs)]
    target = sorted(
        ((m["auc"], name) for name, p, m in rows if m["auc"] > 0.9 and p["model"] == "rf"), reverse=True
    )
    broad = sorted(((m["accuracy"], name) for name, _, m in rows if m["loss"] < 0.5), reverse=True)
    return {
        "target": {"matched": len(target), "first_page": [n for _, n in target[:MAX_RESULTS]]},
        "broad": {"matched": len(broad), "first_page": [n for _, n in broad[:MAX_RESULTS]]},
    }


def summary_ms(seconds: list[float]) -> dict[str, Any]:
    ms = sorted(s * 1000 for s in seconds)
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p90_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.9))], 3),
        "min_ms": round(ms[0], 3),
        "max_ms": round(ms[-1], 3),
    }


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    sys.stdout.flush()


# -- MLflow side: run as `.venv-peers/bin/python bench/server.py --mlflow-side CONFIG` -------------------------


def mlflow_side(cfg: dict[str, Any]) -> dict[str, Any]:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    from importlib import metadata

    from mlflow import MlflowClient  # type: ignore[import-not-found]  # .venv-peers only
    from mlflow.entities import Metric, Param  # type: ignore[import-not-found]

    mode = cfg["mode"]
    res: dict[str, Any] = {"mode": mode, "mlflow": metadata.version("mlflow")}
    quiet = open(os.devnull, "w")  # noqa: SIM115 - MLflow prints a "View run" line per run
    if mode == "log":
        client = MlflowClient(tracking_uri=cfg["uri"])
        exp = client.create_experiment(f"log-{time.time_ns()}")
        run_id = client.create_run(exp, run_name="log").info.run_id
        n, values = cfg["points"], point_values(cfg["points"])
        per_call = []
        cpu0, t0 = time.process_time(), now()
        for start in range(0, n, 1000):
            t = now()
            metrics = [
                Metric(KEYS[i % len(KEYS)], values[i], TS, i // len(KEYS))
                for i in range(start, min(n, start + 1000))
            ]
            client.log_batch(run_id, metrics=metrics)
            per_call.append(now() - t)
        elapsed = now() - t0
        res.update(
            points=n,
            seconds=round(elapsed, 3),
            points_per_s=round(n / elapsed, 1),
            client_cpu_s=round(time.process_time() - cpu0, 3),
            log_batch_calls=len(per_call),
            per_call=summary_ms(per_call),
        )
        with contextlib.redirect_stdout(quiet):
            client.set_terminated(run_id)
        res["stored"] = sum(len(client.get_metric_history(run_id, k)) for k in KEYS)
    elif mode == "populate":
        client = MlflowClient(tracking_uri=cfg["db_url"])  # its SQLAlchemy store, straight on the database
        exp = client.create_experiment(cfg["experiment"])

        def one(r: int) -> None:
            params, metrics = run_data(r)
            run_id = client.create_run(exp, run_name=run_name(r), start_time=TS + r).info.run_id
            client.log_batch(
                run_id,
                metrics=[Metric(k, v, TS + r, 0) for k, v in metrics.items()],
                params=[Param(k, v) for k, v in params.items()],
            )
            client.set_terminated(run_id, end_time=TS + r + 1)

        t0 = now()
        with contextlib.redirect_stdout(quiet), ThreadPoolExecutor(cfg["threads"]) as pool:
            list(pool.map(one, range(cfg["runs"])))
        elapsed = now() - t0
        res.update(runs=cfg["runs"], seconds=round(elapsed, 2), runs_per_s=round(cfg["runs"] / elapsed, 1))
    elif mode == "search":
        client = MlflowClient(tracking_uri=cfg["uri"])
        exp = client.get_experiment_by_name(cfg["experiment"]).experiment_id
        for name, (flt, order) in QUERIES.items():
            times, found = [], []
            for i in range(cfg["repeats"] + 2):
                t = now()
                runs = client.search_runs([exp], filter_string=flt, order_by=[order], max_results=MAX_RESULTS)
                if i >= 2:
                    times.append(now() - t)
                found = [r.info.run_name for r in runs]
            res[name] = {"filter": flt, "order_by": order, "first_page": found, **summary_ms(times)}
    return res


# -- LoopML client: run as `.venv/bin/python bench/server.py --loopml-client CONFIG` --------------------------


def _timed(samples: dict[str, list[float]], name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    import functools
    import inspect

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            start = now()
            try:
                return await func(*args, **kwargs)
            finally:
                samples.setdefault(name, []).append(now() - start)

        return timed_async

    @functools.wraps(func)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = now()
        try:
            return func(*args, **kwargs)
        finally:
            samples.setdefault(name, []).append(now() - start)

    return timed


def _parts(samples: dict[str, list[float]]) -> dict[str, Any]:
    return {
        name: {
            "calls": len(v),
            "total_s": round(sum(v), 4),
            "median_ms": round(statistics.median(v) * 1000, 3),
        }
        for name, v in samples.items()
        if v
    }


def loopml_client(cfg: dict[str, Any]) -> dict[str, Any]:
    import loopml
    import loopml.tracking.remote as remote

    mode = cfg["mode"]
    res: dict[str, Any] = {"mode": mode}
    tracker = loopml.configure(project_dir=cfg["project"], tracking_uri=cfg["uri"], token=cfg["token"])
    client = loopml.Client(tracker)
    if mode == "log":
        if cfg.get("batch_points"):
            remote.BATCH_POINTS = cfg["batch_points"]  # bench-side: another request size
        samples: dict[str, list[float]] = {}
        timed_append = _timed(samples, "client: RemoteMetricLog.append", remote.RemoteMetricLog.append)
        remote.RemoteMetricLog.append = timed_append  # type: ignore[method-assign]
        original_call = remote.Http.call

        def call(self: Any, method: str, path: str, body: Any = None, *, repeatable: bool) -> Any:
            if not path.endswith("/log"):
                return original_call(self, method, path, body, repeatable=repeatable)
            t = now()
            try:
                return original_call(self, method, path, body, repeatable=repeatable)
            finally:
                samples.setdefault("client: POST /runs/{id}/log (encode, send, server, answer)", []).append(
                    now() - t
                )

        remote.Http.call = call  # type: ignore[method-assign]
        n, values = cfg["points"], point_values(cfg["points"])
        run = loopml.start_run(experiment="log", name=f"log-{cfg.get('label', '')}")
        log_metric, keys, width = loopml.log_metric, KEYS, len(KEYS)
        error, done = None, 0
        cpu0, t0 = time.process_time(), now()
        try:
            for i in range(n):
                log_metric(keys[i % width], values[i], step=i // width)
                done = i + 1
            calls_s = now() - t0
            loopml.flush()
        except Exception as exc:  # the default client against the 1 MB limit: recorded, not fatal
            error = f"{type(exc).__name__}: {exc}"
            calls_s = now() - t0
        elapsed = now() - t0
        res.update(
            points=n,
            batch_points=remote.BATCH_POINTS,
            seconds=round(elapsed, 3),
            calls_returned_s=round(calls_s, 3),
            client_cpu_s=round(time.process_time() - cpu0, 3),
            parts=_parts(samples),
        )
        stored = sum(len(tracker.store.metrics.history(run.run_id, k)) for k in KEYS)  # no flush first
        res["stored"] = stored
        if error is None:
            run.end()
            res["points_per_s"] = round(n / elapsed, 1)
        else:
            res.update(error=error, calls_done_before_error=done)
            emit(res)
            os._exit(0)  # the buffer still holds the refused points: do not retry them at exit
    elif mode == "search":
        from loopml.core.settings import load_settings
        from loopml.tracking.tracker import Tracker

        exp = client.get_experiment(cfg["experiment"]).experiment_id
        embedded = loopml.Client(
            Tracker(load_settings(project_dir=cfg["server_project"], database_url=cfg["db_url"]))
        )
        for name, (flt, order) in QUERIES.items():
            out: dict[str, Any] = {"filter": flt, "order_by": order}
            for where, who in (("http", client), ("embedded", embedded)):
                times, found = [], []
                for i in range(cfg["repeats"] + 2):
                    t = now()
                    page = who.search_runs([exp], filter=flt, order_by=order, max_results=MAX_RESULTS)
                    if i >= 2:
                        times.append(now() - t)
                    found = [r.name for r in page.runs]
                out[where] = {"first_page": found, **summary_ms(times)}
            res[name] = out
    tracker.close()
    return res


# -- LoopML server for --profile: `.venv/bin/python bench/server.py --launch-server CONFIG` ---------------------

_server_samples: dict[str, list[float]] = {}
_profilers: list[Any] = []


def launch_server(cfg: dict[str, Any]) -> None:
    """Build and run the app as `loopml server` does, with timers (src/ untouched) and optionally cProfile.

    SIGUSR1 clears what was gathered, SIGUSR2 writes the timers (cfg["parts"]) and the merged profile."""
    import cProfile
    import pstats
    import threading

    if cfg.get("cprofile"):
        main_profiler = cProfile.Profile()
        _profilers.append(main_profiler)

        def profile_thread(*_: Any) -> None:  # the first event of a new thread starts its own profiler
            profiler = cProfile.Profile()
            _profilers.append(profiler)
            profiler.enable()

        threading.setprofile(profile_thread)
        main_profiler.enable()
    import uvicorn

    from loopml.server import app as server_app
    from loopml.tracking.tracker import default_tracker

    app: Any = None
    if cfg.get("timers"):
        _instrument()
    app = server_app.create_server_app(default_tracker())
    if cfg.get("timers"):
        app = _AsgiTimer(app)

    def dump(*_: Any) -> None:
        with open(cfg["parts"], "w") as f:
            json.dump(_parts(_server_samples), f)
        if cfg.get("cprofile") and _profilers:
            stats = pstats.Stats(_profilers[0])
            for profiler in _profilers[1:]:
                stats.add(profiler)
            stats.dump_stats(cfg["cprofile"])

    def clear(*_: Any) -> None:
        _server_samples.clear()
        for profiler in list(_profilers):
            profiler.clear()

    signal.signal(signal.SIGUSR1, clear)
    signal.signal(signal.SIGUSR2, dump)
    print(f"LoopML team server (bench launcher {cfg}) on {HOST}:{cfg['port']}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=HOST, port=cfg["port"], log_level="warning", access_log=False)


class _AsgiTimer:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = now()
        await self.app(scope, receive, send)
        kind = (
            "search"
            if scope["path"].endswith("/search")
            else "log"
            if scope["path"].endswith("/log")
            else "other"
        )
        _server_samples.setdefault(f"server: whole request in the app ({kind})", []).append(now() - start)


def _instrument() -> None:
    """Timers around the parts a log and a search request pass through (this process only; src/ untouched)."""
    import fastapi.routing
    from fastapi.responses import JSONResponse

    from loopml.server import accounts, tracking_api
    from loopml.server import app as server_app
    from loopml.tracking import client as client_module
    from loopml.tracking.client import Client
    from loopml.tracking.metric_log import MetricLog
    from loopml.tracking.store import TrackingStore

    s = _server_samples

    def wrap(owner: Any, attribute: str, name: str) -> None:
        setattr(owner, attribute, _timed(s, name, getattr(owner, attribute)))

    wrap(accounts.AccountStore, "authenticate", "server: authenticate (token lookup, in the event loop)")
    wrap(server_app, "_json_body", "server: read body + json.loads + size check")
    wrap(tracking_api, "_points", "server: _points (validate each point)")
    wrap(tracking_api, "_log", "server: _log (in a worker thread: run check + transaction)")
    wrap(MetricLog, "write", "server: MetricLog.write (SQL: upsert latest + insert points)")
    wrap(Client, "search_runs", "server: Client.search_runs (worker thread)")
    wrap(client_module, "search_runs", "server: search_runs (SQL query for the page + load)")
    wrap(TrackingStore, "_load_runs", "server: _load_runs (4 queries: runs, params, tags, metrics)")
    wrap(tracking_api, "plain", "server: to_plain (records -> dicts)")
    wrap(fastapi.routing, "serialize_response", "server: FastAPI serialize_response (jsonable_encoder)")
    wrap(JSONResponse, "render", "server: JSONResponse.render (json.dumps)")


# -- processes ------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _stat(pid: int | str) -> tuple[int, int, int, float] | None:
    """(ppid, process group, session, CPU seconds incl. reaped children) of a process, None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return int(fields[1]), int(fields[2]), int(fields[3]), ticks / os.sysconf("SC_CLK_TCK")


def _all_stats() -> dict[int, tuple[int, int, int, float]]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(entry)
            if stat is not None:
                found[int(entry)] = stat
    return found


def own_cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Server:
    """A server started here in its own session; stopped by its process group (SIGTERM, SIGKILL after 10 s)."""

    def __init__(
        self, label: str, cmd: list[str], *, env: dict[str, str], cwd: Path, port: int, health: str, log: Path
    ):
        self.label, self.cmd, self.env, self.cwd, self.port, self.log = label, cmd, env, cwd, port, log
        self.base = f"http://{HOST}:{port}"
        self.health = self.base + health
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120.0) -> float:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.cmd, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        t0 = now()
        while now() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode}: {self.tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(self.health, timeout=1) as r:
                if r.status == 200:
                    return now() - t0
            time.sleep(0.1)
        raise TimeoutError(f"{self.label} did not answer {self.health} in {timeout_s:g} s: {self.tail()}")

    def cpu_s(self, stats: dict[int, tuple[int, int, int, float]]) -> float:
        if self.proc is None:
            return 0.0
        return sum(cpu for _, _, sid, cpu in stats.values() if sid == self.proc.pid)

    def stop(self) -> None:
        if self.proc is None or (self.proc.poll() is not None and not self._left()):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        deadline = time.time() + 5
        while time.time() < deadline and self._left():  # workers of mlflow still exiting
            time.sleep(0.1)
        if self._left():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def _left(self) -> bool:
        return self.proc is not None and any(pgid == self.proc.pid for _, pgid, _, _ in _all_stats().values())

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_bytes()[-3000:].decode(errors="replace")
        return ""


class Postgres:
    """A throwaway cluster as tests/conftest.py starts one, but with PostgreSQL's default durability."""

    def __init__(self) -> None:
        self.bindir = self._find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="loopml-bench-pg-"))
        self.owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self.owner is not None:
            os.chown(self.root, self.owner.pw_uid, self.owner.pw_gid)
        self.data, self.logfile = self.root / "data", self.root / "log"
        self.port = 0
        self.version = ""

    @staticmethod
    def _find_bindir() -> Path:
        def version(bindir: str) -> tuple[int, ...]:
            return tuple(int(p) for p in re.findall(r"\d+", Path(bindir).parent.name)) or (0,)

        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
        if shutil.which("initdb"):
            candidates.append(str(Path(shutil.which("initdb") or "").parent))
        for bindir in candidates:
            if all(os.access(Path(bindir) / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
                return Path(bindir)
        raise SystemExit("PostgreSQL binaries not found (apt-get install postgresql)")

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        if self.owner is not None:
            argv = ["runuser", "-u", self.owner.pw_name, "--", *argv]
        return subprocess.run(argv, cwd=self.root, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> None:
        initdb = [str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"]  # fmt: skip
        result = self._run(initdb)
        if result.returncode:
            raise RuntimeError(f"initdb failed: {result.stdout}{result.stderr}")
        for attempt in range(3):
            self.port = free_port()
            options = f"-p {self.port} -k {self.root} -c listen_addresses={HOST}"
            result = self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                                str(self.logfile), "-w", "start"])  # fmt: skip
            if result.returncode == 0:
                break
            if attempt == 2:
                raise RuntimeError(f"pg_ctl start failed: {result.stderr}{self.logfile.read_text()[-2000:]}")
        import psycopg

        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            for name in ("loopml", "mlflow"):
                conn.execute(f'CREATE DATABASE "{name}"')
            self.version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]

    def analyze(self, db: str) -> float:
        """`ANALYZE` the whole database (what autovacuum does on its own after enough writes); its seconds."""
        import psycopg

        t0 = now()
        with psycopg.connect(self.conninfo(db), autocommit=True) as conn:
            conn.execute("ANALYZE")
        return round(now() - t0, 2)

    def planner_stats(self, db: str) -> dict[str, Any]:
        """Rows the planner believes the searched tables hold (-1: never analyzed) and their last autoanalyze."""
        import psycopg

        with psycopg.connect(self.conninfo(db), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT c.relname, c.reltuples, s.last_autoanalyze FROM pg_class c JOIN pg_stat_user_tables s "
                "ON s.relid = c.oid WHERE c.relname IN ('runs', 'params', 'latest_metrics')"
            ).fetchall()
        return {
            name: {"reltuples": int(tuples), "last_autoanalyze": str(when)} for name, tuples, when in rows
        }

    def conninfo(self, db: str = "postgres") -> str:
        return f"host={HOST} port={self.port} user=postgres dbname={db} connect_timeout=10"

    def url(self, db: str) -> str:
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/{db}"

    def cpu_s(self, stats: dict[int, tuple[int, int, int, float]]) -> float:
        """CPU of the postmaster (with its reaped backends) and its live children."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0.0
        return sum(cpu for p, (ppid, _, _, cpu) in stats.items() if p == pid or ppid == pid)

    def stop(self) -> None:
        if self.data.exists():
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(self.root, ignore_errors=True)


class Phase:
    """CPU of client, server, PostgreSQL and everyone else over a block (noise = the last, as a share)."""

    def __init__(self, pg: Postgres, server: Server | None) -> None:
        self.pg, self.server = pg, server

    def _snap(self) -> tuple[float, float, float, float, float]:
        stats = _all_stats()
        srv = self.server.cpu_s(stats) if self.server else 0.0
        return now(), machine_busy_s(), own_cpu_s(), srv, self.pg.cpu_s(stats)

    @contextlib.contextmanager
    def measure(self, out: dict[str, Any]) -> Iterator[None]:
        w0, b0, o0, s0, p0 = self._snap()
        yield
        w1, b1, o1, s1, p1 = self._snap()
        wall, own, srv, pg = w1 - w0, o1 - o0, max(0.0, s1 - s0), max(0.0, p1 - p0)
        other = max(0.0, (b1 - b0) - own - srv - pg)
        out["cpu"] = {
            "wall_s": round(wall, 2),
            "client_cpu_s": round(own, 2),
            "server_cpu_s": round(srv, 2),
            "postgres_cpu_s": round(pg, 2),
            "other_cpu_s": round(other, 2),
            "other_cpu_share": round(other / (wall * (os.cpu_count() or 1)), 3) if wall > 0 else None,
        }


def run_json(cmd: list[str], *, env: dict[str, str] | None = None, log: Path | None = None) -> dict[str, Any]:
    """Run a bench subprocess; its last stdout line is its JSON result."""
    proc = subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        env=env or dict(os.environ),
    )
    if log is not None:
        log.write_text(proc.stderr)
    lines = [line for line in proc.stdout.strip().splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-1500:]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def mlflow_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "MLFLOW_"))}
    return {**env, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


def loopml_env(project: Path, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    return {**env, "LOOPML_DATABASE_URL": db_url, "LOOPML_PROJECT_DIR": str(project)}


# -- the LoopML side ---------------------------------------------------------------------------------------------


class LoopMLSide:
    def __init__(self, pg: Postgres, work: Path, args: argparse.Namespace) -> None:
        self.pg, self.args = pg, args
        self.project = work / "loopml-server"
        self.client_project = work / "loopml-client"
        self.project.mkdir()
        self.client_project.mkdir()
        self.logs = work
        self.db_url = pg.url("loopml")
        self.env = loopml_env(self.project, self.db_url)
        self.token = ""

    def prepare(self) -> dict[str, Any]:
        loopml = str(LOOPML_BIN / "loopml")
        out: dict[str, Any] = {}
        for what, cmd in (("db_upgrade", [loopml, "db", "upgrade"]),
                          ("create_admin", [loopml, "server", "create-admin", "--name", "bench"])):  # fmt: skip
            t0 = now()
            proc = subprocess.run(
                cmd, cwd=self.project, env=self.env, capture_output=True, text=True, check=False
            )
            if proc.returncode:
                raise RuntimeError(f"{' '.join(cmd[1:])} failed: {proc.stdout}{proc.stderr}")
            out[f"{what}_s"] = round(now() - t0, 2)
            if what == "create_admin":
                self.token = proc.stdout.strip().splitlines()[-1]
        return out

    def cli_server(self) -> Server:
        port = free_port()
        cmd = [str(LOOPML_BIN / "loopml"), "server", "--host", HOST, "--port", str(port)]
        return Server("loopml server", cmd, env=self.env, cwd=self.project, port=port,
                      health="/api/v1/health", log=self.logs / f"loopml-server-{port}.log")  # fmt: skip

    def launched_server(self, **cfg: Any) -> Server:
        port = free_port()
        config = {"port": port, **cfg}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--launch-server", json.dumps(config)]
        return Server("loopml server (bench launcher)", cmd, env=self.env, cwd=self.project, port=port,
                      health="/api/v1/health", log=self.logs / f"loopml-launcher-{port}.log")  # fmt: skip

    def client(self, server: Server, **cfg: Any) -> dict[str, Any]:
        config = {"project": str(self.client_project), "uri": server.base, "token": self.token, **cfg}
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--loopml-client", json.dumps(config)]
        return run_json(
            cmd, env=env, log=self.logs / f"loopml-client-{cfg['mode']}-{cfg.get('label', '')}.log"
        )

    def populate(self, runs: int, threads: int, experiment: str) -> dict[str, Any]:
        from loopml.core.settings import load_settings
        from loopml.tracking.records import RunStatus
        from loopml.tracking.tracker import Tracker
        from loopml.tracking.values import param_forms

        tracker = Tracker(load_settings(project_dir=self.project, database_url=self.db_url))
        store = tracker.store
        exp = store.create_experiment(experiment).experiment_id

        def one(r: int) -> None:
            params, metrics = run_data(r)
            run_id = store.create_run(exp, name=run_name(r)).run_id
            store.log_params(run_id, {k: param_forms(k, v) for k, v in params.items()})
            store.metrics.append({(run_id, k): [(v, 0, TS + r)] for k, v in metrics.items()})
            store.set_status(run_id, RunStatus.FINISHED)

        t0 = now()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(runs)))
        elapsed = now() - t0
        tracker.close()
        return {"runs": runs, "seconds": round(elapsed, 2), "runs_per_s": round(runs / elapsed, 1)}


def loopml_log_rounds(side: LoopMLSide, server: Server, phase: Phase, label: str, points: int, rounds: int,
                      batch_points: int | None) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {"rounds": []}
    for i in range(rounds):
        one: dict[str, Any] = {}
        with phase.measure(one):
            one.update(
                side.client(server, mode="log", label=f"{label}{i}", points=points, batch_points=batch_points)
            )
        out["rounds"].append(one)
        print(f"  loopml log {label} round {i}: {_brief(one)}", file=sys.stderr, flush=True)
        if "error" in one and one["error"].startswith(("exit", "client failed")):
            print(one["error"], file=sys.stderr)
        if "error" in one:
            break
    rates = [r["points_per_s"] for r in out["rounds"] if "points_per_s" in r]
    if rates:
        out["points_per_s_median"] = round(statistics.median(rates), 1)
        out["points_per_s_range"] = [min(rates), max(rates)]
    return out


def _brief(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"error {r['error'][:120]} (stored {r.get('stored')})"
    return f"{r.get('points_per_s', '?'):,} points/s, stored {r.get('stored')}"


# (key, what, client points a request (None: the client's own BATCH_POINTS), target?)
LOG_VARIANTS: tuple[tuple[str, str, int | None, bool], ...] = (
    ("log_default", "the client as shipped", None, True),
    ("log_50k", "client requests of 50,000 points (bench-side patch of `BATCH_POINTS`)", 50_000, False),
)


def loopml_search(side: LoopMLSide, server: Server, phase: Phase, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"planner_stats": side.pg.planner_stats("loopml")}
    with phase.measure(out):
        out.update(
            side.client(server, mode="search", experiment=f"search-{args.runs}", repeats=args.repeats,
                        server_project=str(side.project), db_url=side.db_url)
        )  # fmt: skip
    return out


def run_loopml(pg: Postgres, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    side = LoopMLSide(pg, work, args)
    res: dict[str, Any] = {"prepare": side.prepare()}
    server = side.cli_server()
    res["server_ready_s"] = round(server.start(), 2)
    phase = Phase(pg, server)
    try:
        if "log" in args.only:
            print("LoopML: remote logging ...", file=sys.stderr, flush=True)
            side.client(
                server, mode="log", label="warmup", points=min(20_000, args.points), batch_points=None
            )
            for key, _, batch, _ in LOG_VARIANTS:
                res[key] = loopml_log_rounds(side, server, phase, key, args.points, args.rounds, batch)
        if "search" in args.only:
            print(f"LoopML: writing {args.runs:,} runs into its database ...", file=sys.stderr, flush=True)
            pop: dict[str, Any] = {}
            with phase.measure(pop):
                pop.update(side.populate(args.runs, args.threads, f"search-{args.runs}"))
            res["populate"] = pop
            print(f"  {pop['runs_per_s']} runs/s", file=sys.stderr, flush=True)
            res["search_fresh"] = loopml_search(side, server, phase, args)
            print(f"  search, right after writing: {_search_brief(res['search_fresh'])}", file=sys.stderr)
            res["analyze_s"] = pg.analyze("loopml")
            res["search"] = loopml_search(side, server, phase, args)
            print(f"  search, after ANALYZE: {_search_brief(res['search'])}", file=sys.stderr, flush=True)
    finally:
        server.stop()
    return res


def _search_brief(s: dict[str, Any]) -> str:
    if "error" in s:
        return str(s["error"])[:200]
    return ", ".join(f"{q} p50 {s[q]['http']['p50_ms']} ms" for q in QUERIES if q in s)


# -- the MLflow side -------------------------------------------------------------------------------------------


def run_mlflow(pg: Postgres, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    python = PEERS_BIN / "python"
    check = subprocess.run(
        [str(python), "-c", "import mlflow, psycopg"], capture_output=True, text=True, check=False
    )
    if check.returncode:
        return {"error": f"{python} cannot import mlflow and psycopg (bash bench/setup_peers.sh; "
                         f'.venv-peers/bin/pip install "psycopg[binary]==3.3.9"): {check.stderr[-300:]}'}  # fmt: skip
    artifacts = work / "mlflow-artifacts"
    artifacts.mkdir()
    port = free_port()
    cmd = [str(PEERS_BIN / "mlflow"), "server", "--backend-store-uri", pg.url("mlflow"),
           "--default-artifact-root", artifacts.as_uri(), "--host", HOST, "--port", str(port)]  # fmt: skip
    if args.mlflow_workers:
        cmd += ["--workers", str(args.mlflow_workers)]
    env = mlflow_env()
    env["PATH"] = f"{PEERS_BIN}{os.pathsep}{env.get('PATH', '')}"
    server = Server(
        "mlflow server", cmd, env=env, cwd=work, port=port, health="/health", log=work / "mlflow-server.log"
    )
    res: dict[str, Any] = {"server_ready_s": round(server.start(timeout_s=180), 2)}
    res["server_processes"] = sum(
        1 for _, _, sid, _ in _all_stats().values() if server.proc and sid == server.proc.pid
    )
    phase = Phase(pg, server)
    me = str(Path(__file__).resolve())

    def side(**cfg: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if cfg["mode"] == "search":
            out["planner_stats"] = pg.planner_stats("mlflow")
        with phase.measure(out):
            out.update(run_json([str(python), me, "--mlflow-side", json.dumps(cfg)], env=env,
                                log=work / f"mlflow-{cfg['mode']}.log"))  # fmt: skip
        return out

    try:
        if "log" in args.only:
            print("MLflow: log_batch throughput ...", file=sys.stderr, flush=True)
            side(
                mode="log", uri=server.base, points=min(10_000, args.mlflow_points)
            )  # warm-up: all 4 workers
            res["log"] = side(mode="log", uri=server.base, points=args.mlflow_points)
            print(f"  {_brief(res['log'])}", file=sys.stderr, flush=True)
        if "search" in args.only:
            print(f"MLflow: writing {args.runs:,} runs into its database ...", file=sys.stderr, flush=True)
            res["populate"] = side(mode="populate", db_url=pg.url("mlflow"), runs=args.runs, threads=args.threads,
                                   experiment=f"search-{args.runs}")  # fmt: skip
            print(f"  {res['populate'].get('runs_per_s')} runs/s", file=sys.stderr, flush=True)
            search = {
                "mode": "search",
                "uri": server.base,
                "experiment": f"search-{args.runs}",
                "repeats": args.repeats,
            }
            res["search_fresh"] = side(**search)
            print(
                f"  search, right after writing: {_mlflow_search_brief(res['search_fresh'])}", file=sys.stderr
            )
            res["analyze_s"] = pg.analyze("mlflow")
            res["search"] = side(**search)
            print(
                f"  search, after ANALYZE: {_mlflow_search_brief(res['search'])}", file=sys.stderr, flush=True
            )
    finally:
        server.stop()
    return res


def _mlflow_search_brief(s: dict[str, Any]) -> str:
    if "error" in s:
        return str(s["error"])[:200]
    return ", ".join(f"{q} p50 {s[q]['p50_ms']} ms" for q in QUERIES if q in s)


# -- profile -----------------------------------------------------------------------------------------------------


def run_profile(pg: Postgres, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """LoopML's server under timers and cProfile (every thread) for one measurement: `--profile log|search`."""
    import pstats

    side = LoopMLSide(pg, work, args)
    side.prepare()
    target = args.profile
    parts, prof = work / "parts.json", BENCH / "results" / f"profile-server-{target}.prof"
    prof.parent.mkdir(exist_ok=True)
    res: dict[str, Any] = {"target": target}
    results: dict[str, Any] = {}
    for label, cprofile in (("timers", None), ("cprofile", str(prof))):
        server = side.launched_server(
            timers=True,
            parts=str(parts),
            cprofile=cprofile,
        )
        server.start()
        try:
            assert server.proc is not None
            if target == "search":
                if label == "timers":
                    side.populate(args.runs, args.threads, f"search-{args.runs}")
                    pg.analyze("loopml")
                side.client(server, mode="search", experiment=f"search-{args.runs}", repeats=2,
                            server_project=str(side.project), db_url=side.db_url)  # fmt: skip
                os.kill(server.proc.pid, signal.SIGUSR1)
                out = side.client(server, mode="search", experiment=f"search-{args.runs}", repeats=args.repeats,
                                  server_project=str(side.project), db_url=side.db_url)  # fmt: skip
            else:
                batch = args.profile_batch
                side.client(server, mode="log", label="warmup", points=20_000, batch_points=batch)
                os.kill(server.proc.pid, signal.SIGUSR1)
                out = side.client(server, mode="log", label=label, points=args.points, batch_points=batch)
            os.kill(server.proc.pid, signal.SIGUSR2)
            time.sleep(3 if cprofile else 0.5)
            results[label] = {"client": out, "server_parts": json.loads(parts.read_text())}
        finally:
            server.stop()
    res.update(results)
    print(f"\n## Timers (no profiler), {target}\n")
    timers = results["timers"]
    for name, p in sorted({**timers["client"].get("parts", {}), **timers["server_parts"]}.items()):
        print(f"| {name} | {p['calls']} | {p['total_s']} s | {p['median_ms']} ms |")
    client = timers["client"]
    if target == "log":
        print(
            f"\nclient: {client.get('points_per_s')} points/s, {client.get('seconds')} s, CPU {client.get('client_cpu_s')} s"
        )
    else:
        print(f"\nsearch: {_search_brief(client)}")
    print(f"\n## cProfile of every server thread ({prof.relative_to(REPO)}), by tottime\n")
    import io

    for sort in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(str(prof), stream=buf).strip_dirs().sort_stats(sort).print_stats(args.profile_top)
        print(f"### sorted by {sort}\n")
        print(buf.getvalue())
    return res


# -- report ------------------------------------------------------------------------------------------------------


def fmt_rate(x: float) -> str:
    return f"{x:,.0f} points/s"


def fmt_ms(ms: float) -> str:
    return f"{ms:,.3g} ms" if ms < 100 else f"{ms:,.0f} ms"


def ratio(x: float) -> str:
    return f"{x:,.1f}x" if x < 100 else f"{x:,.0f}x"


def met(ok: bool) -> str:
    return "**yes**" if ok else "**NO**"


def build_table(res: dict[str, Any], args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    lm, mf = res.get("loopml", {}), res.get("mlflow") or {}
    verdicts: dict[str, Any] = {}
    rows: list[list[str]] = []
    mf_log = mf.get("log", {})
    mf_rate = mf_log.get("points_per_s")
    if mf_rate:
        mf_cell = (f"{fmt_rate(mf_rate)} ({mf_log['points']:,} points, {mf_log['log_batch_calls']} `log_batch` calls "
                   f"of 1,000, p50 {mf_log['per_call']['p50_ms']:.0f} ms a call); stored {mf_log.get('stored'):,}")  # fmt: skip
        srv = mf_log["cpu"]["server_cpu_s"] / mf_log["points"] * 1e6
        pgc = mf_log["cpu"]["postgres_cpu_s"] / mf_log["points"] * 1e6
        mf_cell += f"; CPU per 1,000 points: server {srv:.0f} ms, PostgreSQL {pgc:.0f} ms"
    else:
        mf_cell = (mf_log.get("error") or mf.get("error") or "-")[:200]
    first_log_row = True
    for key, what, _, target in LOG_VARIANTS:
        block = lm.get(key)
        if not block:
            continue
        rounds = block["rounds"]
        first = rounds[0]
        rate = block.get("points_per_s_median")
        if rate is None:
            cell = (f"failed: `{first.get('error', '?')[:110]}` after {first.get('seconds', '?')} s; "
                    f"{first.get('stored', 0):,} of {first.get('points', 0):,} points stored")  # fmt: skip
        else:
            lo, hi = block["points_per_s_range"]
            srv = statistics.median(r["cpu"]["server_cpu_s"] for r in rounds) / first["points"] * 1e6
            pgc = statistics.median(r["cpu"]["postgres_cpu_s"] for r in rounds) / first["points"] * 1e6
            cell = (f"{fmt_rate(rate)} (median of {len(rounds)} x {first['points']:,} points; {lo:,.0f}-{hi:,.0f}); "
                    f"stored {first['stored']:,}; CPU per 1,000 points: server {srv:.0f} ms, PostgreSQL {pgc:.0f} ms")  # fmt: skip
        verdicts[key] = rate
        shown = f"{what} ({first['batch_points']:,} points a request)" if key == "log_default" else what
        label = (
            f"remote logging, `loopml.log_metric` + `flush()`: {shown}" if first_log_row else f"same, {shown}"
        )
        first_log_row = False
        rows.append([
            label, cell, mf_cell if label.startswith("remote") else "(as above)",
            ratio(rate / mf_rate) if rate and mf_rate else "-",
            f">= 50,000 points/s: {met(rate is not None and rate >= THROUGHPUT_TARGET)}" if target else "-",
        ])  # fmt: skip
    expected = res.get("expected", {})
    for q, (flt, order) in QUERIES.items():
        exp_q = expected.get(q)
        if exp_q is None:
            continue
        for when, key in (("after `ANALYZE`", "search"), ("right after writing them (planner statistics as "
                                                           "autovacuum left them)", "search_fresh")):  # fmt: skip
            lq, mq = lm.get(key, {}).get(q, {}), (mf.get(key) or {}).get(q, {})
            lhttp = lq.get("http", {})
            l50, m50 = lhttp.get("p50_ms"), mq.get("p50_ms")
            lcell = (f"p50 {fmt_ms(l50)} (p90 {fmt_ms(lhttp['p90_ms'])}); in-process, no HTTP: p50 "
                     f"{fmt_ms(lq['embedded']['p50_ms'])}") if l50 is not None else lm.get(key, {}).get("error", "-")[:200]  # fmt: skip
            mcell = (
                f"p50 {fmt_ms(m50)} (p90 {fmt_ms(mq['p90_ms'])})"
                if m50 is not None
                else (mf.get(key) or {}).get("error", "-")[:200]
            )
            ok = l50 is not None and l50 <= SEARCH_TARGET_MS
            if q == "target":
                verdicts[f"{key}_p50_ms"] = l50
            rows.append([
                f"search {args.runs:,} runs, {when}: `{flt}` by `{order}`, max_results {MAX_RESULTS} "
                f"({exp_q['matched']:,} match), median of {args.repeats} through HTTP",
                lcell, mcell, ratio(m50 / l50) if l50 and m50 else "-",
                f"<= 150 ms: {met(ok)}" if q == "target" else "-",
            ])  # fmt: skip
        pages = [
            lm.get(k, {}).get(q, {}).get(w, {}).get("first_page") for k in ("search", "search_fresh") for w in ("http", "embedded")
        ]  # fmt: skip
        l_same = all(p == exp_q["first_page"] for p in pages)
        m_pages = [(mf.get(k) or {}).get(q, {}).get("first_page") for k in ("search", "search_fresh")]
        m_same = all(p == exp_q["first_page"] for p in m_pages) if mf else None
        verdicts[f"same_results_{q}"] = l_same and m_same is not False
        rows.append([f"the same {MAX_RESULTS} runs in the same order as the bench computes ({q} query)", str(l_same),
                     str(m_same) if m_same is not None else "-", "-", met(verdicts[f"same_results_{q}"])])  # fmt: skip
    lp, mp = lm.get("populate"), mf.get("populate")
    if lp or mp:
        rows.append([f"writing the {args.runs:,} runs straight into the database ({args.threads} threads, each "
                     "side's Python API; not a target)",
                     f"{lp['runs_per_s']:,} runs/s ({lp['seconds']} s)" if lp else "-",
                     f"{mp['runs_per_s']:,} runs/s ({mp['seconds']} s)" if mp and "runs_per_s" in mp else
                     (mp or {}).get("error", "-")[:200],
                     ratio(lp["runs_per_s"] / mp["runs_per_s"]) if lp and mp and "runs_per_s" in mp else "-",
                     "-"])  # fmt: skip
    noises = []
    for side, block in (("LoopML", lm), ("MLflow", mf)):
        for key, value in block.items():
            if isinstance(value, dict):
                for one in [value, *value.get("rounds", [])]:
                    share = (one.get("cpu") or {}).get("other_cpu_share")
                    if share is not None:
                        noises.append((f"{side} {key}", share))
    if noises:
        worst = max(noises, key=lambda x: x[1])
        verdicts["noise_max"] = worst[1]
        rows.append(["noise: share of the machine's CPU used by other processes, worst phase",
                     f"{worst[1]} ({worst[0]})", "", "-", f"quiet: <= 0.05: {met(worst[1] <= 0.05)}"])  # fmt: skip
    head = ["measurement", "LoopML (`loopml server`)", "MLflow (`mlflow server`, 4 workers)", "LoopML vs MLflow",
            "target met?"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines), verdicts


# -- main --------------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, smoke test")
    ap.add_argument("--points", type=int, help="LoopML points per logging round (200,000; quick 50,000)")
    ap.add_argument("--rounds", type=int, help="LoopML logging rounds per variant (3; quick 1)")
    ap.add_argument("--mlflow-points", type=int, help="MLflow points (50,000; quick 5,000)")
    ap.add_argument("--runs", type=int, help="runs to search over (10,000; quick 1,000)")
    ap.add_argument("--repeats", type=int, help="timed searches per query (20; quick 5)")
    ap.add_argument("--threads", type=int, default=4, help="threads writing the runs, each side")
    ap.add_argument("--only", nargs="+", choices=("log", "search"), default=["log", "search"])
    ap.add_argument("--no-mlflow", action="store_true")
    ap.add_argument(
        "--mlflow-workers", type=int, default=None, help="mlflow server --workers (its default: 4)"
    )
    ap.add_argument("--no-save", action="store_true", help="do not append to bench/results/server.json")
    ap.add_argument(
        "--profile", choices=("log", "search"), help="timers + cProfile of LoopML's server instead"
    )
    ap.add_argument("--profile-batch", type=int, help="--profile log: client points a request (its default)")
    ap.add_argument("--profile-top", type=int, default=30)
    args = ap.parse_args()
    q = args.quick
    args.points = args.points or (50_000 if q else 200_000)
    args.rounds = args.rounds or (1 if q else 3)
    args.mlflow_points = args.mlflow_points or (5_000 if q else 50_000)
    args.runs = args.runs or (1_000 if q else 10_000)
    args.repeats = args.repeats or (5 if q else 20)
    return args


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] in ("--mlflow-side", "--loopml-client", "--launch-server"):
        cfg = json.loads(sys.argv[2])
        if sys.argv[1] == "--launch-server":
            launch_server(cfg)
            return
        try:
            emit(mlflow_side(cfg) if sys.argv[1] == "--mlflow-side" else loopml_client(cfg))
        except Exception:  # the result says what failed, with the traceback
            import traceback

            emit({"error": f"client failed: {traceback.format_exc()[-1500:]}"})
        return
    args = parse_args()
    sys.path.insert(0, str(BENCH))
    from datetime import UTC, datetime

    from harness import append_result, run_config
    from peers.common import machine_info, versions
    from source_state import source_state

    started = datetime.now(UTC).isoformat(timespec="seconds")
    wall0 = now()
    before = source_state()
    work = Path(tempfile.mkdtemp(prefix="loopml-bench-server-"))
    pg = Postgres()
    try:
        pg.start()
        print(
            f"PostgreSQL {pg.version} on {HOST}:{pg.port} (databases loopml, mlflow)",
            file=sys.stderr,
            flush=True,
        )
        if args.profile:
            run_profile(pg, work, args)
            return
        res: dict[str, Any] = {"expected": expected_results(args.runs) if "search" in args.only else {}}
        res["loopml"] = run_loopml(pg, work, args)
        res["mlflow"] = None if args.no_mlflow else run_mlflow(pg, work, args)
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    table, verdicts = build_table(res, args)
    print(table)
    after = source_state()
    mlflow_version = (
        (res.get("mlflow") or {}).get("log") or (res.get("mlflow") or {}).get("search") or {}
    ).get("mlflow")
    record = {
        "bench": "server",
        "started": started,
        "wall_s": round(now() - wall0, 1),
        "machine": machine_info(),
        "versions": {
            **versions("loopml", "fastapi", "uvicorn", "httpx", "sqlalchemy", "psycopg"),
            "postgresql": pg.version,
            "mlflow": mlflow_version,
        },
        "source": before,
        "source_unchanged_during_run": before["src_tree_blake3"] == after["src_tree_blake3"],
        "config": run_config(args),
        "verdicts": verdicts,
        "results": res,
        "table": table,
    }
    print(f"\nwall {record['wall_s']} s", file=sys.stderr)
    if not args.no_save:
        append_result("server", record)


if __name__ == "__main__":
    main()
