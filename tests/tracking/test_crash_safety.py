"""A process killed at any moment leaves a store that opens and holds everything it acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import loopml
from loopml.core.settings import load_settings
from loopml.tracking.tracker import Tracker

WRITER = """
import sys, loopml
durable = sys.argv[1] == "durable"
run = loopml.start_run(name="victim", durable=durable)
print(run.run_id, flush=True)
step = 0
while True:
    for _ in range(200):
        loopml.log_metric("m", float(step), step=step)
        step += 1
    if not durable:
        loopml.flush()
    print(step, flush=True)  # everything below `step` is acknowledged
"""


@pytest.mark.parametrize("mode", ["durable", "buffered"])
def test_sigkill_loses_nothing_acknowledged(tmp_path: Path, mode: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, mode], cwd=tmp_path, stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    acknowledged = 0
    deadline = time.monotonic() + 30
    while acknowledged < 2_000 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acknowledged = int(line)
    proc.send_signal(signal.SIGKILL)  # no atexit, no flush: the store must hold what was acknowledged
    proc.wait(timeout=30)
    proc.stdout.close()
    assert acknowledged >= 2_000
    tracker = Tracker(load_settings(project_dir=tmp_path))
    try:
        steps = [p.step for p in loopml.Client(tracker).get_metric_history(run_id, "m")]
        assert steps[:acknowledged] == list(range(acknowledged))
        assert steps == list(range(len(steps)))  # nothing doubled, nothing out of order
        assert loopml.Client(tracker).get_run(run_id).status is loopml.RunStatus.RUNNING
    finally:
        tracker.close()
