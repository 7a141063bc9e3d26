"""End-to-end: `loopml serve` as its own process, steered by `loopml deploy set` and `loopml models alias` from
other processes, with API keys from the environment; bad arguments exit 2 with one line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from test_cli import LOOPML, cli

import loopml
from loopml.core.settings import load_settings
from loopml.tracking.tracker import Tracker

KEY = "serve-test-key-0123456789"
ROW = {"amount": 120.0, "age": 30}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    assert cli(tmp_path, "init").returncode == 0
    tracker = Tracker(load_settings(project_dir=tmp_path))
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"amount": rng.normal(100, 20, 80), "age": rng.integers(18, 80, 80)})
    label = (frame["amount"] > 100).astype(int)
    try:
        for c, alias in ((1.0, "champion"), (0.01, "challenger")):
            registered = loopml.models.register(
                "fraud", LogisticRegression(C=c).fit(frame, label), sample=frame, tracker=tracker
            )
            loopml.models.set_alias("fraud", alias, registered.version.version, tracker=tracker)
    finally:
        tracker.close()
    return tmp_path


@pytest.fixture
def server(project: Path) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    env["LOOPML_API_KEYS"] = KEY
    process = subprocess.Popen(
        [LOOPML, "serve", "fraud@champion", "--port", str(port), "--poll-s", "0.1"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"loopml serve did not start: {process.communicate()[1]}")
        time.sleep(0.1)
    try:
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        assert "Traceback" not in stderr, stderr


def version_answering(url: str) -> str:
    answer = httpx.post(
        f"{url}/predict/fraud", json=[ROW], headers={"Authorization": f"Bearer {KEY}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return answer.headers["x-model-version"]


def wait_for(url: str, version: str) -> None:
    deadline = time.monotonic() + 30
    while version_answering(url) != version:
        assert time.monotonic() < deadline, f"v{version} never answered"
        time.sleep(0.05)


def test_serve_follows_deployments_and_aliases_set_by_other_processes(project: Path, server: str) -> None:
    assert httpx.post(f"{server}/predict/fraud", json=[ROW]).status_code == 401  # keys from LOOPML_API_KEYS
    assert version_answering(server) == "1"
    canary = cli(
        project, "deploy", "set", "fraud", "--challenger", "challenger", "--mode", "canary", "--share", "1"
    )
    assert canary.returncode == 0, canary.stderr
    assert "canary 100% to challenger" in canary.stdout
    wait_for(server, "2")
    shown = cli(project, "deploy", "show", "fraud")
    assert "challenger" in shown.stdout
    assert "v2" in shown.stdout
    back = cli(project, "deploy", "set", "fraud", "-m", "rolled back: canary worse")
    assert back.returncode == 0, back.stderr
    wait_for(server, "1")
    moved = cli(project, "models", "alias", "fraud@champion", "2", "-m", "promote")  # no "database is locked"
    assert moved.returncode == 0, moved.stderr
    wait_for(server, "2")
    history = cli(project, "deploy", "history", "fraud")
    assert "rolled back: canary worse" in history.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "nope@champion"], "no registered model 'nope'"),
        (["serve", "fraud@champion", "fraud@v2"], "given twice"),
        (["serve", "fraud@champion", "--unseen-levels", "maybe"], "'pass' or 'reject'"),
        (["serve", "fraud@champion", "--batch", "fraud:x:1"], "NAME:MAX_BATCH_SIZE"),
        (
            ["serve", "fraud@champion", "--redact", "amount", "--hash", "emial"],
            "no served model takes: emial",
        ),
        (["serve", "fraud@champion", "--redact", "age", "--hash", "age"], "both redacted and hashed"),
        (["deploy", "set", "fraud", "--mode", "canary"], "needs a challenger"),
        (
            ["deploy", "set", "fraud", "--challenger", "challenger", "--mode", "canary", "--share", "2"],
            "from 0 to 1",
        ),
        (["deploy", "show", "nope"], "no registered model"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(project: Path, args: list[str], message: str) -> None:
    result = cli(project, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
