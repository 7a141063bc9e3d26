"""A project with a registered classifier (two versions, v1 the champion) and a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import loopml
from loopml.core.settings import load_settings
from loopml.serving.app import create_app
from loopml.serving.server import ServeOptions
from loopml.tracking.tracker import Tracker


def training_frame(rows: int = 200, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "amount": rng.normal(100, 20, rows),
            "age": rng.integers(18, 80, rows),
            "channel": pd.Categorical(rng.choice(["web", "shop", "phone"], rows)),
        }
    )
    label = ((frame["amount"] > 100) ^ (frame["channel"] == "phone")).astype(int)
    return frame, label


def classifier(c: float) -> Pipeline:
    columns = ColumnTransformer(
        [
            ("num", StandardScaler(), ["amount", "age"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"]),
        ]
    )
    return Pipeline([("columns", columns), ("model", LogisticRegression(C=c, max_iter=1000))])


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Tracker]:
    """Model `fraud`: v1 (C=1) is the champion, v2 (C=0.01) the challenger."""
    (tmp_path / "loopml.toml").write_text("")
    tracker = Tracker(load_settings(project_dir=tmp_path))
    frame, label = training_frame()
    for c, alias in ((1.0, "champion"), (0.01, "challenger")):
        registered = loopml.models.register(
            "fraud", classifier(c).fit(frame, label), sample=frame, tracker=tracker
        )
        loopml.models.set_alias("fraud", alias, registered.version.version, tracker=tracker)
    try:
        yield tracker
    finally:
        tracker.close()


@dataclass
class LiveServer:
    url: str
    app: Any
    server: uvicorn.Server

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture
def serve(project: Tracker) -> Iterator[Any]:
    """`serve(refs, **options)` starts a real server on 127.0.0.1 and returns a `LiveServer`."""
    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(refs: list[str] | None = None, **options: Any) -> LiveServer:
        options.setdefault("poll_s", 0)
        app = create_app(refs or ["fraud@champion"], tracker=project, options=ServeOptions(**options))
        server, thread, url = start_server(app)
        running.append((server, thread))
        return LiveServer(url, app, server)

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=10)
