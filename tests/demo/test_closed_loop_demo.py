"""`loopml demo` end to end: the closed loop on built-in data, a real server and controller, and no process
left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LOOPML = str(Path(sys.executable).parent / "loopml")


def test_the_demo_closes_the_loop_and_cleans_up(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    done = subprocess.run(
        [LOOPML, "demo", "--dir", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "drift alert" in out or "auc-floor" in out, out[-3000:]
    for step in ("triggered", "trained", "rollout_started", "promoted"):
        assert step in out, (step, out[-3000:])
    assert "on labelled traffic" in out
    assert (folder / "report.html").stat().st_size > 10_000
    assert "Traceback" not in (folder / "agent.log").read_text()
    assert not _processes_in(folder)


def _processes_in(folder: Path) -> list[str]:
    """Command lines of live processes whose working folder is `folder` (the demo's server and agent)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if Path(f"/proc/{pid}/cwd").resolve() == folder.resolve():
                found.append(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " "))
        except OSError:
            continue
    return found
