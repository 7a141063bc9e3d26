"""LoopML's model server (`loopml serve`) vs `mlflow models serve`, side by side in one run, same models and load.

    bash bench/setup_peers.sh                     # once: .venv-peers with the pinned MLflow (~1 min)
    .venv/bin/python bench/serving.py             # full run with the 60 s soak (~5 min)
    .venv/bin/python bench/serving.py --quick     # smoke run (~1 min): fewer requests, 3 s load, 12 s soak
    .venv/bin/python bench/serving.py --no-soak   # without the load/robustness part
    .venv/bin/python bench/serving.py --no-mlflow # LoopML side only
    .venv/bin/python bench/serving.py --profile lr   # where LoopML's server spends a request (timers per
        # part and cProfile of every thread, bench/serving_launcher.py); also rf. Writes
        # bench/results/profile-serving-<model>.prof

Models (each side trains its own, same seeds; both venvs hold scikit-learn 1.9.1 and numpy 2.4.6, and the
predictions of both servers are compared on 5 rows and on the 1,000-row batch):
  lr   the issue's model: StandardScaler + LogisticRegression (one Pipeline) on sklearn's breast_cancer
       (569 x 30), as shared/bench/peers/common.py trains it
  rf   RandomForestClassifier(n_estimators=100, random_state=0) on make_classification(n_samples=2000,
       n_features=20, n_informative=10, random_state=0), columns f0..f19 (the registry bench's forest)
LoopML: a fresh temp project, `loopml.models.register(name, model, sample=X)` (onnx=True, the default: the
verified ONNX copy is what serving runs), alias `champion`, then `loopml serve NAME@champion --host 127.0.0.1
--port P` (the real CLI, default options) as a subprocess with the project as working directory.
MLflow: `mlflow.sklearn.save_model` in .venv-peers (a subprocess; MLflow is never imported here), then
`.venv-peers/bin/mlflow models serve -m DIR --env-manager local -w 1 -p P --host 127.0.0.1`.
One server runs at a time. The load generator is bench/peers/loadgen.py (copied from shared/bench/peers:
aiohttp + uvloop, closed loop, loopback only), in this process, for both servers:
  seq       N single-row requests one after another on one keep-alive connection: p50/p99. /invocations
            (dataframe_split) on both; on LoopML also OIP `/v2/models/{m}/infer` (one [1, C] FP64 tensor) and
            `/predict/{m}` (one JSON record), which also answer the probabilities
  conc      32 connections, each sending back-to-back single-row /invocations requests for D s: req/s, p50/p99
  batch     B sequential 1,000-row /invocations requests (X sampled with replacement, seed 0): p50, rows/s
  raw       the physical limit, in this process: native predict (1 row, 1,000 rows; DataFrame in) and the ONNX
            copy (onnxruntime `InferenceSession.run` on a float64 array; and LoopML's `OnnxModel.predict` on a
            DataFrame, which builds the tensors as serving does)
Soak (LoopML only, part of the default run): `loopml serve lr@champion` with default limits (4 running, 256
waiting: above the 64 connections), 64 connections for 60 s on /invocations; every status and every
X-Model-Version counted. At 30 % of it `loopml models alias lr@champion 2` runs in another process (the
server polls aliases every 2 s), at 60 % `loopml models promote lr 1 --force` (back to v1): both must exit 0
without "database is locked", with zero failed requests, and the answers must switch version. Then 400
connections for 3 s, beyond capacity: only 200 and 503 (with Retry-After) expected.
Noise: for every measurement, the share of the machine's CPU used by processes other than this one (the
client) and the server's process group (read from /proc), as peers/noise.py computes it; also the server's
CPU per request. Prints markdown tables and appends one JSON line to bench/results/serving.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/peers, also when imported
import numpy as np
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import loopml
import loopml.models
from harness import (
    PEERS_PYTHON,
    REPO,
    RESULTS,
    append_result,
    fmt_met,
    fmt_ms,
    fmt_ratio,
    last_json_line,
    mlflow_env,
    print_profile,
    run_config,
    run_script,
)
from harness import markdown_table as markdown
from loopml.tracking.tracker import use_tracker
from peers import loadgen
from peers.common import machine_info, summarize_ms, train_breast_cancer_lr, versions
from peers.noise import machine_busy_s
from source_state import source_state

LOOPML_BIN = REPO / ".venv" / "bin" / "loopml"
PEERS_BIN = PEERS_PYTHON.parent
RF_DATA = {"n_samples": 2000, "n_features": 20, "n_informative": 10, "random_state": 0}
FOREST = {"n_estimators": 100, "random_state": 0}
BATCH_ROWS = 1000
CHECK_ROWS = 5
MODELS = ("lr", "rf")
RAW_1ROW_REPEATS = 2000
RAW_BATCH_REPEATS = 100
THROUGHPUT_TARGET = {"lr": 5.0, "rf": 20.0}  # x MLflow at 32 connections (rf: with the ONNX copy)
BATCH_TARGET = 2.0
SINGLE_ROW_MARGIN_MS = 1.0

now = time.perf_counter

# -- the peer side: save the same models with MLflow (in .venv-peers) ---------------------------------------

MLFLOW_SCRIPT = """
import hashlib
import json
import os
import sys
import time
import warnings

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
cfg = json.loads(sys.argv[1])
sys.path.insert(0, cfg["peers_dir"])
warnings.simplefilter("ignore")
import numpy as np
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from common import summarize_ms, train_breast_cancer_lr, versions

lr, X_lr, _ = train_breast_cancer_lr()
X_rf, y_rf = make_classification(**cfg["rf_data"])
X_rf = pd.DataFrame(X_rf, columns=[f"f{i}" for i in range(X_rf.shape[1])])
rf = RandomForestClassifier(**cfg["forest"]).fit(X_rf, y_rf)

import mlflow
import mlflow.sklearn
from mlflow.models import infer_signature

