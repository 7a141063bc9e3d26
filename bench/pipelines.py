"""LoopML pipelines: per-step overhead and fully cached re-runs, with Prefect's `@task` beside them.

    bash bench/setup_peers.sh                        # once: Prefect in .venv-peers/prefect (~30 s)
    .venv/bin/python bench/pipelines.py              # full sizes (~2 min, 1.5 of them Prefect)
    .venv/bin/python bench/pipelines.py --quick      # small sizes, smoke test
    .venv/bin/python bench/pipelines.py --no-prefect # LoopML side only
    .venv/bin/python bench/pipelines.py --profile cached-cold   # cProfile of one LoopML measurement

The pipeline code is written as a real module into a fresh temp dir (steps need source for their code
fingerprints), and every LoopML measurement uses a fresh temp project there: `load_settings(project_dir=tmp)`,
`loopml.Tracker(settings)` passed as `tracker=` to `Pipeline.run`. Nothing outside the temp dir is touched.

  steps   a pipeline of N chained trivial steps (`x + 1`, one step function called N times), on the "inline"
          and the "threads" executor; with caching on (each run gets a fresh `seed`, spaced so that no step
          call can hit the cache) and with `cache=False`. Per-step overhead = (pipeline - direct) / N, where
          direct = the same N plain function calls. Also timed at a small and a large N: the line through
          them gives the marginal cost of one more step (slope) and the fixed cost of a run (intercept).
  cached  a 20-step pipeline (20 distinct step functions: load, a chain of 10, a fan-out of 8, a join) run
          once, then re-run with every step cached: in the same process (warm), and in cold processes (a
          subprocess imports loopml and the module, opens the tracker, and times the call; the parent times
          the whole subprocess). Once more cold with the on-disk environment fingerprint removed.
  prefect the same N trivial chained `@task` calls in a `@flow`, run with .venv-peers/prefect/bin/python in a
          subprocess (Prefect is never imported into, nor installed in, LoopML's venv), PREFECT_HOME in a temp
          dir. Its first flow run (which starts Prefect's ephemeral API server) is reported on its own; the
          timed flows run twice: back-to-back, and each one only once the API server is idle again.
Each phase records `noise`: the share of the machine's CPU used by other processes (as peers/noise.py does)
and the MiB written to the disks by everyone and by this process.
Prints a markdown table and appends one JSON line to bench/results/pipelines.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/peers, also when imported
import loopml
from harness import (
    REPO,
    RESULTS,
    append_result,
    fmt_met,
    fmt_ms,
    fmt_ratio,
    last_json_line,
    markdown_table,
    measured,
    noise_row,
    now,
    optional_peer,
    phase_noises,
    print_profile,
    print_saved_profile,
    profile_only,
    run_config,
    run_peer,
    run_script,
    save_profile,
    to_ms,
    with_noise,
)
from peers.common import machine_info, versions
from source_state import source_state

PREFECT_PYTHON = REPO / ".venv-peers" / "prefect" / "bin" / "python"
MODULE = "loopml_bench_pipes"
STEP_CASES = ("inline", "threads", "inline-nocache", "threads-nocache")
PROFILE_TARGETS = (*STEP_CASES, "cached-warm", "cached-cold")
SEED_SPACING = 1_000_000  # seeds this far apart give disjoint step inputs: no call can hit the cache

# -- the code under test ---------------------------------------------------------------------------------


def pipeline_module() -> str:
    """Source of the pipeline module: the chain pipelines and the 20-step pipeline of distinct steps."""
    head = '''
        """Pipelines of bench/pipelines.py (written into a temp dir by the bench)."""

        import loopml


        @loopml.step
        def inc(x: int) -> int:
            return x + 1


        @loopml.step(cache=False)
        def inc_nocache(x: int) -> int:
            return x + 1


        @loopml.pipeline
        def chain(seed: int = 0, n: int = 50):
            x = seed
            for _ in range(n):
                x = inc(x)
            return x


        @loopml.pipeline
        def chain_nocache(seed: int = 0, n: int = 50):
            x = seed
            for _ in range(n):
                x = inc_nocache(x)
            return x


        @loopml.step
        def load(seed: int) -> list:
            return [seed + i for i in range(100)]
    '''
    parts = [textwrap.dedent(head)]
    for k in range(1, 11):
        parts.append(f"\n\n@loopml.step\ndef c{k}(xs: list) -> list:\n    return [x + {k} for x in xs]\n")
    for k in range(1, 9):
        parts.append(f"\n\n@loopml.step\ndef b{k}(xs: list) -> int:\n    return sum(xs) * {k}\n")
    args = ", ".join(f"a{k}: int" for k in range(1, 9))
    parts.append(
        f"\n\n@loopml.step\ndef join({args}) -> int:\n    return {' + '.join(f'a{k}' for k in range(1, 9))}\n"
    )
    body = ["    xs = load(seed)"] + [f"    xs = c{k}(xs)" for k in range(1, 11)]
    body.append(f"    return join({', '.join(f'b{k}(xs)' for k in range(1, 9))})")
    parts.append("\n\n@loopml.pipeline\ndef dag20(seed: int = 0):\n" + "\n".join(body) + "\n")
    return "".join(parts)


def dag20_direct(mod: Any, seed: int) -> int:
    """The 20-step pipeline as plain function calls (the reference)."""
    xs = mod.load.fn(seed)
    for k in range(1, 11):
        xs = getattr(mod, f"c{k}").fn(xs)
    return mod.join.fn(*(getattr(mod, f"b{k}").fn(xs) for k in range(1, 9)))


COLD_SCRIPT = """
import json
import sys
import time

