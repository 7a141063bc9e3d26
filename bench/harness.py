"""Helpers shared by the benchmark scripts (tracking.py, data.py, pipelines.py, registry.py).

Noise (how much of the machine other processes used while a phase ran), the cProfile switch of `--profile`,
running a peer script in a subprocess, a fresh temp LoopML project, the number formats of the tables, the
markdown table itself and the result-JSON line. The scripts put bench/ on sys.path before importing this.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import loopml
from loopml.tracking.tracker import use_tracker
from peers.noise import machine_busy_s

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
PEERS_PYTHON = REPO / ".venv-peers" / "bin" / "python"

now = time.perf_counter

# -- noise ---------------------------------------------------------------------------------------------------


def _own_cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # waited-for subprocesses (peers, CLIs, workers)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@contextlib.contextmanager
def noise(out: dict[str, Any], *, disk: bool = False) -> Iterator[None]:
    """Store in out["noise"] how much CPU other processes used while the block ran (0 = quiet machine).

    A child that is reaped only after the block (a server the bench started) counts as "other". With `disk`,
    also the MiB written to the disks by everyone (`/proc/diskstats`) and by this process (`/proc/self/io`;
    subprocesses not included): a step's output is a new file plus an fsync, which other processes' writes
    (their journal commits) slow down without using much CPU.
    """
    cpus = os.cpu_count() or 1
    busy0, own0, wall0 = machine_busy_s(), _own_cpu_s(), now()
    disk0, own_disk0 = (_disk_written_mib(), _own_written_mib()) if disk else (0.0, 0.0)
    try:
        yield
    finally:
        wall = now() - wall0
        busy, own = machine_busy_s() - busy0, _own_cpu_s() - own0
        other = max(0.0, busy - own)
        result: dict[str, Any] = {
            "wall_s": round(wall, 2),
            "own_cpu_s": round(own, 2),
            "other_cpu_s": round(other, 2),
            "other_cpu_share": round(other / (wall * cpus), 3) if wall > 0 else None,
        }
        if disk:
            result["disk_written_mib"] = round(_disk_written_mib() - disk0, 1)
            result["own_written_mib"] = round(_own_written_mib() - own_disk0, 1)
        result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        out["noise"] = result


def with_noise(job: Callable[[], dict[str, Any]], *, disk: bool = False) -> dict[str, Any]:
    """The result of `job()` with the `noise` of its run added."""
    out: dict[str, Any] = {}
    with noise(out, disk=disk):
        result = job()
    return {**result, "noise": out["noise"]}


def _disk_written_mib() -> float:
    """MiB written to the machine's whole disks so far (sectors of 512 bytes, field 10 of /proc/diskstats)."""
    sectors = 0
    with contextlib.suppress(OSError), open("/proc/diskstats") as f:
        for line in f:
            fields = line.split()
            if re.fullmatch(r"(sd|vd|xvd)[a-z]+|nvme\d+n\d+", fields[2]):
                sectors += int(fields[9])
    return sectors * 512 / 2**20


