#!/usr/bin/env python3
"""MLflow tracking throughput with a SQLite backend store, in one process.

Vendored from shared/bench/peers/tracking_mlflow.py (ours) so that bench/tracking.py works without ../shared.
Changes: `--batch-metrics` (size of the log_batch part, default --n-metrics), `--no-history-check`,
ruff fixes. Run it with the MLflow venv (.venv-peers, see bench/setup_peers.sh), never with LoopML's.

Measures (all through MLflow's public API):
  1. N single-metric calls: mlflow.log_metric(key, value, step=i)      (synchronous)
  2. the same N values via one MlflowClient.log_batch call
     (MLflow splits it into chunks of 1000 metrics internally)
  3. R runs, each with P params + S metric steps, logged with one log_batch per run
  4. search_runs over those R runs with a filter on a metric (pandas and list output)
  5. N single-metric calls with synchronous=False (async logging), enqueue time
     and time until flushed, if this MLflow version supports it

Prints one JSON line. Everything lives in a fresh temp dir unless --workdir is given.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, machine_info, now, summarize_ms, versions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-metrics", type=int, default=2000, help="single log_metric calls (and async calls)")
    ap.add_argument(
        "--batch-metrics",
        type=int,
        default=None,
        help="values in the one log_batch call (default: --n-metrics)",
    )
    ap.add_argument("--runs", type=int, default=50, help="runs for the batch/search part")
    ap.add_argument("--params", type=int, default=20, help="params per run")
    ap.add_argument("--steps", type=int, default=100, help="metric steps per run")
    ap.add_argument("--search-repeats", type=int, default=20)
    ap.add_argument(
        "--workdir", default=None, help="dir for mlflow.db and artifacts (default: fresh temp dir, removed)"
    )
    ap.add_argument("--no-async", action="store_true", help="skip the synchronous=False part")
    ap.add_argument("--no-history-check", action="store_true", help="skip reading back the logged histories")
    args = ap.parse_args()

    own_dir = args.workdir is None
    workdir = args.workdir or tempfile.mkdtemp(prefix="peer-mlflow-track-")
    os.makedirs(workdir, exist_ok=True)
    db = os.path.join(workdir, "mlflow.db")
    art = os.path.join(workdir, "artifacts")
    os.makedirs(art, exist_ok=True)

    res: dict = {
        "bench": "tracking_mlflow",
        "machine": machine_info(),
        "versions": versions("mlflow", "sqlalchemy"),
        "config": {
            "backend": "sqlite (temp dir)",
            "n_metrics": args.n_metrics,
            "batch_metrics": args.batch_metrics or args.n_metrics,
            "runs": args.runs,
            "params": args.params,
            "steps": args.steps,
        },
    }

    t0 = now()
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    res["import_s"] = round(now() - t0, 3)

    t0 = now()
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    client = MlflowClient()
    exp_id = client.create_experiment("peer-bench", artifact_location=f"file://{art}/peer-bench")
    res["create_experiment_s"] = round(now() - t0, 3)  # includes DB schema creation/migrations

    rnd = random.Random(0)
    values = [rnd.random() for _ in range(args.n_metrics)]
    N = args.n_metrics
    NB = args.batch_metrics or N
    batch_values = values if NB == N else [rnd.random() for _ in range(NB)]

    # --- 1+2: one run, N single calls then the same N values in one log_batch ---
    mlflow.set_experiment(experiment_id=exp_id)
    with mlflow.start_run(run_name="single-vs-batch") as run:
        run_id = run.info.run_id
        lat = []
        cpu0 = time.process_time()
        t_all = now()
        for i, v in enumerate(values):
            t = now()
            mlflow.log_metric("m_single", v, step=i)
            lat.append(now() - t)
        el = now() - t_all
        res["log_metric_single"] = {
            "calls": N,
            "seconds": round(el, 4),
            "calls_per_s": round(N / el, 1),
            "process_cpu_s": round(time.process_time() - cpu0, 3),
            **summarize_ms(lat),
        }

        ts = int(time.time() * 1000)
        metrics = [Metric("m_batch", v, ts, i) for i, v in enumerate(batch_values)]
        t = now()
        client.log_batch(run_id, metrics=metrics)
        el = now() - t
        res["log_batch_same_values"] = {
            "metrics": NB,
            "seconds": round(el, 4),
            "metrics_per_s": round(NB / el, 1),
            "note": "one client call; MLflow chunks it into batches of <=1000 metrics",
        }

    # sanity: all values stored
    if not args.no_history_check:
        res["check_single_history_len"] = len(client.get_metric_history(run_id, "m_single"))
        res["check_batch_history_len"] = len(client.get_metric_history(run_id, "m_batch"))

    # --- 3: R runs x P params x S steps, one log_batch per run ---
    exp2 = client.create_experiment("peer-bench-runs", artifact_location=f"file://{art}/peer-bench-runs")
    per_run = []
    t_all = now()
    finals = []
    for r in range(args.runs):
        t = now()
        run = client.create_run(exp2, run_name=f"run-{r}")
        rid = run.info.run_id
        ts = int(time.time() * 1000)
        params = [Param(f"p{j}", str(rnd.random())) for j in range(args.params)]
        base = rnd.random()
        loss = [Metric("loss", base * (1.0 - s / (2.0 * args.steps)), ts + s, s) for s in range(args.steps)]
        finals.append(loss[-1].value)
        client.log_batch(rid, metrics=loss, params=params)
        client.set_terminated(rid)
        per_run.append(now() - t)
    el = now() - t_all
    res["runs_log_batch"] = {
        "runs": args.runs,
        "seconds": round(el, 4),
        "runs_per_s": round(args.runs / el, 2),
        "values_per_s": round(args.runs * (args.params + args.steps) / el, 1),
        "per_run": summarize_ms(per_run),
        "note": "per run: create_run + 1 log_batch(params+metric steps) + set_terminated",
    }

    # --- 4: search_runs with a metric filter ---
    thr = sorted(finals)[len(finals) // 2] if finals else 0.5
    flt = f"metrics.loss < {thr}"
    expected = sum(1 for f in finals if f < thr)
    for fmt in ("pandas", "list"):
        times = []
        n_found = None
        for _ in range(args.search_repeats):
            t = now()
            out = mlflow.search_runs(experiment_ids=[exp2], filter_string=flt, output_format=fmt)
            times.append(now() - t)
            n_found = len(out)
        res[f"search_runs_{fmt}"] = {
            "runs_in_experiment": args.runs,
            "matched": n_found,
            "expected": expected,
            "filter": "metrics.loss < median",
            **summarize_ms(times),
        }

    # --- 5: async logging ---
    if not args.no_async:
        try:
            with mlflow.start_run(run_name="async") as run:
                rid = run.info.run_id
                t_all = now()
                for i, v in enumerate(values):
                    mlflow.log_metric("m_async", v, step=i, synchronous=False)
                enq = now() - t_all
                mlflow.flush_async_logging()
                tot = now() - t_all
            stored = None if args.no_history_check else len(client.get_metric_history(rid, "m_async"))
            res["log_metric_async"] = {
                "calls": N,
                "enqueue_seconds": round(enq, 4),
                "enqueue_calls_per_s": round(N / enq, 1),
                "seconds_until_flushed": round(tot, 4),
                "effective_calls_per_s": round(N / tot, 1),
                "stored": stored,
            }
        except Exception as e:  # pragma: no cover - depends on mlflow version
            res["log_metric_async"] = {"error": f"{type(e).__name__}: {e}"}

    res["db_size_mib"] = round(os.path.getsize(db) / 2**20, 2)
    if own_dir:
        shutil.rmtree(workdir, ignore_errors=True)
    emit(res)


if __name__ == "__main__":
    main()