t_start = time.perf_counter()
code_dir, project_dir, seed, profile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sys.path.insert(0, code_dir)
import loopml
import loopml_bench_pipes as mod

t_imported = time.perf_counter()
tracker = loopml.Tracker(loopml.load_settings(project_dir=project_dir))
t_tracker = time.perf_counter()
profiler = None
if profile:
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
result = mod.dag20.run({"seed": seed}, tracker=tracker)
t_done = time.perf_counter()
if profiler is not None:
    profiler.disable()
    profiler.dump_stats(profile)
statuses = sorted({s.status.value for s in result.record.steps})
steps = len(result.record.steps)
tracker.close()
t_closed = time.perf_counter()
print(json.dumps({
    "import_s": t_imported - t_start,
    "tracker_s": t_tracker - t_imported,
    "call_s": t_done - t_tracker,
    "close_s": t_closed - t_done,
    "statuses": statuses,
    "steps": steps,
    "value": result.value,
}))
"""

PREFECT_SCRIPT = """
import json
import os
import statistics
import sys
import time

t0 = time.perf_counter()
import prefect
from prefect import flow, task

import_s = time.perf_counter() - t0
n, n_small, n_large, repeats = (int(a) for a in sys.argv[1:5])


@task
def inc(x: int) -> int:
    return x + 1


@flow
def chain(seed: int, n: int) -> int:
    x = seed
    for _ in range(n):
        x = inc(x)
    return x


def direct(seed, n):
    t = time.perf_counter()
    x = seed
    for _ in range(n):
        x = inc.fn(x)
    return time.perf_counter() - t


def children_cpu_s():
    # CPU of this process's children (the ephemeral API server), from /proc
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for thread in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{thread}/children") as f:
                kids = f.read().split()
        except OSError:
            continue
        for pid in kids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
    return total


def wait_idle(limit_s=20.0):
    # until the API server used < 20 ms of CPU in 0.5 s (it records the last flow's events after it ends)
    t = time.perf_counter()
    last = children_cpu_s()
    while time.perf_counter() - t < limit_s:
        time.sleep(0.5)
        cpu = children_cpu_s()
        if cpu - last < 0.02:
            break
        last = cpu
    return time.perf_counter() - t


def timed_flows(idle_first):
    global seed
    times = {n: [], n_small: [], n_large: []}
    for _ in range(repeats):
        for size, samples in times.items():
            if idle_first:
                waits.append(wait_idle())
            seed += 1_000_000
            t = time.perf_counter()
            value = chain(seed, size)
            samples.append(time.perf_counter() - t)
            assert value == seed + size, value
    return [times[n], times[n_small], times[n_large]]