res = {"versions": versions("mlflow", "scikit-learn", "numpy", "pandas", "skops", "uvicorn", "fastapi")}
for name, model, X in (("lr", lr, X_lr), ("rf", rf, X_rf)):
    t = time.perf_counter()
    mlflow.sklearn.save_model(
        model,
        os.path.join(cfg["workdir"], name),
        signature=infer_signature(X, model.predict(X)),
        skops_trusted_types=["sklearn.tree._tree.Tree"] if name == "rf" else None,
    )
    batch = X.sample(n=cfg["batch_rows"], replace=True, random_state=0)
    row = X.iloc[:1]

    def lat(fn, n):
        for _ in range(min(50, n)):
            fn()
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return summarize_ms(out)

    res[name] = {
        "save_model_s": round(time.perf_counter() - t, 3),
        "check": model.predict(X.iloc[: cfg["check_rows"]]).tolist(),
        "batch_digest": hashlib.sha256(np.asarray(model.predict(batch)).tobytes()).hexdigest()[:16],
        "raw_1row": lat(lambda: model.predict(row), cfg["raw_1row"]),
        "raw_batch": lat(lambda: model.predict(batch), cfg["raw_batch"]),
    }
print(json.dumps(res))
"""


def mlflow_models(workdir: Path, raw_1row: int, raw_batch: int) -> dict[str, Any]:
    """Train and save both models with MLflow in .venv-peers; their check predictions and raw predict times."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "save_mlflow.py"
    script.write_text(MLFLOW_SCRIPT)
    cfg = {
        "workdir": str(workdir),
        "peers_dir": str(Path(__file__).resolve().parent / "peers"),
        "rf_data": RF_DATA,
        "forest": FOREST,
        "batch_rows": BATCH_ROWS,
        "check_rows": CHECK_ROWS,
        "raw_1row": raw_1row,
        "raw_batch": raw_batch,
    }
    proc, wall = run_script([str(PEERS_PYTHON), str(script), json.dumps(cfg)], env=mlflow_env())
    if proc.returncode != 0:
        return {"error": f"save_mlflow.py exited {proc.returncode}: {proc.stderr[-2000:]}"}
    return {**last_json_line(proc.stdout), "wall_s": round(wall, 1)}


# -- models and bodies ---------------------------------------------------------------------------------------


def workload() -> dict[str, tuple[Any, pd.DataFrame]]:
    """The two models, trained here with the same seeds as on the MLflow side, with their training rows."""
    lr, X_lr, _ = train_breast_cancer_lr()
    X, y = make_classification(**RF_DATA)
    X_rf = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    rf = RandomForestClassifier(**FOREST).fit(X_rf, y)
    return {"lr": (lr, X_lr), "rf": (rf, X_rf)}


def lr_v2() -> tuple[Any, pd.DataFrame]:
    """A second, different version of the issue's model for the soak's swap (C=0.5)."""
    _, X, y = train_breast_cancer_lr()
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=1000, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    return model, X


def split_body(frame: pd.DataFrame) -> bytes:
    return json.dumps(
        {"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}}
    ).encode()


def oip_body(frame: pd.DataFrame) -> bytes:
    tensor = {
        "name": "input",
        "shape": list(frame.shape),
        "datatype": "FP64",
        "data": frame.values.ravel().tolist(),
    }
    return json.dumps({"inputs": [tensor]}).encode()


def records_body(frame: pd.DataFrame) -> bytes:
    return json.dumps(frame.to_dict(orient="records")).encode()


def batch_of(X: pd.DataFrame) -> pd.DataFrame:
    return X.sample(n=BATCH_ROWS, replace=True, random_state=0)


def digest(values: Any) -> str:
    return hashlib.sha256(np.asarray(values).tobytes()).hexdigest()[:16]


# -- the physical limit: raw in-process predict ------------------------------------------------------------


def latency(fn: Callable[[], Any], n: int) -> dict[str, Any]:
    for _ in range(min(50, n)):
        fn()
    samples = []
    for _ in range(n):
        start = now()
        fn()
        samples.append(now() - start)
    return summarize_ms(samples)


def raw_predict(model: Any, onnx: Any, X: pd.DataFrame, scale: float) -> dict[str, Any]:
    """Native predict and the ONNX copy's, on 1 row and on 1,000 rows, in this process."""
    row, batch = X.iloc[:1], batch_of(X)
    n1, nb = max(50, int(RAW_1ROW_REPEATS * scale)), max(10, int(RAW_BATCH_REPEATS * scale))
    out: dict[str, Any] = {
        "native_1row": latency(lambda: model.predict(row), n1),
        "native_batch": latency(lambda: model.predict(batch), nb),
    }
    if onnx is not None:
        session = onnx.session
        (name, onnx_type, _), *rest = onnx._inputs
        if rest or onnx_type != "tensor(double)":
            out["onnx_note"] = f"inputs {onnx.input_names}: only LoopML's OnnxModel.predict measured"
        else:
            row_np, batch_np = row.to_numpy(np.float64), batch.to_numpy(np.float64)
            out["onnx_1row"] = latency(lambda: session.run(None, {name: row_np}), n1)
            out["onnx_batch"] = latency(lambda: session.run(None, {name: batch_np}), nb)
            out["onnx_predicts_as_native"] = bool(
                (np.asarray(session.run(None, {name: batch_np})[0]).ravel() == model.predict(batch)).all()
            )
        out["onnx_model_1row"] = latency(lambda: onnx.predict(row), n1)
        out["onnx_model_batch"] = latency(lambda: onnx.predict(batch), nb)
    return out


# -- servers -------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _proc_stat(pid: str) -> tuple[int, float] | None:
    """(process group, CPU seconds incl. waited-for children) of one /proc entry, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return int(fields[2]), ticks / os.sysconf("SC_CLK_TCK")


class Server:
    """A server process started here in its own session (so its group is exactly what it started)."""

    def __init__(self, label: str, cmd: list[str], *, cwd: Path, env: dict[str, str], port: int, log: Path):
        self.label, self.cmd, self.cwd, self.env, self.port, self.log_path = label, cmd, cwd, env, port, log
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120.0) -> float:
        """Start it and wait for GET /ping; the seconds until it answered."""
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        start = now()
        while now() - start < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(self.base + "/ping", timeout=1) as r:
                if r.status == 200:
                    return now() - start
            time.sleep(0.1)
        raise TimeoutError(f"{self.label} did not answer /ping in {timeout_s:g} s: {self.log_tail()}")

    def cpu_s(self) -> float:
        """CPU seconds used so far by the processes of the server's group."""
        if self.proc is None:
            return 0.0
        total = 0.0
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                stat = _proc_stat(entry)
                if stat is not None and stat[0] == self.proc.pid:
                    total += stat[1]
        return total

    def signal(self, signum: int) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signum)

    def stop(self) -> dict[str, Any]:
        """SIGTERM to the server's process group (what it started), SIGKILL after 10 s."""
        if self.proc is None:
            return {}
        killed = False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            killed = True
            self.proc.wait(timeout=5)
        deadline = time.time() + 5
        while time.time() < deadline and self.cpu_s() > 0:  # grandchildren (mlflow's uvicorn) still exiting
            time.sleep(0.1)
        left = self.cpu_s() > 0
        if left:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        return {"returncode": self.proc.returncode, "sigkilled": killed or left}

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_bytes()[-2000:].decode(errors="replace")
        return ""


