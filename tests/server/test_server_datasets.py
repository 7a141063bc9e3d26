"""Datasets through a team server: `loopml.datasets` on a client machine (`LOOPML_TRACKING_URI`) adds, lists
and loads versions as it does locally, only uploads what the server lacks, and the dataset routes refuse any
record that names a blob never uploaded, a path that leaves its folder, or a field of the wrong type, with a
4xx JSON error and nothing recorded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
import pandas as pd
import pytest
from server_helpers import client

import loopml
from loopml.core.errors import Forbidden, NotFound
from loopml.core.settings import load_settings
from loopml.data.catalog import DataCatalog
from loopml.server.accounts import AccountStore
from loopml.tracking.tracker import Tracker

FRAME = pd.DataFrame({"amount": [1.5, 2.0, 3.25, 4.0], "country": ["pt", "es", "pt", "fr"]})


def _digest(data: bytes) -> str:
    return str(blake3.blake3(data).hexdigest())


def _client_tracker(server: str, token: str, folder: Path) -> Tracker:
    """A tracker as a client machine's: tracking and datasets go to the server."""
    folder.mkdir(parents=True, exist_ok=True)
    return Tracker(load_settings(project_dir=folder, tracking_uri=server, token=token))


@pytest.fixture
def admin(tracker: Tracker) -> str:
    return AccountStore(tracker.stores.db).create_admin("ana")


@pytest.fixture
def remote(server: str, admin: str, tmp_path: Path) -> Iterator[Tracker]:
    opened = _client_tracker(server, admin, tmp_path / "client")
    yield opened
    opened.close()


def test_a_client_adds_lists_and_loads_versions_as_a_local_project_does(
    remote: Tracker, tracker: Tracker, tmp_path: Path
) -> None:
    csv = tmp_path / "transactions.csv"
    FRAME.to_csv(csv, index=False)
    first = loopml.datasets.add("sales/transactions", csv, message="first export", tracker=remote)
    assert (first.created, first.version.version, first.version.kind) == (True, 1, "table")
    assert (first.version.row_count, first.version.user) == (4, "ana")
    assert [c["name"] for c in first.version.schema or []] == ["amount", "country"]
    again = loopml.datasets.add("sales/transactions", csv, tracker=remote)
    assert (again.created, again.version.version) == (False, 1)

    doubled = FRAME.assign(amount=FRAME.amount * 2)
    second = loopml.datasets.add("sales/transactions", doubled, tracker=remote)
    assert (second.created, second.version.version) == (True, 2)
    assert not loopml.datasets.add("sales/transactions", doubled.copy(), tracker=remote).created

    assert [v.version for v in loopml.datasets.versions("sales/transactions", tracker=remote)] == [2, 1]
    listed = {d.name: d.latest_version for d in loopml.datasets.datasets(tracker=remote)}
    assert listed == {"sales/transactions": 2}
    pd.testing.assert_frame_equal(loopml.datasets.load("sales/transactions@v1", tracker=remote), FRAME)
    pd.testing.assert_frame_equal(loopml.datasets.load("sales/transactions", tracker=remote), doubled)
    restored = loopml.datasets.get("sales/transactions@v1", tmp_path / "back", tracker=remote)
    assert [p.read_bytes() for p in restored] == [csv.read_bytes()]

    # The server's own view: ordinary dataset versions in its database and blob store.
    on_server = DataCatalog(tracker.stores).versions("sales/transactions")
    assert on_server == loopml.datasets.versions("sales/transactions", tracker=remote)
    pd.testing.assert_frame_equal(loopml.datasets.load("sales/transactions@v1", tracker=tracker), FRAME)
    changes = loopml.datasets.catalog(remote).diff("sales/transactions@v1", "sales/transactions@v2")
    assert changes.rows == (4, 4)
    assert set(changes.statistics) == {"amount"}


