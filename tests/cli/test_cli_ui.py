"""End-to-end: `loopml ui` as its own process over a local project; it binds to this machine only and refuses
a team server's settings with one line and exit code 2."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
from test_cli import LOOPML, cli

import loopml
from loopml.core.settings import load_settings
from loopml.tracking.tracker import Tracker


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_loopml_ui_serves_the_local_project(tmp_path: Path) -> None:
    assert cli(tmp_path, "init").returncode == 0
    tracker = Tracker(load_settings(project_dir=tmp_path))
    try:
        with loopml.start_run("fraud", "baseline", tracker=tracker):
            loopml.log_metric("auc", 0.93)
    finally:
        tracker.close()
    port = _port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    process = subprocess.Popen(
        [LOOPML, "ui", "--port", str(port)], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        page = None
        deadline = time.monotonic() + 30
        while page is None and time.monotonic() < deadline:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/ui/experiments/fraud", timeout=5)
            except httpx.TransportError:
                time.sleep(0.1)
        assert page is not None
        assert page.status_code == 200
        assert ">baseline</a>" in page.text
        assert '<span class="user" title="single-user local UI">local</span>' in page.text
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 302
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert "Traceback" not in stderr
    assert f"http://127.0.0.1:{port}/ui/" in stderr


def test_loopml_ui_refuses_to_share_without_sign_in(tmp_path: Path) -> None:
    assert cli(tmp_path, "init").returncode == 0
    shared = cli(tmp_path, "ui", "--host", "0.0.0.0")
    assert shared.returncode == 2
    assert "loopml server" in shared.stderr
    assert "Traceback" not in shared.stderr
    remote = cli(tmp_path, "ui", env={"LOOPML_TRACKING_URI": "http://127.0.0.1:9", "LOOPML_TOKEN": "lml_x"})
    assert remote.returncode == 2
    assert "/ui/" in remote.stderr
