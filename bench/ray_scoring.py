"""Batch scoring: local `score` vs `score(..., executor="ray")` (Ray Data on a local cluster), same model and rows.

    .venv/bin/python bench/ray_scoring.py              # 2,000,000 rows in 10 Parquet files, both models
    .venv/bin/python bench/ray_scoring.py --quick      # 200,000 rows, one repeat: smoke run
    .venv/bin/python bench/ray_scoring.py --models lr  # one model only
    .venv/bin/python bench/ray_scoring.py --rows 1000000 --files 10 --repeats 3

Models, registered with a 2,000-row sample in a fresh temp project, so each has its verified ONNX copy,
which both sides score with (one ONNX Runtime thread per process):
  lr      the batch-scoring tests' classifier: StandardScaler on amount and age, OneHotEncoder on channel,
          LogisticRegression: cheap per row, so the job is mostly reading, checking and writing
  forest  OneHotEncoder on channel, RandomForestClassifier(100 trees, depth <= 12): the model dominates
Data: N rows (customer id, amount, age, channel; seed 0) written as F Parquet files of N/F rows, and once more
as a single file (local `score` takes one file).

  cluster  starting the local Ray cluster: `RayExecutor.connect()` (num_cpus = the machine's CPUs), once
  first    a 1,000-row file scored end to end with the first model, on Ray (actors started, model loaded from the blob store, one
           batch, the part file written and moved into place, the run recorded) and locally: Ray's fixed
           cost per job, paid again by every job (the actors live as long as the job)
  local    score(ref, the single file, out.parquet, log=False); for the first model also with the log
  ray      score(ref, "in/*.parquet", out/, executor="ray", log=False), default pool (the cluster's CPUs
           less one, 1 CPU each) and --workers W actors (spare CPUs / W each); for the first model also the
           default pool with the prediction log (the driver reads the output back to log it)
Every scoring phase runs --repeats times (default 2), each into a new output; the best wall time is reported
and rows/s = rows / wall. The outputs are checked: same rows, same predictions (sum), same probabilities.
Noise: CPU used by processes outside this process's tree (Ray's processes are its descendants) per phase,
as a share of the machine (`other_cpu_share`, from /proc/<pid>/stat; processes that start and end inside a
phase are missed). Prints a markdown table and appends one JSON line to bench/results/ray_scoring.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/, also when imported
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import loopml
from harness import REPO, append_result, fmt_ms, fmt_ratio, markdown_table, run_config, temp_project
from loopml.core.executors import executor_for
from loopml.serving.batch import score

now = time.perf_counter


def rows(count: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer": [f"c{i}" for i in range(count)],
            "amount": np.round(rng.normal(100, 20, count), 2),
            "age": rng.integers(18, 80, count),
            "channel": rng.choice(["web", "shop", "phone"], count),
        }
    )


def model(kind: str, frame: pd.DataFrame) -> Pipeline:
    """`lr`: scaled numbers and one-hot channel into a LogisticRegression; `forest`: 100 trees (depth <= 12)."""
    label = ((frame["amount"] > 100) ^ (frame["channel"] == "phone")).astype(int)
    if kind == "lr":
        columns = ColumnTransformer(
            [
                ("num", StandardScaler(), ["amount", "age"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"]),
            ]
        )
        estimator: Any = LogisticRegression(max_iter=1000)
    else:
        columns = ColumnTransformer(
            [("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"])], remainder="passthrough"
        )
        estimator = RandomForestClassifier(n_estimators=100, max_depth=12, random_state=0)
    return Pipeline([("columns", columns), ("model", estimator)]).fit(frame, label)


# -- noise: CPU of processes outside this process's tree -------------------------------------------------


def _others_cpu_s() -> float:
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    ours = {os.getpid()}
    grew = True
    while grew:
        before = len(ours)
        ours |= {pid for pid, parent in parents.items() if parent in ours}
        grew = len(ours) != before
    return sum(seconds for pid, seconds in cpu.items() if pid not in ours)


def measured(job: Callable[[], Any]) -> tuple[float, Any, dict[str, Any]]:
    """(wall seconds, job's result, noise) of one call."""
    others0, wall0 = _others_cpu_s(), now()
    result = job()
    wall = now() - wall0
    other = max(0.0, _others_cpu_s() - others0)
    cpus = os.cpu_count() or 1
    noise = {"other_cpu_s": round(other, 2), "other_cpu_share": round(other / (wall * cpus), 3)}
    return wall, result, noise


def best(repeats: int, job: Callable[[int], Any]) -> dict[str, Any]:
    """The best of `repeats` runs of `job(i)`, with every wall time and the noise of the best one."""
    runs = [measured(lambda i=i: job(i)) for i in range(repeats)]
    wall, result, noise = min(runs, key=lambda run: run[0])
    return {
        "wall_s": round(wall, 3),
        "walls_s": [round(r[0], 3) for r in runs],
        "result": result,
        "noise": noise,
    }


def summary(path: Path) -> tuple[int, int, float]:
    """Rows, sum of predictions and sum of proba_1 of a scored file or folder."""
    table = pq.read_table(path, columns=["prediction", "proba_1"])
    return (
        table.num_rows,
        int(pd.Series(table.column("prediction")).sum()),
        float(pd.Series(table.column("proba_1")).sum()),
    )


def phases(args: argparse.Namespace, folder: Path, ref: str, *, logs: bool) -> dict[str, tuple[Any, Any]]:
    """name -> (job(i), output(i)) of the scoring phases of one model."""
    glob, single, chunk = str(folder / "in" / "*.parquet"), folder / "all.parquet", args.chunk_rows

    def local(tag: str, **options: Any) -> tuple[Any, Any]:
        out = lambda i: folder / f"{ref}-{tag}-{i}.parquet"  # noqa: E731
        return (lambda i: score(ref, single, out(i), chunk_rows=chunk, **options), out)

    def ray(tag: str, **options: Any) -> tuple[Any, Any]:
        out = lambda i: folder / f"{ref}-{tag}-{i}"  # noqa: E731
        return (lambda i: score(ref, glob, out(i), executor="ray", chunk_rows=chunk, **options), out)

    found = {
        "local": local("local", log=False),
        "ray": ray("ray", log=False),
        "ray_workers": ray("rayw", log=False, workers=args.workers),
    }
    if logs:
        found["local_log"] = local("locallog")
        found["ray_log"] = ray("raylog")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2, help="the second Ray pool's actors")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--models", nargs="+", choices=["lr", "forest"], default=["lr", "forest"])
    parser.add_argument("--quick", action="store_true", help="200,000 rows, one repeat")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeats = 200_000, 1
    cpus = os.cpu_count() or 1
    results: dict[str, Any] = {}
    with temp_project("loopml-bench-ray-") as (tracker, folder):
        sample = rows(2_000, seed=1).drop(columns="customer").astype({"channel": "category"})
        for kind in args.models:
            loopml.models.register(kind, model(kind, sample), sample=sample, tracker=tracker)
            onnx = loopml.models.manifest(kind, tracker=tracker).get("onnx") or {}
            results.setdefault("onnx_copy", {})[kind] = bool(onnx.get("kept"))
        data = rows(args.rows)
        (folder / "in").mkdir()
        for i, part in enumerate(np.array_split(np.arange(args.rows), args.files)):
            data.iloc[part].to_parquet(folder / "in" / f"part-{i:03d}.parquet", index=False)
        data.to_parquet(folder / "all.parquet", index=False)
        data.iloc[:1_000].to_parquet(folder / "small.parquet", index=False)
        del data
        print(
            f"{args.rows:,} rows in {args.files} files; {cpus} CPUs; ONNX copies {results['onnx_copy']}",
            file=sys.stderr,
        )

        cluster = executor_for("ray")
        wall, _, noise = measured(cluster.connect)  # type: ignore[attr-defined]
        results["cluster_start"] = {"wall_s": round(wall, 3), "noise": noise}
        print(f"cluster started in {wall:.1f} s", file=sys.stderr)
        first = args.models[0]
        try:
            results["first_ray"] = best(
                max(2, args.repeats),
                lambda i: (
                    score(
                        first, folder / "small.parquet", folder / f"small-ray-{i}", executor="ray", log=False
                    ).rows
                ),
            )
            results["first_local"] = best(
                max(2, args.repeats),
                lambda i: (
                    score(first, folder / "small.parquet", folder / f"small-{i}.parquet", log=False).rows
                ),
            )
            for kind in args.models:
                checks: dict[str, tuple[int, int, float]] = {}
                for name, (job, where) in phases(args, folder, kind, logs=kind == first).items():
                    print(f"{kind} {name} ...", file=sys.stderr)
                    measurement = best(args.repeats, job)
                    scored = measurement.pop("result")
                    measurement["rows_per_s"] = round(args.rows / measurement["wall_s"])
                    measurement["logged_rows"] = scored.logged_rows
                    checks[name] = summary(where(0))
                    for i in range(args.repeats):  # the outputs take GBs at full size
                        shutil.rmtree(where(i), ignore_errors=True) if where(i).is_dir() else where(
                            i
                        ).unlink()
                    results[f"{kind}_{name}"] = measurement
                    print(
                        f"  {measurement['wall_s']:.1f} s, {measurement['rows_per_s']:,} rows/s",
                        file=sys.stderr,
                    )
                reference = checks["local"]
                for name, (count, positives, proba) in checks.items():
                    assert count == reference[0] == args.rows, (kind, name, count)
                    assert positives == reference[1], (kind, name, positives, reference[1])
                    assert abs(proba - reference[2]) < 1e-6 * args.rows, (kind, name, proba, reference[2])
        finally:
            cluster.shutdown()
    report(args, results)
    append_result(
        "ray_scoring",
        {"time": datetime.now(UTC).isoformat(), "config": run_config(args), "cpus": cpus, "results": results},
    )


