"""The team server's UI: sign in with a token for a session cookie, CSRF on every form, roles per workspace,
sign out revokes the session; the cookie never opens the API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

import loopml
from loopml.server.accounts import AccountStore
from loopml.server.ui.login import SESSION_COOKIE
from loopml.server.ui.pages import CSRF_COOKIE
from loopml.server.workspaces import create_workspace
from loopml.tracking.tracker import Tracker

if TYPE_CHECKING:
    from conftest import Watched


@pytest.fixture
def team(tracker: Tracker) -> Iterator[tuple[str, dict[str, str]]]:
    """A live team server over the project, with one run; tokens of an admin, a reader and a stranger."""
    from team_server import serving

    with loopml.start_run("fraud", "first", tracker=tracker):
        loopml.log_metric("auc", 0.91)
    tracker.flush()
    accounts = AccountStore(tracker.stores.db)
    tokens = {"ana": accounts.create_admin("ana")}
    accounts.create_user("rui")
    accounts.grant("rui", "reader")
    tokens["rui"] = accounts.token_for("rui", "laptop")
    accounts.create_user("eve")  # no role anywhere
    tokens["eve"] = accounts.token_for("eve", "laptop")
    with serving(tracker) as url:
        yield url, tokens


def _browser(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30, headers={"origin": url})


def _sign_in(client: httpx.Client, token: str, next: str = "/ui/experiments") -> httpx.Response:
    form = client.get("/ui/login", params={"next": next})
    assert form.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    return client.post("/ui/login", data={"token": token, "csrf": csrf.group(1), "next": next})


def test_pages_need_a_session_and_sign_in_gives_one(team: tuple[str, dict[str, str]]) -> None:
    url, tokens = team
    with _browser(url) as client:
        first = client.get("/ui/experiments/fraud?filter=metrics.auc%3E0")
        assert first.status_code == 302
        assert first.headers["location"].startswith("/ui/login?next=%2Fui%2Fexperiments%2Ffraud")
        assert client.get("/").headers["location"] == "/ui/"

        signed = _sign_in(client, tokens["rui"], "/ui/experiments/fraud")
        assert signed.status_code == 303
        assert signed.headers["location"] == "/ui/experiments/fraud"
        cookie = signed.headers["set-cookie"]
        assert SESSION_COOKIE in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert tokens["rui"] not in cookie  # the session is a token of its own, not the pasted one
        page = client.get("/ui/experiments/fraud")
        assert page.status_code == 200
        assert ">first</a>" in page.text
        assert '<span class="user">rui</span>' in page.text
        # The cookie opens pages only: the API still wants a bearer token.
        assert client.get("/api/v1/experiments").status_code == 401


def test_a_bad_token_or_a_forged_form_signs_nobody_in(team: tuple[str, dict[str, str]]) -> None:
    url, tokens = team
    with _browser(url) as client:
        wrong = _sign_in(client, "lml_" + "0" * 32 + "_" + "x" * 43)
        assert wrong.status_code == 401
        assert "not valid" in wrong.text
        assert SESSION_COOKIE not in wrong.headers.get("set-cookie", "")
        no_csrf = client.post("/ui/login", data={"token": tokens["ana"], "next": "/ui/"})
        assert no_csrf.status_code == 403
        assert "security token" in no_csrf.text
    with httpx.Client(base_url=url, timeout=30, headers={"origin": "https://evil.example"}) as other:
        form = other.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        forged = other.post("/ui/login", data={"token": tokens["ana"], "csrf": csrf.group(1)})
        assert forged.status_code == 403  # a page elsewhere cannot post the form, even with a token
    with _browser(url) as client:
        elsewhere = _sign_in(client, tokens["ana"], "//evil.example/ui/")
        assert elsewhere.headers["location"] == "/ui/"  # no open redirect


def test_failed_sign_ins_are_rate_limited(team: tuple[str, dict[str, str]]) -> None:
    url, tokens = team
    with _browser(url) as client:
        codes = [_sign_in(client, "lml_nope").status_code for _ in range(11)]
        assert codes[:10] == [401] * 10
        assert codes[10] == 429
        assert _sign_in(client, tokens["ana"]).status_code == 429  # still blocked for a minute


def test_roles_hold_in_the_ui(team: tuple[str, dict[str, str]], tracker: Tracker) -> None:
    url, tokens = team
    with _browser(url) as client:
        assert _sign_in(client, tokens["eve"]).status_code == 303
        denied = client.get("/ui/experiments")
        assert denied.status_code == 403
        assert "reader" in denied.text
    create_workspace(tracker.settings, "risk")
    with _browser(url) as client:
        _sign_in(client, tokens["rui"])
        assert client.get("/ui/experiments").status_code == 200
        assert client.get("/w/risk/ui/experiments").status_code == 403  # rui reads "default" only
    with _browser(url) as client:
        _sign_in(client, tokens["ana"])
        risk = client.get("/w/risk/ui/experiments")
        assert risk.status_code == 200
        assert 'title="workspace">risk</span>' in risk.text
        assert 'href="/w/risk/ui/experiments"' in risk.text  # links stay in the workspace


def test_sign_out_revokes_the_session(team: tuple[str, dict[str, str]]) -> None:
    url, tokens = team
    with _browser(url) as client:
        _sign_in(client, tokens["ana"])
        session = client.cookies[SESSION_COOKIE]
        page = client.get("/ui/experiments")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        assert client.post("/ui/logout", data={"csrf": "stale"}).status_code == 403
        out = client.post("/ui/logout", data={"csrf": csrf.group(1)})
        assert out.status_code == 303
        assert client.get("/ui/experiments").status_code == 302
    with httpx.Client(base_url=url, timeout=30, cookies={SESSION_COOKIE: session}) as replay:
        assert replay.get("/ui/experiments").status_code == 302  # the old cookie no longer works
        assert CSRF_COOKIE  # (the CSRF cookie name is part of the contract the forms rely on)


def test_signing_in_with_a_real_browser(page: Watched, team: tuple[str, dict[str, str]]) -> None:
    url, tokens = team
    page.open(f"{url}/ui/experiments")
    assert "/ui/login" in page.page.url
    page.page.fill("#token", tokens["ana"])
    page.page.click("button[type=submit]")
    page.page.wait_for_load_state("load")
    assert page.page.url.endswith("/ui/experiments")
    assert page.page.locator("text=fraud").count() == 1
    page.page.click("text=Sign out")
    page.page.wait_for_load_state("load")
    assert "/ui/login" in page.page.url


def test_a_session_dies_with_the_token_it_came_from(
    team: tuple[str, dict[str, str]], tracker: Tracker
) -> None:
    url, _ = team
    accounts = AccountStore(tracker.stores.db)
    leaked = accounts.token_for("rui", "leaked")
    with _browser(url) as client:
        assert _sign_in(client, leaked).status_code == 303
        session = client.cookies[SESSION_COOKIE]
        assert client.get("/ui/experiments").status_code == 200
        # The session value is no API token, and cannot start a session of its own.
        assert (
            httpx.get(f"{url}/api/v1/whoami", headers={"authorization": f"Bearer {session}"}).status_code
            == 401
        )
        with _browser(url) as other:
            assert _sign_in(other, session).status_code == 401
        accounts.revoke(accounts.authenticate(leaked).token_id)
        assert client.get("/ui/experiments").status_code == 302  # revoking the token ended its session


def test_a_session_never_outlives_its_token(tracker: Tracker) -> None:
    from loopml.core.clock import now_ms

    accounts = AccountStore(tracker.stores.db)
    accounts.create_user("ivo")
    soon = now_ms() + 60_000
    short = accounts.token_for("ivo", "for a minute", expires_ms=soon)
    session = accounts.start_session(accounts.authenticate(short), hours=12)
    assert accounts.authenticate(session, session=True).expires_time == soon


def test_bad_session_cookies_count_as_failed_logins(team: tuple[str, dict[str, str]]) -> None:
    url, tokens = team
    forged = {SESSION_COOKIE: "lml_" + "0" * 32 + "_" + "y" * 43}
    with httpx.Client(base_url=url, timeout=30, cookies=forged) as client:
        codes = [client.get("/ui/experiments").status_code for _ in range(11)]
    assert codes[:10] == [302] * 10
    assert codes[10] == 429
    blocked = httpx.get(f"{url}/ui/experiments", headers={"authorization": f"Bearer {tokens['ana']}"})
    assert blocked.status_code == 429  # as on the API: the address waits a minute, valid tokens included
