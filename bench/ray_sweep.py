"""Sweeps on one machine and on Ray: 16 trials of the same training, locally, on LoopML's Ray executor, and
with Ray Tune beside them; the per-task costs they pay; a paper estimate for a 10-node cluster.

    .venv/bin/python bench/ray_sweep.py            # ~4 min on 2 cores
    .venv/bin/python bench/ray_sweep.py --quick    # 4 trials, small data: a smoke test

Each trial fits a scikit-learn LogisticRegression on synthetic rows (about 0.3 s of one CPU). The pipeline
module is written into a fresh temp dir (steps need source for their code fingerprints), and every LoopML
measurement uses a fresh temp project. Phases:

  inline      one trial's pipeline, run in this process: the compute a trial needs (c)
  threads     loopml.sweep(..., executor="threads:2")
  processes   loopml.sweep(..., executor="processes:2")
  ray start   ray.init of a local 2-CPU cluster (loopback only)
  ray         loopml.sweep(..., executor="ray") on that cluster: steps as Ray tasks, trials driven here
  ray tune    the same fit as a Ray Tune function trainable over the same 16 configs (the peer)
  task cost   a 1-step pipeline of a trivial step, 20 runs, on threads and on Ray: what a step costs beyond
              its compute (o); and a bare RayExecutor round-trip of a trivial function (200 tasks)
The estimate: a sweep of N trials on P CPUs takes about F + max(ceil(N / P) * (c + o), N * d), where d is
the driver's own time per trial (the driver records every run; it is the serial part) and F the fixed cost
the measured Ray sweep paid beyond its waves of trials (worker start and imports, the first trial alone).
Prints a markdown table and appends one JSON line to bench/results/ray_sweep.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import append_result, fmt_ratio, markdown_table, run_config, temp_project, with_noise

now = time.perf_counter

MODULE = """
import numpy as np
import loopml

ROWS = {rows}


