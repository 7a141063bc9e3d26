"""Artifact routes are content-addressed and refuse what could become a path, an oversized or truncated upload
(nothing stored), and writes by readers."""

from __future__ import annotations

import os

import blake3
from server_helpers import client

from loopml.server.accounts import AccountStore
from loopml.tracking.tracker import Tracker


def _digest(data: bytes) -> str:
    return str(blake3.blake3(data).hexdigest())


def test_uploads_must_hash_to_their_name_and_fit_the_limit(server: str, tracker: Tracker) -> None:
    token = AccountStore(tracker.stores.db).create_admin("ana")
    data = os.urandom(100_000)
    with client(server, token) as ana:
        assert ana.put(f"/api/v1/blobs/{_digest(data)}", content=data).status_code == 200
        assert ana.get(f"/api/v1/blobs/{_digest(data)}").content == data
        truncated = ana.put(f"/api/v1/blobs/{_digest(b'x' + data)}", content=data[:5000])
        assert truncated.status_code == 400
        assert "nothing stored" in truncated.json()["error"]
        assert not tracker.blobs.exists(_digest(data[:5000]))
        assert not tracker.blobs.exists(_digest(b"x" + data))
        huge = b"0" * (3 * 2**20)
        assert ana.put(f"/api/v1/blobs/{_digest(huge)}", content=huge).status_code == 413
        assert not tracker.blobs.exists(_digest(huge))


def test_names_that_could_become_paths_are_refused_on_every_artifact_route(
    server: str, tracker: Tracker
) -> None:
    token = AccountStore(tracker.stores.db).create_admin("ana")
    data = b"payload"
    with client(server, token) as ana:
        run_id = ana.post("/api/v1/runs", json={"experiment": "e"}).json()["run_id"]
        assert ana.put(f"/api/v1/blobs/{_digest(data)}", content=data).status_code == 200
        for digest in ("..%2F..%2Fetc%2Fpasswd", "%2e%2e", "A" * 64, _digest(data)[:-1], "etc"):
            assert ana.get(f"/api/v1/blobs/{digest}").status_code in (400, 404), digest
            assert ana.put(f"/api/v1/blobs/{digest}", content=data).status_code in (400, 404), digest
        for path in ("../escape.txt", "/etc/passwd", "a/../../b", "C:\\\\x", "", "a/./b/../../.."):
            body = {"artifacts": [{"path": path, "digest": _digest(data), "size": len(data)}]}
            answer = ana.post(f"/api/v1/runs/{run_id}/artifacts", json=body)
            assert answer.status_code == 400, (path, answer.text)
        listed = ana.get(f"/api/v1/runs/{run_id}/artifacts", params={"path": "../.."})
        assert listed.status_code == 400
        missing = {"artifacts": [{"path": "x.txt", "digest": _digest(b"never sent"), "size": 10}]}
        assert ana.post(f"/api/v1/runs/{run_id}/artifacts", json=missing).status_code == 400
        ok = {"artifacts": [{"path": "x.txt", "digest": _digest(data), "size": len(data)}]}
        assert ana.post(f"/api/v1/runs/{run_id}/artifacts", json=ok).status_code == 200
        assert ana.get(f"/api/v1/runs/{run_id}/artifacts").json()["artifacts"][0]["path"] == "x.txt"


def test_readers_cannot_upload(server: str, tracker: Tracker) -> None:
    accounts = AccountStore(tracker.stores.db)
    accounts.create_user("rui")
    accounts.grant("rui", "reader")
    with client(server, accounts.token_for("rui", "t")) as rui:
        assert rui.put(f"/api/v1/blobs/{_digest(b'x')}", content=b"x").status_code == 403
    assert not tracker.blobs.exists(_digest(b"x"))