t = time.perf_counter()
assert chain(0, n) == n
first_flow_s = time.perf_counter() - t
seed = 0
waits = []
cpu0 = time.process_time() + children_cpu_s()
back_to_back = timed_flows(idle_first=False)
tail_s = wait_idle()  # the server's work for these flows is part of their cost
timed_cpu_s = time.process_time() + children_cpu_s() - cpu0
idle = timed_flows(idle_first=True)
print(json.dumps({
    "prefect": prefect.__version__,
    "python": sys.version.split()[0],
    "import_s": import_s,
    "first_flow_s": first_flow_s,
    "n": n,
    "n_small": n_small,
    "n_large": n_large,
    "back_to_back_s": back_to_back,
    "idle_server_s": idle,
    "idle_waits_s": waits,
    "server_tail_s": tail_s,
    "timed_cpu_s": timed_cpu_s,
    "timed_tasks": repeats * (n + n_small + n_large),
    "direct_s": statistics.median(direct(0, n) for _ in range(200)),
}))
"""

# -- projects ----------------------------------------------------------------------------


class Workspace:
    """A temp dir with the pipeline module (in code/, imported) and fresh LoopML projects beside it."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="loopml-bench-pipelines-"))
        self.code = self.root / "code"
        self.code.mkdir()
        (self.code / f"{MODULE}.py").write_text(pipeline_module())
        sys.path.insert(0, str(self.code))
        self.mod = __import__(MODULE)
        self._projects = 0

    @contextlib.contextmanager
    def project(self, tag: str) -> Iterator[tuple[loopml.Tracker, Path]]:
        """A fresh LoopML project (its own store) with its tracker; the tracker is closed afterwards."""
        self._projects += 1
        folder = self.root / f"project-{self._projects}-{tag}"
        folder.mkdir()
        tracker = loopml.Tracker(loopml.load_settings(project_dir=folder))
        try:
            yield tracker, folder
        finally:
            tracker.close()

    def close(self) -> None:
        sys.path.remove(str(self.code))
        sys.modules.pop(MODULE, None)
        shutil.rmtree(self.root, ignore_errors=True)


def _statuses(result: Any) -> list[str]:
    return sorted({s.status.value for s in result.record.steps})


# -- LoopML: per-step overhead -------------------------------------------------------------------------------


def bench_steps(ws: Workspace, case: str, sizes: tuple[int, int, int], repeats: int) -> dict[str, Any]:
    """N chained trivial steps on one executor, caching on (fresh seeds) or off; vs N direct calls.

    `sizes` = (N, small N, large N): the per-step overhead is measured at N, the marginal cost of a step
    and the fixed cost of a run come from the line through the small and the large N.
    """
    n, n_small, n_large = sizes
    executor, _, nocache = case.partition("-")
    pipe = ws.mod.chain_nocache if nocache else ws.mod.chain
    inc = ws.mod.inc_nocache.fn if nocache else ws.mod.inc.fn
    res: dict[str, Any] = {
        "executor": executor,
        "cache": not nocache,
        "n": n,
        "n_small": n_small,
        "n_large": n_large,
    }
    seeds = iter(range(SEED_SPACING, SEED_SPACING * 10_000, SEED_SPACING))

    def one(size: int) -> float:
        seed = next(seeds)
        t = now()
        result = pipe.run({"seed": seed, "n": size}, executor=executor, tracker=tracker)
        elapsed = now() - t
        if (
            result.value != seed + size
            or _statuses(result) != ["finished"]
            or len(result.record.steps) != size
        ):
            raise SystemExit(f"{case}: unexpected result {result.value} {_statuses(result)}")
        return elapsed

    with ws.project(case) as (tracker, _):
        res["first_run_ms"] = to_ms(one(n))  # first run in this project: fingerprints, environment table, ...
        times: dict[int, list[float]] = {n: [], n_small: [], n_large: []}
        cpu0 = time.process_time()  # all threads of this process
        with measured(case):
            for _ in range(repeats):
                for size, samples in times.items():
                    samples.append(one(size))
        cpu_s = time.process_time() - cpu0
    direct = []
    for _ in range(200):
        t = now()
        x = 0
        for _ in range(n):
            x = inc(x)
        direct.append(now() - t)
    mid, small, large = (statistics.median(times[size]) for size in sizes)
    direct_s = statistics.median(direct)
    slope = (large - small) / (n_large - n_small)
    res.update(
        pipeline_ms=to_ms(mid),
        pipeline_ms_all=[to_ms(t) for t in times[n]],
        pipeline_small_ms=to_ms(small),
        pipeline_large_ms=to_ms(large),
        direct_ms=round(direct_s * 1000, 5),
        per_step_ms=round((mid - direct_s) / n * 1000, 3),
        ratio_to_direct=round(mid / direct_s),
        cpu_per_step_ms=round(cpu_s / (repeats * sum(sizes)) * 1000, 3),
        marginal_step_ms=round(slope * 1000, 3),
        fixed_run_ms=to_ms(small - slope * n_small),
    )
    return res


