"""Tracking through the team server over real HTTP: experiments, runs, params, tags, metrics (a retried batch
written once), search, end and delete; readers cannot write; bad bodies are 400s naming the field."""

from __future__ import annotations

import threading

from server_helpers import client

from loopml.server.accounts import AccountStore
from loopml.tracking.client import Client
from loopml.tracking.tracker import Tracker


def _tokens(tracker: Tracker) -> tuple[str, str]:
    accounts = AccountStore(tracker.stores.db)
    editor = accounts.create_admin("ana")
    accounts.create_user("rui")
    accounts.grant("rui", "reader")
    return editor, accounts.token_for("rui", "laptop")


def test_a_run_logged_over_http_is_ordinary_loopml_data(server: str, tracker: Tracker) -> None:
    editor, _ = _tokens(tracker)
    with client(server, editor) as ana:
        assert ana.post("/api/v1/experiments", json={"name": "fraud"}).status_code == 200
        run = ana.post(
            "/api/v1/runs", json={"experiment": "fraud", "name": "rf", "tags": {"team": "risk"}}
        ).json()
        run_id = run["run_id"]
        assert run["user"] == "ana"
        batch = {
            "batch_id": "b-1",
            "params": {"depth": 8, "model": {"kind": "rf"}},
            "tags": {"stage": "dev"},
            "metrics": [{"key": "auc", "value": 0.8 + step / 100, "step": step} for step in range(5)],
        }
        first = ana.post(f"/api/v1/runs/{run_id}/log", json=batch).json()
        again = ana.post(f"/api/v1/runs/{run_id}/log", json=batch).json()  # the client retried
        assert (first["points"], first["duplicate"]) == (5, False)
        assert (again["points"], again["duplicate"]) == (0, True)
        history = ana.get(f"/api/v1/runs/{run_id}/metrics/auc").json()["metrics"]
        assert [m["step"] for m in history] == [0, 1, 2, 3, 4]
        assert ana.post(f"/api/v1/runs/{run_id}/end", json={"status": "FINISHED"}).status_code == 200
        found = ana.post(
            "/api/v1/runs/search", json={"filter": "metrics.auc > 0.83 and params.depth = 8"}
        ).json()
        assert [r["run_id"] for r in found["runs"]] == [run_id]
    local = Client(tracker).get_run(run_id)  # the same data, read without the server
    assert local.params["model.kind"] == "rf"
    assert local.tags["stage"] == "dev"
    assert local.metrics["auc"] == 0.8 + 4 / 100
    assert local.status.value == "FINISHED"
    assert local.user == "ana"


def test_concurrent_writers_to_one_run_lose_nothing(server: str, tracker: Tracker) -> None:
    editor, _ = _tokens(tracker)
    with client(server, editor) as ana:
        run_id = ana.post("/api/v1/runs", json={"experiment": "e"}).json()["run_id"]

    def write(worker: int) -> None:
        with client(server, editor) as writer:
            for batch in range(5):
                points = [{"key": f"w{worker}", "value": float(i), "step": batch * 10 + i} for i in range(10)]
                answer = writer.post(
                    f"/api/v1/runs/{run_id}/log", json={"batch_id": f"{worker}-{batch}", "metrics": points}
                )
                assert answer.status_code == 200, answer.text

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for worker in range(4):
        assert len(Client(tracker).get_metric_history(run_id, f"w{worker}")) == 50


def test_readers_read_and_bad_bodies_are_400s_naming_the_field(server: str, tracker: Tracker) -> None:
    editor, reader = _tokens(tracker)
    with client(server, editor) as ana, client(server, reader) as rui:
        run_id = ana.post("/api/v1/runs", json={"experiment": "e"}).json()["run_id"]
        assert rui.get(f"/api/v1/runs/{run_id}").status_code == 200
        assert rui.get("/api/v1/experiments").status_code == 200
        assert rui.post("/api/v1/runs", json={"experiment": "e"}).status_code == 403
        assert rui.post(f"/api/v1/runs/{run_id}/log", json={"batch_id": "x"}).status_code == 403
        bad = {
            "batch_id missing": ({"metrics": []}, "batch_id"),
            "value a string": (
                {"batch_id": "a", "metrics": [{"key": "m", "value": "1"}]},
                "metrics[0].value",
            ),
            "step a float": ({"batch_id": "b", "metrics": [{"key": "m", "value": 1, "step": 0.5}]}, "step"),
            "key unsafe": ({"batch_id": "c", "metrics": [{"key": "../x", "value": 1}]}, "metric"),
            "params a list": ({"batch_id": "d", "params": [1]}, "params"),
        }
        for case, (body, field) in bad.items():
            answer = ana.post(f"/api/v1/runs/{run_id}/log", json=body)
            assert answer.status_code == 400, (case, answer.text)
            assert field in answer.json()["error"], (case, answer.text)
        assert ana.post("/api/v1/runs/nope/log", json={"batch_id": "z"}).status_code == 404
        assert ana.post(f"/api/v1/runs/{run_id}/end", json={"status": "DONE"}).status_code == 400
        assert ana.post("/api/v1/runs/search", json={"filter": "metrics.auc >"}).status_code == 400
        assert (
            ana.post(
                "/api/v1/runs", content=b"{not json", headers={"content-type": "application/json"}
            ).status_code
            == 400
        )
        assert ana.delete(f"/api/v1/runs/{run_id}").status_code == 200