@contextlib.contextmanager
def running(server: Server) -> Iterator[float]:
    ready = server.start()
    try:
        yield ready
    finally:
        server.stop()


def loopml_server(project: Path, ref: str, port: int, log: Path, *extra: str) -> Server:
    cmd = [str(LOOPML_BIN), "serve", ref, "--host", "127.0.0.1", "--port", str(port), *extra]
    return Server(f"loopml serve {ref}", cmd, cwd=project, env=dict(os.environ), port=port, log=log)


def mlflow_server(model_dir: Path, port: int, log: Path) -> Server:
    cmd = [str(PEERS_BIN / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager", "local"]
    cmd += ["-w", "1", "-p", str(port), "--host", "127.0.0.1"]
    # `mlflow models serve` execs uvicorn through bash, found on PATH: the peers' bin first.
    env = mlflow_env(PATH=f"{PEERS_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env["MLFLOW_TRACKING_URI"] = f"file://{model_dir.parent}/mlruns"
    return Server(
        f"mlflow models serve {model_dir.name}", cmd, cwd=model_dir.parent, env=env, port=port, log=log
    )


# -- measurements --------------------------------------------------------------------------------------------


def _own_cpu_s() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def windowed(server: Server, job: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`job()` with the noise of its window: CPU of everyone but this process and the server's group."""
    cpus = os.cpu_count() or 1
    busy0, own0, srv0, wall0 = machine_busy_s(), _own_cpu_s(), server.cpu_s(), now()
    result = job()
    wall = now() - wall0
    busy, own, srv = machine_busy_s() - busy0, _own_cpu_s() - own0, server.cpu_s() - srv0
    other = max(0.0, busy - own - srv)
    requests = result.get("requests") or 0
    result["noise"] = {
        "wall_s": round(wall, 2),
        "client_cpu_s": round(own, 2),
        "server_cpu_s": round(srv, 2),
        "other_cpu_s": round(other, 2),
        "other_cpu_share": round(other / (wall * cpus), 3) if wall > 0 else None,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    if requests:
        result["server_cpu_ms_per_request"] = round(srv / requests * 1000, 3)
    return result


def post(url: str, body: bytes) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return r.status, dict(r.headers), json.loads(r.read())


def seq(server: Server, path: str, body: bytes, n: int, warm: int) -> dict[str, Any]:
    url = server.base + path
    loadgen.run_seq(url, body, warm)

    def job() -> dict[str, Any]:
        result = loadgen.run_seq(url, body, n)
        result.pop("_first_response", None)
        return result

    return windowed(server, job)


def conc(server: Server, body: bytes, connections: int, duration_s: float) -> dict[str, Any]:
    url = server.base + "/invocations"
    loadgen.run_conc(url, body, connections, min(1.0, duration_s))  # warm-up
    return windowed(server, lambda: loadgen.run_conc(url, body, connections, duration_s))


def batch(server: Server, body: bytes, n: int) -> dict[str, Any]:
    url = server.base + "/invocations"
    loadgen.run_seq(url, body, 3)

    def job() -> dict[str, Any]:
        result = loadgen.run_seq(url, body, n)
        first = result.pop("_first_response", None)
        result["rows_per_request"] = BATCH_ROWS
        result["rows_per_s"] = round(result["req_per_s"] * BATCH_ROWS, 1)
        result["predictions_digest"] = digest(json.loads(first)["predictions"]) if first else None
        return result

    return windowed(server, job)


def measure_server(
    server: Server, name: str, bodies: dict[str, bytes], args: argparse.Namespace, *, loopml_side: bool
) -> dict[str, Any]:
    """Every HTTP measurement of one server (it must be running)."""
    n, warm = args.seq, max(20, args.seq // 20)
    status, headers, answer = post(server.base + "/invocations", bodies["check"])
    out: dict[str, Any] = {
        "check": answer.get("predictions"),
        "check_status": status,
        "model_version_header": headers.get("x-model-version"),
    }
    print(f"  {server.label}: seq /invocations", file=sys.stderr, flush=True)
    out["seq_invocations"] = seq(server, "/invocations", bodies["row_split"], n, warm)
    if loopml_side:
        print(f"  {server.label}: seq OIP, /predict", file=sys.stderr, flush=True)
        out["seq_oip"] = seq(server, f"/v2/models/{name}/infer", bodies["row_oip"], n, warm)
        out["seq_predict"] = seq(server, f"/predict/{name}", bodies["row_records"], n, warm)
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(server.base + f"/v2/models/{name}", timeout=5) as r,
        ):
            out["runtime"] = json.loads(r.read()).get("platform")
    print(
        f"  {server.label}: {args.connections} connections x {args.duration:g} s", file=sys.stderr, flush=True
    )
    out["conc"] = conc(server, bodies["row_split"], args.connections, args.duration)
    print(f"  {server.label}: {BATCH_ROWS}-row requests", file=sys.stderr, flush=True)
    out["batch"] = batch(server, bodies["batch_split"], args.batch_requests)
    if loopml_side and batching_supported() and not args.no_batching:
        out["conc_batching"] = conc_batching(server, name, bodies["row_split"], args)
    return out


def batching_supported() -> bool:
    """True when `loopml serve` has `--batch` (opt-in micro-batching) at the measured commit."""
    import dataclasses

    from loopml.serving.server import ServeOptions

    return "batching" in {f.name for f in dataclasses.fields(ServeOptions)}


def conc_batching(default: Server, name: str, body: bytes, args: argparse.Namespace) -> dict[str, Any]:
    """The concurrent test again on a second server with micro-batching on (`--batch NAME:32:2`)."""
    policy = f"{name}:{args.connections}:2"
    port = free_port()
    server = loopml_server(
        default.cwd, f"{name}@champion", port, default.log_path.with_suffix(".batch.log"), "--batch", policy
    )
    print(f"  {server.label} --batch {policy}: {args.connections} connections", file=sys.stderr, flush=True)
    default.stop()  # one server at a time; the caller's `running` stops it again, harmlessly
    with running(server):
        return {"batch_policy": policy, **conc(server, body, args.connections, args.duration)}


# -- soak: 64 connections for 60 s, an alias swap and a promote from other processes --------------------------


async def _soak(
    url: str,
    body: bytes,
    connections: int,
    duration_s: float,
    events: list[tuple[float, str, list[str]]],
    cwd: Path,
) -> dict[str, Any]:
    import aiohttp

    statuses: Counter[str] = Counter()
    versions_seen: list[tuple[float, str]] = []  # (completion time, X-Model-Version) of each 200
    latencies: list[float] = []
    retry_after: Counter[str] = Counter()
    outcomes: list[dict[str, Any]] = []
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0 = time.perf_counter()
        deadline = t0 + duration_s

        async def worker() -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=loadgen.HEADERS) as r:
                        await r.read()
                        statuses[str(r.status)] += 1
                        if r.status == 200:
                            versions_seen.append(
                                (time.perf_counter() - t0, r.headers.get("x-model-version", "?"))
                            )
                        elif r.status == 503:
                            retry_after[r.headers.get("retry-after", "none")] += 1
                except Exception as error:
                    statuses[type(error).__name__] += 1
                latencies.append(time.perf_counter() - start)

        async def event(at_s: float, label: str, cmd: list[str]) -> None:
            await asyncio.sleep(max(0.0, t0 + at_s - time.perf_counter()))
            start = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            stdout, stderr = await proc.communicate()
            text = (stdout + stderr).decode(errors="replace")
            outcomes.append(
                {
                    "event": label,
                    "cmd": " ".join(Path(cmd[0]).name if i == 0 else c for i, c in enumerate(cmd)),
                    "started_s": round(start - t0, 2),
                    "done_s": round(time.perf_counter() - t0, 2),
                    "wall_s": round(time.perf_counter() - start, 2),
                    "returncode": proc.returncode,
                    "database_locked": "database is locked" in text.lower(),
                    "output_tail": text[-400:],
                }
            )

        await asyncio.gather(*(worker() for _ in range(connections)), *(event(*e) for e in events))
        elapsed = time.perf_counter() - t0
    requests = sum(statuses.values())
    switches = _switches(versions_seen)
    for outcome in outcomes:
        after = [s for s in switches if s["first_new_s"] >= outcome["started_s"]]
        outcome["first_switch_after_s"] = (
            round(after[0]["first_new_s"] - outcome["done_s"], 2) if after else None
        )
    return {
        "connections": connections,
        "duration_s": duration_s,
        "seconds": round(elapsed, 2),
        "requests": requests,
        "req_per_s": round(requests / elapsed, 1),
        "statuses": dict(statuses),
        "failed": requests - statuses.get("200", 0),
        "retry_after": dict(retry_after),
        "versions": dict(Counter(v for _, v in versions_seen)),
        "switches": switches,
        "events": sorted(outcomes, key=lambda o: o["started_s"]),
        **summarize_ms(latencies),
    }


def _switches(seen: list[tuple[float, str]], bucket_s: float = 0.25) -> list[dict[str, Any]]:
    """The version changes the clients saw: the majority version per `bucket_s` of completion time, collapsed.

    Requests queued before a switch hold the version they were admitted with, so old answers trail the first
    new one for a moment: each switch says when the new version first answered, when the old one last did
    (before the next switch) and how many old answers came after the first new one.
    """
    ordered = sorted(seen)
    if not ordered:
        return []
    buckets: dict[int, Counter[str]] = {}
    for at, version in ordered:
        buckets.setdefault(int(at / bucket_s), Counter())[version] += 1
    runs: list[tuple[str, int]] = []  # (version, first bucket)
    for key in sorted(buckets):
        majority = buckets[key].most_common(1)[0][0]
        if not runs or runs[-1][0] != majority:
            runs.append((majority, key))
    # The first new answer is in the first bucket the new version holds, or in the one before it.
    firsts = [
        next(at for at, v in ordered if at >= (key - 1) * bucket_s and v == version)
        for version, key in runs[1:]
    ]
    switches: list[dict[str, Any]] = []
    for i, ((old, _), (new, _)) in enumerate(itertools.pairwise(runs)):
        until = firsts[i + 1] if i + 1 < len(firsts) else float("inf")
        later_old = [at for at, v in ordered if firsts[i] <= at < until and v == old]
        switches.append(
            {
                "from": old,
                "to": new,
                "first_new_s": round(firsts[i], 3),
                "last_old_s": round(later_old[-1], 3) if later_old else None,
                "old_answers_after_first_new": len(later_old),
            }
        )
    return switches


def soak(project: Path, X: pd.DataFrame, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """64 connections within capacity with an alias swap and a promote from other processes; then overload."""
    port = free_port()
    server = loopml_server(project, "lr@champion", port, logs / "soak.log")
    body = split_body(X.iloc[:1])
    d = args.soak_s
    events = [
        (
            0.3 * d,
            "alias swap v1 -> v2",
            [str(LOOPML_BIN), "models", "alias", "lr@champion", "2", "-m", "bench swap"],
        ),
        (
            0.6 * d,
            "promote v1 back (forced, audited)",
            [str(LOOPML_BIN), "models", "promote", "lr", "1", "--force", "-m", "bench promote under load"],
        ),
    ]
    out: dict[str, Any] = {"options": "defaults: --max-concurrency 4 --max-queue 256 --poll-s 2"}
    with running(server) as ready:
        out["ready_s"] = round(ready, 2)
        loadgen.run_conc(server.base + "/invocations", body, args.soak_connections, 1.0)
        print(f"  soak: {args.soak_connections} connections x {d:g} s", file=sys.stderr, flush=True)
        out["within"] = windowed(
            server,
            lambda: loadgen._run(
                _soak(server.base + "/invocations", body, args.soak_connections, d, events, project)
            ),
        )
        print(f"  overload: {args.overload_connections} connections x 3 s", file=sys.stderr, flush=True)
        out["beyond"] = windowed(
            server,
            lambda: loadgen._run(
                _soak(server.base + "/invocations", body, args.overload_connections, 3.0, [], project)
            ),
        )
        out["server_log_locked"] = "database is locked" in server.log_tail().lower()
        out["server_log_tail"] = server.log_tail()[-600:]
    history = subprocess.run(
        [str(LOOPML_BIN), "models", "history", "lr"], cwd=project, capture_output=True, text=True, check=False
    )
    out["alias_history"] = history.stdout[-1500:]
    return out


# -- the run -------------------------------------------------------------------------------------------------


def register_all(project: Path, models: dict[str, tuple[Any, pd.DataFrame]], soak_v2: bool) -> dict[str, Any]:
    """Register both models (and the soak's second lr version) in a fresh project; alias champion."""
    tracker = loopml.configure(project_dir=project)
    out: dict[str, Any] = {}
    try:
        for name, (model, X) in models.items():
            start = now()
            registered = loopml.models.register(name, model, sample=X)
            loopml.models.set_alias(name, "champion", registered.version.version)
            onnx = loopml.models.manifest(f"{name}@champion").get("onnx") or {}
            out[name] = {
                "register_s": round(now() - start, 3),
                "version": registered.version.version,
                "onnx_kept": onnx.get("kept"),
                "onnx_reason": onnx.get("reason"),
            }
            served = loopml.models.load(f"{name}@champion", serving=True)
            out[name]["serving_model"] = served if type(served).__module__.startswith("loopml") else None
        if soak_v2:
            model, X = lr_v2()
            out["lr_v2"] = loopml.models.register("lr", model, sample=X).version.version
    finally:
        tracker.close()
        use_tracker(None)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    logs = work / "logs"
    logs.mkdir()
    project = work / "loopml"
    project.mkdir()
    scale = 0.2 if args.quick else 1.0
    try:
        print("training and registering the models (LoopML) ...", file=sys.stderr, flush=True)
        models = workload()
        registered = register_all(project, models, soak_v2=not args.no_soak)
        ml_saved: dict[str, Any] | None = None
        if not args.no_mlflow and PEERS_PYTHON.exists():
            print("training and saving the models (MLflow, .venv-peers) ...", file=sys.stderr, flush=True)
            ml_saved = mlflow_models(
                work / "mlflow", int(RAW_1ROW_REPEATS * scale), int(RAW_BATCH_REPEATS * scale)
            )
        elif not args.no_mlflow:
            print(f"{PEERS_PYTHON} is missing (bash bench/setup_peers.sh): MLflow skipped", file=sys.stderr)
        results: dict[str, Any] = {"registered": {}, "models": {}}
        for name, (model, X) in models.items():
            reg = dict(registered[name])
            onnx = reg.pop("serving_model")
            results["registered"][name] = reg
            print(f"{name}: raw in-process predict ...", file=sys.stderr, flush=True)
            entry: dict[str, Any] = {"raw": raw_predict(model, onnx, X, scale)}
            check = X.iloc[:CHECK_ROWS]
            bodies = {
                "check": split_body(check),
                "row_split": split_body(X.iloc[:1]),
                "row_oip": oip_body(X.iloc[:1]),
                "row_records": records_body(X.iloc[:1]),
                "batch_split": split_body(batch_of(X)),
            }
            entry["native_check"] = model.predict(check).tolist()
            entry["native_batch_digest"] = digest(model.predict(batch_of(X)))
            entry["body_bytes"] = {k: len(v) for k, v in bodies.items()}
            port = free_port()
            server = loopml_server(project, f"{name}@champion", port, logs / f"loopml-{name}.log")
            print(f"{name}: LoopML server ...", file=sys.stderr, flush=True)
            with running(server) as ready:
                entry["loopml"] = {
                    "ready_s": round(ready, 2),
                    **measure_server(server, name, bodies, args, loopml_side=True),
                }
            if ml_saved is not None and "error" not in ml_saved:
                entry["mlflow_inproc"] = ml_saved[name]
                server = mlflow_server(work / "mlflow" / name, free_port(), logs / f"mlflow-{name}.log")
                print(f"{name}: MLflow server ...", file=sys.stderr, flush=True)
                try:
                    with running(server) as ready:
                        entry["mlflow"] = {
                            "ready_s": round(ready, 2),
                            **measure_server(server, name, bodies, args, loopml_side=False),
                        }
                except (RuntimeError, TimeoutError) as error:
                    entry["mlflow"] = {"error": str(error)}
            results["models"][name] = entry
        if ml_saved is not None:
            results["mlflow_versions"] = ml_saved.get("versions")
            if "error" in ml_saved:
                results["mlflow_error"] = ml_saved["error"]
        if not args.no_soak:
            print("soak (LoopML) ...", file=sys.stderr, flush=True)
            results["soak"] = soak(project, models["lr"][1], args, logs)
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- report --------------------------------------------------------------------------------------------------


def _p(result: dict[str, Any]) -> str:
    return f"p50 {fmt_ms(result['p50_ms'])}, p99 {fmt_ms(result['p99_ms'])}"


def _noise(result: dict[str, Any]) -> float:
    return float(result["noise"]["other_cpu_share"])


def build_tables(results: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    rows: list[list[str]] = []
    verdicts: dict[str, Any] = {}
    noises: list[float] = []
    for name, entry in results["models"].items():
        raw, lo, ml = entry["raw"], entry["loopml"], entry.get("mlflow")
        if ml is not None and "error" in ml:
            ml = None
        runtime = lo.get("runtime", "?")
        served_1row = (
            raw.get("onnx_1row") if runtime == "onnxruntime" and "onnx_1row" in raw else raw["native_1row"]
        )
        label = {"lr": "lr (scaler + logistic regression)", "rf": "rf (100-tree random forest)"}[name]
        v: dict[str, Any] = {"runtime": runtime}
        lo_cell = f"native predict p50 {fmt_ms(raw['native_1row']['p50_ms'])}"
        if "onnx_1row" in raw:
            lo_cell += (
                f"; ONNX copy (onnxruntime run) p50 {fmt_ms(raw['onnx_1row']['p50_ms'])}"
                f"; LoopML OnnxModel.predict(frame) p50 {fmt_ms(raw['onnx_model_1row']['p50_ms'])}"
            )
        ml_cell = (
            f"native predict p50 {fmt_ms(entry['mlflow_inproc']['raw_1row']['p50_ms'])} (.venv-peers)"
            if "mlflow_inproc" in entry
            else "-"
        )
        rows.append([label, "raw in-process predict, 1 row (physical limit)", lo_cell, ml_cell, "-", "-"])
        lo_cell = f"native p50 {fmt_ms(raw['native_batch']['p50_ms'])}"
        if "onnx_batch" in raw:
            lo_cell += f"; ONNX copy p50 {fmt_ms(raw['onnx_batch']['p50_ms'])}"
        ml_cell = (
            f"native p50 {fmt_ms(entry['mlflow_inproc']['raw_batch']['p50_ms'])}"
            if "mlflow_inproc" in entry
            else "-"
        )
        rows.append([label, f"raw in-process predict, {BATCH_ROWS:,} rows", lo_cell, ml_cell, "-", "-"])

        s_lo = lo["seq_invocations"]
        limit = served_1row["p50_ms"] + SINGLE_ROW_MARGIN_MS
        v["single_row_p50_ms"] = s_lo["p50_ms"]
        v["single_row_limit_ms"] = round(limit, 3)
        v["single_row_met"] = s_lo["p50_ms"] <= limit
        ratio = f"{fmt_ratio(ml['seq_invocations']['p50_ms'] / s_lo['p50_ms'])} (p50)" if ml else "-"
        rows.append(
            [
                label,
                "single row, sequential, `/invocations` (dataframe_split)",
                f"{_p(s_lo)}; server CPU {s_lo.get('server_cpu_ms_per_request', '?')} ms/req",
                f"{_p(ml['seq_invocations'])}; server CPU {ml['seq_invocations'].get('server_cpu_ms_per_request', '?')} ms/req"
                if ml
                else "-",
                ratio,
                f"<= raw predict of the served {runtime} model + 1 ms = {fmt_ms(limit)}: {fmt_met(v['single_row_met'])}",
            ]
        )
        for key, what in (
            ("seq_oip", "OIP `/v2/models/{m}/infer` ([1, C] tensor)"),
            ("seq_predict", "`/predict/{m}` (records)"),
        ):
            ok = lo[key]["p50_ms"] <= limit
            v[f"{key}_met"] = ok
            rows.append(
                [
                    label,
                    f"single row, sequential, {what}; answers probabilities too",
                    _p(lo[key]),
                    "-",
                    "-",
                    fmt_met(ok),
                ]
            )
        c_lo = lo["conc"]
        target = THROUGHPUT_TARGET[name]
        cell_lo = f"{c_lo['req_per_s']:,.0f} req/s, {_p(c_lo)}, errors {c_lo['errors']}"
        if ml:
            c_ml = ml["conc"]
            tput = c_lo["req_per_s"] / c_ml["req_per_s"]
            v["throughput_ratio"] = round(tput, 2)
            v["throughput_met"] = tput >= target
            cell_ml = f"{c_ml['req_per_s']:,.0f} req/s, {_p(c_ml)}, errors {c_ml['errors']}"
            rows.append(
                [
                    label,
                    f"{c_lo['concurrency']} connections, {c_lo['duration_s']:g} s, single row",
                    cell_lo,
                    cell_ml,
                    f"{fmt_ratio(tput)} (req/s)",
                    f">= {target:g}x: {fmt_met(v['throughput_met'])}",
                ]
            )
        else:
            rows.append([label, "32 connections, single row", cell_lo, "-", "-", "-"])
        if "conc_batching" in lo:
            cb = lo["conc_batching"]
            cell = f"{cb['req_per_s']:,.0f} req/s, {_p(cb)}, errors {cb['errors']}"
            if ml:
                tput_b = cb["req_per_s"] / ml["conc"]["req_per_s"]
                v["throughput_batching_ratio"] = round(tput_b, 2)
                v["throughput_batching_met"] = tput_b >= target
                rows.append(
                    [
                        label,
                        f"same, LoopML with opt-in micro-batching (`--batch {cb['batch_policy']}`)",
                        cell,
                        "(no batching in MLflow)",
                        f"{fmt_ratio(tput_b)} (req/s)",
                        f">= {target:g}x: {fmt_met(v['throughput_batching_met'])}",
                    ]
                )
            else:
                rows.append([label, f"same, `--batch {cb['batch_policy']}`", cell, "-", "-", "-"])
        b_lo = lo["batch"]
        cell_lo = f"p50 {fmt_ms(b_lo['p50_ms'])}, {b_lo['rows_per_s']:,.0f} rows/s"
        if ml:
            b_ml = ml["batch"]
            bratio = b_lo["rows_per_s"] / b_ml["rows_per_s"]
            v["batch_ratio"] = round(bratio, 2)
            v["batch_met"] = bratio >= BATCH_TARGET
            rows.append(
                [
                    label,
                    f"{BATCH_ROWS:,}-row requests, sequential",
                    cell_lo,
                    f"p50 {fmt_ms(b_ml['p50_ms'])}, {b_ml['rows_per_s']:,.0f} rows/s",
                    f"{fmt_ratio(bratio)} (rows/s)",
                    f">= {BATCH_TARGET:g}x: {fmt_met(v['batch_met'])}",
                ]
            )
        else:
            rows.append([label, f"{BATCH_ROWS:,}-row requests", cell_lo, "-", "-", "-"])
        same = entry["native_check"] == lo["check"] and (ml is None or ml["check"] == lo["check"])
        same_batch = b_lo["predictions_digest"] == entry["native_batch_digest"] and (
            ml is None or ml["batch"]["predictions_digest"] == b_lo["predictions_digest"]
        )
        v["same_predictions"] = same and same_batch
        rows.append(
            [
                label,
                f"same predictions (native, LoopML, MLflow; {CHECK_ROWS} rows and the {BATCH_ROWS:,}-row batch)",
                f"served by {runtime}; check {lo['check']}",
                f"check {ml['check']}" if ml else "-",
                "-",
                fmt_met(v["same_predictions"]),
            ]
        )
        verdicts[name] = v
        for side in (lo, ml or {}):
            for key in ("seq_invocations", "seq_oip", "seq_predict", "conc", "conc_batching", "batch"):
                if key in side:
                    noises.append(_noise(side[key]))
    if noises:
        rows.append(
            [
                "all",
                "noise: other CPU share per measurement (max, median)",
                f"max {max(noises):.3f}, median {statistics.median(noises):.3f}",
                "",
                "-",
                f"quiet: <= 0.05: {fmt_met(max(noises) <= 0.05)}",
            ]
        )
        verdicts["noise_max"] = max(noises)
    table = markdown(
        rows,
        [
            "model",
            "measurement",
            "LoopML (`loopml serve`)",
            "MLflow (`mlflow models serve`)",
            "MLflow / LoopML",
            "target met?",
        ],
    )
    soak_table = None
    if "soak" in results:
        soak_table, soak_verdict = build_soak_table(results["soak"])
        verdicts["soak"] = soak_verdict
    return table, soak_table, verdicts


def build_soak_table(s: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    w, b = s["within"], s["beyond"]
    switches = ", ".join(
        f"v{x['from']} -> v{x['to']}: first v{x['to']} answer at {x['first_new_s']} s, last v{x['from']} answer "
        f"at {x['last_old_s']} s ({x['old_answers_after_first_new']} v{x['from']} answers after the first v{x['to']})"
        for x in w["switches"]
    )
    versions_ok = [x["to"] for x in w["switches"]] == ["2", "1"]
    v = {
        "zero_failed": w["failed"] == 0,
        "switched": versions_ok,
        "events_ok": all(e["returncode"] == 0 and not e["database_locked"] for e in w["events"]),
        "no_locked_in_server_log": not s["server_log_locked"],
        "beyond_only_503": set(b["statuses"]) <= {"200", "503"} and b["statuses"].get("503", 0) > 0,
    }
    rows = [
        [
            f"{w['connections']} connections x {w['duration_s']:g} s, `/invocations` single row ({s['options']})",
            f"{w['requests']:,} requests, {w['req_per_s']:,.0f} req/s, {_p(w)}; statuses {w['statuses']}",
            f"zero failed: {fmt_met(v['zero_failed'])}",
        ],
        ["answers per version (X-Model-Version)", str(w["versions"]), "-"],
        [
            "version switches seen by the clients",
            switches or "none",
            f"v1 -> v2 -> v1: {fmt_met(versions_ok)}",
        ],
    ]
    for e in w["events"]:
        after = e["first_switch_after_s"]
        rows.append(
            [
                f"{e['event']} from another process at {e['started_s']} s: `{e['cmd']}`",
                f"exit {e['returncode']} in {e['wall_s']} s; 'database is locked': {e['database_locked']}; "
                f"first answer of the new version {after} s after it returned",
                fmt_met(e["returncode"] == 0 and not e["database_locked"]),
            ]
        )
    rows.append(
        [
            "'database is locked' in the server's log",
            str(s["server_log_locked"]),
            fmt_met(v["no_locked_in_server_log"]),
        ]
    )
    rows.append(
        [
            f"beyond capacity: {b['connections']} connections x {b['duration_s']:g} s (4 running + 256 waiting)",
            f"{b['requests']:,} requests; statuses {b['statuses']}; Retry-After {b['retry_after']}",
            f"only 200 and 503: {fmt_met(v['beyond_only_503'])}",
        ]
    )
    rows.append(
        [
            "noise: other CPU share (soak, overload)",
            f"{w['noise']['other_cpu_share']}, {b['noise']['other_cpu_share']}",
            f"quiet: <= 0.05: {fmt_met(max(_noise(w), _noise(b)) <= 0.05)}",
        ]
    )
    return markdown(rows, ["soak (LoopML)", "result", "expected?"]), v


# -- profile -------------------------------------------------------------------------------------------------


def run_profile(args: argparse.Namespace) -> None:
    """Where a request's time goes in LoopML's server: timers per part and cProfile (bench/serving_launcher.py)."""
    name = args.profile
    work = Path(tempfile.mkdtemp(prefix="bench-serving-profile-"))
    prof_file = RESULTS / f"profile-serving-{name}.prof"
    RESULTS.mkdir(exist_ok=True)
    try:
        project = work / "loopml"
        project.mkdir()
        models = {name: workload()[name]}
        register_all(project, models, soak_v2=False)
        X = models[name][1]
        row = X.iloc[:1]
        cases: list[tuple[str, str, bytes, dict[str, Any], bool]] = [
            ("defaults", "/invocations", split_body(row), {}, False),
            ("prediction log off", "/invocations", split_body(row), {"log_predictions": False}, False),
            ("defaults", f"/v2/models/{name}/infer", oip_body(row), {}, False),
            ("defaults", f"/predict/{name}", records_body(row), {}, False),
            ("defaults, 1,000-row requests", "/invocations", split_body(batch_of(X)), {}, False),
            (
                "1,000-row requests, prediction log off",
                "/invocations",
                split_body(batch_of(X)),
                {"log_predictions": False},
                False,
            ),
            ("defaults, cProfile on (inflated)", "/invocations", split_body(row), {}, True),
        ]
        n = args.seq
        for label, path, body, options, with_cprofile in cases:
            port = free_port()
            parts_file = work / "parts.json"
            config = {
                "refs": [f"{name}@champion"],
                "port": port,
                "options": options,
                "parts": str(parts_file),
                "cprofile": str(prof_file) if with_cprofile else None,
            }
            cmd = [
                str(REPO / ".venv" / "bin" / "python"),
                str(Path(__file__).resolve().parent / "serving_launcher.py"),
            ]
            log = work / "launcher.log"
            server = Server(
                "launcher", [*cmd, json.dumps(config)], cwd=project, env=dict(os.environ), port=port, log=log
            )
            with running(server):
                requests = n if len(body) < 100_000 else max(20, n // 10)
                loadgen.run_seq(server.base + path, body, 200 if requests == n else 10)
                server.signal(signal.SIGUSR1)
                time.sleep(0.2)
                result = seq(server, path, body, requests, 0)
                server.signal(signal.SIGUSR2)
                time.sleep(1.5 if with_cprofile else 0.3)
            parts = json.loads(parts_file.read_text())
            print(
                f"\n## {name}, {path}, {label}: {requests} sequential requests; client {_p(result)}; "
                f"server CPU {result.get('server_cpu_ms_per_request')} ms/request; "
                f"other CPU share {result['noise']['other_cpu_share']}\n"
            )
            rows = [
                [part, str(p["calls"]), f"{p['median_ms']:.4f}", f"{p['mean_ms']:.4f}"]
                for part, p in sorted(parts.items(), key=lambda kv: -kv[1]["mean_ms"])
            ]
            print(markdown(rows, ["part (timers in the server process)", "calls", "median ms", "mean ms"]))
            if with_cprofile:
                print_profile(str(prof_file), f"the server, {n} requests to {path}", args.profile_top)
                print(f"saved {prof_file.relative_to(REPO)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- main ----------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run (~1 min)")
    ap.add_argument("--seq", type=int, default=None, help="sequential single-row requests (2,000; quick 300)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument(
        "--duration", type=float, default=None, help="seconds of the concurrent test (10; quick 3)"
    )
    ap.add_argument("--batch-requests", type=int, default=None, help="1,000-row requests (100; quick 20)")
    ap.add_argument("--no-soak", action="store_true")
    ap.add_argument("--no-batching", action="store_true", help="skip the micro-batching variant")
    ap.add_argument("--soak-s", type=float, default=None, help="seconds of the soak (60; quick 12)")
    ap.add_argument("--soak-connections", type=int, default=64)
    ap.add_argument("--overload-connections", type=int, default=400)
    ap.add_argument("--no-mlflow", action="store_true")
    ap.add_argument("--no-save", action="store_true", help="do not append to bench/results/serving.json")
    ap.add_argument("--profile", choices=MODELS, help="profile LoopML's server on this model instead")
    ap.add_argument("--profile-top", type=int, default=30)
    args = ap.parse_args()
    quick = args.quick
    args.seq = args.seq or (300 if quick else 2000)
    args.duration = args.duration or (3.0 if quick else 10.0)
    args.batch_requests = args.batch_requests or (20 if quick else 100)
    args.soak_s = args.soak_s or (12.0 if quick else 60.0)
    return args


def main() -> None:
    args = parse_args()
    warnings.simplefilter("ignore", FutureWarning)
    if args.profile:
        run_profile(args)
        return
    started = datetime.now(UTC).isoformat(timespec="seconds")
    wall0 = now()
    source_before = source_state()
    results = run(args)
    table, soak_table, verdicts = build_tables(results)
    print(table)
    if soak_table:
        print()
        print(soak_table)
    source_after = source_state()
    record = {
        "bench": "serving",
        "started": started,
        "wall_s": round(now() - wall0, 1),
        "machine": machine_info(),
        "versions": {
            **versions(
                "loopml", "scikit-learn", "numpy", "pandas", "onnxruntime", "uvicorn", "fastapi", "aiohttp"
            ),
            "mlflow_side": results.get("mlflow_versions"),
        },
        "source": source_before,
        "source_unchanged_during_run": source_before["src_tree_blake3"] == source_after["src_tree_blake3"],
        "config": run_config(args),
        "workload": {"rf_data": RF_DATA, "forest": FOREST, "batch_rows": BATCH_ROWS},
        "verdicts": verdicts,
        "results": results,
        "table": table,
        "soak_table": soak_table,
    }
    print(f"\nwall {record['wall_s']} s", file=sys.stderr)
    if not args.no_save:
        append_result("serving", record)


if __name__ == "__main__":
    main()
