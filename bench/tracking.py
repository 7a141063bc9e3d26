"""LoopML tracking vs MLflow tracking, side by side in one run, on the same workload.

    bash bench/setup_peers.sh                    # once: .venv-peers with the pinned MLflow (~1 min)
    make bench                                   # = .venv/bin/python bench/tracking.py (full sizes)
    .venv/bin/python bench/tracking.py --quick   # small sizes, smoke test
    .venv/bin/python bench/tracking.py --only durable search --no-mlflow
    .venv/bin/python bench/tracking.py --profile durable   # cProfile of one LoopML measurement

The MLflow side runs `bench/peers/tracking_mlflow.py` (vendored from shared/bench/peers) with
`.venv-peers/bin/python` in a subprocess: MLflow is never imported into, nor installed in, LoopML's venv.
Both sides use a SQLite store in a fresh temp dir and run one after the other, never at the same time.

LoopML measurements (each in a fresh temp project, `loopml.configure(project_dir=tmp)`):
  buffered  N `loopml.log_metric` calls in one run, from the first call until `loopml.flush()` returns
  durable   N calls in `start_run(durable=True)` (each committed before it returns)
  runs      R x (start_run + log_params(P) + S x log_metric + end); also with Client.log_batch;
            then `Client.search_runs("metrics.loss < median")` over those R runs (MLflow: the same)
  search    10,000 runs with a `loss` metric, then search_runs p50 with max_results 100 and 1000
  mp        8 spawned processes, each its own run, logging into one SQLite store at once
Each phase records `noise` (share of the machine's CPU used by other processes, from /proc/stat, as
peers/noise.py does). Prints a markdown table and appends one JSON line to bench/results/tracking.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import random
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from queue import Empty
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/peers, also when imported
from sqlalchemy import event

import loopml
from harness import (
    BENCH,
    PEERS_PYTHON,
    REPO,
    append_result,
    fmt_met,
    fmt_ratio,
    last_json_line,
    markdown_table,
    measured,
    mlflow_env,
    noise_row,
    now,
    phase_noises,
    profile_only,
    run_config,
    run_peer,
    save_profile,
    temp_project,
    with_noise,
)
from peers.common import machine_info, summarize_ms, versions
from source_state import source_state

MLFLOW_SCRIPT = BENCH / "peers" / "tracking_mlflow.py"
MEASUREMENTS = ("buffered", "durable", "runs", "search", "mp")
PROFILE_TARGETS = ("buffered", "durable", "durable-fsync", "runs", "runs-batch", "search-create", "search")

# -- projects ------------------------------------------------------------------------------------------


def project(tag: str, **overrides: Any) -> contextlib.AbstractContextManager[tuple[loopml.Tracker, Path]]:
    """A fresh LoopML project in a temp dir, made the process-wide one; removed afterwards."""
    return temp_project(f"loopml-bench-{tag}-", **overrides)


def _values(n: int, seed: int) -> list[float]:
    rnd = random.Random(seed)
    return [rnd.random() for _ in range(n)]


# -- LoopML measurements --------------------------------------------------------------------------------


def bench_buffered(points: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """N buffered log_metric calls in one run, until flush() returns."""
    values = _values(points, seed=1)
    res: dict[str, Any] = {"points": points}
    with project("buffered", **overrides) as (tracker, _):
        run = loopml.start_run(experiment="bench", name="buffered")
        log_metric = loopml.log_metric
        cpu0 = time.process_time()
        with measured("buffered"):
            t0 = now()
            for i, v in enumerate(values):
                log_metric("m", v, step=i)
            calls_done = now() - t0
            loopml.flush()
            elapsed = now() - t0
        res["process_cpu_s"] = round(time.process_time() - cpu0, 3)  # all threads, the flusher's too
        run.end()
        res["stored"] = len(loopml.Client(tracker).get_metric_history(run.run_id, "m"))
    res["seconds"] = round(elapsed, 4)
    res["points_per_s"] = round(points / elapsed, 1)
    res["calls_returned_s"] = round(calls_done, 4)
    return res


def _fsync_every_commit(tracker: loopml.Tracker) -> None:
    """Bench-only: make the store's connections use `PRAGMA synchronous = FULL` (fsync at every commit).

    LoopML runs SQLite in WAL mode with synchronous=NORMAL: a commit survives the process being killed, not
    a power loss. MLflow's SQLite store keeps SQLite's defaults (rollback journal, synchronous=FULL), which
    fsyncs at every commit. This listener runs after LoopML's own connect listener, on fresh connections.
    """
    engine = tracker.stores.db.engine

    @event.listens_for(engine, "connect")
    def _full(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    engine.dispose()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2


def bench_durable(calls: int, overrides: dict[str, Any], *, fsync: bool = False) -> dict[str, Any]:
    """N log_metric calls in a durable run: each is committed before it returns."""
    values = _values(calls, seed=2)
    res: dict[str, Any] = {
        "calls": calls,
        "sqlite_synchronous": "FULL" if fsync else "NORMAL (LoopML default)",
    }
    with project("durable", **overrides) as (tracker, _):
        if fsync:
            _fsync_every_commit(tracker)
        log_metric = loopml.log_metric
        with loopml.start_run(experiment="bench", name="durable", durable=True) as run:
            lat = []
            cpu0 = time.process_time()
            with measured("durable-fsync" if fsync else "durable"):
                t0 = now()
                for i, v in enumerate(values):
                    t = now()
                    log_metric("d", v, step=i)
                    lat.append(now() - t)
                elapsed = now() - t0
            res["process_cpu_s"] = round(time.process_time() - cpu0, 3)
        res["stored"] = len(loopml.Client(tracker).get_metric_history(run.run_id, "d"))
    res.update(seconds=round(elapsed, 4), calls_per_s=round(calls / elapsed, 1), **summarize_ms(lat))
    return res


def bench_runs(
    n_runs: int, n_params: int, steps: int, repeats: int, overrides: dict[str, Any]
) -> dict[str, Any]:
    """The peer's runs_log_batch workload: create run + P params + S metric steps + end, R times."""
    res: dict[str, Any] = {"runs": n_runs, "params": n_params, "steps": steps}
    with project("runs", **overrides) as (tracker, _):
        client = loopml.Client(tracker)
        loopml.start_run(experiment="warm-up").end()  # experiment table, environment capture: like MLflow's
        # create_experiment, which the peer script does before its timed runs

        def one_fluent(r: int, rnd: random.Random) -> float:
            params = {f"p{j}": str(rnd.random()) for j in range(n_params)}
            base = rnd.random()
            with loopml.start_run(experiment="runs", name=f"run-{r}") as run:
                run.log_params(params)
                for s in range(steps):
                    run.log_metric("loss", base * (1.0 - s / (2.0 * steps)), step=s)
            return base * (1.0 - (steps - 1) / (2.0 * steps))

        def one_batch(r: int, rnd: random.Random) -> float:
            params = {f"p{j}": str(rnd.random()) for j in range(n_params)}
            base = rnd.random()
            ts = int(time.time() * 1000)
            loss = [loopml.Metric("loss", base * (1.0 - s / (2.0 * steps)), s, ts + s) for s in range(steps)]
            run = loopml.start_run(experiment="runs-batch", name=f"run-{r}")
            client.log_batch(run.run_id, metrics=loss, params=params)
            run.end()
            return loss[-1].value

        finals: list[float] = []
        for key, one, label in (("fluent", one_fluent, "runs"), ("log_batch", one_batch, "runs-batch")):
            rnd = random.Random(3)
            per_run = []
            finals = []
            cpu0 = time.process_time()
            with measured(label):
                t_all = now()
                for r in range(n_runs):
                    t = now()
                    finals.append(one(r, rnd))
                    per_run.append(now() - t)
                elapsed = now() - t_all
            res[key] = {
                "seconds": round(elapsed, 4),
                "runs_per_s": round(n_runs / elapsed, 2),
                "process_cpu_s": round(time.process_time() - cpu0, 3),
                "per_run": summarize_ms(per_run),
            }
            if key == "fluent":
                # search over these runs, as the peer script does over its R runs
                thr = sorted(finals)[len(finals) // 2]
                flt = f"metrics.loss < {thr!r}"
                times = []
                page = None
                for _ in range(repeats):
                    t = now()
                    page = client.search_runs(experiment_ids=["runs"], filter=flt, max_results=1000)
                    times.append(now() - t)
                res["search"] = {
                    "runs_in_experiment": n_runs,
                    "matched": len(page.runs) if page else None,
                    "expected": sum(1 for f in finals if f < thr),
                    **summarize_ms(times),
                }
        stored = client.search_runs(experiment_ids=["runs"], max_results=n_runs)
        res["check_params_per_run"] = min(len(r.params) for r in stored.runs) if stored.runs else 0
        res["check_loss_points"] = (
            len(client.get_metric_history(stored.runs[0].run_id, "loss")) if stored.runs else 0
        )
    return res


def bench_search(n_runs: int, repeats: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """Search with a metric filter over n_runs runs (each: 3 params, one `loss` point)."""
    res: dict[str, Any] = {"runs": n_runs}
    with project("search", **overrides) as (tracker, _):
        rnd = random.Random(4)
        losses = []
        with measured("search-create"):
            t0 = now()
            for r in range(n_runs):
                loss = rnd.random()
                with loopml.start_run(experiment="search", name=f"run-{r}") as run:
                    run.log_params({"lr": round(rnd.uniform(1e-4, 1e-1), 6), "depth": r % 10, "model": "rf"})
                    run.log_metric("loss", loss)
                losses.append(loss)
            create_s = now() - t0
        res["create"] = {"seconds": round(create_s, 2), "runs_per_s": round(n_runs / create_s, 1)}
        median = sorted(losses)[n_runs // 2]
        expected = sum(1 for x in losses if x < median)
        flt = f"metrics.loss < {median!r}"
        client = loopml.Client(tracker)
        for max_results in (100, 1000):
            times = []
            page = None
            with measured("search"):
                for _ in range(repeats):
                    t = now()
                    page = client.search_runs(filter=flt, max_results=max_results)
                    times.append(now() - t)
            assert page is not None
            res[f"max_results_{max_results}"] = {
                "returned": len(page.runs),
                "ok": len(page.runs) == min(max_results, expected)
                and all(r.metrics["loss"] < median for r in page.runs),
                **summarize_ms(times),
            }
        total, token = 0, None
        while True:
            page = client.search_runs(filter=flt, max_results=1000, page_token=token)
            total += len(page.runs)
            token = page.next_page_token
            if token is None:
                break
        res["matched_all_pages"] = total
        res["expected"] = expected
    return res


def _mp_worker(folder: str, index: int, points: int, durable: bool, barrier: Any, queue: Any) -> None:
    try:
        tracker = loopml.configure(project_dir=folder)
        run = loopml.start_run(experiment="mp", name=f"proc-{index}", durable=durable)
        values = _values(points, seed=100 + index)
        log_metric = loopml.log_metric
        barrier.wait(timeout=120)
        t0 = now()  # CLOCK_MONOTONIC: comparable across processes
        for i, v in enumerate(values):
            log_metric("m", v, step=i)
        run.end()  # flushes (buffered) and marks the run FINISHED
        t1 = now()
        tracker.close()
        queue.put(("ok", index, run.run_id, t0, t1, time.process_time()))
    except BaseException:
        queue.put(("error", index, traceback.format_exc()))
        barrier.abort()  # the others must not wait for this one
        raise


def bench_mp(procs: int, points: int, durable: bool) -> dict[str, Any]:
    """`procs` spawned processes, each its own run, logging `points` points into one SQLite store at once."""
    ctx = mp.get_context("spawn")
    res: dict[str, Any] = {"processes": procs, "points_each": points, "durable": durable}
    with project("mp-durable" if durable else "mp") as (tracker, folder):  # creates the store first
        barrier, queue = ctx.Barrier(procs), ctx.Queue()
        workers = [
            ctx.Process(target=_mp_worker, args=(str(folder), i, points, durable, barrier, queue))
            for i in range(procs)
        ]
        t0 = now()
        for w in workers:
            w.start()
        done, errors = [], []
        while len(done) + len(errors) < procs:
            try:
                item = queue.get(timeout=1.0)
            except Empty:
                if not any(w.is_alive() for w in workers) and queue.empty():
                    errors.append("workers exited without reporting")
                    break
                continue
            (done if item[0] == "ok" else errors).append(item[1:])
        for w in workers:
            w.join(timeout=60)
        total_s = now() - t0
        res["exit_codes"] = [w.exitcode for w in workers]
        if errors:
            res["errors"] = errors
            print(f"{len(errors)} worker(s) failed; first: {errors[0]}", file=sys.stderr)
        if not done:
            return {**res, "stored": 0, "run_statuses": [], "points_per_s": 0.0}
        starts, ends = [d[2] for d in done], [d[3] for d in done]
        logging_s = max(ends) - min(starts)
        client = loopml.Client(tracker)
        counts = [len(client.get_metric_history(d[1], "m")) for d in done]
        statuses = {client.get_run(d[1]).status.value for d in done}
    res.update(
        wall_s_including_spawn=round(total_s, 3),
        logging_phase_s=round(logging_s, 3),
        points_per_s=round(procs * points / logging_s, 1),
        per_process_s=summarize_ms([e - s for s, e in zip(starts, ends, strict=True)]),
        worker_cpu_s=round(sum(d[4] for d in done), 2),
        stored=sum(counts),
        stored_per_run_min=min(counts),
        run_statuses=sorted(statuses),
    )
    return res


# -- MLflow ---------------------------------------------------------------------------------------------


def run_mlflow(args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        str(PEERS_PYTHON),
        str(MLFLOW_SCRIPT),
        "--n-metrics",
        str(args.durable_calls),
        "--batch-metrics",
        str(args.points),
        "--runs",
        str(args.runs),
        "--params",
        str(args.params),
        "--steps",
        str(args.steps),
        "--search-repeats",
        str(args.search_repeats),
    ]
    if args.no_mlflow_async:
        cmd.append("--no-async")
    proc, _, phase_noise = run_peer(cmd, env=mlflow_env())
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"MLflow benchmark failed (rc {proc.returncode}): {' '.join(cmd)}")
    result = last_json_line(proc.stdout)
    result["noise"] = phase_noise
    return result


# -- report ---------------------------------------------------------------------------------------------


def _n(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.3g}"


def _ms(x: float) -> str:
    return f"{x:,.3g} ms" if x < 100 else f"{x:,.0f} ms"


def build_table(lo: dict[str, Any], ml: dict[str, Any] | None) -> tuple[list[list[str]], dict[str, Any]]:
    """Rows of (operation, LoopML, MLflow, LoopML vs MLflow, target) and the ratios as numbers."""
    rows: list[list[str]] = []
    ratios: dict[str, Any] = {}
    ml = ml or {}
    single = ml.get("log_metric_single")
    batch = ml.get("log_batch_same_values")
    asyn = ml.get("log_metric_async")
    if asyn and "error" in asyn:
        asyn = None

    if b := lo.get("buffered"):
        pps = b["points_per_s"]
        op = f"`log_metric` buffered: {b['points']:,} points in 1 run, until `flush()` returns"
        loop_cell = f"{_n(pps)} points/s ({b['seconds']:.3g} s; stored {b['stored']:,})"
        if batch:
            r = pps / batch["metrics_per_s"]
            ratios["buffered_vs_log_batch"] = round(r, 2)
            rows.append(
                [
                    op,
                    loop_cell,
                    f"one `log_batch` of the same {batch['metrics']:,} values: {_n(batch['metrics_per_s'])} metrics/s",
                    fmt_ratio(r),
                    f">= 20x: {fmt_met(r >= 20)}",
                ]
            )
        else:
            rows.append([op, loop_cell, "-", "-", ">= 20x vs log_batch: n/a"])
        if single:
            r = pps / single["calls_per_s"]
            ratios["buffered_vs_log_metric"] = round(r, 1)
            rows.append(
                [
                    "same LoopML number vs MLflow single synchronous `log_metric`",
                    f"{_n(pps)} points/s",
                    f"{single['calls']:,} calls: {_n(single['calls_per_s'])} calls/s",
                    fmt_ratio(r),
                    "-",
                ]
            )
        if asyn:
            r = pps / asyn["effective_calls_per_s"]
            ratios["buffered_vs_async_flushed"] = round(r, 1)
            rows.append(
                [
                    "same LoopML number vs MLflow `log_metric(synchronous=False)` until `flush_async_logging()`",
                    f"{_n(pps)} points/s",
                    f"{asyn['calls']:,} calls: {_n(asyn['effective_calls_per_s'])} calls/s",
                    fmt_ratio(r),
                    "-",
                ]
            )

    if d := lo.get("durable"):
        cps = d["calls_per_s"]
        loop_cell = f"{_n(cps)} calls/s (p50 {_ms(d['p50_ms'])}, p99 {_ms(d['p99_ms'])})"
        target = f">= 5,000/s: {fmt_met(cps >= 5000)}"
        if single:
            r = cps / single["calls_per_s"]
            ratios["durable_vs_log_metric"] = round(r, 2)
            ml_cell = (
                f"synchronous `log_metric`, {single['calls']:,} calls: {_n(single['calls_per_s'])} calls/s "
                f"(p50 {_ms(single['p50_ms'])})"
            )
            target += f"; >= 10x: {fmt_met(r >= 10)}"
            rows.append(
                [
                    f"`log_metric` durable: {d['calls']:,} calls in `start_run(durable=True)`",
                    loop_cell,
                    ml_cell,
                    fmt_ratio(r),
                    target,
                ]
            )
        else:
            rows.append([f"`log_metric` durable: {d['calls']:,} calls", loop_cell, "-", "-", target])

    if d := lo.get("durable_fsync"):
        cps = d["calls_per_s"]
        loop_cell = f"{_n(cps)} calls/s (p50 {_ms(d['p50_ms'])}, p99 {_ms(d['p99_ms'])})"
        op = "same, with `PRAGMA synchronous = FULL` (fsync per commit, as MLflow's SQLite) [bench-only]"
        if single:
            r = cps / single["calls_per_s"]
            ratios["durable_fsync_vs_log_metric"] = round(r, 2)
            rows.append([op, loop_cell, f"{_n(single['calls_per_s'])} calls/s", fmt_ratio(r), "-"])
        else:
            rows.append([op, loop_cell, "-", "-", "-"])

    mlr = ml.get("runs_log_batch")
    if r_ := lo.get("runs"):
        size = f"{r_['runs']} runs x ({r_['params']} params + {r_['steps']} steps)"
        for key, how in (
            ("fluent", "`start_run` + `run.log_params` + `run.log_metric` per step + end"),
            ("log_batch", "`start_run` + `Client().log_batch(params, metrics)` + `end`"),
        ):
            v = r_[key]
            loop_cell = f"{v['runs_per_s']:,.0f} runs/s (p50 {_ms(v['per_run']['p50_ms'])}/run)"
            if mlr:
                r = v["runs_per_s"] / mlr["runs_per_s"]
                r50 = mlr["per_run"]["p50_ms"] / v["per_run"]["p50_ms"]
                ratios[f"runs_{key}"] = round(r, 2)
                ratios[f"runs_{key}_p50"] = round(r50, 2)
                ml_cell = (
                    f"`create_run` + `log_batch` + `set_terminated`: {mlr['runs_per_s']:,.0f} runs/s "
                    f"(p50 {_ms(mlr['per_run']['p50_ms'])}/run)"
                )
                target = f">= 5x: {fmt_met(r >= 5)}" if key == "fluent" else "-"
                rows.append(
                    [
                        f"run life, {size}: {how}",
                        loop_cell,
                        ml_cell,
                        f"{fmt_ratio(r)} (p50: {fmt_ratio(r50)})",
                        target,
                    ]
                )
            else:
                rows.append([f"run life, {size}: {how}", loop_cell, "-", "-", ">= 5x: n/a"])
        s = r_["search"]
        mls = ml.get("search_runs_list")
        loop_cell = f"p50 {_ms(s['p50_ms'])} ({s['matched']}/{s['expected']} matched)"
        op = f'`search_runs("metrics.loss < median")` over those {s["runs_in_experiment"]} runs'
        if mls:
            r = mls["p50_ms"] / s["p50_ms"]
            ratios["search_same_runs"] = round(r, 2)
            rows.append(
                [op, loop_cell, f'`output_format="list"`: p50 {_ms(mls["p50_ms"])}', fmt_ratio(r), "-"]
            )
        else:
            rows.append([op, loop_cell, "-", "-", "-"])

    if s := lo.get("search"):
        mls = ml.get("search_runs_list")
        ref = f"(reference: {mls['runs_in_experiment']} runs, p50 {_ms(mls['p50_ms'])})" if mls else "-"
        for mr in (100, 1000):
            v = s[f"max_results_{mr}"]
            rows.append(
                [
                    f'`search_runs("metrics.loss < median", max_results={mr})` over {s["runs"]:,} runs',
                    f"p50 {_ms(v['p50_ms'])} (p90 {_ms(v['p90_ms'])}; {v['returned']} returned, correct: {v['ok']})",
                    ref,
                    "-",
                    f"<= 100 ms: {fmt_met(v['p50_ms'] <= 100)}",
                ]
            )
        rows.append(
            [
                f"setup of the above: {s['runs']:,} x (`start_run` + 3 params + 1 metric + end)",
                f"{s['create']['runs_per_s']:,.0f} runs/s ({s['create']['seconds']:.1f} s); "
                f"all pages: {s['matched_all_pages']:,}/{s['expected']:,} matched",
                "-",
                "-",
                "-",
            ]
        )

    for key in ("mp", "mp_durable"):
        if m := lo.get(key):
            total = m["processes"] * m["points_each"]
            mode = "durable" if m["durable"] else "buffered"
            ok = m["stored"] == total and m["run_statuses"] == ["FINISHED"] and set(m["exit_codes"]) == {0}
            rows.append(
                [
                    f"{m['processes']} spawned processes x {m['points_each']:,} {mode} points (own run each), "
                    "one SQLite store",
                    f"{_n(m['points_per_s'])} points/s ({m.get('logging_phase_s', 0):.3g} s logging; "
                    f"{m['wall_s_including_spawn']:.3g} s with spawn+import); stored {m['stored']:,}/{total:,}"
                    + (f"; {len(m['errors'])} worker(s) FAILED" if m.get("errors") else ""),
                    "-",
                    "-",
                    f"all present: {fmt_met(ok)}",
                ]
            )

    noises = phase_noises(lo)
    if noises or ml.get("noise"):
        rows.append(noise_row(noises, f"{ml['noise']['other_cpu_share']}" if ml.get("noise") else "-"))
    return rows, ratios


def markdown(rows: list[list[str]]) -> str:
    return markdown_table(rows, ["operation", "LoopML", "MLflow", "LoopML vs MLflow", "target met?"])


# -- main -----------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--points", type=int, default=200_000, help="buffered log_metric points (and MLflow log_batch)"
    )
    ap.add_argument(
        "--durable-calls", type=int, default=5000, help="durable calls (and MLflow sync log_metric)"
    )
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--params", type=int, default=20)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--search-runs", type=int, default=10_000)
    ap.add_argument("--search-repeats", type=int, default=20)
    ap.add_argument("--procs", type=int, default=8)
    ap.add_argument("--proc-points", type=int, default=10_000, help="buffered points per process")
    ap.add_argument(
        "--proc-durable-points",
        type=int,
        default=1000,
        help="durable points per process (0: skip that variant)",
    )
    ap.add_argument("--only", nargs="+", choices=MEASUREMENTS, default=list(MEASUREMENTS))
    ap.add_argument("--no-mlflow", action="store_true", help="LoopML only")
    ap.add_argument(
        "--no-mlflow-async", action="store_true", help="skip MLflow's synchronous=False part (~20 s)"
    )
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--no-save", action="store_true", help="do not append to bench/results/tracking.json")
    ap.add_argument(
        "--profile",
        choices=PROFILE_TARGETS,
        help="run only that LoopML measurement under cProfile (flush thread off: writes on the main thread)",
    )
    ap.add_argument("--profile-top", type=int, default=25)
    args = ap.parse_args()
    if args.quick:
        args.points, args.durable_calls, args.runs = 20_000, 500, 10
        args.search_runs, args.search_repeats, args.proc_points, args.proc_durable_points = 1000, 5, 2000, 200
    return args


