"""End-to-end: `loopml pipeline run -x ray` with the real executable (which starts its own local cluster)."""

from __future__ import annotations

import json
import socket
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