def fit_score(C: float, seed: int = 0) -> float:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(ROWS, 20))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.5, size=ROWS) > 0).astype(int)
    model = LogisticRegression(C=C, max_iter=200).fit(X[: ROWS // 2], y[: ROWS // 2])
    return float(model.score(X[ROWS // 2 :], y[ROWS // 2 :]))


@loopml.step(cache=False)
def fit(C: float, seed: int) -> dict:
    return {{"accuracy": fit_score(C, seed)}}


@loopml.pipeline
def objective(C: float = 1.0, seed: int = 0):
    return fit(C, seed)


@loopml.step(cache=False)
def trivial(x: int) -> int:
    return x + 1


@loopml.pipeline
def one_step(x: int = 0):
    return trivial(x)


def square(x: int) -> int:
    return x * x


def tune_trainable(config: dict) -> dict:
    return {{"accuracy": fit_score(config["C"], config["seed"])}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    trials = 4 if args.quick else 16
    rows = 4_000 if args.quick else 400_000  # about 0.3 s of one CPU per trial
    code = Path(tempfile.mkdtemp(prefix="loopml-bench-ray-"))
    (code / "sweep_module.py").write_text(textwrap.dedent(MODULE.format(rows=rows)))
    sys.path.insert(0, str(code))
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before Ray is imported: loopback only
    import sweep_module as module

    space = {"C": [10 ** (i / 4 - 2) for i in range(trials)], "seed": [0]}
    results: dict[str, Any] = {"trials": trials, "rows": rows}

    results["inline"] = with_noise(lambda: _timed_runs(module.objective, {"C": 1.0, "seed": 0}, "inline", 3))
    for executor in ("threads:2", "processes:2"):
        results[executor] = with_noise(lambda e=executor: _sweep(module, space, e))

    import ray

    started = now()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=256 * 2**20,
        runtime_env={"env_vars": {"PYTHONPATH": str(code)}},  # for Ray Tune's workers; LoopML sends sys.path
    )
    results["ray_start_s"] = now() - started
    results["ray"] = with_noise(lambda: _sweep(module, space, "ray"))
    results["ray_tune"] = with_noise(lambda: _tune(module, space))
    results["task_threads"] = _timed_runs(module.one_step, {"x": 1}, "threads", 20)
    results["task_ray"] = _timed_runs(module.one_step, {"x": 1}, "ray", 20)
    results["ray_roundtrip_ms"] = _roundtrip(module.square, 200)
    ray.shutdown()

    results["estimate"] = _estimate(results)
    print(_table(results))
    append_result("ray_sweep", {**run_config(args), **results})


def _sweep(module: Any, space: dict[str, list[Any]], executor: str) -> dict[str, Any]:
    from loopml.pipelines.sweep import sweep

    with temp_project("loopml-bench-sweep-") as (tracker, _):
        started = now()
        result = sweep(module.objective, space, metric="accuracy", executor=executor, tracker=tracker)
        wall = now() - started
    return {
        "wall_s": wall,
        "best": result.best.value,
        "failed": sum(t.error is not None for t in result.trials),
    }


def _tune(module: Any, space: dict[str, list[Any]]) -> dict[str, Any]:
    from ray import tune

    with tempfile.TemporaryDirectory(prefix="loopml-bench-tune-") as storage:
        tuner = tune.Tuner(
            tune.with_resources(module.tune_trainable, {"cpu": 1}),
            param_space={"C": tune.grid_search(space["C"]), "seed": 0},
            tune_config=tune.TuneConfig(metric="accuracy", mode="max"),
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        )
        started = now()
        grid = tuner.fit()
        wall = now() - started
    return {"wall_s": wall, "best": grid.get_best_result().metrics["accuracy"], "failed": len(grid.errors)}


def _timed_runs(pipeline: Any, params: dict[str, Any], executor: str, count: int) -> dict[str, Any]:
    with temp_project("loopml-bench-task-") as (tracker, _):
        pipeline.run(params, executor=executor, tracker=tracker)  # warm: imports, workers, fingerprints
        times = []
        for _ in range(count):
            started = now()
            pipeline.run(params, executor=executor, tracker=tracker)
            times.append(now() - started)
    return {"median_s": statistics.median(times), "runs": count}


def _roundtrip(fn: Any, count: int) -> float:
    from loopml.core.executors import executor_for

    executor = executor_for("ray")
    executor.map(fn, range(10))
    started = now()
    for i in range(count):
        executor.submit(fn, i).result()
    return (now() - started) / count * 1000


def _estimate(results: dict[str, Any]) -> dict[str, Any]:
    compute = results["inline"]["median_s"] - results["task_threads"]["median_s"]  # c: the fit alone
    overhead = results["task_ray"]["median_s"] - results["task_threads"]["median_s"]  # o: a step on Ray
    driver = results["task_threads"]["median_s"]  # d: recording one 1-step pipeline run
    # F: what the measured Ray sweep took beyond its waves of trials (workers starting, imports, first trial
    # alone); paid once per sweep on a warm cluster of any size.
    waves = math.ceil(results["trials"] / 2)
    fixed = max(0.0, results["ray"]["wall_s"] - waves * (compute + overhead))
    estimate: dict[str, Any] = {
        "compute_s": compute,
        "ray_step_overhead_s": overhead,
        "driver_per_trial_s": driver,
        "fixed_s": fixed,
    }
    for trials in (16, 1000):
        for cpus in (2, 80):  # this machine; 10 nodes of 8 CPUs
            wall = fixed + max(math.ceil(trials / cpus) * (compute + overhead), trials * driver)
            estimate[f"{trials}_trials_{cpus}_cpus_s"] = wall
    return estimate


def _table(results: dict[str, Any]) -> str:
    base = results["threads:2"]["wall_s"]
    rows = []
    for label, key in (
        ("threads:2", "threads:2"),
        ("processes:2", "processes:2"),
        ("LoopML on Ray", "ray"),
        ("Ray Tune (peer)", "ray_tune"),
    ):
        wall = results[key]["wall_s"]
        rows.append([f"{results['trials']} trials, {label}", f"{wall:.1f} s", fmt_ratio(wall / base)])
    rows.append(
        ["Ray Tune / LoopML on Ray", "", fmt_ratio(results["ray_tune"]["wall_s"] / results["ray"]["wall_s"])]
    )
    rows.append(["local Ray cluster start", f"{results['ray_start_s']:.1f} s", ""])
    rows.append(["1-step pipeline run, threads", f"{results['task_threads']['median_s'] * 1000:.0f} ms", ""])
    rows.append(["1-step pipeline run, Ray", f"{results['task_ray']['median_s'] * 1000:.0f} ms", ""])
    rows.append(["bare Ray task round trip", f"{results['ray_roundtrip_ms']:.1f} ms", ""])
    estimate = results["estimate"]
    for trials in (16, 1000):
        for cpus in (2, 80):
            rows.append(
                [
                    f"estimate: {trials} trials on {cpus} CPUs",
                    f"{estimate[f'{trials}_trials_{cpus}_cpus_s']:.1f} s",
                    "",
                ]
            )
    return (
        markdown_table(rows, ["measurement", "value", "vs threads:2"])
        + "\n\n"
        + json.dumps(estimate, indent=1)
    )


if __name__ == "__main__":
    main()