def run_profile(args: argparse.Namespace) -> None:
    profiler = profile_only(args.profile)
    # A huge flush interval keeps the background flusher idle, so every write runs on the profiled thread.
    overrides = {"flush_interval_s": 3600.0}
    jobs: dict[str, Callable[[], dict[str, Any]]] = {
        "buffered": lambda: bench_buffered(args.points, overrides),
        "durable": lambda: bench_durable(
            args.durable_calls, overrides, fsync=args.profile == "durable-fsync"
        ),
        "runs": lambda: bench_runs(args.runs, args.params, args.steps, args.search_repeats, overrides),
        "search": lambda: bench_search(args.search_runs, args.search_repeats, overrides),
    }
    job = jobs[args.profile.split("-")[0]]
    result = job()
    print(json.dumps(result, default=str))
    save_profile(profiler, f"profile-{args.profile}", f"'{args.profile}'", args.profile_top)


def main() -> None:
    args = parse_args()
    if args.profile:
        run_profile(args)
        return
    want_mlflow = not args.no_mlflow and bool({"buffered", "durable", "runs", "search"} & set(args.only))
    if want_mlflow and not PEERS_PYTHON.exists():
        raise SystemExit(
            f"{PEERS_PYTHON.relative_to(REPO)} is missing: run `bash bench/setup_peers.sh` first "
            "(or pass --no-mlflow for the LoopML side only)"
        )
    started = datetime.now(UTC).isoformat(timespec="seconds")
    mlflow: dict[str, Any] | None = None
    if want_mlflow:
        print("MLflow (subprocess, .venv-peers) ...", file=sys.stderr, flush=True)
        mlflow = run_mlflow(args)
    lo: dict[str, Any] = {}
    no_overrides: dict[str, Any] = {}
    phases: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("buffered", lambda: bench_buffered(args.points, no_overrides)),
        ("durable", lambda: bench_durable(args.durable_calls, no_overrides)),
        ("durable_fsync", lambda: bench_durable(args.durable_calls, no_overrides, fsync=True)),
        ("runs", lambda: bench_runs(args.runs, args.params, args.steps, args.search_repeats, no_overrides)),
        ("search", lambda: bench_search(args.search_runs, args.search_repeats, no_overrides)),
        ("mp", lambda: bench_mp(args.procs, args.proc_points, durable=False)),
    ]
    if args.proc_durable_points > 0:
        phases.append(("mp_durable", lambda: bench_mp(args.procs, args.proc_durable_points, durable=True)))
    for name, job in phases:
        if name.split("_")[0] not in args.only:
            continue
        print(f"LoopML {name} ...", file=sys.stderr, flush=True)
        lo[name] = with_noise(job)
    rows, ratios = build_table(lo, mlflow)
    table = markdown(rows)
    print(table)
    record = {
        "bench": "tracking",
        "started": started,
        "machine": machine_info(),
        "versions": {
            **versions("loopml", "sqlalchemy"),
            **({"mlflow": mlflow["versions"].get("mlflow")} if mlflow else {}),
        },
        "source": source_state(),
        "config": run_config(args),
        "ratios": ratios,
        "loopml": lo,
        "mlflow": mlflow,
        "table": table,
    }
    if not args.no_save:
        append_result("tracking", record)


if __name__ == "__main__":
    main()
