"""Browser fixtures for the UI tests: one Chromium per session, a fresh page per test that fails the test on
any console error or uncaught exception and leaves a screenshot in `test-artifacts/ui/`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from browser import browsing, local_ui

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

SCREENSHOTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "ui"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    with browsing() as launched:
        yield launched


class Watched:
    """A browser page that records console errors and page exceptions."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"exception: {e}"))

    def open(self, url: str) -> Any:
        """Go to `url` and wait for its scripts; the response."""
        response = self.page.goto(url)
        self.page.wait_for_load_state("load")
        return response

    def charts(self) -> list[str]:
        """Each chart's state after drawing: "1" drawn, "empty" no data, "error" failed, "" not drawn."""
        return list(
            self.page.eval_on_selector_all("figure.chart", "fs => fs.map(f => f.dataset.rendered || '')")
        )

    def canvases_drawn(self) -> int:
        """Canvases with at least one non-transparent pixel."""
        return int(
            self.page.evaluate(
                """() => [...document.querySelectorAll('figure.chart canvas')].filter(c => {
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true;
                    return false; }).length"""
            )
        )


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


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite")])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The UI's pages read through the stores' own queries, which the domain tests run on PostgreSQL too; the
    browser tests use SQLite only."""
    return f"sqlite:///{tmp_path}/loopml.db"
