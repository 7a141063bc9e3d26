"""The unmodified MLflow client logging to LoopML's team server vs to an MLflow server, same database engine.

    bash bench/setup_peers.sh                                  # once: .venv-peers with the pinned MLflow, psycopg
    .venv/bin/python bench/mlflow_compat.py                    # SQLite, 2 rounds x 5 runs a side (~2.5 min)
    .venv/bin/python bench/mlflow_compat.py --runs 1           # smoke test (~1 min)
    .venv/bin/python bench/mlflow_compat.py --db postgres      # both servers on one PostgreSQL server (~3 min)
    .venv/bin/python bench/mlflow_compat.py --profile timers   # LoopML's server time per route and part;
        # --profile cprofile: also cProfile of every server thread (bench/results/profile-mlflow-compat-<db>.prof)
    .venv/bin/python bench/mlflow_compat.py --no-mlflow        # LoopML side only

The servers, on 127.0.0.1, both started first; the measured rounds then alternate between them (LoopML first in
odd rounds, MLflow first in even ones), one client at a time:
  LoopML: `loopml db upgrade`, `loopml server create-admin --name bench` (its last line is the token), then
    `loopml server --host 127.0.0.1 --port P` over a fresh project (SQLite in the project, or
    LOOPML_DATABASE_URL on the `loopml` database with --db postgres); artifacts in the project's blob store.
    The client holds `MLFLOW_TRACKING_TOKEN=<token>`: every request is authenticated.
  MLflow (3.17.2 from .venv-peers, else .venv-mlflow; --mlflow-python): `mlflow server --backend-store-uri
    sqlite:///.../mlflow.db` (or the `mlflow` database) with `--artifacts-destination DIR` (artifacts proxied
    through the server, `mlflow-artifacts:`), 4 workers (its default; --mlflow-workers), no authentication (its
    default), MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false (no job consumers: tracking does not use them).
  With --db postgres: a throwaway PostgreSQL cluster as bench/server.py starts one (default durability).

The workload is one MLflow client script (this file, run by the MLflow venv's Python with --workload): the
same calls, in the same order, with the same seeded values against each server; a one-run warm-up first.
  Per run (--runs a round): `mlflow.start_run`, `mlflow.log_params` (10 params, one request), `mlflow.set_tags`
    (5 tags), 10 metrics x 100 steps (--keys, --steps) through `mlflow.log_metric` (synchronous: one request
    each), the same number of points under other keys through `MlflowClient().log_batch` (at most 1,000 a
    call), `mlflow.log_text` (a 1 KiB artifact), `mlflow.end_run`.
  Then `MlflowClient().search_runs([exp], "params.p0 = 'a' and metrics.m0 > 0.5", order_by=["metrics.m0
    DESC"])` (--repeats times after one warm-up), and once per run `get_metric_history(run, "m0")` and
    `mlflow.artifacts.download_artifacts` of the text file.
  The client times each call (perf_counter around it). The search must find the runs the bench computes from
  the seeds, in the same order; every history must hold 100 points and every artifact its text.
Reported per operation group over all rounds: calls, total and median time a call; runs/s of the per-run part
and points/s of each way of logging metrics; the ratio of LoopML's time to MLflow's (below 1x LoopML is faster).
Also the CPU of the client, the server's processes, PostgreSQL and everyone else (the noise), per side over its
rounds. Prints a markdown table and appends one JSON line to bench/results/mlflow_compat.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LOOPML_BIN = REPO / ".venv" / "bin"
MLFLOW_PYTHONS = (REPO / ".venv-peers" / "bin" / "python", REPO / ".venv-mlflow" / "bin" / "python")
HOST = "127.0.0.1"
EXPERIMENT = "mlflow-compat"
FILTER = "params.p0 = 'a' and metrics.m0 > 0.5"
ORDER = "metrics.m0 DESC"
# The operation groups, in the order of the table: (key, label).
GROUPS = (
    ("start_run", "`mlflow.start_run`"),
    ("log_params", "`mlflow.log_params`, 10 params"),
    ("set_tags", "`mlflow.set_tags`, 5 tags"),
    ("log_metric", "`mlflow.log_metric`, synchronous, one point a call"),
    ("log_batch", "`MlflowClient.log_batch`, up to 1,000 points a call"),
    ("log_text", "`mlflow.log_text`, 1 KiB artifact (proxied upload)"),
    ("end_run", "`mlflow.end_run`"),
    ("search_runs", f"`search_runs`, filter `{FILTER}`, order `{ORDER}`"),
    ("get_metric_history", "`get_metric_history`, one metric"),
    ("download_artifacts", "`mlflow.artifacts.download_artifacts`, the 1 KiB file"),
)
PER_RUN = ("start_run", "log_params", "set_tags", "log_metric", "log_batch", "log_text", "end_run")

now = time.perf_counter


# -- the workload: stdlib only at import, MLflow inside (this file also runs under the MLflow venv) ---------


def run_values(r: int, keys: int, steps: int) -> tuple[dict[str, str], dict[str, list[float]]]:
    """Params and metric series of run r (seeded: the same on both sides)."""
    rnd = random.Random(r)
    params = {"p0": "abcd"[rnd.randrange(4)], **{f"p{i}": f"{rnd.uniform(0, 1):.6f}" for i in range(1, 10)}}
    series = {f"m{k}": [rnd.random() for _ in range(steps)] for k in range(keys)}
    return params, series


def expected_search(runs: int, keys: int, steps: int) -> list[str]:
    """The run names the search finds, in its order, computed from the seeds."""
    found = []
    for r in range(runs):
        params, series = run_values(r, keys, steps)
        if params["p0"] == "a" and series["m0"][-1] > 0.5:
            found.append((-series["m0"][-1], run_name(r)))
    return [name for _, name in sorted(found)]


def route_of(method: str, path: str) -> str:
    """`METHOD /path`, with the path of one artifact shortened to its route."""
    prefix = "/api/2.0/mlflow-artifacts/artifacts/"
    return f"{method} {prefix}... (one artifact)" if path.startswith(prefix) else f"{method} {path}"


def run_name(r: int) -> str:
    return f"run-{r:04d}"


def workload(cfg: dict[str, Any]) -> dict[str, Any]:
    """The MLflow client's calls against MLFLOW_TRACKING_URI; per group the seconds of each call."""
    from urllib.parse import urlsplit

    import mlflow  # type: ignore[import-not-found]  # the MLflow venv only
    import requests  # type: ignore[import-untyped]  # what MLflow's client sends its requests with

    client = mlflow.MlflowClient()
    metric = mlflow.entities.Metric

    runs, keys, steps, repeats = cfg["runs"], cfg["keys"], cfg["steps"], cfg["repeats"]
    samples: dict[str, list[float]] = {key: [] for key, _ in GROUPS}
    # Each HTTP request the client makes, by the operation group making it and its route (client-side time).
    http: dict[str, dict[str, list[float]]] = {}
    group_now = ["setup"]
    send = requests.Session.request

    def request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        began = now()
        try:
            return send(self, method, url, *args, **kwargs)
        finally:
            route = route_of(method, urlsplit(url).path)
            http.setdefault(group_now[0], {}).setdefault(route, []).append(now() - began)

    requests.Session.request = request

    def timed(group: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        group_now[0] = group
        start = now()
        try:
            return call(*args, **kwargs)
        finally:
            samples[group].append(now() - start)
            group_now[0] = "other"

    experiment_id = mlflow.set_experiment(cfg["experiment"]).experiment_id
    text = "".join(random.Random(0).choice("abcdefgh \n") for _ in range(1024))
    run_ids = []
    quiet = open(os.devnull, "w")  # noqa: SIM115 - MLflow prints a "View run" line per run
    loop0 = now()
    for r in range(runs):
        params, series = run_values(r, keys, steps)
        run = timed("start_run", mlflow.start_run, run_name=run_name(r))
        run_id = run.info.run_id
        run_ids.append(run_id)
        timed("log_params", mlflow.log_params, params)
        timed("set_tags", mlflow.set_tags, {f"tag{i}": f"value-{r}-{i}" for i in range(5)})
        for step in range(steps):
            for key, values in series.items():
                timed("log_metric", mlflow.log_metric, key, values[step], step=step)
        stamp = int(time.time() * 1000)
        batch = [
            metric(f"batch_{key}", v, stamp, s)
            for key, values in series.items()
            for s, v in enumerate(values)
        ]
        for start in range(0, len(batch), 1000):
            timed("log_batch", client.log_batch, run_id, metrics=batch[start : start + 1000])
        timed("log_text", mlflow.log_text, text, "notes/summary.txt")
        with contextlib.redirect_stdout(quiet):
            timed("end_run", mlflow.end_run)
    loop_s = now() - loop0

    found: list[str] = []
    group_now[0] = "search_runs"
    for i in range(repeats + 1):
        began = now()
        page = client.search_runs([experiment_id], filter_string=FILTER, order_by=[ORDER], max_results=1000)
        if i:  # the first one warms up
            samples["search_runs"].append(now() - began)
        found = [one.info.run_name for one in page]
    lengths = [
        len(timed("get_metric_history", client.get_metric_history, run_id, "m0")) for run_id in run_ids
    ]
    with tempfile.TemporaryDirectory() as folder:
        texts_ok = all(
            Path(
                timed(
                    "download_artifacts",
                    mlflow.artifacts.download_artifacts,
                    run_id=run_id,
                    artifact_path="notes/summary.txt",
                    dst_path=str(Path(folder) / run_id),
                )
            ).read_text()
            == text
            for run_id in run_ids
        )
    from importlib import metadata

    return {
        "mlflow": metadata.version("mlflow"),
        "runs": runs,
        "points_per_run": keys * steps,
        "loop_s": round(loop_s, 3),
        "groups": {key: [round(s, 6) for s in values] for key, values in samples.items()},
        "http": {
            g: {route: [round(s, 6) for s in v] for route, v in routes.items()} for g, routes in http.items()
        },
        "found": found,
        "history_lengths_ok": all(n == steps for n in lengths),
        "artifacts_ok": texts_ok,
    }


# -- the servers ------------------------------------------------------------------------------------------


class NoDatabaseServer:
    """SQLite lives in the server's process: no database server's CPU to count."""

    version = "SQLite (in the server process)"

    def cpu_s(self, stats: Any) -> float:
        return 0.0


def profile_path(args: argparse.Namespace) -> Path:
    return BENCH / "results" / f"profile-mlflow-compat-{args.db}.prof"


def timers_path(args: argparse.Namespace) -> Path:
    return BENCH / "results" / f"timers-mlflow-compat-{args.db}.json"


def mlflow_python(args: argparse.Namespace) -> Path | None:
    if args.mlflow_python:
        return Path(args.mlflow_python)
    return next((p for p in MLFLOW_PYTHONS if p.exists()), None)


def clean_env() -> dict[str, str]:
    drop = ("LOOPML_", "MLFLOW_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop) and k.lower() not in PROXIES}
    return {**env, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


PROXIES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


class Side:
    """One server under test: how to start it and the environment its MLflow client needs."""

    def __init__(self, name: str, work: Path, args: argparse.Namespace, db: Any) -> None:
        self.name, self.work, self.args, self.db = name, work, args, db
        self.folder = work / name
        self.folder.mkdir()
        self.client_env: dict[str, str] = {}

    def server(self) -> Any:
        import server as server_bench  # bench/server.py: its Server (process group) class

        port = server_bench.free_port()
        if self.name == "loopml":
            env = self._loopml_env()
            self._prepare_loopml(env)
            if self.args.profile:
                config = {
                    "port": port,
                    "cprofile": str(profile_path(self.args)) if self.args.profile == "cprofile" else None,
                    "timers": str(timers_path(self.args)),
                }
                cmd = [sys.executable, str(Path(__file__).resolve()), "--launch-loopml", json.dumps(config)]
            else:
                cmd = [str(LOOPML_BIN / "loopml"), "server", "--host", HOST, "--port", str(port)]
            health = "/api/v1/health"
        else:
            python = mlflow_python(self.args)
            assert python is not None
            env = clean_env() | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
            env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"  # its uvicorn
            store = (
                self.db.url("mlflow")
                if self.args.db == "postgres"
                else f"sqlite:///{self.folder / 'mlflow.db'}"
            )
            cmd = [str(python), "-m", "mlflow", "server", "--backend-store-uri", store,
                   "--artifacts-destination", str(self.folder / "artifacts"), "--host", HOST, "--port", str(port),
                   "--workers", str(self.args.mlflow_workers)]  # fmt: skip
            health = "/health"
        return server_bench.Server(
            f"{self.name} server", cmd, env=env, cwd=self.folder, port=port, health=health,
            log=self.work / f"{self.name}-server.log",
        )  # fmt: skip

    def _loopml_env(self) -> dict[str, str]:
        env = clean_env() | {"LOOPML_PROJECT_DIR": str(self.folder)}
        if self.args.db == "postgres":
            env["LOOPML_DATABASE_URL"] = self.db.url("loopml")
        return env

    def _prepare_loopml(self, env: dict[str, str]) -> None:
        loopml = str(LOOPML_BIN / "loopml")
        for cmd in ([loopml, "db", "upgrade"], [loopml, "server", "create-admin", "--name", "bench"]):
            done = subprocess.run(cmd, cwd=self.folder, env=env, capture_output=True, text=True, check=False)
            if done.returncode:
                raise RuntimeError(f"{' '.join(cmd[1:])} failed: {done.stdout}{done.stderr}")
        self.client_env = {"MLFLOW_TRACKING_TOKEN": done.stdout.strip().splitlines()[-1]}

    def run_workload(self, base: str, **cfg: Any) -> dict[str, Any]:
        import server as server_bench

        python = mlflow_python(self.args)
        assert python is not None
        env = (
            clean_env()
            | self.client_env
            | {"MLFLOW_TRACKING_URI": base, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
        )
        config = {"keys": self.args.keys, "steps": self.args.steps, "repeats": self.args.repeats, **cfg}
        cmd = [str(python), str(Path(__file__).resolve()), "--workload", json.dumps(config)]
        return server_bench.run_json(
            cmd, env=env, log=self.work / f"{self.name}-client-{cfg['experiment']}.log"
        )


def measure(sides: list[Side], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Start every side's server, warm each up, then the measured rounds, alternating who goes first."""
    import server as server_bench

    servers = {side.name: side.server() for side in sides}
    res: dict[str, dict[str, Any]] = {side.name: {"rounds": []} for side in sides}
    try:
        for side in sides:
            res[side.name]["server_ready_s"] = round(servers[side.name].start(timeout_s=180), 2)
            warm = side.run_workload(servers[side.name].base, experiment="warm-up", runs=1)
            if "error" in warm:
                res[side.name]["error"] = warm["error"]
                print(f"{side.name}: {warm['error']}", file=sys.stderr)
        live = [side for side in sides if "error" not in res[side.name]]
        profiled = servers["loopml"] if args.profile and "error" not in res["loopml"] else None
        if profiled is not None and profiled.proc is not None:
            os.kill(profiled.proc.pid, signal.SIGUSR1)  # drop what the warm-up gathered
        for i in range(args.rounds):
            for side in live if i % 2 == 0 else live[::-1]:
                server = servers[side.name]
                print(f"{side.name}, round {i + 1}: {args.runs} runs ...", file=sys.stderr, flush=True)
                out: dict[str, Any] = {}
                with server_bench.Phase(side.db, server).measure(out):
                    out.update(side.run_workload(server.base, experiment=f"{EXPERIMENT}-{i}", runs=args.runs))
                res[side.name]["rounds"].append(out)
                if "error" in out:
                    print(f"  {out['error']}", file=sys.stderr)
                    raise SystemExit(f"the {side.name} round failed")
                print(f"  {args.runs / out['loop_s']:.3f} runs/s", file=sys.stderr, flush=True)
        if profiled is not None and profiled.proc is not None:
            os.kill(profiled.proc.pid, signal.SIGUSR2)
            time.sleep(3)
    finally:
        for server in servers.values():
            server.stop()
    return res


# -- LoopML's server under --profile: `python bench/mlflow_compat.py --launch-loopml CONFIG` ----------------

_timers: dict[str, list[float]] = {}
_profilers: list[Any] = []


def _route(scope: dict[str, Any]) -> str:
    return route_of(scope["method"], scope["path"])


class RouteTimer:
    """ASGI: the server time of each request (from the app being called until it returned), by route."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = now()
        try:
            await self.app(scope, receive, send)
        finally:
            _timers.setdefault(_route(scope), []).append(now() - start)


def _timed(name: str, call: Any) -> Any:
    """`call`, its time added to `_timers[name]` on each call (bench/server.py's wrapper)."""
    import server as server_bench  # bench/server.py, beside this script

    return server_bench._timed(_timers, name, call)


def launch_loopml(cfg: dict[str, Any]) -> None:
    """`loopml server` as its CLI builds it, with route timers, a few part timers and cProfile of every thread
    (src/ untouched). SIGUSR1 clears what was gathered; SIGUSR2 writes the timers and the merged profile."""
    import cProfile
    import pstats
    import threading

    import uvicorn

    from loopml.server import accounts, tracking_api
    from loopml.server.app import ServerOptions, create_server_app, hosts_of
    from loopml.server.mlflow_api import artifacts
    from loopml.storage.blobs.store import BlobStore
    from loopml.tracking.attachments import RunAttachments
    from loopml.tracking.store import TrackingStore
    from loopml.tracking.tracker import default_tracker

    def profile_thread(*_: Any) -> None:  # the first event of a new thread starts its own profiler
        profiler = cProfile.Profile()
        _profilers.append(profiler)
        profiler.enable()

    authenticate = _timed(
        "part: AccountStore.authenticate (token lookup)", accounts.AccountStore.authenticate
    )
    accounts.AccountStore.authenticate = authenticate  # type: ignore[method-assign]
    run_exists = _timed("part: TrackingStore.run_exists", TrackingStore.run_exists)
    TrackingStore.run_exists = run_exists  # type: ignore[method-assign]
    tracking_api.write_log = _timed("part: write_log (checks, transaction, commit)", tracking_api.write_log)
    # The parts of an artifact upload (PUT /api/2.0/mlflow-artifacts/artifacts/...).
    artifacts.files_of = _timed(
        "part: upload: files_of (the run exists: get_run, list_artifacts)", artifacts.files_of
    )
    artifacts.receive_upload = _timed(
        "part: upload: receive_upload (spool the body)", artifacts.receive_upload
    )
    BlobStore.put_stream = _timed(
        "part: upload: BlobStore.put_stream (hash, write, fsync)", BlobStore.put_stream
    )  # type: ignore[method-assign]
    add = _timed("part: upload: RunAttachments.add_artifacts (transaction)", RunAttachments.add_artifacts)
    RunAttachments.add_artifacts = add  # type: ignore[method-assign]
    hosts = hosts_of(["127.0.0.1", "localhost"])
    app = RouteTimer(create_server_app(default_tracker(), options=ServerOptions(hosts=hosts)))

    def dump(*_: Any) -> None:
        with open(cfg["timers"], "w") as stream:
            json.dump(_timers, stream)
        if cfg["cprofile"]:
            stats = pstats.Stats(_profilers[0])
            for profiler in _profilers[1:]:
                stats.add(profiler)
            stats.dump_stats(cfg["cprofile"])

    def clear(*_: Any) -> None:
        _timers.clear()
        for profiler in list(_profilers):
            profiler.clear()

    signal.signal(signal.SIGUSR1, clear)
    signal.signal(signal.SIGUSR2, dump)
    if cfg["cprofile"]:
        main_profiler = cProfile.Profile()
        _profilers.append(main_profiler)
        threading.setprofile(profile_thread)
        main_profiler.enable()
    uvicorn.run(app, host=HOST, port=cfg["port"], log_level="warning", access_log=False)


# -- report -----------------------------------------------------------------------------------------------


def group_stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"calls": 0}
    return {
        "calls": len(values),
        "total_s": round(sum(values), 3),
        "p50_ms": round(statistics.median(values) * 1000, 3),
        "p90_ms": round(sorted(values)[int(len(values) * 0.9)] * 1000, 3),
    }


def fmt_ms(ms: float) -> str:
    return f"{ms:,.3g} ms" if ms < 100 else f"{ms:,.0f} ms"


def fmt_s(s: float) -> str:
    return f"{s:,.2f} s" if s < 100 else f"{s:,.0f} s"


def ratio(loopml_s: float, mlflow_s: float) -> str:
    return f"{loopml_s / mlflow_s:.2f}x" if mlflow_s else "-"


def summarize(side: dict[str, Any]) -> dict[str, Any]:
    """Per group over every round (calls, total, p50, p90), the throughputs and the CPU of a side's rounds."""
    rounds = side["rounds"]
    groups = {key: group_stats([x for one in rounds for x in one["groups"][key]]) for key, _ in GROUPS}
    runs = sum(one["runs"] for one in rounds)
    points = sum(one["runs"] * one["points_per_run"] for one in rounds)
    per_round = [one["runs"] / one["loop_s"] for one in rounds]
    cpu = {
        key: round(sum(one["cpu"][key] for one in rounds), 2)
        for key in ("wall_s", "client_cpu_s", "server_cpu_s", "postgres_cpu_s", "other_cpu_s")
    }
    cpus = os.cpu_count() or 1
    cpu["other_cpu_share"] = round(cpu["other_cpu_s"] / (cpu["wall_s"] * cpus), 3)
    return {
        "groups": groups,
        "runs": runs,
        "loop_s": round(sum(one["loop_s"] for one in rounds), 3),
        "runs_per_s": round(runs / sum(one["loop_s"] for one in rounds), 3),
        "runs_per_s_rounds": [round(x, 3) for x in per_round],
        "log_metric_points_per_s": round(points / groups["log_metric"]["total_s"], 1),
        "log_batch_points_per_s": round(points / groups["log_batch"]["total_s"], 1),
        "http": {
            group: {
                route: group_stats([x for one in rounds for x in one["http"].get(group, {}).get(route, [])])
                for route in sorted({r for one in rounds for r in one["http"].get(group, {})})
            }
            for group in [key for key, _ in GROUPS] + ["other"]
        },
        "checks_ok": all(
            one["found"] == side["expected"] and one["history_lengths_ok"] and one["artifacts_ok"]
            for one in rounds
        ),
        "cpu": cpu,
    }


def cell(stats: dict[str, Any]) -> str:
    if not stats.get("calls"):
        return "-"
    calls = f"{stats['calls']:,} call{'s' if stats['calls'] > 1 else ''}"
    return f"{fmt_s(stats['total_s'])} ({calls}, p50 {fmt_ms(stats['p50_ms'])})"


def build_table(res: dict[str, Any], args: argparse.Namespace) -> str:
    lm, mf = (res.get("loopml") or {}).get("summary"), (res.get("mlflow") or {}).get("summary")
    rows: list[list[str]] = []
    for key, label in GROUPS:
        one = lm["groups"][key] if lm else {}
        other = mf["groups"][key] if mf else {}
        both = one.get("calls") and other.get("calls")
        rows.append([label, cell(one), cell(other), ratio(one["total_s"], other["total_s"]) if both else "-"])
    runs = args.runs * args.rounds
    points = runs * args.keys * args.steps

    def rate(side: dict[str, Any] | None, name: str, unit: str) -> str:
        if not side:
            return "-"
        value = side[name]
        return f"{value:,.3g} {unit}" if value < 1000 else f"{value:,.0f} {unit}"

    def speed(name: str) -> str:
        return f"{mf[name] / lm[name]:.2f}x" if lm and mf else "-"

    rows += [
        [f"the per-run part, {runs} runs (runs/s)", rate(lm, "runs_per_s", "runs/s"),
         rate(mf, "runs_per_s", "runs/s"), speed("runs_per_s")],
        [f"`log_metric`, {points:,} points (points/s)", rate(lm, "log_metric_points_per_s", "points/s"),
         rate(mf, "log_metric_points_per_s", "points/s"), speed("log_metric_points_per_s")],
        [f"`log_batch`, {points:,} points (points/s)", rate(lm, "log_batch_points_per_s", "points/s"),
         rate(mf, "log_batch_points_per_s", "points/s"), speed("log_batch_points_per_s")],
    ]  # fmt: skip
    checks = [f"{'ok' if side['checks_ok'] else '**FAILED**'}" if side else "-" for side in (lm, mf)]
    rows.append(["checks (search results as computed, every history and artifact read back)", *checks, "-"])

    def cpu(side: dict[str, Any] | None) -> str:
        if not side:
            return "-"
        used = side["cpu"]
        database = f", PostgreSQL {used['postgres_cpu_s']} s" if args.db == "postgres" else ""
        return (f"client {used['client_cpu_s']} s, server {used['server_cpu_s']} s{database}; others' share "
                f"{used['other_cpu_share']}")  # fmt: skip

    rows.append(["CPU over the measured rounds; share of the machine other processes used", cpu(lm), cpu(mf),
                 "-"])  # fmt: skip
    head = ["operation (the MLflow client)", "LoopML team server", "MLflow server", "LoopML / MLflow time"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def build_http_table(res: dict[str, Any]) -> str:
    """Each HTTP request the client made, by operation group and route: count and p50 as the client saw it."""
    sides = [(res.get(name) or {}).get("summary") for name in ("loopml", "mlflow")]
    labels = dict(GROUPS) | {
        "other": "other (`set_experiment`, the runs' reads inside `download_artifacts`...)"
    }
    rows = []
    for group, label in labels.items():
        routes = sorted({route for side in sides if side for route in side["http"].get(group, {})})
        for route in routes:
            cells = []
            for side in sides:
                one = side["http"].get(group, {}).get(route, {}) if side else {}
                cells.append(f"{one['calls']:,} x, p50 {fmt_ms(one['p50_ms'])}" if one.get("calls") else "-")
            rows.append([label, f"`{route}`", *cells])
    head = ["operation", "HTTP request", "LoopML team server", "MLflow server"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def print_timers(path: Path, how: str) -> dict[str, Any]:
    """LoopML's server time per route and part (--profile), as a markdown table; the statistics."""
    timers = {name: group_stats(values) for name, values in json.loads(path.read_text()).items()}
    under = ", under cProfile: inflated" if how == "cprofile" else ""
    print(f"\n## LoopML's server time per request, by route and part (timers{under})\n")
    print("| route or part | calls | total | p50 |\n| --- | --- | --- | --- |")
    for name, one in sorted(timers.items(), key=lambda item: -item[1]["total_s"]):
        print(f"| `{name}` | {one['calls']:,} | {fmt_s(one['total_s'])} | {fmt_ms(one['p50_ms'])} |")
    return timers


def print_profile(path: Path, top: int) -> None:
    import io
    import pstats

    for sort in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(str(path), stream=buf).strip_dirs().sort_stats(sort).print_stats(top)
        print(f"\n## cProfile of LoopML's server ({path.relative_to(REPO)}), sorted by {sort}\n")
        print(buf.getvalue())


# -- main -------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="runs a round logs (5)")
    ap.add_argument("--rounds", type=int, default=2, help="measured rounds a side, alternating (2)")
    ap.add_argument("--keys", type=int, default=10, help="metric keys per run (10)")
    ap.add_argument("--steps", type=int, default=100, help="steps per metric (100)")
    ap.add_argument("--repeats", type=int, default=20, help="timed searches (20)")
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--mlflow-workers", type=int, default=4, help="mlflow server --workers (4, its default)")
    ap.add_argument("--mlflow-python", help="the MLflow venv's python (.venv-peers, else .venv-mlflow)")
    ap.add_argument("--no-mlflow", action="store_true", help="LoopML side only")
    ap.add_argument(
        "--profile",
        choices=("timers", "cprofile"),
        help="LoopML's server with timers per route and part (cprofile: also cProfile of every thread)",
    )
    ap.add_argument("--profile-top", type=int, default=35)
    ap.add_argument(
        "--no-save", action="store_true", help="do not append to bench/results/mlflow_compat.json"
    )
    return ap.parse_args()


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--launch-loopml":
        launch_loopml(json.loads(sys.argv[2]))
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--workload":
        try:
            result = workload(json.loads(sys.argv[2]))
        except Exception:  # the result says what failed, with the traceback
            import traceback

            result = {"error": f"workload failed: {traceback.format_exc()[-2000:]}"}
        sys.stdout.write(json.dumps(result) + "\n")
        return
    args = parse_args()
    sys.path.insert(0, str(BENCH))
    from datetime import UTC, datetime

    import server as server_bench
    from harness import append_result, run_config
    from peers.common import machine_info, versions
    from source_state import source_state

    python = mlflow_python(args)
    if python is None or not python.exists():
        raise SystemExit("no MLflow venv: bash bench/setup_peers.sh (or make .venv-mlflow/.installed)")
    started = datetime.now(UTC).isoformat(timespec="seconds")
    wall0 = now()
    before = source_state()
    work = Path(tempfile.mkdtemp(prefix="loopml-bench-mlflow-compat-"))
    db: Any = server_bench.Postgres() if args.db == "postgres" else NoDatabaseServer()
    res: dict[str, Any] = {"expected": expected_search(args.runs, args.keys, args.steps)}
    try:
        if args.db == "postgres":
            db.start()
        names = ["loopml"] if args.no_mlflow else ["loopml", "mlflow"]
        measured = measure([Side(name, work, args, db) for name in names], args)
        for name, side in measured.items():
            if side["rounds"]:
                side["expected"] = res["expected"]
                side["summary"] = summarize(side)
                side.pop("expected")
                for one in side["rounds"]:  # the record keeps each round's statistics, not every call's time
                    one["groups"] = {key: group_stats(values) for key, values in one["groups"].items()}
                    del one["http"]  # in the summary, over every round
            res[name] = side
    finally:
        if args.db == "postgres":
            db.stop()
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    table = build_table(res, args)
    print(table)
    http_table = build_http_table(res)
    print(f"\n## The HTTP requests behind each operation, as the client saw them\n\n{http_table}")
    if args.profile:
        res["loopml_server_timers"] = print_timers(timers_path(args), args.profile)
        if args.profile == "cprofile":
            print_profile(profile_path(args), args.profile_top)
    after = source_state()
    record = {
        "bench": "mlflow_compat",
        "started": started,
        "wall_s": round(now() - wall0, 1),
        "machine": machine_info(),
        "versions": {
            **versions("loopml", "fastapi", "uvicorn", "sqlalchemy"),
            "database": db.version,
            "mlflow": next(
                (
                    one.get("mlflow")
                    for side in ("mlflow", "loopml")
                    for one in res.get(side, {}).get("rounds", [])
                ),
                None,
            ),
        },
        "source": before,
        "source_unchanged_during_run": before["src_tree_blake3"] == after["src_tree_blake3"],
        "config": run_config(args),
        "results": res,
        "table": table,
        "http_table": http_table,
    }
    print(f"\nwall {record['wall_s']} s", file=sys.stderr)
    if not args.no_save:
        append_result("mlflow_compat", record)


if __name__ == "__main__":
    main()