# -- LoopML: fully cached re-runs ---------------------------------------------------------------------------


def _cold(ws: Workspace, project_dir: Path, seed: int, profile: str = "") -> dict[str, Any]:
    script = ws.root / "cold_run.py"
    if not script.exists():
        script.write_text(COLD_SCRIPT)
    cmd = [sys.executable, str(script), str(ws.code), str(project_dir), str(seed), profile]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    proc, wall = run_script(cmd, env=env, cwd=ws.root)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"cold run failed (rc {proc.returncode})")
    out = last_json_line(proc.stdout)
    out["wall_s"] = wall
    return out


def bench_cached(ws: Workspace, repeats: int, cold_repeats: int) -> dict[str, Any]:
    """A 20-step pipeline run once, then re-run fully cached: warm (same process) and in cold processes."""
    seed = 7 * SEED_SPACING
    res: dict[str, Any] = {}
    with ws.project("cached") as (tracker, folder):
        t = now()
        first = ws.mod.dag20.run({"seed": seed}, tracker=tracker)
        res["first_run_ms"] = to_ms(now() - t)
        expected = dag20_direct(ws.mod, seed)
        if first.value != expected or _statuses(first) != ["finished"] or len(first.record.steps) != 20:
            raise SystemExit(f"dag20: unexpected first run {first.value} {_statuses(first)}")
        direct = []
        for _ in range(50):
            t = now()
            dag20_direct(ws.mod, seed)
            direct.append(now() - t)
        res["steps"] = len(first.record.steps)
        res["direct_ms"] = to_ms(statistics.median(direct))
        for executor in ("threads", "inline"):
            times = []
            with measured("cached-warm" if executor == "threads" else "cached-warm-inline"):
                for _ in range(repeats):
                    t = now()
                    again = ws.mod.dag20.run({"seed": seed}, executor=executor, tracker=tracker)
                    times.append(now() - t)
                    if again.value != expected or _statuses(again) != ["cached"]:
                        raise SystemExit(f"dag20 warm re-run not fully cached: {_statuses(again)}")
            res[f"warm_{executor}_ms"] = to_ms(statistics.median(times))
            res[f"warm_{executor}_ms_all"] = [to_ms(t) for t in times]
        tracker.close()  # the cold processes open the store on their own

        # Untimed: the first cold process writes the project's environment file (this process found the
        # table in its in-process memo, filled in an earlier project, so it wrote none here).
        res["cold_first_call_ms"] = to_ms(_cold(ws, folder, seed)["call_s"])
        colds = []
        for _ in range(cold_repeats):
            out = _cold(ws, folder, seed)
            if out["statuses"] != ["cached"] or out["value"] != expected:
                raise SystemExit(f"dag20 cold re-run not fully cached: {out}")
            colds.append(out)
        res["cold"] = {
            key: to_ms(statistics.median(c[key] for c in colds))
            for key in ("call_s", "tracker_s", "import_s", "close_s", "wall_s")
        }
        res["cold_all"] = [{k: to_ms(v) for k, v in c.items() if k.endswith("_s")} for c in colds]
        cache_files = sorted((folder / ".loopml" / "state").glob("environment-*.json"))
        res["environment_cache_files"] = len(cache_files)
        for path in cache_files:
            path.unlink()
        out = _cold(ws, folder, seed)  # recomputes the environment table (and writes it again)
        res["cold_no_env_cache"] = {k: to_ms(v) for k, v in out.items() if k.endswith("_s")}
    return res


