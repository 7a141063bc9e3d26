"""Fixtures of the team server tests: the server on 127.0.0.1 over a fresh project (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression

import loopml
from loopml.tracking.tracker import Tracker
from team_server import serving


@pytest.fixture
def server(tracker: Tracker) -> Iterator[str]:
    """The team server on 127.0.0.1 over `tracker` (SQLite or PostgreSQL), with two registered models."""
    import pandas as pd

    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    for name in ("fraud", "churn"):
        model = LogisticRegression().fit(frame, [0, 1, 0, 1])
        loopml.models.register(name, model, sample=frame, onnx=False, tracker=tracker)
    with serving(tracker, max_upload_bytes=2 * 2**20) as url:
        yield url


@pytest.fixture
def remote(server: str, tracker: Tracker, tmp_path: Path) -> Iterator[Tracker]:
    """A client machine's tracker talking to the team server over `tracker`'s stores (admin token of "ana")."""
    from loopml.core.settings import load_settings
    from loopml.server.accounts import AccountStore

    token = AccountStore(tracker.stores.db).create_admin("ana")
    folder = tmp_path / "client"
    folder.mkdir()
    opened = Tracker(load_settings(project_dir=folder, tracking_uri=server, token=token))
    yield opened
    opened.close()
