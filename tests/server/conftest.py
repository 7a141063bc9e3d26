"""Fixtures of the team server tests: the server on 127.0.0.1 over a fresh project (SQLite or PostgreSQL)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from sklearn.linear_model import LogisticRegression

import loopml
from loopml.server.app import ServerOptions, create_server_app
from loopml.tracking.tracker import Tracker


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(tracker: Tracker) -> Iterator[str]:
    """The team server on 127.0.0.1 over `tracker` (SQLite or PostgreSQL), with two registered models."""
    import pandas as pd

    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    for name in ("fraud", "churn"):
        model = LogisticRegression().fit(frame, [0, 1, 0, 1])
        loopml.models.register(name, model, sample=frame, onnx=False, tracker=tracker)
    port = _free_port()
    app = create_server_app(tracker, options=ServerOptions(max_upload_bytes=2 * 2**20))
    runner = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not runner.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    runner.should_exit = True
    thread.join(timeout=10)