def profile_cold(ws: Workspace, path: Path) -> None:
    with ws.project("cached") as (tracker, folder):
        ws.mod.dag20.run({"seed": 1}, tracker=tracker)
        tracker.close()
        _cold(ws, folder, 1)  # warms the page cache and the environment file
        print(json.dumps(_cold(ws, folder, 1, profile=str(path))))


# -- Prefect ---------------------------------------------------------------------------------------------------


def run_prefect(ws: Workspace, sizes: tuple[int, int, int], repeats: int) -> dict[str, Any]:
    script = ws.root / "prefect_chain.py"
    script.write_text(PREFECT_SCRIPT)
    home = ws.root / "prefect-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        DO_NOT_TRACK="1",
    )
    cmd = [str(PREFECT_PYTHON), str(script), *(str(size) for size in sizes), str(repeats)]
    proc, wall, phase_noise = run_peer(cmd, env=env, cwd=ws.root, disk=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-5000:])
        return {"error": f"Prefect run failed (rc {proc.returncode})", "noise": phase_noise}
    res = last_json_line(proc.stdout)
    n, n_small, n_large = sizes
    for mode in ("back_to_back", "idle_server"):
        mid, small, large = (statistics.median(samples) for samples in res[f"{mode}_s"])
        slope = (large - small) / (n_large - n_small)
        res[mode] = {
            "flow_ms": to_ms(mid),
            "flow_min_max_ms": [to_ms(min(res[f"{mode}_s"][0])), to_ms(max(res[f"{mode}_s"][0]))],
            "flow_small_ms": to_ms(small),
            "flow_large_ms": to_ms(large),
            "per_task_ms": round((mid - res["direct_s"]) / n * 1000, 3),
            "marginal_task_ms": round(slope * 1000, 3),
            "fixed_flow_ms": to_ms(small - slope * n_small),
        }
    res.update(
        wall_s=round(wall, 2),
        cpu_per_task_ms=round(res["timed_cpu_s"] / res["timed_tasks"] * 1000, 3),
        noise=phase_noise,
    )
    return res


# -- report ------------------------------------------------------------------------------------------------------


def _mib(mib: float) -> str:
    return f"{mib:,.0f}" if mib >= 100 else f"{mib:.3g}"


