"""End-to-end: `loopml pipeline run -x ray` with the real executable (which starts its own local cluster)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from test_cli import cli

FLOW = """
import os
import loopml

@loopml.step(resources={"cpu": 1})
def where(n: int) -> dict:
    print("running in a Ray worker")
    loopml.log_metric("n", n)
    return {"pid": os.getpid(), "n": n}

@loopml.pipeline
def flow(n: int = 3) -> dict:
    return where(n)
"""


def test_a_pipeline_runs_on_a_local_ray_cluster_from_the_cli(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(textwrap.dedent(FLOW))
    assert cli(tmp_path, "init").returncode == 0
    done = cli(tmp_path, "pipeline", "run", "flow.py:flow", "-p", "n=5", "-x", "ray", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # stdout holds the JSON only: Ray's and the step's output go elsewhere
    assert report["value"]["n"] == 5
    shown = cli(tmp_path, "pipeline", "show", report["run_id"], "--json")
    assert json.loads(shown.stdout)["executor"] == "ray"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = cli(tmp_path, "pipeline", "run", "flow.py:flow", "-x", f"ray://127.0.0.1:{port}")
    assert unreachable.returncode == 3
    assert f"cannot reach the Ray cluster at ray://127.0.0.1:{port}" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    bad = cli(tmp_path, "pipeline", "run", "flow.py:flow", "-x", "ray:many")
    assert bad.returncode == 2
    assert "unknown executor 'ray:many'" in bad.stderr


TWICE = """
import loopml
from flow import flow

for attempt in range(2):  # each run starts a local cluster of its own and stops it
    print(flow.run({"n": attempt}, executor="ray").value["n"])
"""


def test_a_process_runs_pipelines_on_two_local_clusters_one_after_the_other(tmp_path: Path) -> None:
    """A second cluster numbers its jobs as the first did: nothing of the first (its mailbox) is reused."""
    (tmp_path / "flow.py").write_text(textwrap.dedent(FLOW))
    (tmp_path / "twice.py").write_text(textwrap.dedent(TWICE))
    assert cli(tmp_path, "init").returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "RAY_ADDRESS"))}
    done = subprocess.run(
        [sys.executable, "twice.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["0", "1"]
