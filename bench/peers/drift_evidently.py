#!/usr/bin/env python3
"""Evidently data-drift report time and peak memory vs a raw scipy loop.

Synthetic data: reference and current DataFrames of R rows with 20 numeric
(float64, N(0,1)) and 5 categorical (object strings, 10 levels) columns.
The current frame is shifted in 5 columns: num_0..num_2 (+0.5 mean shift)
and cat_0..cat_1 (changed level probabilities).

Engines (each run in its own fresh subprocess, so peak RSS is per engine/size):
  evidently      Report([DataDriftPreset()])  (Evidently's default tests:
                 for >1000 rows Wasserstein for numeric, Jensen-Shannon for categorical)
  evidently_ks   DataDriftPreset(num_method="ks", cat_method="chisquare")
  raw_ks         plain loop: scipy.stats.ks_2samp per numeric column,
                 scipy.stats.chi2_contingency of the 2 x levels count table per categorical
  raw_wd         plain loop: scipy.stats.wasserstein_distance (normed by ref std)
                 per numeric column, scipy.spatial.distance.jensenshannon per categorical
Evidently's first run in a process is timed (run_s); for sizes up to
--warm-max-rows a second run in the same process is timed too (run_s_warm).
Peak memory: resource.getrusage(RUSAGE_SELF).ru_maxrss of the worker process
(same number /usr/bin/time -v reports as 'Maximum resident set size'), reset
after data generation via /proc/self/clear_refs so that peak_rss_mib is the
peak during the drift computation (data + libraries + the operation) and
op_peak_delta_mib is what the operation added on top of the loaded data.

Usage:
  python drift_evidently.py                       # rows 10k,100k,1M x all engines
  python drift_evidently.py --rows 10000 100000 --engines evidently raw_ks
Prints one JSON line (the driver); --worker runs one engine/size and prints its JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, machine_info, now, peak_rss_mib, reset_peak_rss, rss_mib, versions

N_NUM, N_CAT, N_LEVELS = 20, 5, 10
SHIFT_NUM = ["num_0", "num_1", "num_2"]
SHIFT_CAT = ["cat_0", "cat_1"]
ENGINES = ["evidently", "evidently_ks", "raw_ks", "raw_wd"]


def make_data(rows: int, seed: int = 0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    levels = np.array([f"lvl_{i}" for i in range(N_LEVELS)], dtype=object)
    p_ref = np.full(N_LEVELS, 1.0 / N_LEVELS)
    p_cur = np.linspace(2.0, 0.5, N_LEVELS)
    p_cur /= p_cur.sum()

    def frame(shift: bool, rng):
        cols = {}
        for i in range(N_NUM):
            x = rng.standard_normal(rows)
            if shift and f"num_{i}" in SHIFT_NUM:
                x += 0.5
            cols[f"num_{i}"] = x
        for i in range(N_CAT):
            p = p_cur if (shift and f"cat_{i}" in SHIFT_CAT) else p_ref
            cols[f"cat_{i}"] = levels[rng.choice(N_LEVELS, size=rows, p=p)]
        return pd.DataFrame(cols)

    return frame(False, rng), frame(True, rng)


def num_cols():
    return [f"num_{i}" for i in range(N_NUM)]


def cat_cols():
    return [f"cat_{i}" for i in range(N_CAT)]


def import_engine(engine: str) -> float:
    t0 = now()
    if engine.startswith("evidently"):
        import evidently  # noqa: F401
        from evidently.presets import DataDriftPreset  # noqa: F401
    else:
        import scipy.spatial.distance
        import scipy.stats  # noqa: F401
    return round(now() - t0, 3)


def run_evidently(ref, cur, ks: bool, warm: bool) -> dict:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    out = {}
    t0 = now()
    definition = DataDefinition(numerical_columns=num_cols(), categorical_columns=cat_cols())
    ds_ref = Dataset.from_pandas(ref, data_definition=definition)
    ds_cur = Dataset.from_pandas(cur, data_definition=definition)
    out["dataset_s"] = round(now() - t0, 3)
    preset = DataDriftPreset(num_method="ks", cat_method="chisquare") if ks else DataDriftPreset()
    t0 = now()
    snap = Report([preset]).run(ds_cur, ds_ref)
    out["run_s"] = round(now() - t0, 3)
    if warm:  # second run in the same process (lazy one-time setup already done)
        t0 = now()
        Report([preset]).run(ds_cur, ds_ref)
        out["run_s_warm"] = round(now() - t0, 3)
    t0 = now()
    js = snap.json()
    out["snapshot_json_s"] = round(now() - t0, 3)
    out["snapshot_json_kib"] = round(len(js) / 1024, 1)
    drifted = None
    for m in snap.dict().get("metrics", []):
        mid = str(m.get("metric_name", m.get("metric_id", "")))
        if mid.startswith("DriftedColumnsCount"):
            v = m.get("value")
            drifted = v.get("count") if isinstance(v, dict) else v
    out["drifted_columns"] = drifted
    out["op_s"] = round(out["dataset_s"] + out["run_s"], 3)
    return out


def run_raw(ref, cur, kind: str) -> dict:
    import numpy as np
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

    t0 = now()
    drifted = 0
    for c in num_cols():
        a = ref[c].to_numpy()
        b = cur[c].to_numpy()
        if kind == "ks":
            if stats.ks_2samp(a, b).pvalue < 0.05:
                drifted += 1
        else:
            sd = a.std()
            if stats.wasserstein_distance(a, b) / (sd if sd else 1.0) >= 0.1:
                drifted += 1
    for c in cat_cols():
        rc = ref[c].value_counts()
        cc = cur[c].value_counts()
        keys = rc.index.union(cc.index)
        r = rc.reindex(keys, fill_value=0).to_numpy(dtype=float)
        k = cc.reindex(keys, fill_value=0).to_numpy(dtype=float)
        if kind == "ks":
            if stats.chi2_contingency(np.vstack([r, k])).pvalue < 0.05:
                drifted += 1
        else:
            if jensenshannon(r / r.sum(), k / k.sum()) >= 0.1:
                drifted += 1
    return {"op_s": round(now() - t0, 3), "drifted_columns": drifted}


def worker(rows: int, engine: str, warm: bool) -> dict:
    import_s = import_engine(engine)  # before measuring: RSS baseline includes the libraries
    t0 = now()
    ref, cur = make_data(rows)
    gen_s = now() - t0
    gc.collect()
    datagen_peak = peak_rss_mib()
    reset = reset_peak_rss()  # so the peak below is the operation's, not the data generation's
    rss_before = rss_mib()
    peak_before = peak_rss_mib()
    if engine == "evidently":
        out = run_evidently(ref, cur, ks=False, warm=warm)
    elif engine == "evidently_ks":
        out = run_evidently(ref, cur, ks=True, warm=warm)
    elif engine == "raw_ks":
        out = run_raw(ref, cur, "ks")
    elif engine == "raw_wd":
        out = run_raw(ref, cur, "wd")
    else:
        raise SystemExit(f"unknown engine {engine}")
    peak_after = peak_rss_mib()
    return {
        "rows": rows,
        "engine": engine,
        "import_s": import_s,
        "datagen_s": round(gen_s, 3),
        "data_mib": round((ref.memory_usage(deep=True).sum() + cur.memory_usage(deep=True).sum()) / 2**20, 1),
        "datagen_peak_rss_mib": datagen_peak,
        "peak_reset": reset,
        "rss_before_op_mib": rss_before,
        "peak_rss_mib": peak_after,
        "op_peak_delta_mib": round(peak_after - rss_before, 1)
        if (reset or peak_after > peak_before)
        else None,
        **out,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--engines", nargs="+", default=ENGINES, choices=ENGINES)
    ap.add_argument(
        "--timeout", type=float, default=300.0, help="seconds per worker; larger sizes are skipped after one"
    )
    ap.add_argument(
        "--warm-max-rows",
        type=int,
        default=100_000,
        help="also time a second (warm) Evidently run for sizes up to this many rows",
    )
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        emit(worker(args.rows[0], args.engines[0], args.rows[0] <= args.warm_max_rows))
        return

    results = []
    timed_out = set()
    for rows in args.rows:
        for eng in args.engines:
            if eng in timed_out:
                results.append({"rows": rows, "engine": eng, "skipped": "smaller size timed out"})
                continue
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--worker",
                "--rows",
                str(rows),
                "--engines",
                eng,
                "--warm-max-rows",
                str(args.warm_max_rows),
            ]
            t0 = now()
            try:
                p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=args.timeout)
                line = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
                r = json.loads(line[-1]) if line else {"rows": rows, "engine": eng, "error": p.stderr[-1500:]}
            except subprocess.TimeoutExpired:
                timed_out.add(eng)
                r = {"rows": rows, "engine": eng, "error": f"timeout after {args.timeout}s"}
            r["process_wall_s"] = round(now() - t0, 2)
            results.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
    emit(
        {
            "bench": "drift_evidently",
            "machine": machine_info(),
            "versions": versions("evidently", "scipy", "pandas", "numpy"),
            "config": {"numeric": N_NUM, "categorical": N_CAT, "shifted": SHIFT_NUM + SHIFT_CAT},
            "results": results,
        }
    )


if __name__ == "__main__":
    main()
