"""Fixtures of the MLflow compatibility suite: the same client code against a real MLflow server and LoopML's.

`target` is a server the unmodified `mlflow` client talks to: a real `mlflow server` ("mlflow"), which proves
that the assertions describe MLflow's own behaviour, and the LoopML team server over a fresh SQLite project
("loopml"), where the tests also read back what LoopML stored. Each server lives for the whole session (MLflow
takes seconds to start), so tests use names of their own. Select one half with `-k "not loopml"` or
`-k loopml` (`-k mlflow` matches every test: the module's name holds it).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from loopml.tracking.tracker import Tracker
from mlflow_client import Target, mlflow_server


@pytest.fixture(scope="session")
def mlflow_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A real MLflow server (SQLite, proxied artifacts) for the session."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield Target("mlflow", url)


@pytest.fixture(scope="session")
def loopml_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """The LoopML team server over a fresh SQLite project for the session; the client holds an admin's token."""
    from loopml.core.settings import load_settings
    from loopml.server.accounts import AccountStore
    from team_server import serving

    tracker = Tracker(load_settings(project_dir=tmp_path_factory.mktemp("loopml-project")))
    try:
        token = AccountStore(tracker.stores.db).create_admin("ana")
        with serving(tracker) as url:
            yield Target("loopml", url, {"MLFLOW_TRACKING_TOKEN": token}, tracker, token)
    finally:
        tracker.close()


@pytest.fixture(scope="session", params=["mlflow", "loopml"])
def target(request: pytest.FixtureRequest) -> Target:
    """Each server in turn: a real MLflow server, then LoopML's."""
    return request.getfixturevalue(f"{request.param}_target")  # type: ignore[no-any-return]
