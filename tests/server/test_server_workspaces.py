"""Workspaces: under /w/NAME a team has its own runs, models and policies; roles are per workspace; a name
that is not a workspace (or could be a path) is a 4xx."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from server_helpers import client as _client
from sklearn.linear_model import LogisticRegression

import loopml
from loopml.core.errors import Conflict, Forbidden, InvalidInput
from loopml.core.settings import load_settings
from loopml.server.accounts import AccountStore
from loopml.server.workspaces import create_workspace, list_workspaces, open_workspace
from loopml.tracking.client import Client
from loopml.tracking.tracker import Tracker


def _client_of(url: str, token: str, folder: Path) -> Tracker:
    folder.mkdir(parents=True, exist_ok=True)
    return Tracker(load_settings(project_dir=folder, tracking_uri=url, token=token))


def test_a_workspace_keeps_its_runs_models_and_roles_apart(
    server: str, tracker: Tracker, tmp_path: Path
) -> None:
    create_workspace(tracker.settings, "risk")
    assert list_workspaces(tracker.settings) == ["risk"]
    with pytest.raises(Conflict):
        create_workspace(tracker.settings, "risk")
    accounts = AccountStore(tracker.stores.db)
    admin = accounts.create_admin("ana")
    accounts.create_user("rui")
    accounts.grant("rui", "editor", workspace="risk")
    rui_token = accounts.token_for("rui", "laptop")
    ana = _client_of(f"{server}/w/risk", admin, tmp_path / "ana")
    rui = _client_of(f"{server}/w/risk", rui_token, tmp_path / "rui")
    rui_default = _client_of(server, rui_token, tmp_path / "rui-default")
    try:
        with loopml.start_run(experiment="scoring", tracker=rui) as run:
            run.log_metric("auc", 0.9)
        frame = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3})
        model = LogisticRegression().fit(frame, (frame["a"] > 9).astype(int))
        loopml.models.register("limits", model, sample=frame, tracker=rui)
        # Rui's run and model are in "risk", seen by its members, not in the default workspace.
        assert [r.run_id for r in Client(ana).search_runs().runs] == [run.run_id]
        assert [r.user for r in Client(ana).search_runs().runs] == ["rui"]
        assert Client(tracker).search_runs().runs == []
        assert {m.name for m in loopml.models.models(tracker=tracker)} == {"fraud", "churn"}
        served = open_workspace(tracker.settings, "risk")
        try:
            assert [m.name for m in loopml.models.models(tracker=served)] == ["limits"]
        finally:
            served.close()
        with pytest.raises(Forbidden, match="workspace 'default'"):
            Client(rui_default).list_experiments()
    finally:
        for opened in (ana, rui, rui_default):
            opened.close()
    with _client(server, admin) as http:
        assert http.get("/w/nope/api/v1/experiments").status_code == 404
        for bad in (
            "/w/..%2F..%2Fetc/api/v1/experiments",
            "/w/Risk/api/v1/experiments",
            "/w/default/api/v1/runs",
        ):
            answer = http.get(bad)
            assert answer.status_code in (400, 404), bad
            assert answer.json()["error"]
        assert http.get("/w/risk/api/v1/experiments").json()["experiments"][0]["name"] == "scoring"
        # Each workspace's policies are its own loopml.toml's; clients read them, never the store settings.
        folder = tracker.settings.home_dir / "workspaces" / "risk"
        policy = "[models.limits.gates.champion]\nthresholds = { roc_auc = 0.8 }\n"
        (folder / "loopml.toml").write_text(policy)
        (tracker.settings.project_dir / "loopml.toml").write_text(
            'database_url = "postgresql://u:secret@db/x"\n'
        )
        shown = http.get("/w/risk/api/v1/policies").json()
        assert shown == {"models": {"limits": {"gates": {"champion": {"thresholds": {"roc_auc": 0.8}}}}}}
        assert "secret" not in http.get("/api/v1/policies").text
    with _client(server) as anonymous:
        assert anonymous.get("/w/risk/api/v1/experiments").status_code == 401


def test_workspace_names_cannot_be_paths(tracker: Tracker) -> None:
    for bad in ("../x", "a/b", "default", "", "A", "x" * 64, "-x"):
        with pytest.raises(InvalidInput):
            create_workspace(tracker.settings, bad)
    assert not (tracker.settings.home_dir / "workspaces").exists()