def report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    table: list[list[str]] = []
    labels = {
        "local": "local `score` (one process)",
        "ray": "Ray, default pool (CPUs - 1 actors, 1 CPU each)",
        "ray_workers": f"Ray, {args.workers} actors",
        "local_log": "local `score` + prediction log",
        "ray_log": "Ray, default pool + prediction log",
    }
    for kind in args.models:
        for name, label in labels.items():
            phase = results.get(f"{kind}_{name}")
            if phase is None:
                continue
            base = results[f"{kind}_local_log" if name.endswith("_log") else f"{kind}_local"]["rows_per_s"]
            table.append(
                [
                    kind,
                    label,
                    f"{phase['wall_s']:.2f} s",
                    f"{phase['rows_per_s']:,}",
                    fmt_ratio(phase["rows_per_s"] / base),
                    f"{phase['noise']['other_cpu_share']:.3f}",
                ]
            )
    print(
        f"\n{args.rows:,} rows, {args.files} Parquet files, chunk_rows {args.chunk_rows:,}, best of {args.repeats}\n"
    )
    print(markdown_table(table, ["model", "scoring", "wall", "rows/s", "vs local", "other_cpu_share"]))
    fixed = [
        ["start the local cluster (once)", fmt_ms(results["cluster_start"]["wall_s"] * 1000), "-"],
        [
            f"a 1,000-row job, {args.models[0]} (first batch, end to end)",
            fmt_ms(results["first_ray"]["wall_s"] * 1000),
            fmt_ms(results["first_local"]["wall_s"] * 1000),
        ],
    ]
    print()
    print(markdown_table(fixed, ["Ray's fixed cost", "Ray", "local"]))
    print(f"\ncommit: {_commit()}")


def _commit() -> str:
    head = REPO / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (REPO / ".git" / ref[5:]).read_text().strip()[:7]
        return ref[:7]
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
