"""The automation controller's own cost: an idle tick, and a retrain loop end to end, on the demo's data.

    .venv/bin/python bench/automation.py            # ~1 minute
    .venv/bin/python bench/automation.py --quick

No peer runs this loop (Airflow, Prefect, ZenML and Metaflow leave "retrain on drift, gate against the champion,
roll out" to user code; ../shared/research/orchestration.md), so there is no ratio here; the numbers to compare
are the research's per-task overheads of those schedulers (Prefect ~12 ms per task, Airflow 0.8-1.1 s between
dependent tasks) against the controller's per-tick and per-decision overheads measured below.

Measured, in a fresh temp project with the demo's policy (direct rollout, a manual trigger):
  idle tick        `Controller.tick()` with nothing to do: lease, trigger cursors, state read, lease release
                   (monitoring off, so only the loop's own cost): median of N ticks
  loop             manual trigger -> pipeline run (20,000 rows, 60 trees) -> gates -> promotion, one tick:
                   wall time, and the same minus the pipeline run (the controller's share)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    ticks = 20 if args.quick else 200
    rows = 5_000 if args.quick else 20_000
    import loopml
    from loopml.automation.controller import Controller
    from loopml.automation.triggers import request_manual
    from loopml.demo.fraud_data import transactions
    from loopml.demo.fraud_pipeline import train_fraud

    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        (project / "loopml.toml").write_text(
            '[models.fraud.automation]\npipeline = "loopml.demo.fraud_pipeline:train_fraud"\n'
            'data = "transactions"\nparams = { n_estimators = 60 }\n'
            "[models.fraud.automation.triggers]\nnew_data = true\n"
        )
        loopml.configure(project_dir=project)
        tracker = loopml.Client().tracker
        loopml.datasets.add("transactions", transactions(rows, seed=1), tracker=tracker)
        train_fraud.run({"n_estimators": 60}, tracker=tracker)
        loopml.models.promote("fraud", 1, reason="first", tracker=tracker)
        controller = Controller(tracker, monitor=False)
        controller.tick()  # first look: cursors
        idle = []
        for _ in range(ticks):
            started = time.perf_counter()
            controller.tick()
            idle.append((time.perf_counter() - started) * 1000)
        loopml.datasets.add("transactions", transactions(rows, seed=2, drift=1.0), tracker=tracker)
        request_manual(tracker, "fraud", reason="bench", actor="bench", now_ms=int(time.time() * 1000))
        started = time.perf_counter()
        outcome = controller.tick()[0]
        loop_s = time.perf_counter() - started
        from loopml.pipelines.store import PipelineStore

        run = PipelineStore(tracker.stores.db).list_runs(limit=1)[0]
        pipeline_s = ((run.end_time or 0) - run.created_time) / 1000
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(
        f"idle tick: median {statistics.median(idle):.2f} ms, p95 {sorted(idle)[int(0.95 * len(idle))]:.2f} ms"
    )
    print(
        f"loop ({rows:,} rows): {outcome.action} in {loop_s:.2f} s; pipeline run {pipeline_s:.2f} s, "
        f"controller (trigger, gates, promotion, records) {loop_s - pipeline_s:.2f} s"
    )


if __name__ == "__main__":
    main()
