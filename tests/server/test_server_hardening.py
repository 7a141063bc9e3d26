"""What a review of the team server found, pinned down: refused requests write nothing, odd numbers and
shapes are 4xx (never 5xx), names that would shadow references are refused, per-model roles work end to end,
and concurrent registrations all land. SQLite and PostgreSQL, over real HTTP."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from server_helpers import client as _client
from sklearn.linear_model import LogisticRegression

import loopml
from loopml.core.errors import Forbidden
from loopml.core.settings import load_settings
from loopml.server.accounts import AccountStore
from loopml.tracking.client import Client
from loopml.tracking.tracker import Tracker


def test_a_refused_log_request_writes_nothing(server: str, tracker: Tracker) -> None:
    token = AccountStore(tracker.stores.db).create_admin("ana")
    with _client(server, token) as ana:
        run_id = ana.post("/api/v1/runs", json={"experiment": "e"}).json()["run_id"]
        bad = {"key": "m", "value": 1, "step": 2**70}
        body = {"batch_id": "b1", "params": {"lr": "0.1"}, "tags": {"t": "v"}, "metrics": [bad]}
        assert ana.post(f"/api/v1/runs/{run_id}/log", json=body).status_code == 400
        huge = {"batch_id": "b2", "metrics": [{"key": "m", "value": 10**400}]}
        assert ana.post(f"/api/v1/runs/{run_id}/log", json=huge).status_code == 400
        got = Client(tracker).get_run(run_id)
        assert (got.params, got.tags.get("t"), got.metrics) == ({}, None, {})
        ok = {"batch_id": "b3", "metrics": [{"key": "loss/train", "value": 0.5}]}
        assert ana.post(f"/api/v1/runs/{run_id}/log", json=ok).json()["points"] == 1
        other = ana.post("/api/v1/runs", json={"experiment": "e"}).json()["run_id"]
        assert ana.post(f"/api/v1/runs/{other}/log", json=ok).status_code == 409  # a batch id is per run
        assert ana.get(f"/api/v1/runs/{run_id}/metrics/loss/train").json()["metrics"][0]["value"] == 0.5


def test_odd_shapes_and_numbers_are_4xx_not_5xx(server: str, tracker: Tracker) -> None:
    token = AccountStore(tracker.stores.db).create_admin("ana")
    with _client(server, token) as ana:
        run_id = ana.post("/api/v1/runs", json={"experiment": "e"}).json()["run_id"]
        cases = [
            ("POST", "/api/v1/runs/search", b"[" * 200_000),
            ("POST", "/api/v1/runs/search", b'{"order_by": [1]}'),
            ("PUT", "/api/v1/models/fraud/deployment", b'{"share": 1' + b"0" * 400 + b"}"),
            ("PUT", "/api/v1/models/fraud/deployment", b'{"limits": {"max_p99_ms": 1' + b"0" * 400 + b"}}"),
            ("POST", "/api/v1/runs", b'{"experiment": "e", "tags": {"": "v"}}'),
            ("POST", "/api/v1/runs", b'{"experiment": "e", "tags": {"k": "a\\u0000b"}}'),
            ("POST", f"/api/v1/runs/{run_id}/end", b'{"status": "RUNNING"}'),
            ("PUT", "/api/v1/models/fraud/aliases/v1", b'{"version": 1}'),
            ("PUT", "/api/v1/models/fraud/aliases/latest", b'{"version": 1}'),
            ("PUT", "/api/v1/models/fraud/aliases/champion%20", b'{"version": 1}'),
        ]
        for method, path, content in cases:
            answer = ana.request(method, path, content=content, headers={"content-type": "application/json"})
            assert answer.status_code == 400, (path, content[:60], answer.text)
            assert answer.json()["error"]
        big = ana.post(
            "/api/v1/runs/search", content=b" " * 1_100_000, headers={"content-type": "application/json"}
        )
        assert big.status_code == 413
    assert "" not in Client(tracker).get_run(run_id).tags
    assert loopml.models.get("fraud", tracker=tracker).aliases == ()  # no alias named like a version


def test_an_editor_of_one_model_registers_versions_of_it_only(
    server: str, tracker: Tracker, tmp_path: Path
) -> None:
    accounts = AccountStore(tracker.stores.db)
    accounts.create_user("mia")
    accounts.grant("mia", "editor", model="churn")
    remote = Tracker(
        load_settings(project_dir=tmp_path / "mia", tracking_uri=server, token=accounts.token_for("mia", "t"))
    )
    try:
        frame = pd.DataFrame({"a": np.arange(30.0), "b": np.arange(30.0) % 4})
        model = LogisticRegression().fit(frame, (frame["a"] > 14).astype(int))
        assert loopml.models.register("churn", model, sample=frame, tracker=remote).version.version == 2
        with pytest.raises(Forbidden):
            loopml.models.register("fraud", model, sample=frame, tracker=remote)
        with pytest.raises(Forbidden):
            Client(remote).list_experiments()  # runs belong to the workspace
    finally:
        remote.close()


def test_concurrent_registrations_of_one_model_all_land(
    server: str, tracker: Tracker, tmp_path: Path
) -> None:
    token = AccountStore(tracker.stores.db).create_admin("ana")

    def register(seed: int) -> int:
        rng = np.random.default_rng(seed)
        frame = pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40)})
        model = LogisticRegression().fit(frame, (frame["a"] > 0).astype(int))
        remote = Tracker(load_settings(project_dir=tmp_path / str(seed), tracking_uri=server, token=token))
        try:
            return loopml.models.register(
                "race", model, sample=frame, onnx=False, tracker=remote
            ).version.version
        finally:
            remote.close()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        versions = sorted(pool.map(register, range(8)))
    assert versions == list(range(1, 9))


def test_a_bad_step_record_is_refused_whole(server: str, tracker: Tracker) -> None:
    token = AccountStore(tracker.stores.db).create_admin("ana")
    with _client(server, token) as ana:
        run_id = ana.post("/api/v1/runs", json={"experiment": "e"}).json()["run_id"]
        made = ana.post(
            "/api/v1/pipeline-runs", json={"run_id": run_id, "pipeline": "p", "executor": "local"}
        )
        assert made.status_code == 200, made.text
        step_run = ana.post("/api/v1/runs", json={"experiment": "e", "parent_run_id": run_id}).json()[
            "run_id"
        ]
        good = {"node": "load", "step": "load", "status": "finished", "cache": "miss", "run_id": step_run}
        output = {
            "name": "output",
            "digest": "0" * 64,
            "content_hash": "x",
            "serializer": "json@1",
            "type": "list",
        }
        for record, artifacts in (
            ({**good, "status": "sideways"}, []),
            ({**good, "attempts": -1}, []),
            ({**good, "outputs": [{**output, "size": 3}]}, []),  # a blob that was never uploaded
            (good, [{"path": "../../etc/passwd", "digest": "0" * 64, "size": 1}]),
            ([good], []),
        ):
            body = {"record": record, "artifacts": artifacts, "params": {"n": 3}}
            answer = ana.post(f"/api/v1/pipeline-runs/{run_id}/steps", json=body)
            assert answer.status_code == 400, (record, answer.text)
        assert ana.get(f"/api/v1/pipeline-runs/{run_id}").json()["steps"] == []
        once = {"record": good, "params": {"n": 3}}
        assert ana.post(f"/api/v1/pipeline-runs/{run_id}/steps", json=once).status_code == 200
        assert ana.post(f"/api/v1/pipeline-runs/{run_id}/steps", json=once).status_code == 409
        assert Client(tracker).get_run(step_run).params == {"n": "3"}
        step_run = ana.post("/api/v1/runs", json={"experiment": "e", "parent_run_id": run_id}).json()[
            "run_id"
        ]
        assert Client(tracker).get_run(step_run).params == {}
        assert ana.post(f"/api/v1/pipeline-runs/{'0' * 32}/steps", json={"record": good}).status_code == 404