def build_table(lo: dict[str, Any], pf: dict[str, Any] | None) -> tuple[list[list[str]], dict[str, Any]]:
    """Rows of (measurement, LoopML, Prefect, Prefect / LoopML, target) and the ratios as numbers."""
    rows: list[list[str]] = []
    ratios: dict[str, Any] = {}
    pf = pf if pf and "error" not in pf else None
    labels = {
        "inline": '"inline", cache on (fresh params)',
        "threads": '"threads", cache on (fresh params)',
        "inline-nocache": '"inline", `cache=False`',
        "threads-nocache": '"threads", `cache=False`',
    }
    for case in STEP_CASES:
        s = lo.get(case)
        if not s:
            continue
        cell = (
            f"{s['per_step_ms']:.3g} ms/step (pipeline p50 {fmt_ms(s['pipeline_ms'])} vs direct "
            f"{s['direct_ms'] * 1000:.3g} us: {fmt_ratio(s['ratio_to_direct'])} direct)"
        )
        pf_cell, ratio = "-", "-"
        if pf:
            idle, b2b = pf["idle_server"], pf["back_to_back"]
            r = idle["per_task_ms"] / s["per_step_ms"]
            r2 = b2b["per_task_ms"] / s["per_step_ms"]
            ratios[f"prefect_idle_vs_{case}"] = round(r, 2)
            ratios[f"prefect_back_to_back_vs_{case}"] = round(r2, 2)
            pf_cell = (
                f"idle server: {idle['per_task_ms']:.3g} ms/task (flow p50 {fmt_ms(idle['flow_ms'])}); "
                f"back-to-back: {b2b['per_task_ms']:.3g} ms/task (flow p50 {fmt_ms(b2b['flow_ms'])}, "
                f"{fmt_ms(b2b['flow_min_max_ms'][0])}-{fmt_ms(b2b['flow_min_max_ms'][1])})"
            )
            ratio = f"{fmt_ratio(r)} (back-to-back: {fmt_ratio(r2)})"
        ratios[f"{case}_per_step_ms"] = s["per_step_ms"]
        rows.append(
            [
                f"per-step overhead, {s['n']} chained `x + 1` steps, {labels[case]}",
                cell,
                pf_cell,
                ratio,
                f"<= 2 ms: {fmt_met(s['per_step_ms'] <= 2)}",
            ]
        )
    marg = [
        f"{c}: {lo[c]['marginal_step_ms']:.3g} ms/step + {fmt_ms(lo[c]['fixed_run_ms'])}/run"
        for c in STEP_CASES
        if c in lo
    ]
    if marg:
        any_case = lo[next(c for c in STEP_CASES if c in lo)]
        rows.append(
            [
                f"same, split into marginal cost per step + fixed cost per run (line through the p50 at "
                f"N={any_case['n_small']} and N={any_case['n_large']})",
                "; ".join(marg),
                f"idle server: {pf['idle_server']['marginal_task_ms']:.3g} ms/task + "
                f"{fmt_ms(pf['idle_server']['fixed_flow_ms'])}/flow"
                if pf
                else "-",
                "-",
                "-",
            ]
        )
    cpus = [f"{c} {lo[c]['cpu_per_step_ms']:.3g} ms" for c in STEP_CASES if c in lo]
    if cpus:
        rows.append(
            [
                "CPU time per step call over all timed runs (process and its threads; Prefect: with its API "
                "server process)",
                "; ".join(cpus),
                f"{pf['cpu_per_task_ms']:.3g} ms" if pf else "-",
                "-",
                "-",
            ]
        )
    firsts = [f"{c} {fmt_ms(lo[c]['first_run_ms'])}" for c in STEP_CASES if c in lo]
    if firsts:
        rows.append(
            [
                "first run in a new project (N steps; same process)",
                "; ".join(firsts),
                f"first flow (starts the ephemeral server) {fmt_ms(pf['first_flow_s'] * 1000)}; "
                f"`import prefect` {fmt_ms(pf['import_s'] * 1000)}"
                if pf
                else "-",
                "-",
                "-",
            ]
        )
    if c := lo.get("cached"):
        ok_warm = c["warm_threads_ms"] <= 200
        ratios["cached_warm_threads_ms"] = c["warm_threads_ms"]
        ratios["cached_cold_call_ms"] = c["cold"]["call_s"]
        rows.append(
            [
                f"{c['steps']}-step pipeline re-run, every step cached, same process (warm)",
                f'"threads" (default) p50 {fmt_ms(c["warm_threads_ms"])}; "inline" p50 {fmt_ms(c["warm_inline_ms"])} '
                f"(first run {fmt_ms(c['first_run_ms'])}; plain calls {fmt_ms(c['direct_ms'])})",
                "-",
                "-",
                f"<= 200 ms: {fmt_met(ok_warm)}",
            ]
        )
        cold = c["cold"]
        rows.append(
            [
                f"same re-run in a cold process (p50 of {len(c['cold_all'])}, after one untimed): the pipeline "
                "call only",
                f"{fmt_ms(cold['call_s'])} (+ opening the tracker {fmt_ms(cold['tracker_s'])}; the untimed first, which "
                f"wrote the environment file: {fmt_ms(c['cold_first_call_ms'])})",
                "-",
                "-",
                f"<= 200 ms: {fmt_met(cold['call_s'] <= 200)}",
            ]
        )
        rows.append(
            [
                "same cold process, whole wall time (python start + imports + tracker + call + exit)",
                f"{fmt_ms(cold['wall_s'])} (imports of loopml + the module {fmt_ms(cold['import_s'])}; closing the "
                f"tracker {fmt_ms(cold['close_s'])}; the rest, interpreter start and exit, "
                f"{fmt_ms(cold['wall_s'] - cold['import_s'] - cold['tracker_s'] - cold['call_s'] - cold['close_s'])})",
                "-",
                "-",
                "-",
            ]
        )
        nc = c["cold_no_env_cache"]
        rows.append(
            [
                "same cold re-run with the on-disk environment fingerprint deleted (recomputed)",
                f"call {fmt_ms(nc['call_s'])}; wall {fmt_ms(nc['wall_s'])}",
                "-",
                "-",
                "-",
            ]
        )
    noises = phase_noises(lo)
    if noises:
        rows.append(noise_row(noises, str(pf["noise"]["other_cpu_share"]) if pf else "-"))
        disks = [
            f"{k} {_mib(v['noise']['disk_written_mib'])} ({_mib(v['noise']['own_written_mib'])})"
            for k, v in lo.items()
            if "noise" in v
        ]
        rows.append(
            [
                "disk: MiB written to the disks by everyone (by this process), per phase",
                ", ".join(disks),
                f"{_mib(pf['noise']['disk_written_mib'])} (all: subprocess)" if pf else "-",
                "-",
                "-",
            ]
        )
    return rows, ratios