def test_a_folder_round_trips_and_a_second_add_sends_no_content(
    remote: Tracker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "images"
    (folder / "cats").mkdir(parents=True)
    (folder / "cats" / "a.bin").write_bytes(bytes(range(256)) * 500)
    (folder / "labels.txt").write_text("cat\n")
    added = loopml.datasets.add("images", folder, tracker=remote)
    assert (added.version.kind, added.version.file_count) == ("folder", 2)
    out = tmp_path / "out"
    loopml.datasets.get("images", out, tracker=remote)
    assert (out / "cats" / "a.bin").read_bytes() == (folder / "cats" / "a.bin").read_bytes()
    assert (out / "labels.txt").read_text() == "cat\n"
    (out / "labels.txt").write_text("dog\n")
    assert loopml.datasets.status(out, "images@v1", tracker=remote).modified == ["labels.txt"]

    http = remote.store.http  # type: ignore[attr-defined]
    sent: list[str] = []
    upload = http.upload
    monkeypatch.setattr(http, "upload", lambda digest, data: (sent.append(digest), upload(digest, data)))
    assert not loopml.datasets.add("images", folder, tracker=remote).created
    assert sent == [added.version.manifest_digest]  # only the small tree: the server had both files


def test_a_second_client_sees_the_versions_and_readers_cannot_add(
    server: str, remote: Tracker, tracker: Tracker, tmp_path: Path
) -> None:
    loopml.datasets.add("churn", FRAME, tracker=remote)
    accounts = AccountStore(tracker.stores.db)
    accounts.create_user("rui")
    accounts.grant("rui", "editor")
    accounts.create_user("eva")
    accounts.grant("eva", "reader")
    rui = _client_tracker(server, accounts.token_for("rui", "laptop"), tmp_path / "rui")
    eva = _client_tracker(server, accounts.token_for("eva", "laptop"), tmp_path / "eva")
    try:
        pd.testing.assert_frame_equal(loopml.datasets.load("churn@latest", tracker=rui), FRAME)
        same = loopml.datasets.add("churn", FRAME.copy(), tracker=rui)
        assert (same.created, same.version.version, same.version.user) == (False, 1, "ana")
        pd.testing.assert_frame_equal(loopml.datasets.load("churn@v1", tracker=eva), FRAME)
        with pytest.raises(Forbidden):
            loopml.datasets.add("churn", FRAME.head(2), tracker=eva)
        with pytest.raises(NotFound):
            loopml.datasets.versions("nope", tracker=eva)
    finally:
        rui.close()
        eva.close()
    assert [v.version for v in DataCatalog(tracker.stores).versions("churn")] == [1]


def _upload(http: Any, data: bytes) -> dict[str, Any]:
    assert http.put(f"/api/v1/blobs/{_digest(data)}", content=data).status_code == 200
    return {"path": "data.bin", "size": len(data), "digest": _digest(data)}


def _refused(answer: Any, status: int = 400) -> str:
    assert answer.status_code == status, answer.text
    error = answer.json()
    assert error["code"]
    assert error["error"]
    return str(error["error"])


def test_a_record_naming_a_blob_never_uploaded_is_refused_and_nothing_is_recorded(
    server: str, admin: str
) -> None:
    with client(server, admin) as ana:
        entry = _upload(ana, b"uploaded")
        absent = {"path": "b.bin", "size": 5, "digest": _digest(b"never")}
        body = {"kind": "folder", "tree": [entry, absent]}
        assert _digest(b"never") in _refused(ana.post("/api/v1/datasets/d/versions", json=body))
        wrong_size = {**entry, "size": 3}
        assert "nothing was recorded" in _refused(
            ana.post("/api/v1/datasets/d/versions", json={"kind": "file", "tree": [wrong_size]})
        )
        table = {"kind": "table", "tree": [entry], "row_count": 1, "schema": [{"name": "a", "type": "int64"}]}
        profile = {**table, "profile_digest": _digest(b"{}")}  # not uploaded
        assert "profile_digest" in _refused(ana.post("/api/v1/datasets/d/versions", json=profile))
        assert ana.get("/api/v1/datasets").json() == {"datasets": []}
        _refused(ana.get("/api/v1/datasets/d/versions"), 404)

        made = ana.post("/api/v1/datasets/d/versions", json={"kind": "file", "tree": [entry]})
        assert made.status_code == 200, made.text
        assert (made.json()["created"], made.json()["version"]["user"]) == (True, "ana")
        repeated = ana.post("/api/v1/datasets/d/versions", json={"kind": "file", "tree": [entry]})
        assert (repeated.json()["created"], repeated.json()["version"]["version"]) == (False, 1)
        shown = ana.get("/api/v1/datasets/d@v1").json()
        assert (shown["tree"], shown["profile"]) == ([entry], None)


def test_paths_that_leave_the_tree_are_refused_inline_uploaded_and_in_the_url(
    server: str, admin: str
) -> None:
    with client(server, admin) as ana:
        entry = _upload(ana, b"content")
        escapes = (
            "../x",
            "/etc/passwd",
            "a/../../b",
            "..\\x",
            "C:\\x",
            "a/../b",
            "./a",
            "a//b",
            "a/",
            "",
            ".",
        )
        for path in escapes:
            body = {"kind": "folder", "tree": [{**entry, "path": path}]}
            _refused(ana.post("/api/v1/datasets/d/versions", json=body))
        clash = {"kind": "folder", "tree": [{**entry, "path": "a"}, {**entry, "path": "a/b"}]}
        assert "both a file and a folder" in _refused(ana.post("/api/v1/datasets/d/versions", json=clash))
        twice = {"kind": "folder", "tree": [entry, entry]}
        assert "twice" in _refused(ana.post("/api/v1/datasets/d/versions", json=twice))

        # The same checks for a tree uploaded as a blob (how large folders are sent).
        escaping = json.dumps({"format": "loopml-tree/1", "entries": [["../x", 7, entry["digest"]]]})
        tree = _upload(ana, escaping.encode())["digest"]
        body = {"kind": "folder", "manifest_digest": tree}
        assert "manifest_digest[0].path" in _refused(ana.post("/api/v1/datasets/d/versions", json=body))
        garbage = _upload(ana, b"not a tree")["digest"]
        _refused(ana.post("/api/v1/datasets/d/versions", json={"kind": "folder", "manifest_digest": garbage}))

        for name in ("..%2F..%2Fetc%2Fpasswd", "%2e%2e", "a%2F..%2F..%2Fb", "%2Fetc"):
            _refused(ana.post(f"/api/v1/datasets/{name}/versions", json={"kind": "file", "tree": [entry]}))
            assert ana.get(f"/api/v1/datasets/{name}/versions").status_code == 400
            assert ana.get(f"/api/v1/datasets/{name}@latest").status_code == 400
        assert ana.get("/api/v1/datasets").json() == {"datasets": []}

        canonical = json.dumps(
            {"format": "loopml-tree/1", "entries": [["dir/data.bin", entry["size"], entry["digest"]]]},
            separators=(",", ":"),
        )
        tree = _upload(ana, canonical.encode())["digest"]
        made = ana.post("/api/v1/datasets/d/versions", json={"kind": "folder", "manifest_digest": tree})
        assert made.status_code == 200, made.text
        assert ana.get("/api/v1/datasets/d").json()["tree"][0]["path"] == "dir/data.bin"


def test_wrong_types_are_400s_with_a_message_and_unknown_datasets_404s(server: str, admin: str) -> None:
    with client(server, admin) as ana:
        entry = _upload(ana, b"x,y\n1,2\n")
        good = {"kind": "file", "tree": [entry]}
        bad: list[dict[str, Any]] = [
            {},
            {"kind": 3, "tree": [entry]},
            {"kind": "external", "tree": [entry]},
            {"kind": "file", "tree": "data.bin"},
            {"kind": "file", "tree": []},
            {"kind": "file", "tree": [["data.bin", 8, entry["digest"]]]},
            {"kind": "file", "tree": [{**entry, "path": 7}]},
            {"kind": "file", "tree": [{**entry, "path": "x\ud800"}]},
            {"kind": "file", "tree": [{**entry, "path": "x" * 1025}]},
            {"kind": "file", "tree": [{**entry, "size": "8"}]},
            {"kind": "file", "tree": [{**entry, "size": True}]},
            {"kind": "file", "tree": [{**entry, "size": -1}]},
            {"kind": "file", "tree": [{**entry, "digest": entry["digest"].upper()}]},
            {"kind": "file", "tree": [{**entry, "digest": entry["digest"] + "\n"}]},
            {"kind": "file", "tree": [{**entry, "extra": 1}]},
            {"kind": "file", "tree": [entry, {**entry, "path": "other.bin"}]},
            {**good, "digest": _digest(b"other")},
            {**good, "manifest_digest": _digest(b"other")},
            {**good, "message": 5},
            {**good, "message": "x\x00y"},
            {**good, "source": "\ud800"},
            {**good, "git_commit": "not-a-commit"},
            {**good, "status": "maybe"},
            {**good, "validation": "all good"},
            {**good, "row_count": 3},
            {**good, "bogus": 1},
            {"kind": "table", "tree": [entry], "row_count": "many"},
            {"kind": "table", "tree": [entry], "row_count": 2**63},
            {"kind": "table", "tree": [entry], "row_count": 1, "schema": "x,y"},
            {"kind": "table", "tree": [entry], "row_count": 1, "schema": [{"name": "x"}]},
        ]
        for body in bad:  # json.dumps escapes the lone surrogate, which httpx would refuse to encode
            _refused(ana.post("/api/v1/datasets/d/versions", content=json.dumps(body)))
        for raw in (b"not json", b"[1, 2]", b'"text"'):
            _refused(ana.post("/api/v1/datasets/d/versions", content=raw))
        profile = _upload(ana, b"[1, 2]")["digest"]  # JSON, but not an object
        table = {"kind": "table", "tree": [entry], "row_count": 1, "schema": [], "profile_digest": profile}
        assert "not a JSON object" in _refused(ana.post("/api/v1/datasets/d/versions", json=table))
        assert ana.get("/api/v1/datasets").json() == {"datasets": []}

        assert "no dataset named" in _refused(ana.get("/api/v1/datasets/nope/versions"), 404)
        _refused(ana.get("/api/v1/datasets/nope@latest"), 404)
        _refused(ana.get("/api/v1/dataset-diff", params={"old": "nope@v1", "new": "nope@v2"}), 404)
        for ref in ("d@v0", "d@vx", "d@v1@v2", "d@"):
            _refused(ana.get(f"/api/v1/datasets/{ref}"))
        _refused(ana.get("/api/v1/dataset-diff", params={"old": "d@v1"}))
        assert ana.post("/api/v1/datasets/d/versions", json=good).status_code == 200
        _refused(ana.get("/api/v1/datasets/d@v2"), 404)
        other = {"kind": "file", "tree": [{**entry, "path": "renamed.csv"}]}
        assert ana.post("/api/v1/datasets/d/versions", json=other).json()["version"]["version"] == 2
        diff = ana.get("/api/v1/dataset-diff", params={"old": "d@v1", "new": "d@v2"}).json()
        assert (diff["added"], diff["removed"]) == (["renamed.csv"], ["data.bin"])


def test_readers_read_and_cannot_write_over_http(server: str, admin: str, tracker: Tracker) -> None:
    accounts = AccountStore(tracker.stores.db)
    accounts.create_user("eva")
    accounts.grant("eva", "reader")
    with client(server, admin) as ana, client(server, accounts.token_for("eva", "t")) as eva:
        entry = _upload(ana, b"rows")
        made = ana.post("/api/v1/datasets/d/versions", json={"kind": "file", "tree": [entry]})
        assert made.status_code == 200
        assert eva.get("/api/v1/datasets/d/versions").status_code == 200
        asked = eva.post("/api/v1/blobs/missing", json={"digests": [entry["digest"], _digest(b"?")]})
        assert asked.json() == {"missing": [_digest(b"?")]}
        other = {"kind": "file", "tree": [{**entry, "path": "other.bin"}]}
        assert "editor" in _refused(eva.post("/api/v1/datasets/d/versions", json=other), 403)
        with client(server) as nobody:
            assert nobody.get("/api/v1/datasets").status_code == 401
        _refused(ana.post("/api/v1/blobs/missing", json={"digests": ["../etc/passwd"]}))
        _refused(ana.post("/api/v1/blobs/missing", json={"digests": "x"}))
