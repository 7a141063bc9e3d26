"""The team server over real HTTP: no default account, every request authenticated, roles per workspace and
model, revoked and expired tokens refused, failed logins rate-limited, the Host header checked, writes
recorded with who made them. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from server_helpers import client as _client

from loopml.core.errors import Forbidden
from loopml.registry.store import RegistryStore
from loopml.server.accounts import AccountStore
from loopml.tracking.tracker import Tracker


def test_every_request_but_health_needs_a_token_and_there_is_no_default_account(
    server: str, tracker: Tracker
) -> None:
    with _client(server) as anonymous:
        assert anonymous.get("/api/v1/health").json() == {"status": "ok"}
        for path in ("/api/v1/whoami", "/api/v1/models", "/metrics"):
            refused = anonymous.get(path)
            assert refused.status_code == 401, path
            assert refused.json()["code"] == "unauthenticated"
            assert refused.headers["www-authenticate"] == "Bearer"
    with _client(server, "lml_" + "0" * 32 + "_" + "A" * 43) as forged:
        assert forged.get("/api/v1/whoami").status_code == 401
    with tracker.stores.db.read() as conn:
        from loopml.storage.metadata import schema as t

        assert conn.execute(t.users.select()).first() is None  # nothing until create-admin


def test_roles_decide_reads_and_writes_and_writes_name_their_author(server: str, tracker: Tracker) -> None:
    accounts = AccountStore(tracker.stores.db)
    admin = accounts.create_admin("ana")
    accounts.create_user("rui")
    accounts.grant("rui", "reader")
    accounts.grant("rui", "editor", model="churn")
    reader = accounts.token_for("rui", "laptop")
    with _client(server, admin) as ana, _client(server, reader) as rui:
        assert ana.get("/api/v1/whoami").json()["roles"] == [
            {"workspace": "*", "model": None, "role": "admin"}
        ]
        names = {m["name"] for m in rui.get("/api/v1/models").json()["models"]}
        assert names == {"fraud", "churn"}
        body = {"version": 1, "reason": "ship it"}
        refused = rui.put("/api/v1/models/fraud/aliases/champion", json=body)
        assert refused.status_code == 403
        assert "needs the editor role" in refused.json()["error"]
        moved = rui.put("/api/v1/models/churn/aliases/champion", json=body)
        assert moved.status_code == 200, moved.text
        assert moved.json()["user"] == "rui"
        assert ana.put("/api/v1/models/fraud/aliases/champion", json=body).status_code == 200
        assert rui.get("/metrics").status_code == 200
        for bad in ({"version": "1", "reason": "x"}, {"version": 1, "reason": 5}, {"reason": "x"}, [1]):
            answer = ana.put("/api/v1/models/fraud/aliases/champion", json=bad)
            assert answer.status_code == 400, bad
        assert ana.put("/api/v1/models/nope/aliases/champion", json=body).status_code == 404
    history = RegistryStore(tracker.stores.db).history("churn", "champion")
    assert history[-1].user == "rui"


def test_revoked_and_expired_tokens_and_disabled_roles_are_refused(server: str, tracker: Tracker) -> None:
    accounts = AccountStore(tracker.stores.db)
    token = accounts.create_admin("ana")
    old = accounts.issue_token(accounts.user_id("ana"), "old", expires_ms=1)
    with _client(server, token) as ana, _client(server, old) as expired:
        assert ana.get("/api/v1/whoami").status_code == 200
        assert expired.get("/api/v1/whoami").status_code == 401
        accounts.revoke(token.split("_")[1])
        assert ana.get("/api/v1/whoami").status_code == 401


def test_failed_logins_are_rate_limited_and_the_host_header_is_checked(server: str, tracker: Tracker) -> None:
    token = AccountStore(tracker.stores.db).create_admin("ana")
    with _client(server, "lml_wrong") as guesser:
        codes = [guesser.get("/api/v1/whoami").status_code for _ in range(12)]
    assert codes[:10] == [401] * 10
    assert codes[10:] == [429, 429]
    with _client(server, token) as ana:
        assert ana.get("/api/v1/whoami").status_code == 429  # the address is blocked for a minute
        rebinding = ana.get("/api/v1/health", headers={"Host": "evil.example"})
        assert rebinding.status_code == 400
        assert rebinding.json()["code"] == "bad_host"


def test_a_principal_without_a_role_may_do_nothing(tracker: Tracker) -> None:
    accounts = AccountStore(tracker.stores.db)
    accounts.create_user("eve", kind="service")
    who = accounts.authenticate(accounts.token_for("eve", "ci"))
    assert not who.can("read")
    with pytest.raises(Forbidden, match="needs the reader role"):
        who.require("read")


def test_create_admin_prints_the_token_on_its_last_line(tmp_path: Path, tracker: Tracker) -> None:
    loopml_cli = str(Path(sys.executable).parent / "loopml")
    done = subprocess.run(
        [loopml_cli, "server", "create-admin", "--name", "ana"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "LOOPML_DATABASE_URL": tracker.settings.database_url or ""},
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    assert AccountStore(tracker.stores.db).authenticate(token).name == "ana"
    again = subprocess.run(
        [loopml_cli, "server", "create-admin", "--name", "ana"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "LOOPML_DATABASE_URL": tracker.settings.database_url or ""},
    )
    assert again.returncode == 2
    assert "exists already" in again.stderr
