"""Batch scoring on a Ray cluster of a single CPU finishes, with local scoring's output.

Ray Data 2.60 lists the input files (`ListFiles`) and repartitions in tasks of exactly 1 CPU: a scoring actor
holding part of the only CPU left them waiting forever. The session's cluster has 2 CPUs and this process is
connected to it, so the 1-CPU cluster runs in a child process of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from ray_scoring_models import fraud_model, rows, write_parts

import loopml
from loopml.core.settings import load_settings
from loopml.serving.batch import score
from loopml.serving.batch_ray import _pool
from loopml.tracking.tracker import Tracker
from ray_cluster import OBJECT_STORE_BYTES, ray_or_skip

TIMEOUT_S = 240

# Joins nothing: starts its own cluster of 1 CPU (bound to loopback, as LoopML imports Ray), which
# `score(..., executor="ray")` then uses, and prints what it did as one JSON line.
SCRIPT = """
import json
from pathlib import Path

from loopml.core.ray_executor import ray_module

ray = ray_module(local=True)
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, object_store_memory={store})
try:
    from loopml.core.settings import load_settings
    from loopml.serving.batch import score
    from loopml.tracking.tracker import Tracker

    tracker = Tracker(load_settings(project_dir=Path.cwd()))
    try:
        done = {{"cpus": ray.cluster_resources().get("CPU")}}
        for output, workers, log in (("scored", None, True), ("scored-two", 2, False)):
            result = score(
                "fraud@champion", "in", output, executor="ray", workers=workers, chunk_rows=100,
                id_column="customer", log=log, tracker=tracker,
            )
            done[output] = [result.rows, result.scored, result.logged_rows]
    finally:
        tracker.close()
    print(json.dumps(done), flush=True)
finally:
    ray.shutdown()
"""


def by_customer(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("customer").reset_index(drop=True)


def run_script(script: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `script` in a session of its own; past the timeout, end the session's processes and fail."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_") and k != "RAY_ADDRESS"}
    process = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the child's own session: it and what it started
        stdout, stderr = process.communicate()
        pytest.fail(f"scoring on a 1-CPU Ray cluster did not finish in {TIMEOUT_S} s:\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_scoring_on_a_one_cpu_cluster_finishes_as_local_scoring_does(tmp_path: Path) -> None:
    ray_or_skip()
    (tmp_path / "loopml.toml").write_text("")
    tracker = Tracker(load_settings(project_dir=tmp_path))
    try:
        frame = rows(300, seed=99).drop(columns="customer").astype({"channel": "category"})
        loopml.models.register("fraud", fraud_model(frame), sample=frame, tracker=tracker)
        loopml.models.set_alias("fraud", "champion", 1, tracker=tracker)
        data = pd.concat([rows(600, seed=5), rows(600, seed=6)], ignore_index=True)
        write_parts(data, tmp_path / "in", 3)
        data.to_parquet(tmp_path / "all.parquet")
        local = score("fraud@champion", tmp_path / "all.parquet", tmp_path / "local.parquet", log=False,
                      tracker=tracker)  # fmt: skip
    finally:
        tracker.close()
    assert local.rows == 1_200

    script = tmp_path / "score_one_cpu.py"
    script.write_text(textwrap.dedent(SCRIPT).format(store=OBJECT_STORE_BYTES))
    done = run_script(script, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    reported = json.loads(done.stdout.strip().splitlines()[-1])
    assert reported == {"cpus": 1.0, "scored": [1_200, 1_200, 1_200], "scored-two": [1_200, 1_200, 0]}

    expected = by_customer(pd.read_parquet(tmp_path / "local.parquet"))
    for output in ("scored", "scored-two"):
        out = pd.read_parquet(tmp_path / output)
        assert out.columns.tolist() == expected.columns.tolist()
        pd.testing.assert_frame_equal(by_customer(out), expected)
        assert (tmp_path / output / "_SUCCESS").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


@pytest.mark.parametrize(
    ("cpus", "workers", "pool"),
    [
        (1, None, (1, 0.0)),  # the only CPU stays free for Ray Data's 1-CPU listing and repartition tasks
        (1, 2, (2, 0.0)),
        (2, None, (1, 1.0)),  # from 2 CPUs on: as before, one CPU free
        (4, None, (3, 1.0)),
        (3, 4, (4, 0.5)),
    ],
)
def test_the_actors_always_leave_a_whole_cpu(cpus: int, workers: int | None, pool: tuple[int, float]) -> None:
    assert _pool(cpus, workers) == pool
