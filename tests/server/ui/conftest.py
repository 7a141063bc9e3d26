"""Browser fixtures for the UI tests: one Chromium per session, a fresh page per test that fails the test on
any console error or uncaught exception and leaves a screenshot in `test-artifacts/ui/`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from browser import Watched, browsing, local_ui

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

SCREENSHOTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "ui"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    with browsing() as launched:
        yield launched


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    watched = Watched(context.new_page())
    try:
        yield watched
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid.split("::", 1)[-1])[:120]
        try:
            watched.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        finally:
            context.close()
    assert watched.errors == [], watched.errors


@pytest.fixture
def ui(tracker: Tracker) -> Iterator[str]:
    """The local UI over the test's project; its pages are under `{ui}/ui/`."""
    with local_ui(tracker) as url:
        yield url


@pytest.fixture
def http(ui: str) -> Iterator[httpx.Client]:
    """Plain HTTP to the local UI over the test's project (real requests: `http.get("/ui/experiments")`).
    Use this, not Starlette's TestClient (deprecated with httpx, and warnings are errors here)."""
    with httpx.Client(base_url=ui, timeout=30) as client:
        yield client