def markdown(rows: list[list[str]]) -> str:
    return markdown_table(rows, ["measurement", "LoopML", "Prefect", "Prefect / LoopML", "target met?"])


# -- main ------------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=50, help="N chained steps (and Prefect tasks)")
    ap.add_argument("--small", type=int, default=10, help="small N, for the marginal and fixed costs")
    ap.add_argument("--large", type=int, default=200, help="large N, for the marginal and fixed costs")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per size (median reported)")
    ap.add_argument("--cold-repeats", type=int, default=5, help="cold processes for the cached re-run")
    ap.add_argument("--only", nargs="+", choices=(*STEP_CASES, "cached"), default=[*STEP_CASES, "cached"])
    ap.add_argument("--no-prefect", action="store_true", help="LoopML only")
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--no-save", action="store_true", help="do not append to bench/results/pipelines.json")
    ap.add_argument(
        "--profile", choices=PROFILE_TARGETS, help="run only that LoopML measurement under cProfile"
    )
    ap.add_argument("--profile-top", type=int, default=30)
    args = ap.parse_args()
    if args.quick:
        args.steps, args.small, args.large, args.repeats, args.cold_repeats = 12, 4, 24, 2, 2
    return args


def run_profile(args: argparse.Namespace, ws: Workspace) -> None:
    profiler = profile_only(args.profile)
    name, title = f"profile-pipelines-{args.profile}", f"'{args.profile}'"
    if args.profile == "cached-cold":  # the profile is the cold process's
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{name}.prof"
        profile_cold(ws, path)
        print_profile(str(path), title, args.profile_top)
        print_saved_profile(path)
        return
    if args.profile == "cached-warm":
        result = bench_cached(ws, args.repeats, 1)
    else:
        result = bench_steps(ws, args.profile, (args.steps, args.small, args.large), args.repeats)
    print(json.dumps(result, default=str))
    save_profile(profiler, name, title, args.profile_top)


def main() -> None:
    args = parse_args()
    ws = Workspace()
    try:
        if args.profile:
            run_profile(args, ws)
            return
        started = datetime.now(UTC).isoformat(timespec="seconds")
        source_before = source_state()
        lo: dict[str, Any] = {}
        sizes = (args.steps, args.small, args.large)
        jobs: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            (case, lambda case=case: bench_steps(ws, case, sizes, args.repeats)) for case in STEP_CASES
        ]
        jobs.append(("cached", lambda: bench_cached(ws, args.repeats, args.cold_repeats)))
        for name, job in jobs:
            if name not in args.only:
                continue
            print(f"LoopML {name} ...", file=sys.stderr, flush=True)
            lo[name] = with_noise(job, disk=True)
        prefect = optional_peer(
            "Prefect", PREFECT_PYTHON, lambda: run_prefect(ws, sizes, args.repeats), skip=args.no_prefect
        )
        rows, ratios = build_table(lo, prefect)
        table = markdown(rows)
        print(table)
        source_after = source_state()
        record = {
            "bench": "pipelines",
            "started": started,
            "machine": machine_info(),
            "versions": {**versions("loopml"), "prefect": prefect.get("prefect") if prefect else None},
            "source": source_before,
            "source_unchanged_during_run": source_before["src_tree_blake3"]
            == source_after["src_tree_blake3"],
            "config": run_config(args),
            "ratios": ratios,
            "loopml": lo,
            "prefect": prefect,
            "table": table,
        }
        if not args.no_save:
            append_result("pipelines", record)
    finally:
        ws.close()


if __name__ == "__main__":
    main()
