"""LoopML's web UI vs the backend calls of MLflow's UI, on the same data in SQLite, one run.

    bash bench/setup_peers.sh                          # once: .venv-peers with the pinned MLflow
    .venv/bin/python bench/ui.py                       # full run: 10,000 runs, 20M points (~5 min, 2 of
                                                       # them writing the two stores)
    .venv/bin/python bench/ui.py --quick               # 1,000 runs, smoke test (~1.5 min)
    .venv/bin/python bench/ui.py --no-analyze          # the first round only (see below)
    .venv/bin/python bench/ui.py --no-mlflow           # LoopML side only
    .venv/bin/python bench/ui.py --data DIR            # keep both stores in DIR and reuse them next time
    .venv/bin/python bench/ui.py --data DIR --profile run-long   # timers + cProfile of one LoopML page
        # in-process (also experiments, experiments-100, filtered, page, run); writes
        # bench/results/profile-ui-<target>.prof

The data (the same seeded values on both sides). One experiment `ui-bench` with 10,000 runs (`run-00000` ...),
each FINISHED, with 4 params (`p0` one of a, b, c, d; `p1` a learning rate; `p2` a depth; `p3` the run number)
and 20 metrics `m0` ... `m19` of 100 steps each (uniform random values, seeded by the run number): 20M points.
Run r starts at TS + r s, so the newest run is the last one. One more experiment, `ui-bench-long`, holds one
run, `long-run`, with 10 metrics of 10,000 steps each (100,000 points).
  LoopML: a fresh project in a temp dir (`Tracker(load_settings(project_dir=tmp))`, SQLite), written through
    `TrackingStore`: `create_run`, `log_params`, `metrics.append` with 50 runs x 20 series x 100 points per
    call, `set_status`. The bench patches `loopml.tracking.store.now_ms` while it writes, so that the start
    times are the ones above on both sides (src/ untouched).
  MLflow: `MlflowClient(tracking_uri="sqlite:///...")` creates the schema (its migrations) and the two
    experiments; then this script, run with `.venv-peers/bin/python`, inserts the rows with Python's sqlite3
    `executemany` into MLflow's tables `runs`, `tags` (the 4 that `mlflow.start_run` writes: mlflow.runName,
    mlflow.user, mlflow.source.name, mlflow.source.type), `params`, `metrics` and `latest_metrics`, with the
    columns of `mlflow/store/tracking/dbmodels/models.py`. MLflow's own `log_batch` would take ~40 min for
    20M points. The run ids are seeded random UUID hex, handed out in sorted order (faster index inserts).
  Neither tool runs ANALYZE on its SQLite file, so SQLite's planner has no statistics. The pages are measured
  in two rounds: first as the tools leave their files, then after the bench ran `ANALYZE` on both (the
  statistics are dropped again at the end, so a kept `--data` dir is reused as built; `--no-analyze`: first
  round only).

What is measured, with real HTTP on 127.0.0.1 (httpx, one keep-alive connection), median and p95 of N
(15; quick 5) after 2 warm-ups, one side after the other, each server in a subprocess of its own venv:
  LoopML: `local_ui_app(tracker)` (what `loopml ui` serves) under uvicorn, wrapped by a bench-side ASGI
    middleware that adds a `Server-Timing` header with the time from the request reaching the app until the
    response starts (an HTML page is rendered whole before that): the server time the target is about.
    (a) `/ui/experiments/{id}`: the runs table, first page, default sort (start time, newest first),
        50 runs; also with `size=100`, MLflow's page size;
    (b) the same with `filter=metrics.m0 > 0.5 and params.p0 = "a"` and `order=metrics.m1 DESC`;
    (c) page 100 of the default sort (quick: page 10);
    (d) `/ui/runs/{id}` of the 100,000-point run (each metric downsampled by the server to <= 1,000 points);
    (e) `/ui/runs/{id}` of an ordinary run (20 metrics x 100 steps).
  MLflow (`mlflow server --backend-store-uri sqlite:///... --workers 1`; the bench waits until its processes
  are idle, as its 7 job consumers still import MLflow for ~10 s after /health answers): the backend calls its
  React UI makes
  for the same pages (checked in mlflow/server/js/build of 3.17.2): (a)-(c) `POST /ajax-api/2.0/mlflow/runs/
  search` with the UI's payload (`max_results` 100, `order_by` ["attributes.start_time DESC"], `run_view_type`
  ACTIVE_ONLY; (b) its filter and ["metrics.`m1` DESC"]; (c) a page token at the same offset); (d), (e)
  `GET .../runs/get` plus one `GET .../metrics/get-history-bulk-interval?run_ids=..&metric_key=..&max_results
  =320` per metric, one after the other (the sum; a browser sends about 6 at once). MLflow's client-side
  rendering in the browser is not measured.
  Checks: both sides count the same runs for the filter, the same 10 runs top the ordered query, the first
  page and page 100 hold the runs the bench computes from the seeds, and each chart has the points expected.
  Each side records the CPU of the client, of the server's session and of everyone else (the noise).
Prints a markdown table and appends one JSON line to bench/results/ui.json.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from peers.common import pct  # bench/ is on sys.path: this script runs as bench/ui.py
from peers.noise import machine_busy_s

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LOOPML_PYTHON = REPO / ".venv" / "bin" / "python"
PEERS_BIN = REPO / ".venv-peers" / "bin"
HOST = "127.0.0.1"

EXPERIMENT, LONG_EXPERIMENT, LONG_RUN = "ui-bench", "ui-bench-long", "long-run"
KEYS = tuple(f"m{i}" for i in range(20))
STEPS = 100
LONG_KEYS, LONG_STEPS = KEYS[:10], 10_000
P0 = ("a", "b", "c", "d")
TS = 1_764_000_000_000  # ms: run r starts at TS + r * 1000
USER, SOURCE = "bench", "bench/ui.py"
FILTER = 'metrics.m0 > 0.5 and params.p0 = "a"'
ORDER = "metrics.m1 DESC"
MLFLOW_ORDER = "metrics.`m1` DESC"  # as MLflow's UI writes a metric column's sort
LOOPML_PAGE = 50  # the runs table's default page size
MLFLOW_PAGE = 100  # what MLflow's runs table asks for (`f=100` in its bundle)
MLFLOW_POINTS = 320  # the maxResults of MLflow's metric charts
TARGET_MS = 500.0
CHUNK = 50  # runs per metrics.append call / per executemany round

now = time.perf_counter


# -- the workload, shared by both sides (stdlib only: this file also runs under .venv-peers) ---------------


def run_name(r: int) -> str:
    return f"run-{r:05d}"


def start_time(r: int) -> int:
    return TS + r * 1000


def run_params(r: int) -> dict[str, str]:
    rnd = random.Random(1_000_000 + r)
    return {
        "p0": P0[rnd.randrange(len(P0))],
        "p1": f"{rnd.uniform(1e-4, 0.1):.6f}",
        "p2": str(rnd.randrange(2, 12)),
        "p3": str(r),
    }


def run_values(r: int) -> dict[str, list[float]]:
    """The 20 series of run r, 100 values each (step = position)."""
    rnd = random.Random(r)
    rand = rnd.random
    return {key: [rand() for _ in range(STEPS)] for key in KEYS}


def long_values() -> dict[str, list[float]]:
    rnd = random.Random(-1)
    rand = rnd.random
    return {key: [rand() for _ in range(LONG_STEPS)] for key in LONG_KEYS}


def expected(n_runs: int, latest: dict[str, list[Any]], page: int) -> dict[str, Any]:
    """What every side must show, computed from the seeds: `latest` holds p0, m0 and m1 of every run."""
    matches = [r for r in range(n_runs) if latest["m0"][r] > 0.5 and latest["p0"][r] == "a"]
    top = sorted(matches, key=lambda r: latest["m1"][r], reverse=True)[:10]
    newest_first = list(range(n_runs - 1, -1, -1))
    offset = (page - 1) * LOOPML_PAGE
    return {
        "filter_matches": len(matches),
        "filtered_top10": [run_name(r) for r in top],
        "first_page": [run_name(r) for r in newest_first[:LOOPML_PAGE]],
        "page": page,
        "page_offset": offset,
        "page_runs": [run_name(r) for r in newest_first[offset : offset + LOOPML_PAGE]],
    }


def summary(seconds: list[float]) -> dict[str, Any]:
    ms = sorted(s * 1000 for s in seconds)
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 50), 2),
        "p95_ms": round(pct(ms, 95), 2),
        "min_ms": round(ms[0], 2),
        "max_ms": round(ms[-1], 2),
    }


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    sys.stdout.flush()


# -- MLflow's store: `.venv-peers/bin/python bench/ui.py --mlflow-load CONFIG` ----------------------------------


def mlflow_load(cfg: dict[str, Any]) -> dict[str, Any]:
    """The two experiments through MLflow (its schema, its experiment rows), then every run by sqlite3."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    from importlib import metadata

    from mlflow import MlflowClient  # type: ignore[import-not-found]  # .venv-peers only

    db, n_runs = cfg["db"], cfg["runs"]
    t0 = now()
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiments = {}
    for name in (EXPERIMENT, LONG_EXPERIMENT):
        exp_id = client.create_experiment(name, artifact_location=f"{cfg['artifacts']}/{name}")
        experiments[name] = (int(exp_id), client.get_experiment(exp_id).artifact_location)
    schema_s = now() - t0

    rnd = random.Random(20_251_126)
    ids = sorted(f"{rnd.getrandbits(128):032x}" for _ in range(n_runs + 1))
    long_id, ids = ids[-1], ids[:-1]  # the long run gets the highest id: kept out of the runs' order
    con = sqlite3.connect(db, isolation_level=None)
    columns = {table: [row[1] for row in con.execute(f"PRAGMA table_info({table})")] for table in
               ("runs", "tags", "params", "metrics", "latest_metrics")}  # fmt: skip
    con.execute("PRAGMA cache_size = -4000000")  # 4 GB: the metrics indexes stay in memory while loading
    con.execute("PRAGMA synchronous = OFF")  # this connection only; the server opens its own
    run_sql = (
        "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, "
        "start_time, end_time, deleted_time, source_version, lifecycle_stage, artifact_uri, experiment_id) "
        "VALUES (?, ?, 'LOCAL', ?, '', ?, 'FINISHED', ?, ?, NULL, '', 'active', ?, ?)"
    )
    tag_sql = "INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)"
    param_sql = "INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)"
    point_sql = (
        "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, 0)"
    )
    latest_sql = (
        "INSERT INTO latest_metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, 0)"
    )

    def one_run(exp: str, run_id: str, name: str, start: int, series: dict[str, list[float]],
                params: dict[str, str]) -> None:  # fmt: skip
        exp_id, location = experiments[exp]
        con.execute(run_sql, (run_id, name, SOURCE, USER, start, start + 999,
                              f"{location}/{run_id}/artifacts", exp_id))  # fmt: skip
        tags = {"mlflow.runName": name, "mlflow.user": USER, "mlflow.source.name": SOURCE,
                "mlflow.source.type": "LOCAL"}  # fmt: skip
        con.executemany(tag_sql, [(k, v, run_id) for k, v in tags.items()])
        con.executemany(param_sql, [(k, v, run_id) for k, v in params.items()])
        for key, values in series.items():
            con.executemany(point_sql, [(key, v, start + s, run_id, s) for s, v in enumerate(values)])
        last = len(next(iter(series.values()))) - 1
        con.executemany(latest_sql, [(k, v[-1], start + last, run_id, last) for k, v in series.items()])

    t1 = now()
    con.execute("BEGIN")
    for r in range(n_runs):
        one_run(EXPERIMENT, ids[r], run_name(r), start_time(r), run_values(r), run_params(r))
        if r % 1000 == 999:
            con.execute("COMMIT")
            con.execute("BEGIN")
            print(f"  mlflow: {r + 1:,} runs written, {now() - t1:.0f} s", file=sys.stderr, flush=True)
    one_run(LONG_EXPERIMENT, long_id, LONG_RUN, start_time(n_runs), long_values(), {"p0": "a"})
    con.execute("COMMIT")
    insert_s = now() - t1
    counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("runs", "metrics")}
    con.close()
    return {
        "mlflow": metadata.version("mlflow"),
        "experiment_id": str(experiments[EXPERIMENT][0]),
        "long_experiment_id": str(experiments[LONG_EXPERIMENT][0]),
        "run_ids": {"ordinary": ids[n_runs // 2], "long": long_id},
        "schema_s": round(schema_s, 2),
        "insert_s": round(insert_s, 2),
        "rows": counts,
        "columns": columns,
        "db_mib": round(os.path.getsize(db) / 2**20, 1),
    }


# -- LoopML's UI server: `.venv/bin/python bench/ui.py --serve-loopml CONFIG` -----------------------------------


class ServerTiming:
    """ASGI middleware: a `Server-Timing: app;dur=MS` header, the time from the request reaching the app until
    the response starts (FastAPI renders an HTMLResponse whole before it sends the start)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = now()

        async def timed_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                ms = (now() - start) * 1000
                headers = [*message.get("headers", []), (b"server-timing", f"app;dur={ms:.3f}".encode())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed_send)


def serve_loopml(cfg: dict[str, Any]) -> None:
    import uvicorn

    from loopml.core.settings import load_settings
    from loopml.server.ui.app import local_ui_app
    from loopml.tracking.tracker import Tracker

    tracker = Tracker(load_settings(project_dir=cfg["project"]))
    app = ServerTiming(local_ui_app(tracker))
    print(f"LoopML UI (bench launcher) on {HOST}:{cfg['port']}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=HOST, port=cfg["port"], log_level="warning", access_log=False)


# -- LoopML's store (in this process) ------------------------------------------------------------------------


def build_loopml(project: Path, n_runs: int) -> dict[str, Any]:
    """Write the workload through `TrackingStore`; ids, timings and the seeds' latest values."""
    from loopml.core.settings import load_settings
    from loopml.tracking import store as store_module
    from loopml.tracking.records import RunStatus
    from loopml.tracking.tracker import Tracker
    from loopml.tracking.values import param_forms

    project.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(load_settings(project_dir=project))
    store = tracker.store
    clock = [TS]
    real_now_ms = store_module.now_ms
    store_module.now_ms = lambda: clock[0]  # bench-side: the same start and end times as MLflow's rows
    latest: dict[str, list[Any]] = {"p0": [], "m0": [], "m1": []}
    ids: list[str] = []
    parts = {"runs_params_status_s": 0.0, "metrics_append_s": 0.0, "values_s": 0.0}
    t0 = now()
    try:
        exp = store.create_experiment(EXPERIMENT).experiment_id
        for first in range(0, n_runs, CHUNK):
            batch: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
            chunk = range(first, min(n_runs, first + CHUNK))
            t = now()
            for r in chunk:
                clock[0] = start_time(r)
                params = run_params(r)
                run_id = store.create_run(exp, name=run_name(r), user=USER, entry_point=SOURCE).run_id
                store.log_params(run_id, {k: param_forms(k, v) for k, v in params.items()})
                ids.append(run_id)
                latest["p0"].append(params["p0"])
            parts["runs_params_status_s"] += now() - t
            t = now()
            for r in chunk:
                start, series = start_time(r), run_values(r)
                for key, values in series.items():
                    batch[(ids[r], key)] = [(v, s, start + s) for s, v in enumerate(values)]
                latest["m0"].append(series["m0"][-1])
                latest["m1"].append(series["m1"][-1])
            parts["values_s"] += now() - t
            t = now()
            store.metrics.append(batch)
            parts["metrics_append_s"] += now() - t
            t = now()
            for r in chunk:
                clock[0] = start_time(r) + 999
                store.set_status(ids[r], RunStatus.FINISHED)
            parts["runs_params_status_s"] += now() - t
            if (first + CHUNK) % 1000 == 0:
                print(
                    f"  loopml: {first + CHUNK:,} runs written, {now() - t0:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
        long_exp = store.create_experiment(LONG_EXPERIMENT).experiment_id
        clock[0] = start_time(n_runs)
        long_id = store.create_run(long_exp, name=LONG_RUN, user=USER, entry_point=SOURCE).run_id
        store.log_params(long_id, {"p0": param_forms("p0", "a")})
        start = start_time(n_runs)
        store.metrics.append(
            {(long_id, k): [(v, s, start + s) for s, v in enumerate(vs)] for k, vs in long_values().items()}
        )
        clock[0] = start + 999
        store.set_status(long_id, RunStatus.FINISHED)
    finally:
        store_module.now_ms = real_now_ms
    elapsed = now() - t0
    runs_in_store = store.count_runs()
    tracker.close()
    db = next(project.rglob("*.db"), None) or next(project.rglob("*.sqlite*"), None)
    return {
        "experiment_id": exp,
        "long_experiment_id": long_exp,
        "run_ids": {"ordinary": ids[n_runs // 2], "long": long_id},
        "seconds": round(elapsed, 1),
        "parts": {k: round(v, 1) for k, v in parts.items()},
        "points": n_runs * len(KEYS) * STEPS + len(LONG_KEYS) * LONG_STEPS,
        "points_per_s": round((n_runs * len(KEYS) * STEPS) / parts["metrics_append_s"]),
        "runs_in_store": runs_in_store,
        "db": str(db) if db else None,
        "db_mib": round(sum(f.stat().st_size for f in project.rglob("*") if f.is_file()) / 2**20, 1),
        "latest": latest,
    }


# -- processes ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def session_cpu_s(sid: int) -> float:
    """CPU seconds (with reaped children) of the processes in session `sid`."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            total += sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def own_cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Server:
    """A server in its own session; stopped by its process group (SIGTERM, then SIGKILL after 10 s)."""

    def __init__(self, label: str, cmd: list[str], *, env: dict[str, str], port: int, health: str, log: Path):
        self.label, self.cmd, self.env, self.port, self.log = label, cmd, env, port, log
        self.base = f"http://{HOST}:{port}"
        self.health = self.base + health
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 180.0) -> float:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.cmd, cwd=self.log.parent, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        t0 = now()
        while now() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode}: {self.tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(self.health, timeout=5) as r:
                if r.status == 200:
                    return now() - t0
            time.sleep(0.2)
        raise TimeoutError(f"{self.label} did not answer {self.health} in {timeout_s:g} s: {self.tail()}")

    def settle(self, timeout_s: float = 90.0) -> float:
        """Wait until the server's processes are idle (under 2 % of a CPU for 2 s): `mlflow server` answers
        /health while its 7 job consumers are still importing MLflow. The seconds waited."""
        t0, last, idle = now(), self.cpu_s(), 0
        while now() - t0 < timeout_s and idle < 4:
            time.sleep(0.5)
            cpu = self.cpu_s()
            idle = idle + 1 if cpu - last <= 0.011 else 0
            last = cpu
        return now() - t0

    def cpu_s(self) -> float:
        return session_cpu_s(self.proc.pid) if self.proc is not None else 0.0

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        time.sleep(0.5)  # workers of the group still exiting
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_bytes()[-3000:].decode(errors="replace")
        return ""


@contextlib.contextmanager
def cpu_phase(out: dict[str, Any], server: Server) -> Iterator[None]:
    """CPU of this process (the client), of the server's session, and of everyone else (the noise)."""
    cpus = os.cpu_count() or 1
    w0, b0, o0, s0 = now(), machine_busy_s(), own_cpu_s(), server.cpu_s()
    yield
    wall, busy, own, srv = now() - w0, machine_busy_s() - b0, own_cpu_s() - o0, max(0.0, server.cpu_s() - s0)
    other = max(0.0, busy - own - srv)
    out["cpu"] = {
        "wall_s": round(wall, 2),
        "client_cpu_s": round(own, 2),
        "server_cpu_s": round(srv, 2),
        "other_cpu_s": round(other, 2),
        "other_cpu_share": round(other / (wall * cpus), 3) if wall > 0 else None,
    }


def clean_env(*drop: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


# -- measuring --------------------------------------------------------------------------------------------


def repeat(call: Callable[[], tuple[float, float | None]], repeats: int) -> dict[str, Any]:
    """`call()` -> (seconds as the client saw them, server seconds or None); 2 warm-ups, then `repeats`."""
    for _ in range(2):
        call()
    client, server = [], []
    for _ in range(repeats):
        seconds, in_app = call()
        client.append(seconds)
        if in_app is not None:
            server.append(in_app)
    out = {"http": summary(client)}
    if server:
        out["server"] = summary(server)
    return out


def server_timing(response: Any) -> float | None:
    found = re.search(r"app;dur=([\d.]+)", response.headers.get("server-timing", ""))
    return float(found.group(1)) / 1000 if found else None


def page_names(html: str) -> list[str]:
    return re.findall(r'<td><a href="[^"]*/runs/[0-9a-f]{32}">([^<]+)</a></td>', html)


def run_count(html: str) -> int | None:
    found = re.search(r'id="run-count">([\d,]+) run', html)
    return int(found.group(1).replace(",", "")) if found else None


def chart_points(html: str) -> list[int]:
    """Points on the x axis of each chart a run page embeds."""
    specs = re.findall(r'<script type="application/json">(.*?)</script>', html, re.S)
    return [len(spec["x"]) for spec in map(json.loads, specs) if spec.get("kind") == "line"]


def measure_loopml(
    base: str, lm: dict[str, Any], exp: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    import httpx

    res: dict[str, Any] = {}
    with httpx.Client(base_url=base, timeout=300) as client:

        def get(path: str, **params: Any) -> Callable[[], tuple[float, float | None]]:
            def call() -> tuple[float, float | None]:
                t = now()
                response = client.get(path, params=params)
                seconds = now() - t
                if response.status_code != 200:
                    raise RuntimeError(f"GET {path} {params}: {response.status_code} {response.text[:500]}")
                return seconds, server_timing(response)

            return call

        experiment = f"/ui/experiments/{lm['experiment_id']}"
        pages = {
            "experiments": (experiment, {}),
            "experiments_100": (experiment, {"size": 100}),
            "filtered": (experiment, {"filter": FILTER, "order": ORDER}),
            "page": (experiment, {"page": args.page}),
            "run_long": (f"/ui/runs/{lm['run_ids']['long']}", {}),
            "run": (f"/ui/runs/{lm['run_ids']['ordinary']}", {}),
        }
        for name, (path, params) in pages.items():
            print(f"  loopml {name} ...", file=sys.stderr, flush=True)
            res[name] = repeat(get(path, **params), args.repeats)
            html = client.get(path, params=params).text
            res[name]["bytes"] = len(html.encode())
            if name.startswith("run"):
                res[name]["chart_points"] = chart_points(html)
            else:
                res[name]["names"] = page_names(html)
                res[name]["count"] = run_count(html)
    checks = {
        "filter_count": res["filtered"]["count"] == exp["filter_matches"],
        "filtered_top10": res["filtered"]["names"][:10] == exp["filtered_top10"],
        "first_page": res["experiments"]["names"] == exp["first_page"],
        "page": res["page"]["names"] == exp["page_runs"],
        "run_long_charts": res["run_long"]["chart_points"] == [1000] * len(LONG_KEYS),
        "run_charts": res["run"]["chart_points"] == [STEPS] * len(KEYS),
    }
    res["checks"] = checks
    return res


def measure_mlflow(
    base: str, mf: dict[str, Any], exp: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    import httpx

    api = "/ajax-api/2.0/mlflow"
    res: dict[str, Any] = {}
    with httpx.Client(base_url=base, timeout=300) as client:

        def search_body(flt: str = "", order: str = "attributes.start_time DESC", token: str | None = None,
                        max_results: int = MLFLOW_PAGE) -> dict[str, Any]:  # fmt: skip
            body: dict[str, Any] = {"experiment_ids": [mf["experiment_id"]], "filter": flt,
                                    "run_view_type": "ACTIVE_ONLY", "max_results": max_results, "order_by": [order]}  # fmt: skip
            if token:
                body["page_token"] = token
            return body

        def search(body: dict[str, Any]) -> tuple[float, Any]:
            t = now()
            response = client.post(f"{api}/runs/search", json=body)
            seconds = now() - t
            if response.status_code != 200:
                raise RuntimeError(f"runs/search {body}: {response.status_code} {response.text[:500]}")
            return seconds, response

        def run_page(run_id: str) -> tuple[float, list[float], list[int], int]:
            """runs/get, then one sampled history call per metric, one after the other."""
            times, points, size = [], [], 0
            t0 = now()
            t = now()
            response = client.get(f"{api}/runs/get", params={"run_id": run_id})
            times.append(now() - t)
            response.raise_for_status()
            size += len(response.content)
            keys = sorted(m["key"] for m in response.json()["run"]["data"].get("metrics", []))
            for key in keys:
                t = now()
                response = client.get(
                    f"{api}/metrics/get-history-bulk-interval",
                    params={"run_ids": run_id, "metric_key": key, "max_results": MLFLOW_POINTS},
                )
                times.append(now() - t)
                response.raise_for_status()
                size += len(response.content)
                points.append(len(response.json().get("metrics", [])))
            return now() - t0, times, points, size

        token = base64.b64encode(json.dumps({"offset": exp["page_offset"]}).encode()).decode()
        bodies = {
            "experiments": search_body(),
            "filtered": search_body(FILTER, MLFLOW_ORDER),
            "page": search_body(token=token),
        }
        for name, body in bodies.items():
            print(f"  mlflow {name} ...", file=sys.stderr, flush=True)
            res[name] = repeat(lambda body=body: (search(body)[0], None), args.repeats)
            response = search(body)[1]
            res[name]["bytes"] = len(response.content)
            res[name]["names"] = [r["info"]["run_name"] for r in response.json().get("runs", [])]
        res["experiments_100"] = res["experiments"]
        for name, run_id in (("run_long", mf["run_ids"]["long"]), ("run", mf["run_ids"]["ordinary"])):
            print(f"  mlflow {name} ...", file=sys.stderr, flush=True)
            res[name] = repeat(lambda run_id=run_id: (run_page(run_id)[0], None), args.repeats)
            calls: list[list[float]] = []
            for _ in range(3):
                _, times, points, size = run_page(run_id)
                calls.append(times)
            res[name].update(
                requests=len(times),
                bytes=size,
                chart_points=points,
                runs_get_ms=round(min(c[0] for c in calls) * 1000, 2),
                per_metric_call_ms=round(min(pct(c[1:], 50) for c in calls) * 1000, 2),
            )
        everything = search(search_body(FILTER, MLFLOW_ORDER, max_results=50_000))[1].json().get("runs", [])
        res["filtered"]["count"] = len(everything)
    res["checks"] = {
        "filter_count": res["filtered"]["count"] == exp["filter_matches"],
        "filtered_top10": res["filtered"]["names"][:10] == exp["filtered_top10"],
        "first_page": res["experiments"]["names"][:LOOPML_PAGE] == exp["first_page"],
        "page": res["page"]["names"][:LOOPML_PAGE] == exp["page_runs"],
        "run_long_charts": res["run_long"]["chart_points"] == [MLFLOW_POINTS] * len(LONG_KEYS),
        "run_charts": res["run"]["chart_points"] == [STEPS] * len(KEYS),
    }
    return res


# -- the two sides -------------------------------------------------------------------------------------------


def loopml_side(data: Path, manifest: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    lm = manifest["loopml"]
    port = free_port()
    config = {"project": str(data / "loopml"), "port": port}
    cmd = [str(LOOPML_PYTHON), str(Path(__file__).resolve()), "--serve-loopml", json.dumps(config)]
    server = Server("LoopML UI", cmd, env=clean_env("LOOPML_"), port=port, health="/ui/experiments",
                    log=data / "loopml-ui.log")  # fmt: skip
    res: dict[str, Any] = {"start_s": round(server.start(), 2)}
    try:
        res["settle_s"] = round(server.settle(), 2)
        with cpu_phase(res, server):
            res.update(measure_loopml(server.base, lm, manifest["expected"], args))
    finally:
        server.stop()
    return res


def mlflow_side(data: Path, manifest: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    mf = manifest["mlflow"]
    port = free_port()
    cmd = [str(PEERS_BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{data / 'mlflow.db'}",
           "--default-artifact-root", (data / "mlartifacts").as_uri(), "--host", HOST, "--port", str(port),
           "--workers", str(args.mlflow_workers)]  # fmt: skip
    server = Server("mlflow server", cmd, env=clean_env("MLFLOW_", "LOOPML_"), port=port, health="/health",
                    log=data / "mlflow-server.log")  # fmt: skip
    res: dict[str, Any] = {"start_s": round(server.start(), 2)}
    try:
        res["settle_s"] = round(server.settle(), 2)
        with cpu_phase(res, server):
            res.update(measure_mlflow(server.base, mf, manifest["expected"], args))
    except Exception as error:  # recorded: the LoopML columns still print
        import traceback

        res["error"] = f"{type(error).__name__}: {error}"
        print(traceback.format_exc(), file=sys.stderr)
    finally:
        server.stop()
    return res


def prepare(data: Path, args: argparse.Namespace, *, mlflow: bool) -> dict[str, Any]:
    """Both stores in `data` (reused when its manifest matches), and the manifest."""
    path = data / "manifest.json"
    manifest: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    if manifest.get("runs") != args.runs:
        for old in ("loopml", "mlflow.db", "mlartifacts"):
            target = data / old
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        manifest = {"runs": args.runs}
    if "loopml" not in manifest:
        print(f"LoopML: writing {args.runs:,} runs into {data / 'loopml'} ...", file=sys.stderr, flush=True)
        lm = build_loopml(data / "loopml", args.runs)
        manifest["expected_latest"] = lm.pop("latest")
        manifest["loopml"] = lm
        path.write_text(json.dumps(manifest))
        print(f"  loopml: {lm['seconds']} s", file=sys.stderr, flush=True)
    manifest["expected"] = expected(args.runs, manifest["expected_latest"], args.page)
    if mlflow and "mlflow" not in manifest:
        print(
            f"MLflow: writing {args.runs:,} runs into {data / 'mlflow.db'} ...", file=sys.stderr, flush=True
        )
        cfg = {"db": str(data / "mlflow.db"), "runs": args.runs, "artifacts": (data / "mlartifacts").as_uri()}
        t = now()
        proc = subprocess.run(
            [str(PEERS_BIN / "python"), str(Path(__file__).resolve()), "--mlflow-load", json.dumps(cfg)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, check=False,
            env=clean_env("MLFLOW_", "LOOPML_"),
        )  # fmt: skip
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode or not lines:
            raise RuntimeError(f"MLflow load failed (exit {proc.returncode}): {proc.stdout[-2000:]}")
        manifest["mlflow"] = {**json.loads(lines[-1]), "seconds": round(now() - t, 1)}
        path.write_text(json.dumps(manifest))
        print(f"  mlflow: {manifest['mlflow']['seconds']} s", file=sys.stderr, flush=True)
    return manifest


# -- profile (in-process, no HTTP) ------------------------------------------------------------------------------

PROFILE_TARGETS = {
    "experiments": ("experiment", {}),
    "experiments-100": ("experiment", {"size": 100}),
    "filtered": ("experiment", {"filter": FILTER, "order": ORDER}),
    "page": ("experiment", {}),
    "run-long": ("long", {}),
    "run": ("ordinary", {}),
}


def run_profile(data: Path, manifest: dict[str, Any], args: argparse.Namespace) -> None:
    """One LoopML page in this process through httpx's ASGI transport (gzip accepted, as a browser does), with
    what the app would run in worker threads run inline, so the whole request is on one thread: timers
    around its parts without the profiler, then cProfile of one request."""
    import asyncio
    import cProfile
    import functools
    import statistics

    import anyio.to_thread
    import httpx
    from starlette.middleware.gzip import GZipResponder

    from harness import save_profile
    from loopml.core.settings import load_settings
    from loopml.server.ui import charts, experiments, pages, runs
    from loopml.server.ui.app import local_ui_app
    from loopml.tracking import metric_log, store
    from loopml.tracking.tracker import Tracker

    samples: dict[str, list[float]] = {}

    def wrap(owner: Any, attribute: str, name: str) -> None:
        func = getattr(owner, attribute)

        @functools.wraps(func)
        def timed(*a: Any, **kw: Any) -> Any:
            t = now()
            try:
                return func(*a, **kw)
            finally:
                samples.setdefault(name, []).append(now() - t)

        setattr(owner, attribute, timed)

    async def inline(func: Callable[..., Any], *a: Any, **_: Any) -> Any:
        return func(*a)

    # bench-side: what the app hands to worker threads (the sync endpoint, gzip of a large body) runs inline
    anyio.to_thread.run_sync = inline  # type: ignore[assignment]
    wrap(GZipResponder, "_compress_body", "GZipMiddleware: compress the body")
    wrap(experiments, "search_runs", "search_runs (page query + _load_runs)")
    wrap(experiments, "count_runs", "count_runs")
    wrap(store.TrackingStore, "_load_runs", "TrackingStore._load_runs")
    wrap(store.TrackingStore, "get_run", "TrackingStore.get_run")
    wrap(store.TrackingStore, "metric_keys", "TrackingStore.metric_keys")
    wrap(metric_log.MetricLog, "overview", "MetricLog.overview (SQL, per metric)")
    wrap(charts, "line", "charts.line (per metric)")
    wrap(runs, "search_runs", "search_runs (child runs)")
    wrap(runs, "_pipeline", "runs._pipeline")
    wrap(pages.Pages, "render", "Pages.render (Jinja2, incl. chart JSON)")
    wrap(pages, "chart_json", "chart_json (filter, per chart)")

    lm = manifest["loopml"]
    where, params = PROFILE_TARGETS[args.profile]
    path = (
        f"/ui/runs/{lm['run_ids'][where]}"
        if where != "experiment"
        else f"/ui/experiments/{lm['experiment_id']}"
    )
    if args.profile == "page":
        params = {"page": args.page}
    tracker = Tracker(load_settings(project_dir=data / "loopml"))
    app = local_ui_app(tracker)
    profiler = cProfile.Profile()
    whole: list[float] = []
    timed: dict[str, list[float]] = {}  # the timers of the timed requests, before the profiled one

    async def go() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{HOST}") as client:
            for i in range(2 + args.repeats):
                t = now()
                response = await client.get(path, params=params)
                if i >= 2:
                    whole.append(now() - t)
                else:
                    samples.clear()
                assert response.status_code == 200, response.text[:500]
            timed.update({k: list(v) for k, v in samples.items()})
            profiler.enable()
            await client.get(path, params=params)
            profiler.disable()

    asyncio.run(go())
    tracker.close()
    n = args.repeats
    print(f"\n## Timers, {args.profile} ({path} {params}), {n} requests in-process, no profiler\n")
    print("| part | calls per request | ms per request (mean) |\n| --- | --- | --- |")
    print(f"| whole request (ASGI, in-process; median, mean) | 1 | {statistics.median(whole) * 1000:.1f}, "
          f"{statistics.mean(whole) * 1000:.1f} |")  # fmt: skip
    for name, values in sorted(timed.items(), key=lambda kv: -sum(kv[1])):
        per = len(values) / n
        print(f"| {name} | {per:g} | {sum(values) / n * 1000:.1f} |")
    save_profile(profiler, f"profile-ui-{args.profile}", f"one request of {args.profile}", args.profile_top)


# -- report ----------------------------------------------------------------------------------------------------


def fmt_ms(ms: float) -> str:
    if ms >= 1000:
        return f"{ms / 1000:,.2f} s"
    return f"{ms:,.3g} ms" if ms < 100 else f"{ms:,.0f} ms"


def fmt_kib(n: int) -> str:
    return f"{n / 1024:,.0f} KiB"


ROWS = (
    ("experiments", "(a) experiments page: runs table, first page, default sort", True),
    ("experiments_100", "(a') same, 100 runs per page (`size=100`; MLflow: its page of 100 as above)", False),
    ("filtered", f"(b) same with `filter={FILTER}`, `order={ORDER}`", True),
    ("page", "(c) page {page} of the default sort", True),
    ("run_long", "(d) run page, 10 metrics x 10,000 steps (100,000 points)", True),
    ("run", "(e) run page, ordinary run (20 metrics x 100 steps)", True),
)


ROUNDS = {
    "plain": "as each tool leaves its SQLite file (neither runs ANALYZE)",
    "analyzed": "after `ANALYZE` of both files (bench-side; the planner then has statistics)",
}
CHECKS = ("filter_count", "filtered_top10", "first_page", "page", "run_long_charts", "run_charts")


def page_rows(
    lm: dict[str, Any], mf: dict[str, Any], page: int, verdicts: dict[str, Any], tag: str
) -> list[list[str]]:
    """The timed rows of one round."""
    rows = []
    for key, label, target in ROWS:
        block, other = lm.get(key, {}), mf.get(key, {})
        http, srv = block.get("http", {}), block.get("server", {})
        lcell = (f"server {fmt_ms(srv['p50_ms'])} (p95 {fmt_ms(srv['p95_ms'])}); HTTP {fmt_ms(http['p50_ms'])} "
                 f"(p95 {fmt_ms(http['p95_ms'])}); {fmt_kib(block['bytes'])} HTML") if srv else "-"  # fmt: skip
        if "http" in other:
            o = other["http"]
            mcell = f"HTTP {fmt_ms(o['p50_ms'])} (p95 {fmt_ms(o['p95_ms'])})"
            if key.startswith("run"):
                mcell += (f": `runs/get` + {other['requests'] - 1} sampled-history calls in a row (each ~"
                          f"{fmt_ms(other['per_metric_call_ms'])}); {fmt_kib(other['bytes'])} JSON")  # fmt: skip
            else:
                mcell += f"; {fmt_kib(other['bytes'])} JSON"
            ratio = f"{o['p50_ms'] / http['p50_ms']:,.1f}x" if http else "-"
        else:
            mcell, ratio = (mf.get("error", "-")[:150] if mf else "-"), "-"
        if target and srv:
            ok = srv["p50_ms"] <= TARGET_MS
            verdicts[f"{tag}_{key}_server_p50_ms"] = srv["p50_ms"]
            verdicts[f"{tag}_{key}_met"] = ok
            note = "" if srv["p95_ms"] <= TARGET_MS else f" (p95 {fmt_ms(srv['p95_ms'])})"
            tcell = ("**yes**" if ok else "**NO**") + note
        else:
            tcell = "-"
        rows.append([label.format(page=page), lcell, mcell, ratio, tcell])
    return rows


def build_table(
    res: dict[str, Any], manifest: dict[str, Any], args: argparse.Namespace
) -> tuple[str, dict[str, Any]]:
    exp = manifest["expected"]
    rounds = [r for r in ROUNDS if r in res]
    rows: list[list[str]] = []
    verdicts: dict[str, Any] = {}
    for tag in rounds:
        rows.append([f"**{ROUNDS[tag]}**", "", "", "", ""])
        rows += page_rows(res[tag]["loopml"], res[tag].get("mlflow") or {}, exp["page"], verdicts, tag)
    first = res[rounds[0]]
    lm, mf = first["loopml"], first.get("mlflow") or {}
    labels = {
        "filter_count": f"runs matching the filter ({exp['filter_matches']:,} from the seeds)",
        "filtered_top10": "the same 10 runs top the ordered filter query",
        "first_page": f"first page = the {LOOPML_PAGE} newest runs",
        "page": f"page {exp['page']} = runs {exp['page_offset'] + 1:,}-{exp['page_offset'] + LOOPML_PAGE:,} by age",
        "run_long_charts": "long run: points per chart (LoopML <= 1,000, MLflow 320)",
        "run_charts": "ordinary run: every point drawn (100 per chart)",
    }
    for check in CHECKS:
        lc = all(res[t]["loopml"].get("checks", {}).get(check) for t in rounds)
        mfs = [(res[t].get("mlflow") or {}).get("checks", {}).get(check) for t in rounds]
        mc = None if all(m is None for m in mfs) else all(mfs)
        if check == "filter_count":
            lv, mv = lm.get("filtered", {}).get("count"), mf.get("filtered", {}).get("count")
        elif check.endswith("charts"):
            name = "run_long" if check == "run_long_charts" else "run"
            lp, mp = lm.get(name, {}).get("chart_points"), mf.get(name, {}).get("chart_points")
            lv = f"{len(lp)} charts x {sorted(set(lp))} points" if lp else None
            mv = f"{len(mp)} metrics x {sorted(set(mp))} points" if mp else None
        else:
            lv, mv = lc, mc
        verdicts[f"check_{check}"] = lc and mc is not False
        rows.append([f"check ({', '.join(rounds)}): {labels[check]}", f"{lv} ({'ok' if lc else 'WRONG'})",
                     f"{mv} ({'ok' if mc else 'WRONG'})" if mc is not None else "-", "-",
                     "**yes**" if verdicts[f"check_{check}"] else "**NO**"])  # fmt: skip
    lb, mb = manifest["loopml"], manifest.get("mlflow")
    rows.append([
        f"writing the store: {args.runs:,} runs x (4 params + 20 metrics x 100 steps) + the long run (not a target)",
        f"{lb['seconds']:,} s through `TrackingStore` ({lb['parts']['metrics_append_s']:,} s of it in "
        f"`metrics.append`: {lb['points_per_s']:,} points/s); {lb['db_mib']:,} MiB",
        f"{mb['seconds']:,} s: schema + experiments by MLflow, rows by sqlite3 `executemany`; {mb['db_mib']:,} MiB"
        if mb else "-",
        "-", "-",
    ])  # fmt: skip
    if "analyze_s" in res:
        rows.append(["`ANALYZE` (bench-side, between the rounds; not a target)",
                     f"{res['analyze_s']['loopml']} s", f"{res['analyze_s'].get('mlflow', '-')} s", "-", "-"])  # fmt: skip
    noises = [
        (f"{side} {tag}", r["cpu"]["other_cpu_share"])
        for tag in rounds
        for side in ("loopml", "mlflow")
        if "cpu" in (r := res[tag].get(side) or {})
    ]
    if noises:
        worst = max(share for _, share in noises)
        verdicts["noise_max"] = worst
        rows.append(["noise: share of the machine's CPU used by other processes, per side and round",
                     ", ".join(f"{s} {v}" for s, v in noises), "", "-",
                     f"quiet (<= 0.05): {'**yes**' if worst <= 0.05 else '**NO**'}"])  # fmt: skip
    head = ["measurement (median of N after 2 warm-ups; p95)", "LoopML (`local_ui_app`, uvicorn)",
            f"MLflow (`mlflow server --workers {args.mlflow_workers}`, the UI's backend calls)",
            "MLflow / LoopML (HTTP medians)", f"server time <= {TARGET_MS:.0f} ms?"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines), verdicts


def sqlite_stats(
    manifest: dict[str, Any], data: Path, *, mlflow: bool, drop: bool = False
) -> dict[str, float]:
    """`ANALYZE` each store's SQLite file (its seconds), or with `drop` remove the statistics again."""
    files = {"loopml": Path(manifest["loopml"]["db"])}
    if mlflow:
        files["mlflow"] = data / "mlflow.db"
    took = {}
    for side, path in files.items():
        t = now()
        con = sqlite3.connect(path, isolation_level=None)
        try:
            if drop:
                for (name,) in con.execute(
                    "SELECT name FROM sqlite_master WHERE name LIKE 'sqlite_stat%'"
                ).fetchall():
                    con.execute(f"DROP TABLE IF EXISTS {name}")
            else:
                con.execute("ANALYZE")
        finally:
            con.close()
        took[side] = round(now() - t, 2)
    return took


# -- main ---------------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1,000 runs, 5 repeats: smoke test")
    ap.add_argument("--runs", type=int, help="runs in the experiment (10,000; quick 1,000)")
    ap.add_argument("--repeats", type=int, help="timed requests per measurement (15; quick 5)")
    ap.add_argument("--page", type=int, help="the deep page of (c) (100; quick 10)")
    ap.add_argument("--no-mlflow", action="store_true", help="LoopML only")
    ap.add_argument("--no-analyze", action="store_true", help="skip the second round (after ANALYZE)")
    ap.add_argument("--mlflow-workers", type=int, default=1, help="mlflow server --workers (1)")
    ap.add_argument("--data", type=Path, help="keep the stores here and reuse them (default: a temp dir)")
    ap.add_argument("--no-save", action="store_true", help="do not append to bench/results/ui.json")
    ap.add_argument("--profile", choices=tuple(PROFILE_TARGETS), help="timers + cProfile of one LoopML page")
    ap.add_argument("--profile-top", type=int, default=30)
    args = ap.parse_args()
    q = args.quick
    args.runs = args.runs or (1_000 if q else 10_000)
    args.repeats = args.repeats or (5 if q else 15)
    args.page = args.page or (10 if q else 100)
    return args


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] in ("--mlflow-load", "--serve-loopml"):
        cfg = json.loads(sys.argv[2])
        if sys.argv[1] == "--serve-loopml":
            serve_loopml(cfg)
        else:
            emit(mlflow_load(cfg))
        return
    args = parse_args()
    from datetime import UTC, datetime

    from harness import append_result, run_config
    from peers.common import machine_info, versions
    from source_state import source_state

    started = datetime.now(UTC).isoformat(timespec="seconds")
    wall0 = now()
    before = source_state()
    want_mlflow = not args.no_mlflow and not args.profile
    if want_mlflow and not (PEERS_BIN / "python").exists():
        raise SystemExit(".venv-peers is missing: run `bash bench/setup_peers.sh` (or pass --no-mlflow)")
    data = args.data or Path(tempfile.mkdtemp(prefix="loopml-bench-ui-"))
    data.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {}
    try:
        manifest = prepare(data, args, mlflow=want_mlflow)
        if args.profile:
            run_profile(data, manifest, args)
            return
        sqlite_stats(manifest, data, mlflow=want_mlflow, drop=True)  # a round left over by a killed run
        res: dict[str, Any] = {}
        for tag in ("plain", "analyzed"):
            if tag == "analyzed":
                if args.no_analyze:
                    break
                res["analyze_s"] = sqlite_stats(manifest, data, mlflow=want_mlflow)
            res[tag] = {}
            print(f"LoopML UI, {tag} ...", file=sys.stderr, flush=True)
            res[tag]["loopml"] = loopml_side(data, manifest, args)
            if want_mlflow:
                print(f"MLflow server, {tag} ...", file=sys.stderr, flush=True)
                res[tag]["mlflow"] = mlflow_side(data, manifest, args)
    finally:
        if args.data is None:
            shutil.rmtree(data, ignore_errors=True)
        elif (data / "manifest.json").exists() and "loopml" in manifest:
            sqlite_stats(manifest, data, mlflow=(data / "mlflow.db").exists(), drop=True)  # as built
    table, verdicts = build_table(res, manifest, args)
    print(table)
    after = source_state()
    record = {
        "bench": "ui",
        "started": started,
        "wall_s": round(now() - wall0, 1),
        "machine": machine_info(),
        "versions": {
            **versions("loopml", "fastapi", "starlette", "uvicorn", "jinja2", "sqlalchemy", "httpx"),
            "sqlite": sqlite3.sqlite_version,
            "mlflow": (manifest.get("mlflow") or {}).get("mlflow"),
        },
        "source": before,
        "source_unchanged_during_run": before["src_tree_blake3"] == after["src_tree_blake3"],
        "config": run_config(args),
        "verdicts": verdicts,
        "stores": {k: v for k, v in manifest.items() if k in ("loopml", "mlflow", "expected")},
        "results": res,
        "table": table,
    }
    print(f"\nwall {record['wall_s']} s", file=sys.stderr)
    if not args.no_save:
        append_result("ui", record)


if __name__ == "__main__":
    main()
