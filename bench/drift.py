"""LoopML's drift report vs Evidently's DataDriftPreset, side by side in one run, on the same synthetic data.

    .venv/bin/python bench/drift.py             # 10k, 100k, 1M rows (~4 min with Evidently at 1M)
    .venv/bin/python bench/drift.py --quick     # 10k and 100k rows
    .venv/bin/python bench/drift.py --no-evidently

Data (identical on both sides; `make_data` is a copy of ../shared/bench/peers/drift_evidently.py's): reference
and current frames of R rows, 20 numeric N(0, 1) columns and 5 categorical (10 string levels); the current
frame is shifted in num_0..num_2 (+0.5 mean) and cat_0..cat_1 (level shares 2.0 .. 0.5, normalised).
Each engine x size runs in its own subprocess, so peak memory is per case: the worker generates the data,
resets its peak-RSS mark (/proc/self/clear_refs), and reports the peak during the operation minus the RSS
before it ("on top of the loaded frames").

  loopml raw      `drift_report(reference=ref_df, current=cur_df)`
  loopml profile  the reference profiled once (`profile_columns`, timed apart: that is the dataset version's
                  job), stored as JSON (its size) and read back; then `drift_report(reference=profile,
                  current=cur_df)`; the reference frame is deleted before the measurement
  loopml same     `drift_report` of two independent unshifted samples (seeds 0 and 1): no column may drift
  evidently       bench/peers/drift_evidently.py --engines evidently with .venv-peers/bin/python
                  (Evidently never enters LoopML's venv): `Report([DataDriftPreset()])`, Dataset creation
                  included in `op_s`, as in the peer's own numbers
Noise: the share of machine CPU other processes used during each case. Prints a markdown table and appends
one JSON line to bench/results/drift.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import PEERS_PYTHON, append_result, fmt_met, markdown_table, noise, now
from peers.common import peak_rss_mib, reset_peak_rss, rss_mib

N_NUM, N_CAT, N_LEVELS = 20, 5, 10
SHIFTED = {"num_0", "num_1", "num_2", "cat_0", "cat_1"}
EVIDENTLY_SCRIPT = Path(__file__).resolve().parent / "peers" / "drift_evidently.py"  # ours, from shared/
CASES = ("raw", "profile", "same")


def make_data(rows: int, seed: int = 0, *, shifted: bool = True) -> tuple[Any, Any]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    levels = np.array([f"lvl_{i}" for i in range(N_LEVELS)], dtype=object)
    p_ref = np.full(N_LEVELS, 1.0 / N_LEVELS)
    p_cur = np.linspace(2.0, 0.5, N_LEVELS)
    p_cur /= p_cur.sum()

    def frame(shift: bool) -> Any:
        cols = {}
        for i in range(N_NUM):
            x = rng.standard_normal(rows)
            if shift and f"num_{i}" in SHIFTED:
                x += 0.5
            cols[f"num_{i}"] = x
        for i in range(N_CAT):
            p = p_cur if (shift and f"cat_{i}" in SHIFTED) else p_ref
            cols[f"cat_{i}"] = levels[rng.choice(N_LEVELS, size=rows, p=p)]
        return pd.DataFrame(cols)

    return frame(False), frame(shifted)


def worker(rows: int, case: str) -> dict[str, Any]:
    from loopml.monitoring import drift_report
    from loopml.stats import TableProfile, profile_columns

    out: dict[str, Any] = {"rows": rows, "case": case}
    if case == "same":
        ref, _ = make_data(rows, 0, shifted=False)
        cur, _ = make_data(rows, 1, shifted=False)
    else:
        ref, cur = make_data(rows)
    reference: Any = ref
    if case == "profile":
        t = now()
        profile = profile_columns({c: ref[c].to_numpy() for c in ref.columns})
        out["profile_s"] = round(now() - t, 3)
        text = json.dumps(profile.to_dict())
        out["profile_kib"] = round(len(text.encode()) / 1024, 1)
        reference = TableProfile.from_dict(json.loads(text))
        del ref, profile, text
    gc.collect()
    out["peak_reset"] = reset_peak_rss()
    before = rss_mib()
    t = now()
    report = drift_report(reference=reference, current=cur)
    out["op_s"] = round(now() - t, 3)
    out["op_peak_delta_mib"] = round(peak_rss_mib() - before, 1)
    out["flagged"] = sorted(report.drifted_columns)
    out["scores"] = {n: c.score for n, c in report.columns.items()}
    return out


def run_case(cmd: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with noise(result):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"error": proc.stderr[-1500:], **result}
    return {**json.loads(lines[-1]), **result}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--quick", action="store_true", help="10k and 100k rows only")
    ap.add_argument("--no-evidently", action="store_true")
    ap.add_argument("--worker", nargs=2, metavar=("ROWS", "CASE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(int(args.worker[0]), args.worker[1])))
        return
    sizes = [10_000, 100_000] if args.quick else args.rows
    peers = not args.no_evidently and PEERS_PYTHON.exists() and EVIDENTLY_SCRIPT.exists()
    results: dict[str, dict[str, Any]] = {}
    for rows in sizes:
        for case in CASES:
            print(f"loopml {case} {rows:,} ...", file=sys.stderr, flush=True)
            results[f"loopml_{case}_{rows}"] = run_case(
                [sys.executable, __file__, "--worker", str(rows), case]
            )
        if peers:
            print(f"evidently {rows:,} (subprocess, .venv-peers) ...", file=sys.stderr, flush=True)
            cmd = [str(PEERS_PYTHON), str(EVIDENTLY_SCRIPT), "--rows", str(rows), "--engines", "evidently",
                   "--warm-max-rows", "0", "--timeout", "900"]  # fmt: skip
            peer = run_case(cmd)
            results[f"evidently_{rows}"] = {**(peer.get("results") or [{}])[0], "noise": peer.get("noise")}
    print(report(sizes, results, peers))
    append_result(
        "drift",
        {"bench": "drift", "at": datetime.now(UTC).isoformat(), "config": vars(args), "results": results},
    )


def report(sizes: list[int], results: dict[str, dict[str, Any]], peers: bool) -> str:
    rows_out: list[list[str]] = []
    big = max(sizes)
    for rows in sizes:
        raw, prof, same = (results[f"loopml_{c}_{rows}"] for c in CASES)
        evi = results.get(f"evidently_{rows}", {})
        evi_s = evi.get("op_s")
        at_target = rows == big and big >= 1_000_000

        def target(text: str, ok: bool, at: bool = at_target) -> str:
            return f"{text}: {fmt_met(ok)}" if at else "-"

        ratio = (evi_s / raw["op_s"]) if evi_s and raw.get("op_s") else None
        rows_out += [
            [f"{rows:,}", "full report from raw frames (s)", f"{raw.get('op_s')}", f"{evi_s}",
             f"{ratio:.0f}x" if ratio else "-", target("<= 3 s and >= 20x", raw.get("op_s", 99) <= 3 and (ratio or 0) >= 20)],
            [f"{rows:,}", "against a stored reference profile (s)", f"{prof.get('op_s')}", "needs raw rows", "-",
             target("<= 1.5 s", prof.get("op_s", 99) <= 1.5)],
            [f"{rows:,}", "profiling the reference once (s, dataset version's job)", f"{prof.get('profile_s')}", "-", "-", "-"],
            [f"{rows:,}", "stored profile size (KiB)", f"{prof.get('profile_kib')}", "-", "-",
             target("<= 1 MB", prof.get("profile_kib", 1e9) <= 1024)],
            [f"{rows:,}", "memory on top of the loaded frames (MiB): raw / profile", f"{raw.get('op_peak_delta_mib')} / {prof.get('op_peak_delta_mib')}",
             f"{evi.get('op_peak_delta_mib')}", "-", target("<= 0.3 GB", max(raw.get("op_peak_delta_mib", 1e9), prof.get("op_peak_delta_mib", 1e9)) <= 307)],
            [f"{rows:,}", "flagged (raw / profile; shifted: num_0-2, cat_0-1)", f"{', '.join(raw.get('flagged', []))} / {', '.join(prof.get('flagged', []))}",
             f"{evi.get('drifted_columns')} columns", "-",
             f"exactly the 5 shifted: {fmt_met(set(raw.get('flagged', [])) == SHIFTED and set(prof.get('flagged', [])) == SHIFTED)}"],
            [f"{rows:,}", "flagged on two samples of one distribution", f"{same.get('flagged')}", "-", "-",
             f"none: {fmt_met(same.get('flagged') == [])}"],
            [f"{rows:,}", "noise: other CPU share (raw, profile, same, evidently)",
             ", ".join(str((r.get("noise") or {}).get("other_cpu_share")) for r in (raw, prof, same, evi)), "-", "-", "quiet: <= 0.05"],
        ]  # fmt: skip
    head = ["rows", "measure", "LoopML", "Evidently" if peers else "Evidently (not run)", "ratio", "target"]
    return markdown_table(rows_out, head)


if __name__ == "__main__":
    main()