def _own_written_mib() -> float:
    with contextlib.suppress(OSError), open("/proc/self/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1]) / 2**20
    return 0.0


# -- profiling -----------------------------------------------------------------------------------------------

_profile_target: str | None = None
_profiler: cProfile.Profile | None = None


def profile_only(target: str) -> cProfile.Profile:
    """Profile the measurements labelled `target` from now on (`--profile target`); the profiler."""
    global _profile_target, _profiler  # one profiler for the one measurement run
    _profile_target, _profiler = target, cProfile.Profile()
    return _profiler


@contextlib.contextmanager
def measured(label: str) -> Iterator[None]:
    """The timed part of a measurement; profiled when `--profile label` was given."""
    if _profiler is None or label != _profile_target:
        yield
        return
    _profiler.enable()
    try:
        yield
    finally:
        _profiler.disable()


def print_profile(source: cProfile.Profile | pstats.Stats | str, title: str, top: int) -> None:
    """The `top` functions of a profile (a profiler, stats or a .prof file) by tottime, then by cumulative."""
    for sort in ("tottime", "cumulative"):
        buf = io.StringIO()
        if isinstance(source, pstats.Stats):
            stats = source
            stats.stream = buf  # type: ignore[attr-defined]
        else:
            stats = pstats.Stats(source, stream=buf)
        stats.strip_dirs().sort_stats(sort).print_stats(top)
        print(f"\n## cProfile of {title}, sorted by {sort} (profiler overhead inflates times)\n")
        print(buf.getvalue())


def print_saved_profile(path: Path) -> None:
    print(f"saved {path.relative_to(REPO)} (python -m pstats {path.relative_to(REPO)})")


def save_profile(profiler: cProfile.Profile, name: str, title: str, top: int) -> None:
    """Write bench/results/<name>.prof, print its `top` functions (`print_profile`) and where it is."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.prof"
    profiler.dump_stats(path)
    print_profile(profiler, title, top)
    print_saved_profile(path)


# -- processes and projects ----------------------------------------------------------------------------------


def mlflow_env(**extra: str) -> dict[str, str]:
    """This process's environment for an MLflow subprocess: no telemetry, plus `extra`."""
    return {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", **extra}


def run_script(
    cmd: list[str], *, env: dict[str, str], cwd: Path | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run `cmd` (stdin closed, output captured, any return code); the finished process and its wall seconds."""
    t = now()
    proc = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, env=env, cwd=cwd
    )
    return proc, now() - t


def run_peer(
    cmd: list[str], *, env: dict[str, str], cwd: Path | None = None, disk: bool = False
) -> tuple[subprocess.CompletedProcess[str], float, dict[str, Any]]:
    """`run_script` of a peer benchmark, with the `noise` of its run (`disk`: as `noise` takes it)."""
    out: dict[str, Any] = {}
    with noise(out, disk=disk):
        proc, wall = run_script(cmd, env=env, cwd=cwd)
    return proc, wall, out["noise"]


def optional_peer(
    name: str, python: Path, job: Callable[[], dict[str, Any]], *, skip: bool
) -> dict[str, Any] | None:
    """The peer's side, `job()`, run unless `skip` or its venv (`python`) is missing (None then).

    A result with an `error` is returned as it is, and said on stderr.
    """
    if skip:
        return None
    if not python.exists():
        print(
            f"{python.relative_to(REPO)} is missing (bash bench/setup_peers.sh): {name} skipped",
            file=sys.stderr,
        )
        return None
    print(f"{name} (subprocess, {python.parent.parent.relative_to(REPO)}) ...", file=sys.stderr, flush=True)
    result = job()
    if "error" in result:
        print(f"{result['error']}: {name} columns left empty", file=sys.stderr)
    return result


def last_json_line(stdout: str) -> dict[str, Any]:
    """The JSON object a script printed last (its result)."""
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


@contextlib.contextmanager
def temp_project(prefix: str, **overrides: Any) -> Iterator[tuple[loopml.Tracker, Path]]:
    """A fresh LoopML project in a temp dir, made the process-wide one; removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    tracker = loopml.configure(project_dir=folder, **overrides)
    try:
        yield tracker, folder
    finally:
        tracker.close()
        use_tracker(None)
        shutil.rmtree(folder, ignore_errors=True)


# -- report --------------------------------------------------------------------------------------------------


def to_ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def fmt_ms(ms: float) -> str:
    if ms >= 1000:
        return f"{ms / 1000:,.2f} s"
    return f"{ms:,.3g} ms" if ms < 100 else f"{ms:,.0f} ms"


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:,.1f}x" if ratio < 100 else f"{ratio:,.0f}x"


def fmt_met(ok: bool) -> str:
    return "**yes**" if ok else "**NO**"


def phase_noises(results: dict[str, Any]) -> list[tuple[str, Any]]:
    """(phase, other_cpu_share) of each result in `results` that recorded its `noise`."""
    return [
        (k, v["noise"]["other_cpu_share"]) for k, v in results.items() if isinstance(v, dict) and "noise" in v
    ]


def noise_row(noises: list[tuple[str, Any]], peer: str, *, per: str = "phase") -> list[str]:
    """The table row of the noise of each phase (`phase_noises`), with the peer's cell."""
    return [
        f"noise: share of machine CPU used by other processes, per {per}",
        ", ".join(f"{k} {v}" for k, v in noises),
        peer,
        "-",
        "quiet: <= 0.05",
    ]


def markdown_table(rows: list[list[str]], head: list[str]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    """The command-line settings of a run, for its record (without the profiling ones)."""
    return {k: v for k, v in vars(args).items() if k not in ("profile", "profile_top")}


def append_result(name: str, record: dict[str, Any]) -> None:
    """Append `record` as one JSON line to bench/results/<name>.json."""
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / f"{name}.json").open("a") as f:
        f.write(json.dumps(record, default=str) + "\n")
    print(f"\nappended to {(RESULTS / f'{name}.json').relative_to(REPO)}", file=sys.stderr)
